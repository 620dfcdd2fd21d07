"""Training objectives: L_simple on ε, x₀ or v (Ho et al. 2020, eq. 14).

    L_simple = E_{t ~ U{0..T−1}, x₀, ε ~ N(0, I)} ‖target − model(√ᾱ_t x₀ + √(1−ᾱ_t) ε, t)‖²

where the target is ε, x₀ or v = √ᾱ ε − √(1−ᾱ) x₀ depending on what the model predicts.

Optional Min-SNR-γ weighting (Hang et al. 2023, eq. 6): each example's error is re-weighted so that, in
terms of the x₀ error, its weight is min(SNR_t, γ) — which caps the weight of the low-noise steps that
L_simple (weight SNR_t in x₀ terms, for ε) over-emphasises. In the model's own target the weight is
min(SNR, γ)/SNR for ε, min(SNR, γ) for x₀ and min(SNR, γ)/(SNR + 1) for v.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from .losses import mean_flat
from .parameterization import Prediction, check_prediction, target_for
from .schedules import NoiseSchedule


def sample_timesteps_uniform(
    batch_size: int, num_timesteps: int, *, device: torch.device | str = "cpu", generator: torch.Generator | None = None
) -> torch.Tensor:
    """t ~ U{0, …, T−1}, int64 [B]."""
    return torch.randint(0, num_timesteps, (batch_size,), device=device, generator=generator)


def training_loss(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    *,
    prediction: Prediction = "eps",
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    cond: Mapping[str, Any] | None = None,
    min_snr_gamma: float | None = None,
) -> dict[str, torch.Tensor]:
    """L_simple for a batch x0 [B, …] of data in [−1, 1].

    Returns a dict of per-example tensors so callers can log what they like:
    ``loss`` [B] (the objective: the mean squared error over the non-batch dimensions, times the
    Min-SNR weight when ``min_snr_gamma`` is set), ``mse`` [B] (the unweighted error), ``t`` [B] (the timesteps used,
    original indices, for the loss-per-timestep curves) and ``x_t`` [B, …].
    ``t`` and ``noise`` may be given (tests, importance sampling); by default they are drawn from
    ``generator``.
    """
    check_prediction(prediction)
    schedule = schedule.to(x0.device)
    if t is None:
        t = sample_timesteps_uniform(x0.shape[0], schedule.num_timesteps, device=x0.device, generator=generator)
    if noise is None:
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    x_t = schedule.q_sample(x0, t, noise)
    output = model(x_t, schedule.timesteps[t], **(cond or {}))
    if output.shape != x0.shape:
        raise ValueError(f"model returned shape {tuple(output.shape)} for input {tuple(x0.shape)}; they must match")
    target = target_for(prediction, x0, noise, schedule.gather("alphas_cumprod", t, x0))
    mse = mean_flat((output.float() - target.float()) ** 2)
    loss = mse if min_snr_gamma is None else mse * min_snr_weight(schedule, t, prediction, min_snr_gamma).to(mse)
    return {"loss": loss, "mse": mse, "t": schedule.timesteps[t], "x_t": x_t}


def min_snr_weight(schedule: NoiseSchedule, t: torch.Tensor, prediction: Prediction, gamma: float) -> torch.Tensor:
    """Min-SNR-γ weight [B] for the model's own target at step indices t [B] (float64)."""
    if gamma <= 0:
        raise ValueError(f"min_snr_gamma must be positive, got {gamma}")
    snr = schedule.snr()[t.to(schedule.betas.device)]
    capped = snr.clamp(max=gamma)
    return {"eps": capped / snr, "x0": capped, "v": capped / (snr + 1)}[prediction].to(t.device)
