"""``SamplingPlan``: every choice that decides how samples are drawn, as one checked value.

The sampler and its own options, the number of model evaluations, x₀ clipping, classifier-free guidance (weight
and interval), classifier guidance (classifier and scale) and what to condition on (labels or context vectors).
Which sampler takes which option is decided here and nowhere else (``SAMPLER_OPTIONS``); the defaults below are
the one home of the defaults a run's ``[sample]`` section starts from.

A plan knows nothing of a particular model: ``ddpm.generate`` applies it to a ``Denoiser``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch

from ..errors import DdpmError
from ..schedules import SPACINGS, Spacing
from .common import DEFAULT_CLIP_X0
from .ddpm import SKIPS, Skip

SamplerName = Literal["ddpm", "ddim", "dpm-solver++"]
DEFAULT_SAMPLER: SamplerName = "dpm-solver++"
DEFAULT_STEPS = 20

# The options each sampler takes besides those every sampler shares (steps, clipping, conditioning, guidance).
SAMPLER_OPTIONS: dict[str, tuple[str, ...]] = {"ddpm": ("skip", "spacing"), "ddim": ("eta", "spacing"),
                                               "dpm-solver++": ("order", "spacing")}
SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLER_OPTIONS)
OWN_OPTIONS = ("eta", "skip", "spacing", "order")


@dataclass(frozen=True)
class SamplingPlan:
    """How to draw samples. Options a sampler does not take stay None (an ``eta`` for DPM-Solver++ is refused, not
    ignored); None for a sampler's own option means that sampler's default.

    - ``sampler``: "ddpm" (ancestral, DDPM Alg. 2), "ddim" (DDIM eq. 12) or "dpm-solver++" (DPM-Solver++(2M)).
    - ``steps``: model evaluations per sample (None: all T).
    - ``eta`` (ddim, in [0, 1]), ``skip`` (ddpm: "respace" | "naive"), ``order`` (dpm-solver++: 1 | 2),
      ``spacing`` (any: "uniform" | "quadratic" | "logsnr").
    - ``clip_x0``: clamp each step's x̂₀ to [−1, 1].
    - ``guidance``: classifier-free weight w ≥ 0, (1 + w)·ε(c) − w·ε(∅), applied while t/T lies in
      ``guidance_interval`` (lo, hi).
    - ``classifier`` (a noise-aware classifier ``(x_t, t) -> logits``) and ``classifier_scale`` s ≥ 0: classifier
      guidance towards the labels (s = 0: the classifier is not called).
    - ``labels`` [n] (int) or ``contexts`` [n, k] (float): sample i is conditioned on row i mod n. None: a
      class-conditional model gets its classes in turn (0, 1, …, K−1, 0, …), a context model its null context.
    """

    sampler: SamplerName = DEFAULT_SAMPLER
    steps: Optional[int] = DEFAULT_STEPS
    eta: Optional[float] = None
    skip: Optional[Skip] = None
    spacing: Optional[Spacing] = None
    order: Optional[int] = None
    clip_x0: bool = DEFAULT_CLIP_X0
    guidance: float = 0.0
    guidance_interval: tuple[float, float] = (0.0, 1.0)
    classifier: Optional[torch.nn.Module] = None
    classifier_scale: float = 0.0
    labels: Optional[torch.Tensor] = None
    contexts: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLER_OPTIONS:
            raise DdpmError(f"unknown sampler {self.sampler!r}; expected one of {', '.join(SAMPLER_NAMES)}")
        taken = SAMPLER_OPTIONS[self.sampler]
        for name in OWN_OPTIONS:
            if getattr(self, name) is not None and name not in taken:
                raise DdpmError(f"the {self.sampler} sampler takes no {name} (its own options: {', '.join(taken)})")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1):
            raise DdpmError(f"steps must be a positive integer (model evaluations per sample) or None for all T, got {self.steps!r}")
        if self.eta is not None and (isinstance(self.eta, bool) or not isinstance(self.eta, (int, float))
                                     or not 0.0 <= self.eta <= 1.0):
            raise DdpmError(f"eta must be a number in [0, 1], got {self.eta!r}")
        if self.skip is not None and self.skip not in SKIPS:
            raise DdpmError(f"unknown skip {self.skip!r}; expected one of {', '.join(SKIPS)}")
        if self.spacing is not None and self.spacing not in SPACINGS:
            raise DdpmError(f"unknown spacing {self.spacing!r}; expected one of {', '.join(SPACINGS)}")
        if self.order is not None and self.order not in (1, 2):
            raise DdpmError(f"order must be 1 or 2, got {self.order!r}")
        if not isinstance(self.clip_x0, bool):
            raise DdpmError(f"clip_x0 must be True or False, got {self.clip_x0!r}")
        if not _finite_at_least_zero(self.guidance):
            raise DdpmError(f"the guidance weight must be a finite number ≥ 0, got {self.guidance!r}")
        lo, hi = self.guidance_interval
        if not 0 <= lo < hi <= 1:
            raise DdpmError(f"the guidance interval must be lo, hi with 0 ≤ lo < hi ≤ 1 (fractions of T), got {lo:g}, {hi:g}")
        if not _finite_at_least_zero(self.classifier_scale):
            raise DdpmError(f"the classifier scale must be a finite number ≥ 0, got {self.classifier_scale!r}")
        if self.classifier_scale and self.classifier is None:
            raise DdpmError("a classifier scale needs a classifier to guide by (SamplingPlan.classifier)")
        if self.labels is not None and (not torch.is_tensor(self.labels) or self.labels.ndim != 1 or not len(self.labels)
                                        or self.labels.is_floating_point()):
            raise DdpmError("labels must be a non-empty 1-d integer tensor [n]")
        if self.contexts is not None and (not torch.is_tensor(self.contexts) or self.contexts.ndim != 2
                                          or not len(self.contexts)):
            rows = "no rows" if torch.is_tensor(self.contexts) and self.contexts.ndim == 2 else "not a 2-d tensor"
            raise DdpmError(f"context vectors must be a non-empty 2-d tensor [n, k] (got {rows})")

    def replace(self, **changes: Any) -> "SamplingPlan":
        """This plan with ``changes``; another sampler drops the options the new one does not take."""
        if "sampler" in changes and changes["sampler"] != self.sampler:
            keep = SAMPLER_OPTIONS.get(changes["sampler"], ())
            changes = {**{name: None for name in OWN_OPTIONS if name not in keep and name not in changes}, **changes}
        return dataclasses.replace(self, **changes)

    @property
    def classifier_guided(self) -> bool:
        return self.classifier is not None and self.classifier_scale > 0

    def sampler_options(self) -> dict[str, Any]:
        """Keyword arguments of the sampler function for this plan's own options (the shared ones — prediction,
        variance, generator, callback, cond — are the caller's)."""
        own = {name: getattr(self, name) for name in SAMPLER_OPTIONS[self.sampler] if getattr(self, name) is not None}
        return {"steps": self.steps, "clip_x0": self.clip_x0, **own}

    def describe(self, num_timesteps: int | None = None) -> str:
        """One line: "ddim, 50 steps, eta 0, guidance w = 2 for t/T in [0.1, 0.9]" (what a command prints)."""
        steps = self.steps if self.steps is not None else (num_timesteps or "all")
        parts = [f"{self.sampler}, {steps} steps"]
        parts += [f"{name} {_number(getattr(self, name))}" for name in SAMPLER_OPTIONS[self.sampler]
                  if getattr(self, name) is not None]
        if self.guidance:
            interval = "" if self.guidance_interval == (0.0, 1.0) else \
                f" for t/T in [{self.guidance_interval[0]:g}, {self.guidance_interval[1]:g}]"
            parts.append(f"guidance w = {self.guidance:g}{interval}")
        if self.classifier_guided:
            parts.append(f"classifier scale {self.classifier_scale:g}")
        return ", ".join(parts)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _finite_at_least_zero(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value < float("inf")
