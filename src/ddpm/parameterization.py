"""Pure conversions between what a denoiser may predict: noise ε, clean data x₀, velocity v, score.

With x_t = √ᾱ x₀ + √(1−ᾱ) ε (DDPM eq. 4) and the velocity v = √ᾱ ε − √(1−ᾱ) x₀ (Salimans & Ho
2022, §4), any one of ε, x₀, v determines the others given x_t:

    x₀ = (x_t − √(1−ᾱ) ε) / √ᾱ          ε = (x_t − √ᾱ x₀) / √(1−ᾱ)
    x₀ = √ᾱ x_t − √(1−ᾱ) v              ε = √(1−ᾱ) x_t + √ᾱ v
    ∇ log q(x_t) ≈ −ε / √(1−ᾱ)          (Song et al. 2021, eq. 12 / Tweedie)

``alpha_bar`` is ᾱ_t: a Python float (one t for the whole batch, as in samplers) or a tensor broadcast
against x_t (shape [B, 1, …, 1], in x_t's dtype).
"""
from __future__ import annotations

from typing import Literal

import torch

from .errors import DdpmError

Prediction = Literal["eps", "x0", "v"]
PREDICTIONS: tuple[str, ...] = ("eps", "x0", "v")


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


def score_from_eps(eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    return -eps / (1 - alpha_bar) ** 0.5


def target_for(prediction: Prediction, x0: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The regression target of a model that predicts ``prediction``, for the pair (x₀, ε)."""
    check_prediction(prediction)
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    return v_from_x0_eps(x0, eps, alpha_bar)


def to_x0_eps(
    output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction: Prediction, clip_x0: bool = False
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
    else:
        x0 = x0_from_v(x_t, output, alpha_bar)
        eps = eps_from_v(x_t, output, alpha_bar)
    if clip_x0:
        x0 = x0.clamp(-1.0, 1.0)
        eps = eps_from_x0(x_t, x0, alpha_bar)
    return x0, eps
