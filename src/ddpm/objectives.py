"""Training objectives (Ho et al. 2020 eq. 14; Nichol & Dhariwal 2021 §3.1).

    L_simple = E_{t, x₀, ε} ‖target − model(√ᾱ_t x₀ + √(1−ᾱ_t) ε, t)‖²

where the target is ε, x₀, v = √ᾱ ε − √(1−ᾱ) x₀ or the posterior mean μ̃_t(x_t, x₀), as the model predicts.
``loss`` picks the objective, per example at its one timestep t:
- ``simple``: the squared error above;
- ``vlb``: the term L_t of the variational bound in bits/dim (L_0 the discretized decoder, else the KL of DDPM
  eq. 5, ``losses.vlb_term_bpd``, the same code as the NLL evaluation): E_t L_t = L_vlb / T, minus the prior;
- ``rescaled_vlb``: T·L_t, improved-diffusion's RESCALED_KL (the whole bound's scale);
- ``hybrid``: L_simple + λ L_vlb with λ = 0.001 (improved DDPM eq. 16), per example mse + (T/1000)·L_t with the
  mean output detached inside L_t, so that the VLB term trains only the learned variance.
With ``weights`` [B] (importance sampling of t) each example's objective is multiplied by its weight.

Optional Min-SNR-γ weighting (Hang et al. 2023, eq. 6) of the squared error: each example's error is
re-weighted so that, in terms of the x₀ error, its weight is min(SNR_t, γ). In the model's own target the
weight is min(SNR, γ)/SNR for ε, min(SNR, γ) for x₀ and min(SNR, γ)/(SNR + 1) for v.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from .errors import DdpmError
from .losses import mean_flat, vlb_term_bpd
from .parameterization import Prediction, check_prediction, target_for, to_x0_eps
from .schedules import NoiseSchedule
from .variance import check_variance, log_variance, split_output

LOSSES: tuple[str, ...] = ("simple", "hybrid", "vlb", "rescaled_vlb")
HYBRID_LAMBDA = 0.001  # improved DDPM eq. 16


def sample_timesteps_uniform(
    batch_size: int, num_timesteps: int, *, device: torch.device | str = "cpu", generator: torch.Generator | None = None
) -> torch.Tensor:
    """t ~ U{0, …, T−1}, int64 [B] on ``device``, drawn on the generator's device (the same t for a seed wherever
    the batch lives)."""
    source = generator.device if generator is not None else device
    return torch.randint(0, num_timesteps, (batch_size,), device=source, generator=generator).to(device)


def training_loss(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    *,
    prediction: Prediction = "eps",
    variance: str = "fixed_small",
    loss: str = "simple",
    t: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    cond: Mapping[str, Any] | None = None,
    min_snr_gamma: float | None = None,
) -> dict[str, torch.Tensor]:
    """The objective ``loss`` for a batch x0 [B, …] of data in [−1, 1].

    Returns per-example tensors: ``loss`` [B] (the objective that is minimised, weights included), ``mse`` [B]
    (the plain squared error of the mean output, comparable between runs whatever their objective), ``vlb`` [B]
    (L_t in bits/dim; for ``simple`` not computed and absent), ``t`` [B] (original timestep indices) and ``x_t``.
    ``t`` and ``noise`` may be given (tests, importance sampling); by default they are drawn from ``generator``.
    """
    check_prediction(prediction)
    check_variance(variance)
    if loss not in LOSSES:
        raise DdpmError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
    schedule = schedule.to(x0.device)
    if t is None:
        t = sample_timesteps_uniform(x0.shape[0], schedule.num_timesteps, device=x0.device, generator=generator)
    if noise is None:
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    x_t = schedule.q_sample(x0, t, noise)
    mean_out, u = split_output(model(x_t, schedule.timesteps[t], **(cond or {})), x_t)
    alpha_bar = schedule.gather("alphas_cumprod", t, x0)
    # μ̃'s coefficients, gathered only for a μ̃ prediction (the other targets do not need them on this hot path)
    posterior = (schedule.gather("posterior_mean_coef1", t, x0), schedule.gather("posterior_mean_coef2", t, x0)) \
        if prediction == "mu" else None
    target = target_for(prediction, x0, noise, alpha_bar, x_t, posterior)
    mse = mean_flat((mean_out.float() - target.float()) ** 2)
    out = {"mse": mse, "t": schedule.timesteps[t], "x_t": x_t}
    objective = mse if min_snr_gamma is None else mse * min_snr_weight(schedule, t, prediction, min_snr_gamma).to(mse)
    if loss != "simple":
        # hybrid: the VLB term sees the mean as a constant (improved DDPM §3.1), so only Σ learns from it
        mean_for_vlb = mean_out.detach() if loss == "hybrid" else mean_out
        x0_hat, _ = to_x0_eps(mean_for_vlb.float(), x_t.float(), alpha_bar.float(), prediction, clip_x0=False,
                              posterior=None if posterior is None else tuple(c.float() for c in posterior))
        logvar = log_variance(schedule, t, variance, None if u is None else u.float(), like=x0_hat)
        vlb = vlb_term_bpd(schedule, x0, x_t, t, x0_hat, logvar)
        out["vlb"] = vlb
        T = schedule.num_timesteps
        objective = {"hybrid": objective + (HYBRID_LAMBDA * T) * vlb.float(), "vlb": vlb.float(),
                     "rescaled_vlb": T * vlb.float()}[loss]
    out["loss"] = objective if weights is None else objective * weights.to(objective)
    return out


def classifier_loss(classifier: Callable[..., torch.Tensor], schedule: NoiseSchedule, x0: torch.Tensor,
                    y: torch.Tensor, *, t: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
    """The noise-aware classifier's objective (Dhariwal & Nichol 2021, §4): the cross-entropy −log p_φ(y | x_t, t) of
    the labels y [B] given x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε, the same forward process (DDPM eq. 4) the diffusion model
    is trained on, so that the classifier is right where guidance asks it: on every x_t the sampler visits.

    Returns per-example tensors [B]: ``loss`` (the cross-entropy in nats), ``correct`` (1.0 where the most likely
    class is y) and ``t`` (original timestep indices)."""
    schedule = schedule.to(x0.device)
    x_t = schedule.q_sample(x0, t, noise)
    logits = classifier(x_t, schedule.timesteps[t]).float()
    loss = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    return {"loss": loss, "correct": (logits.argmax(1) == y).float(), "t": schedule.timesteps[t]}


def min_snr_weight(schedule: NoiseSchedule, t: torch.Tensor, prediction: Prediction, gamma: float) -> torch.Tensor:
    """Min-SNR-γ weight [B] for the model's own target at step indices t [B] (float64)."""
    if gamma <= 0:
        raise ValueError(f"min_snr_gamma must be positive, got {gamma}")
    if prediction not in ("eps", "x0", "v"):
        raise DdpmError(f"Min-SNR weighting is defined for eps, x0 and v predictions, not {prediction!r}")
    snr = schedule.snr()[t.to(schedule.betas.device)]
    capped = snr.clamp(max=gamma)
    return {"eps": capped / snr, "x0": capped, "v": capped / (snr + 1)}[prediction].to(t.device)
