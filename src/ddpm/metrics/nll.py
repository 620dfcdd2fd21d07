"""Negative log-likelihood in bits/dim from the full variational bound (DDPM eq. 5, improved DDPM §2.1):

    −log p(x₀) ≤ L_T + Σ_{t=2}^{T} L_{t−1} + L_0
    L_T     = KL(q(x_T | x₀) ‖ N(0, I))                                     (the prior term)
    L_{t−1} = KL(q(x_{t−1} | x_t, x₀) ‖ p_θ(x_{t−1} | x_t))                 (one per step, x_t ~ q(x_t | x₀))
    L_0     = −log p_θ(x₀ | x₁), a Gaussian integrated over each 8-bit bin  (the discretized decoder)

each divided by (number of dimensions · ln 2). p_θ(x_{t−1} | x_t) = N(μ̃_t(x_t, x̂₀), σ_t²) with the model's
x̂₀ (clipped to [−1, 1], as improved-diffusion's ``calc_bpd_loop`` does) and a fixed variance:
σ_t² = β̃_t (``beta_tilde``) or β_t (``beta``); at t = 0 both use β̃_1, as improved-diffusion does, because
β̃_0 = 0. The bound is a single-sample estimate per image and step (one x_t each), summed over all T steps.
Cost: T network evaluations per batch of images.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch

from .. import rng
from ..losses import discretized_gaussian_log_likelihood, mean_flat, normal_kl
from ..parameterization import Prediction, to_x0_eps
from ..schedules import NoiseSchedule, Variance


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
    variance: Variance = "beta_tilde",
    clip_x0: bool = True,
    cond: Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """The variational bound of a batch x0 [B, C, H, W] (8-bit data scaled to [−1, 1]) in bits/dim.

    Returns float64 tensors: ``terms`` [B, T] (column 0 is L_0, column t the KL term L_t), ``prior`` [B]
    (L_T) and ``total`` [B] = Σ terms + prior, the NLL bound of each image.
    """
    model_logvar_all = schedule.fixed_log_variance(variance)
    device = x0.device
    T = schedule.num_timesteps
    terms = torch.zeros(len(x0), T, dtype=torch.float64)
    cond = dict(cond or {})
    x0_64 = x0.double()
    for t_index in reversed(range(T)):
        t = torch.full((len(x0),), t_index, dtype=torch.long, device=device)
        noise = rng.randn(x0.shape, generator, device, x0.dtype)
        x_t = schedule.q_sample(x0, t, noise)
        t_model = schedule.timesteps.to(device)[t]
        output = model(x_t, t_model, **cond)
        x0_hat, _ = to_x0_eps(output.double(), x_t.double(), schedule.gather("alphas_cumprod", t, x0_64), prediction, clip_x0)
        true_mean, _, true_logvar = schedule.q_posterior(x0_64, x_t.double(), t)
        model_mean, _, _ = schedule.q_posterior(x0_hat, x_t.double(), t)
        model_logvar = model_logvar_all[t.cpu()].to(device).reshape(-1, *[1] * (x0.ndim - 1))
        if t_index == 0:
            nll = -discretized_gaussian_log_likelihood(x0_64, model_mean, 0.5 * model_logvar)
            terms[:, 0] = (mean_flat(nll) / math.log(2.0)).cpu()
        else:
            kl = normal_kl(true_mean, true_logvar, model_mean, model_logvar)
            terms[:, t_index] = (mean_flat(kl) / math.log(2.0)).cpu()
        if progress is not None:
            progress(1)
    prior = prior_bpd(schedule, x0.cpu())
    return {"terms": terms, "prior": prior, "total": terms.sum(1) + prior}
