"""Pure conversions between what a denoiser may predict: noise ε, clean data x₀, velocity v, posterior mean μ̃, score.

With x_t = √ᾱ x₀ + √(1−ᾱ) ε (DDPM eq. 4) and the velocity v = √ᾱ ε − √(1−ᾱ) x₀ (Salimans & Ho
2022, §4), any one of ε, x₀, v determines the others given x_t:

    x₀ = (x_t − √(1−ᾱ) ε) / √ᾱ          ε = (x_t − √ᾱ x₀) / √(1−ᾱ)
    x₀ = √ᾱ x_t − √(1−ᾱ) v              ε = √(1−ᾱ) x_t + √ᾱ v
    ∇ log q(x_t) ≈ −ε / √(1−ᾱ)          (Song et al. 2021, eq. 12 / Tweedie)
    μ̃ = c₁ x₀ + c₂ x_t                  x₀ = (μ̃ − c₂ x_t) / c₁        (DDPM eq. 7)

where c₁, c₂ are the posterior coefficients of q(x_{t−1} | x_t, x₀) at t in the ORIGINAL schedule (the model's
μ̃ is the mean of x_{t−1}, one original step back): ``posterior`` = (c₁, c₂), gathered by the caller from
``NoiseSchedule.posterior_mean_coef1/2``, the one home of that formula. c₁ = 1 at t = 0, so x₀ = μ̃ there.

``alpha_bar`` is ᾱ_t: a Python float (one t for the whole batch, as in samplers) or a tensor broadcast
against x_t (shape [B, 1, …, 1], in x_t's dtype).
"""
from __future__ import annotations

from typing import Literal

import torch

from .errors import DdpmError

Prediction = Literal["eps", "x0", "v", "mu"]
PREDICTIONS: tuple[str, ...] = ("eps", "x0", "v", "mu")
Posterior = tuple  # (c₁, c₂): floats or tensors broadcast against x_t


def check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise DdpmError(f"unknown prediction {prediction!r}; expected one of {', '.join(PREDICTIONS)}")


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    return (x_t - (1 - alpha_bar) ** 0.5 * eps) / alpha_bar ** 0.5


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    return (x_t - alpha_bar ** 0.5 * x0) / (1 - alpha_bar) ** 0.5


def v_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    return alpha_bar ** 0.5 * eps - (1 - alpha_bar) ** 0.5 * x0


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    return alpha_bar ** 0.5 * x_t - (1 - alpha_bar) ** 0.5 * v


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    return (1 - alpha_bar) ** 0.5 * x_t + alpha_bar ** 0.5 * v


def mu_from_x0(x_t: torch.Tensor, x0: torch.Tensor, posterior: Posterior) -> torch.Tensor:
    c1, c2 = posterior
    return c1 * x0 + c2 * x_t


def x0_from_mu(x_t: torch.Tensor, mu: torch.Tensor, posterior: Posterior) -> torch.Tensor:
    c1, c2 = posterior
    return (mu - c2 * x_t) / c1


def _need_posterior(posterior: Posterior | None) -> Posterior:
    if posterior is None:
        raise DdpmError("a posterior-mean (mu) prediction needs the posterior coefficients (c1, c2) of its timesteps")
    return posterior


def score_from_eps(eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    return -eps / (1 - alpha_bar) ** 0.5


def target_for(prediction: Prediction, x0: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor,
               x_t: torch.Tensor | None = None, posterior: Posterior | None = None) -> torch.Tensor:
    """The regression target of a model that predicts ``prediction``, for the pair (x₀, ε) (μ̃ also needs x_t)."""
    check_prediction(prediction)
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "mu":
        return mu_from_x0(x_t, x0, _need_posterior(posterior))
    return v_from_x0_eps(x0, eps, alpha_bar)


def to_x0_eps(
    output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction: Prediction, clip_x0: bool = False,
    posterior: Posterior | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn a model output into the pair (x̂₀, ε̂), both [B, …].

    With ``clip_x0`` the data prediction is clamped to [−1, 1] and ε̂ is recomputed from the clamped x̂₀,
    so the pair stays consistent with x_t (as improved-diffusion's DDIM does).
    """
    check_prediction(prediction)
    if prediction == "eps":
        eps = output
        x0 = x0_from_eps(x_t, eps, alpha_bar)
    elif prediction == "x0":
        x0 = output
        eps = eps_from_x0(x_t, x0, alpha_bar)
    elif prediction == "mu":
        x0 = x0_from_mu(x_t, output, _need_posterior(posterior))
        eps = eps_from_x0(x_t, x0, alpha_bar)
    else:
        x0 = x0_from_v(x_t, output, alpha_bar)
        eps = eps_from_v(x_t, output, alpha_bar)
    if clip_x0:
        x0 = x0.clamp(-1.0, 1.0)
        eps = eps_from_x0(x_t, x0, alpha_bar)
    return x0, eps
