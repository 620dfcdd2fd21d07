"""Negative log-likelihood in bits/dim from the full variational bound (DDPM eq. 5, improved DDPM §2.1):

    −log p(x₀) ≤ L_T + Σ_{t=1}^{T−1} L_t + L_0
    L_T = KL(q(x_T | x₀) ‖ N(0, I))                                          (the prior term, at t = T−1)
    L_t = KL(q(x_{t−1} | x_t, x₀) ‖ p_θ(x_{t−1} | x_t))                      (one per step, x_t ~ q(x_t | x₀))
    L_0 = −log p_θ(x₀ | x₁), a Gaussian integrated over each 8-bit bin       (the discretized decoder)

each divided by (number of dimensions · ln 2), computed by ``losses.vlb_term_bpd`` (the code the VLB training
objectives use). p_θ(x_{t−1} | x_t) = N(μ̃_t(x_t, x̂₀), Σ) with the model's x̂₀ (clipped to [−1, 1], as
improved-diffusion's ``calc_bpd_loop`` does), or for a μ̃ model (``prediction="mu"``) its own mean, never clipped
(improved-diffusion's ``p_mean_variance`` with PREVIOUS_X: the bound scores the model's mean), and Σ fixed
(σ² = β̃_t ``fixed_small`` or β_t ``fixed_large``, β̃_1 at t = 0 for both) or the model's learned one. The bound is
a single-sample estimate per image and step (one x_t each). With ``timesteps`` = K < T the sum of the T−1 KL terms
is estimated without bias from K of them, one drawn uniformly in each of K strata of 1…T−1 (sizes n_k within one
of (T−1)/K), as Σ_k n_k·L_{t_k}; the prior and L_0 are always exact.
Cost: K + 1 network evaluations per batch of images (T for the full sum).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch

from .. import rng
from ..errors import DdpmError
from ..losses import mean_flat, normal_kl, vlb_term_bpd
from ..parameterization import Prediction, to_x0_eps
from ..schedules import NoiseSchedule
from ..variance import check_variance, log_variance, split_output


def prior_bpd(schedule: NoiseSchedule, x0: torch.Tensor) -> torch.Tensor:
    """L_T in bits/dim, [B]."""
    t = torch.full((len(x0),), schedule.num_timesteps - 1, dtype=torch.long)
    x0 = x0.double()
    mean = schedule.gather("sqrt_alphas_cumprod", t, x0) * x0
    logvar = torch.log1p(-schedule.gather("alphas_cumprod", t, x0))
    return mean_flat(normal_kl(mean, logvar, torch.zeros_like(mean), torch.zeros_like(mean))) / math.log(2.0)


@torch.no_grad()
def vlb_terms(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    *,
    prediction: Prediction = "eps",
    variance: str = "fixed_small",
    clip_x0: bool = True,
    cond: Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    timesteps: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """The variational bound of a batch x0 [B, C, H, W] (8-bit data scaled to [−1, 1]) in bits/dim.
    ``clip_x0`` clamps the x̂₀ of an ε, x₀ or v model to [−1, 1] before it enters μ̃; a μ̃ model's mean is scored as is.

    Returns float64 tensors: ``terms`` [B, T] (column 0 is L_0, column t the KL term L_t; with ``timesteps`` = K
    only the K drawn columns per image are filled, each scaled by its stratum's size so that the row sum is an
    unbiased estimate of the full sum), ``prior`` [B] (L_T), ``total`` [B] = Σ terms + prior, the NLL bound of each image, and
    ``variance_fraction`` [B, T] (for ``learned_range``: the mean f of Σ_θ = β^f β̃^(1−f) per image and step,
    NaN where not evaluated; absent otherwise).
    """
    check_variance(variance)
    device = x0.device
    T = schedule.num_timesteps
    K = T if timesteps is None else timesteps
    if isinstance(K, bool) or not isinstance(K, int) or not 1 <= K <= T:
        raise DdpmError(f"the number of NLL timesteps must be an integer in 1..{T} (T = {T}: the exact sum), got {timesteps!r}")
    full = K >= T - 1  # T − 1 strata of one step each are the exact sum too
    terms = torch.zeros(len(x0), T, dtype=torch.float64)
    fraction = torch.full((len(x0), T), float("nan"), dtype=torch.float64) if variance == "learned_range" else None
    cond = dict(cond or {})
    x0_64 = x0.double()

    def evaluate(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        noise = rng.randn(x0.shape, generator, device, x0.dtype)
        x_t = schedule.q_sample(x0, t, noise)
        mean_out, u = split_output(model(x_t, schedule.timesteps.to(device)[t], **cond), x_t)
        x_t = x_t.double()
        coefs = (schedule.gather("posterior_mean_coef1", t, x0_64), schedule.gather("posterior_mean_coef2", t, x0_64))
        # A μ̃ model's x̂₀ is only a way to pass its mean on (μ̃ = c₁ x̂₀ + c₂ x_t, rebuilt in float64): clipping it
        # would score a mean the model did not predict.
        x0_hat, _ = to_x0_eps(mean_out.double(), x_t, schedule.gather("alphas_cumprod", t, x0_64), prediction,
                              clip_x0 and prediction != "mu", coefs)
        logvar = log_variance(schedule, t, variance, None if u is None else u.double(), like=x0_hat)
        if progress is not None:
            progress(1)
        return vlb_term_bpd(schedule, x0_64, x_t, t, x0_hat, logvar).cpu(), None if u is None else mean_flat((u.double() + 1) / 2).cpu()

    rows = torch.arange(len(x0))
    if full:  # (t [B], weight): every step once
        steps = [(torch.full((len(x0),), t, dtype=torch.long, device=device), 1.0) for t in reversed(range(T))]
    else:  # one t per image in each of K strata of 1..T−1, weighted by the stratum's size (sizes differ by ≤ 1)
        edges = torch.linspace(1, T, K + 1, dtype=torch.float64)
        steps = []
        for k in range(K):
            lo, hi = int(edges[k].ceil()), int(edges[k + 1].ceil()) - 1
            draw = rng.rand((len(x0),), generator, device, torch.float64)
            steps.append(((lo + (draw * (hi - lo + 1)).floor().long()).clamp(max=hi), float(hi - lo + 1)))
        steps.append((torch.zeros(len(x0), dtype=torch.long, device=device), 1.0))
    for t, weight in steps:
        value, f = evaluate(t)
        t_cpu = t.cpu()
        terms[rows, t_cpu] = value * weight  # a stratum's draw stands for the sum over its n_k steps
        if fraction is not None:
            fraction[rows, t_cpu] = f
    prior = prior_bpd(schedule, x0.cpu())
    out = {"terms": terms, "prior": prior, "total": terms.sum(1) + prior}
    if fraction is not None:
        out["variance_fraction"] = fraction
    return out
