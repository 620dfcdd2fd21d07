"""Elementwise loss helpers shared by the training objectives and the likelihood code."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .schedules import NoiseSchedule


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension but the batch: [B, …] -> [B]."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) elementwise, in nats (shapes broadcast)."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def _log_prob_between(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """log(Φ(hi) − Φ(lo)) for lo < hi (±inf allowed), computed on the tail where it keeps its digits."""
    flip = lo > 0  # Φ(hi) − Φ(lo) = Φ(−lo) − Φ(−hi): subtract small numbers, not numbers near 1
    a, b = torch.where(flip, -hi, lo), torch.where(flip, -lo, hi)
    log_b, log_a = torch.special.log_ndtr(b), torch.special.log_ndtr(a)
    return log_b + torch.log1p(-torch.exp(log_a - log_b))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """log P(x) elementwise, in nats, for data on ``bins`` levels in [−1, 1] under N(mean, e^{2·log_scale})
    integrated over each level's bin (DDPM §3.3, the decoder L_0): bins of width 2/(bins−1) around the levels,
    the outermost ones extended to ±∞ so the probabilities of the ``bins`` levels sum to 1.

    Unlike improved-diffusion's tanh approximation of Φ this uses the exact normal CDF in float64, and
    takes its logarithm on the tail where the difference keeps its precision.
    """
    x, mean, log_scale = x.double(), mean.double(), log_scale.double()
    half = 1.0 / (bins - 1)
    inv_scale = torch.exp(-log_scale)
    lo = torch.where(x < -1 + half, torch.full_like(x, -torch.inf), (x - half - mean) * inv_scale)
    hi = torch.where(x > 1 - half, torch.full_like(x, torch.inf), (x + half - mean) * inv_scale)
    return _log_prob_between(lo, hi)


def vlb_term_bpd(schedule: "NoiseSchedule", x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, x0_hat: torch.Tensor,
                 log_variance: torch.Tensor) -> torch.Tensor:
    """The variational bound's term at step indices t [B] of ``schedule``, in bits/dim, per example [B]:

        t > 0:  L_t = KL(q(x_{t−1} | x_t, x₀) ‖ N(μ̃_t(x_t, x̂₀), Σ))            (DDPM eq. 5)
        t = 0:  L_0 = −log p(x₀ | x₁), N(μ̃_0(x_t, x̂₀), Σ) integrated over each 8-bit bin (DDPM §3.3)

    with x0, x_t, x̂₀ [B, …] and log Σ (``log_variance``) broadcast against them. One implementation for the VLB
    training objectives and the NLL evaluation (improved-diffusion's ``_vb_terms_bpd``).
    """
    true_mean, _, true_log_variance = schedule.q_posterior(x0, x_t, t)
    model_mean, _, _ = schedule.q_posterior(x0_hat, x_t, t)
    kl = mean_flat(normal_kl(true_mean, true_log_variance, model_mean, log_variance)) / math.log(2.0)
    first = (t.to(kl.device) == 0).nonzero()[:, 0]
    if len(first) == 0:
        return kl
    # the decoder only where t = 0: computed for all rows, its far tails would send NaN gradients through torch.where
    log_variance = log_variance.expand_as(model_mean)
    decoder = -mean_flat(discretized_gaussian_log_likelihood(x0[first], model_mean[first], 0.5 * log_variance[first]))
    return kl.index_put((first,), (decoder / math.log(2.0)).to(kl.dtype))
