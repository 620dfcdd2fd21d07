"""Classifier-free guidance (Ho & Salimans 2022): one network trained both with and without the label.

Training replaces each label by the reserved "no label" index with probability p_uncond (``drop_labels``).
Sampling mixes the two predictions with guidance weight w (their eq. 6):

    ε̃(x_t, c) = (1 + w) · ε(x_t, c) − w · ε(x_t, ∅)

w = 0 is plain conditional sampling; larger w trades diversity for samples that look more like their
class. A guidance interval (Kynkäänniemi et al. 2024) applies w only while t/T lies in [lo, hi]: guidance
at high noise mostly drags every sample towards the class mean (less diversity), at low noise it adds
little; in between it does its work. Outside the interval one conditional pass is run. The weights sum to 1, so the same mix is right for an x₀ or v output: both are affine in ε at a
fixed x_t.
"""
from __future__ import annotations

import torch
from torch import nn

from . import rng
from .errors import DdpmError


def drop_labels(y: torch.Tensor, p_uncond: float, null_label: int, generator: torch.Generator | None = None,
                size: int | None = None, part: slice = slice(None)) -> torch.Tensor:
    """y [B] with each entry replaced by ``null_label`` with probability ``p_uncond`` (drawn from
    ``generator``, on its device). Under torchrun y is this rank's ``part`` of a global batch of ``size``
    (default B): the draws are made for all ``size`` and sliced, so they do not depend on the number of ranks."""
    if p_uncond <= 0:
        return y
    drop = rng.rand((size or len(y),), generator, y.device)[part] < p_uncond
    return torch.where(drop, torch.full_like(y, null_label), y)


def images_per_sample(num_classes: int | None, weight: float) -> int:
    """Network image-evaluations per sample and step: 2 when guided (the conditional and unconditional passes
    of ``ClassifierFreeGuidance``), else 1."""
    return 2 if num_classes and weight else 1


class ClassifierFreeGuidance(nn.Module):
    """Wraps a class-conditional denoiser: forward(x [B, …], t [B], y [B]) → the guided output [B, …].

    The conditional and unconditional passes run as one batch of 2B. Without labels (y=None) it is the
    unconditional model; with w = 0 it is the conditional model (one pass). For a model with a learned variance
    (twice x's channels) only the mean part is guided; the variance part is the conditional pass's, as GLIDE does.
    """

    def __init__(self, model: nn.Module, weight: float, null_label: int, interval: tuple[float, float] = (0.0, 1.0),
                 num_timesteps: int | None = None):
        """``interval`` (lo, hi): guide only where the timestep t (an original index in 0..T−1) has lo·T ≤ t ≤ hi·T;
        ``num_timesteps`` T is needed for any interval other than (0, 1)."""
        super().__init__()
        if weight < 0:
            raise DdpmError(f"guidance weight must be ≥ 0, got {weight}")
        lo, hi = interval
        if not 0 <= lo < hi <= 1:
            raise DdpmError(f"the guidance interval must be lo,hi with 0 ≤ lo < hi ≤ 1 (fractions of T), got {lo:g},{hi:g}")
        if (lo, hi) != (0.0, 1.0) and num_timesteps is None:
            raise ValueError("a guidance interval needs num_timesteps")  # a caller's bug, not a user's input
        self.model, self.weight, self.null_label = model, float(weight), null_label
        self.bounds = None if (lo, hi) == (0.0, 1.0) else (lo * num_timesteps, hi * num_timesteps)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None or self.weight == 0:
            return self.model(x, t, y)
        w = torch.full((len(x),), self.weight, device=x.device)
        if self.bounds is not None:
            inside = (t >= self.bounds[0]) & (t <= self.bounds[1])
            if not inside.any():  # the whole batch is outside the interval: the conditional pass alone
                return self.model(x, t, y)
            w = w * inside
        both = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, self.null_label)]))
        cond, uncond = both.chunk(2)
        w = w.view(-1, *([1] * (x.ndim - 1))).to(cond.dtype)
        if cond.shape[1] == 2 * x.shape[1]:  # a learned variance: guide the mean part, keep the conditional Σ (GLIDE)
            mean, variance = cond.chunk(2, dim=1)
            return torch.cat([(1 + w) * mean - w * uncond.chunk(2, dim=1)[0], variance], 1)
        return (1 + w) * cond - w * uncond
