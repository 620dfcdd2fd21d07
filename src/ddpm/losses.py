"""Elementwise loss helpers shared by the training objectives and the likelihood code."""
from __future__ import annotations

import torch


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
