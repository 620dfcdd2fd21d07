"""Guidance as model wrappers, so that every sampler gets it: classifier-free guidance (``ClassifierFreeGuidance``)
and classifier guidance by a noise-aware classifier (``ClassifierGuidance``, below).

Classifier-free guidance (Ho & Salimans 2022): one network trained both with and without the label.

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
from .parameterization import target_for, to_x0_eps, x0_from_eps


def dropped(batch: int, p_uncond: float, generator: torch.Generator | None, device: torch.device,
            size: int | None = None, part: slice = slice(None)) -> torch.Tensor:
    """bool [batch]: which examples lose their condition (label or context), each with probability ``p_uncond``
    (drawn from ``generator``, on its device). Under torchrun the batch is this rank's ``part`` of a global batch of
    ``size`` (default: batch): the draws are made for all ``size`` and sliced, so they do not depend on the number
    of ranks."""
    return rng.rand((size or batch,), generator, device)[part] < p_uncond


def drop_labels(y: torch.Tensor, p_uncond: float, null_label: int, generator: torch.Generator | None = None,
                size: int | None = None, part: slice = slice(None)) -> torch.Tensor:
    """y [B] with each entry replaced by ``null_label`` with probability ``p_uncond`` (``dropped``)."""
    if p_uncond <= 0:
        return y
    return torch.where(dropped(len(y), p_uncond, generator, y.device, size, part), torch.full_like(y, null_label), y)


def images_per_sample(num_classes: int | None, weight: float) -> int:
    """Network image-evaluations per sample and step: 2 when guided (the conditional and unconditional passes
    of ``ClassifierFreeGuidance``), else 1."""
    return 2 if num_classes and weight else 1


class ClassifierFreeGuidance(nn.Module):
    """Wraps a class- or context-conditional denoiser: forward(x [B, …], t [B], y [B] or context [B, k]) → the guided
    output [B, …].

    The conditional and unconditional passes run as one batch of 2B: the unconditional half gets the "no label" index
    ``null_label`` or, for context vectors, ``context_mask`` False (the model's learned null context). Without a
    condition it is the unconditional model; with w = 0 it is the conditional model (one pass). For a model with a learned variance
    (twice x's channels) only the mean part is guided; the variance part is the conditional pass's, as GLIDE does.
    """

    def __init__(self, model: nn.Module, weight: float, null_label: int | None, interval: tuple[float, float] = (0.0, 1.0),
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

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        def conditional() -> torch.Tensor:
            return self.model(x, t, y) if context is None else self.model(x, t, context=context)

        if (y is None and context is None) or self.weight == 0:
            return conditional()
        w = torch.full((len(x),), self.weight, device=x.device)
        if self.bounds is not None:
            inside = (t >= self.bounds[0]) & (t <= self.bounds[1])
            if not inside.any():  # the whole batch is outside the interval: the conditional pass alone
                return conditional()
            w = w * inside
        if context is None:
            both = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, self.null_label)]))
        else:
            keep = torch.arange(2 * len(x), device=x.device) < len(x)  # the second half: the null context
            both = self.model(torch.cat([x, x]), torch.cat([t, t]), context=torch.cat([context, context]), context_mask=keep)
        cond, uncond = both.chunk(2)
        w = w.view(-1, *([1] * (x.ndim - 1))).to(cond.dtype)
        if cond.shape[1] == 2 * x.shape[1]:  # a learned variance: guide the mean part, keep the conditional Σ (GLIDE)
            mean, variance = cond.chunk(2, dim=1)
            return torch.cat([(1 + w) * mean - w * uncond.chunk(2, dim=1)[0], variance], 1)
        return (1 + w) * cond - w * uncond


class ClassifierGuidance(nn.Module):
    """Classifier guidance (Dhariwal & Nichol 2021, §4) of any denoiser by a noise-aware classifier p_φ(y | x_t, t)
    (``nets.NoisyClassifier``): forward(x [B, …], t [B], y [B]) → the model's output with its noise estimate shifted

        ε̂' = ε̂ − √(1−ᾱ_t) · s ∇_x log p_φ(y | x_t)          (their Algorithm 2, for DDIM and DPM-Solver++)

    and returned in the model's own ``prediction`` (ε, x₀, v or μ̃: each is affine in ε̂ at a fixed x_t), so any
    caller of the model gets it. ddpm's samplers do not call forward: ``sampling.common.Estimator`` asks
    ``output_and_gradient`` for the unshifted output and s∇ and applies the guidance where guided-diffusion does.
    - DDIM and DPM-Solver++ (Algorithm 2): the Estimator turns the output into (x̂₀, ε̂), clips x̂₀ when ``clip_x0``
      (recomputing ε̂ from it), and only then shifts ε̂ with ``condition_score``, whose x̂₀' is not clipped again:
      guided-diffusion's ``condition_score`` after ``p_mean_variance(clip_denoised=True)``: x̂₀' = clamp(x̂₀) + δ,
      δ = (1−ᾱ)/√ᾱ · s∇. Clipping forward's output would give clamp(x̂₀ + δ) instead, and lose the shift wherever it
      points past ±1. (The official DPM-Solver code, which has no static clipping, applies its x̂₀ corrector —
      dynamic thresholding — after the shift; ddpm follows guided-diffusion for both samplers, so that first-order
      DPM-Solver++ stays DDIM.)
    - ancestral DDPM (Algorithm 1): the mean shift μ' = μ + Σ s∇_x log p_φ(y | x_t), done by the sampler
      (``sampling.ddpm``), since Σ is the sampler's. A learned variance keeps the model's own; only the mean moves.

    ``schedule`` is the model's own (not respaced): t, an original timestep, indexes it.
    ``model`` may be conditional (y is passed to it too, and it may itself be classifier-free guided) or not
    (``pass_labels=False``: y goes to the classifier only). s = 0 computes no gradient and leaves every output, and so
    every sampler's result, unchanged bit for bit.
    """

    def __init__(self, model: nn.Module, classifier: nn.Module, scale: float, schedule, prediction: str = "eps",
                 pass_labels: bool = False):
        super().__init__()
        if not scale >= 0 or scale == float("inf"):
            raise DdpmError(f"the classifier scale must be a finite number ≥ 0, got {scale}")
        self.model, self.classifier, self.scale = model, classifier.eval().requires_grad_(False), float(scale)
        self.schedule, self.prediction, self.pass_labels = schedule, prediction, pass_labels

    def gradient(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """s ∇_x log p_φ(y | x_t, t) [B, …] by autograd through the classifier (in float32)."""
        with torch.enable_grad():
            x_in = x.detach().float().requires_grad_(True)
            log_p = torch.log_softmax(self.classifier(x_in, t).float(), dim=-1)
            picked = log_p.gather(1, y.long().view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(picked, x_in)
        return (self.scale * grad).to(x.dtype)

    def output_and_gradient(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, **cond
                            ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the model's own output at (x_t, t) (``cond``, e.g. a context, passed on), s ∇_x log p_φ(y | x_t)); no
        gradient (None) without labels or with s = 0 (nothing to shift: the classifier's backward pass is skipped)."""
        out = self.model(x, t, y if self.pass_labels else None, **cond)
        return out, (None if y is None or self.scale == 0 else self.gradient(x, t, y))

    @staticmethod
    def condition_score(x: torch.Tensor, eps: torch.Tensor, alpha_bar, grad: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Algorithm 2's shift of a noise estimate ε̂ [B, …] at x_t [B, …] by g = s∇_x log p_φ(y | x_t) [B, …]
        (``grad``): (x̂₀', ε̂') with

            ε̂' = ε̂ − √(1−ᾱ_t) g,    x̂₀' = (x_t − √(1−ᾱ_t) ε̂') / √ᾱ_t = x̂₀ + (1−ᾱ_t)/√ᾱ_t · g,

        guided-diffusion's ``condition_score``: ε̂ comes from the (clipped, when clipping) x̂₀ and x̂₀' is not clipped
        again. ``alpha_bar`` ᾱ_t: a float or a tensor broadcast against x_t."""
        eps = eps - (1 - alpha_bar) ** 0.5 * grad
        return x0_from_eps(x, eps, alpha_bar), eps

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, **cond) -> torch.Tensor:
        out, grad = self.output_and_gradient(x, t, y, **cond)
        if grad is None:
            return out
        mean, variance = (out, None) if out.shape[1] == x.shape[1] else out.chunk(2, dim=1)
        schedule = self.schedule.to(x.device)
        alpha_bar = schedule.gather("alphas_cumprod", t, x)  # t: original timesteps, rows of the model's schedule
        posterior = (schedule.gather("posterior_mean_coef1", t, x), schedule.gather("posterior_mean_coef2", t, x)) \
            if self.prediction == "mu" else None
        # through ε, whatever the prediction: the one home of each conversion and of the shift
        _, eps = to_x0_eps(mean, x, alpha_bar, self.prediction, posterior=posterior)
        x0, eps = self.condition_score(x, eps, alpha_bar, grad)
        shifted = eps if self.prediction == "eps" else target_for(self.prediction, x0, eps, alpha_bar, x, posterior)
        return shifted if variance is None else torch.cat([shifted, variance], 1)
