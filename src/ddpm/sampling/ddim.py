"""DDIM sampling (Song, Meng & Ermon 2021, eq. 12) with stochasticity η on S respaced steps."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from ..errors import DdpmError

from ..parameterization import Prediction
from ..schedules import NoiseSchedule, Spacing
from ..rng import Generator
from .common import DEFAULT_CLIP_X0, Callback, Estimator, Model, StepInfo, prepare, randn_like


@torch.no_grad()
def ddim(
    model: Model,
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    *,
    steps: int | None = None,
    prediction: Prediction = "eps",
    clip_x0: bool = DEFAULT_CLIP_X0,
    generator: Generator = None,
    callback: Callback = None,
    cond: Mapping[str, Any] | None = None,
    timesteps: Sequence[int] | None = None,
    eta: float = 0.0,
    spacing: Spacing = "uniform",
) -> torch.Tensor:
    """DDIM: x_prev = √ᾱ_prev x̂₀ + √(1 − ᾱ_prev − σ²) ε̂ + σ z   (DDIM eq. 12)

    with σ = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev) (DDIM eq. 16), i.e. σ² = η² β̃ of the respaced
    schedule: η = 0 is the deterministic DDIM, η = 1 is DDPM ancestral sampling with σ² = β̃ on the same
    respaced steps. The last step lands on ᾱ_prev = 1 and returns x̂₀. ``steps`` counts model evaluations;
    with fewer than T they start at ``schedules.sampling_start`` (λ ≥ −5.1: t = 995 on cosine, T−1 on
    linear), where x̂₀ is not yet the 2·10⁴-fold amplified error of the clipped schedule's last steps.
    x_T [B, …] → x₀ [B, …].
    """
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
        raise DdpmError(f"eta must be a number in [0, 1], got {eta!r}")
    schedule, visited = prepare(schedule, x_T, steps, spacing, timesteps)
    steps = len(visited)
    coefs = schedule.respace(visited)
    denoise = Estimator(model, prediction, clip_x0, cond, schedule)
    alpha_bar = coefs.alphas_cumprod.tolist()
    alpha_bar_prev = coefs.alphas_cumprod_prev.tolist()
    sigma = (eta * coefs.posterior_variance.sqrt()).tolist()
    t_original = coefs.timesteps.tolist()

    x = x_T
    for n, i in enumerate(reversed(range(steps))):
        x0, eps, _ = denoise(x, t_original[i], alpha_bar[i])  # a variance head is not used
        if callback is not None:
            callback(StepInfo(n, steps, t_original[i], x, x0))
        # max(…, 0) guards the η = 1 case, where 1 − ᾱ_prev − β̃ can round to a tiny negative number.
        x = alpha_bar_prev[i] ** 0.5 * x0 + max(1.0 - alpha_bar_prev[i] - sigma[i] ** 2, 0.0) ** 0.5 * eps
        if sigma[i] > 0:
            x = x + sigma[i] * randn_like(x, generator)
    return x
