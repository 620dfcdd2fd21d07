"""Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2), on all steps or a subset of them."""
from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

import torch

from ..parameterization import Prediction
from ..schedules import NoiseSchedule, Spacing
from ..variance import VARIANCE_TYPES, VarianceType, is_learned, log_variance
from ..rng import Generator
from .common import DEFAULT_CLIP_X0, Callback, Estimator, Model, StepInfo, check_choice, prepare, randn_like

Skip = Literal["respace", "naive"]
SKIPS = ("respace", "naive")


@torch.no_grad()
def ddpm(
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
    variance: VarianceType = "fixed_small",
    skip: Skip = "respace",
    spacing: Spacing = "uniform",
) -> torch.Tensor:
    """DDPM ancestral sampling: x_{t−1} = μ̃_t(x_t, x̂₀) + σ_t z, z ~ N(0, I), no noise at the last step.

    μ̃ is the posterior mean of DDPM eq. 7 with x₀ replaced by the model's estimate (eq. 11 for ε);
    σ_t² is β̃_t (``variance="fixed_small"``) or β_t (``"fixed_large"``), DDPM §3.2, or the model's own Σ_θ
    (``"learned"``, ``"learned_range"``, improved DDPM eq. 15: the model outputs twice x_t's channels), computed
    from the β and β̃ of the schedule actually sampled (respaced ones on a respaced run, as improved-diffusion).
    With ``clip_x0`` x̂₀ is clamped to [−1, 1] before it enters μ̃, except for a μ̃ model (``prediction="mu"``): its
    x̂₀ enters unclipped, so that on the model's own steps the mean is its output, as improved-diffusion's
    ``p_mean_variance`` with PREVIOUS_X, which clips only the x̂₀ it reports (here: ``StepInfo.x0_pred``).
    A classifier-guided model (``guidance.ClassifierGuidance``) moves the mean by Σ s∇_x log p(y | x_t) (Dhariwal &
    Nichol 2021, Algorithm 1) with guided-diffusion's Σ (``condition_mean``: ``p_mean_variance``'s "variance"): this
    step's σ² for ``fixed_large`` and the learned variances (β̃₁ or Σ_θ at t = 0 too), but for ``fixed_small`` the
    unclipped β̃_t, which is 0 at t = 0 (the noise's σ² there is β̃₁, but no noise is added): the step from t = 0,
    the last, is then not guided.
    With ``steps`` < T only ``steps`` timesteps (chosen by ``spacing`` from ``schedules.sampling_start`` down to 0,
    or the explicit ``timesteps``) are visited:
    - ``skip="respace"`` samples the respaced process whose β are recomputed from ᾱ at the kept steps
      (improved DDPM §4), the principled way;
    - ``skip="naive"`` keeps each kept step's ORIGINAL β_t and posterior coefficients, as if the skipped
      steps did not exist; it is what step skipping looks like without respacing, shown for comparison.
    x_T [B, …] → x₀ [B, …].
    """
    check_choice("variance", variance, VARIANCE_TYPES)
    check_choice("skip", skip, SKIPS)
    schedule, visited = prepare(schedule, x_T, steps, spacing, timesteps)
    steps = len(visited)
    # the same visited timesteps either way; only the coefficients used at them differ
    coefs, indices = (schedule, visited) if skip == "naive" else (schedule.respace(visited), list(range(steps)))
    # a μ̃ model's own mean is used unclipped (improved-diffusion's PREVIOUS_X); only the x̂₀ reported is clamped
    own_mean = prediction == "mu"
    denoise = Estimator(model, prediction, clip_x0 and not own_mean, cond, schedule)
    # Per-step coefficients as Python floats, read once: a step then costs three fused tensor ops.
    alpha_bar = coefs.alphas_cumprod.tolist()
    coef_x0 = coefs.posterior_mean_coef1.tolist()
    coef_xt = coefs.posterior_mean_coef2.tolist()
    learned = is_learned(variance)
    std = None if learned else coefs.fixed_log_variance(variance).mul(0.5).exp().tolist()
    # Σ of the guidance shift, guided-diffusion's p_mean_variance "variance": for fixed_small the posterior variance
    # itself (β̃_0 = 0: no shift at t = 0), not the log-clipped one (β̃₁ at t = 0) that scales the noise
    guide_var = coefs.posterior_variance.tolist() if variance == "fixed_small" else None
    t_original = coefs.timesteps.tolist()

    x = x_T
    for n, i in enumerate(reversed(indices)):
        x0, _, u, shift = denoise.with_mean_shift(x, t_original[i], alpha_bar[i])
        if callback is not None:
            callback(StepInfo(n, steps, t_original[i], x, x0.clamp(-1.0, 1.0) if own_mean and clip_x0 else x0))
        mean = coef_x0[i] * x0 + coef_xt[i] * x
        if learned:
            index = torch.full((x.shape[0],), i, dtype=torch.long, device=x.device)
            # in float64 like the fixed σ above, so u = −1 of learned_range gives fixed_small's samples bit for bit
            sigma = torch.exp(0.5 * log_variance(coefs, index, variance, u, like=x.double())).to(x.dtype)
        else:
            sigma = std[i]
        if shift is not None:  # classifier guidance: μ + Σ s∇log p(y | x_t) (Dhariwal & Nichol, Algorithm 1)
            mean = mean + (sigma**2 if guide_var is None else guide_var[i]) * shift
        x = mean if n == steps - 1 else mean + sigma * randn_like(x, generator)  # no noise at the last step
    return x
