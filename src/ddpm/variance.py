"""The reverse-process variance Σ_θ(x_t, t) = σ_t² I: fixed (DDPM §3.2) or learned (improved DDPM §3.1).

- ``fixed_small``: σ_t² = β̃_t, the posterior variance (the lower bound of DDPM §3.2);
- ``fixed_large``: σ_t² = β_t (the upper bound);
- ``learned``: the network's variance output u is log σ_t² itself;
- ``learned_range``: improved DDPM eq. 15, σ_t² = exp(f log β_t + (1 − f) log β̃_t) with f = (u + 1)/2, so that
  u = −1 is β̃_t and u = 1 is β_t (u is not clamped, as in improved-diffusion).
At t = 0, where β̃_0 = 0 has no logarithm, β̃_1 stands in (``NoiseSchedule.fixed_log_variance``, the one home of
that rule); ``learned_range``'s upper end is log β_t at every t, as improved-diffusion's ``max_log``.

A model with a learned variance outputs 2C channels for C image channels: the mean part (ε, x₀, v or μ̃, as
``diffusion.prediction`` says) first, then u.
"""
from __future__ import annotations

from typing import Literal

import torch

from .errors import DdpmError
from .schedules import FIXED_VARIANCES, NoiseSchedule

VarianceType = Literal["fixed_small", "fixed_large", "learned", "learned_range"]
VARIANCE_TYPES: tuple[str, ...] = FIXED_VARIANCES + ("learned", "learned_range")


def check_variance(variance: str) -> None:
    if variance not in VARIANCE_TYPES:
        raise DdpmError(f"unknown variance {variance!r}; expected one of {', '.join(VARIANCE_TYPES)}")


def is_learned(variance: str) -> bool:
    check_variance(variance)
    return variance not in FIXED_VARIANCES


def output_channels(channels: int, variance: str) -> int:
    """Channels a network outputs for images of ``channels`` channels: twice as many with a learned variance."""
    return 2 * channels if is_learned(variance) else channels


def split_output(output: torch.Tensor, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A model's output [B, C or 2C, …] for x_t [B, C, …] → (mean part [B, C, …], variance part u [B, C, …] or None)."""
    if torch.is_tensor(output) and output.shape == x_t.shape:
        return output, None
    channels = x_t.shape[1]
    if torch.is_tensor(output) and output.ndim == x_t.ndim and output.shape[0] == x_t.shape[0] \
            and output.shape[1] == 2 * channels and output.shape[2:] == x_t.shape[2:]:
        return output[:, :channels], output[:, channels:]
    got = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
    raise DdpmError(f"model returned {got} for x_t of shape {tuple(x_t.shape)}; expected x_t's shape, or twice its "
                    "channels for a model with a learned variance")


def log_variance(schedule: NoiseSchedule, t: torch.Tensor, variance: str, u: torch.Tensor | None,
                 like: torch.Tensor) -> torch.Tensor:
    """log σ_t² at step indices ``t`` [B] of ``schedule``: [B, 1, …] for a fixed variance, [B, C, …] (like u) for a
    learned one, in ``like``'s dtype. On a respaced schedule β and β̃ are the respaced ones (improved DDPM §4)."""
    check_variance(variance)
    if variance in FIXED_VARIANCES:
        values = schedule.fixed_log_variance(variance)[t.to(schedule.betas.device)]
        return values.to(device=like.device, dtype=like.dtype).reshape(len(t), *([1] * (like.ndim - 1)))
    if u is None:
        raise DdpmError(f"variance {variance!r} needs a model that outputs a variance (twice the image channels)")
    u = u.to(like.dtype)
    if variance == "learned":
        return u
    min_log = schedule.gather("posterior_log_variance_clipped", t, u)
    max_log = torch.log(schedule.gather("betas", t, u))
    f = (u + 1) / 2
    return f * max_log + (1 - f) * min_log
