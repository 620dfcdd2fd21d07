"""``generate``: samples of a ``Denoiser`` drawn as a ``SamplingPlan`` says, in batches, each from its own noise stream —
the one path by which every command, picture and study samples (files: ``sample_files``)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from . import distributed, rng
from .data import to_uint8
from .errors import DdpmError
from .conditioning import check_contexts, one_hot
from .denoiser import Denoiser
from .guidance import ClassifierFreeGuidance, ClassifierGuidance
from .sampling import sample
from .sampling.common import Callback
from .sampling.plan import SamplingPlan


def guided_model(denoiser: Denoiser, plan: SamplingPlan, *, has_labels: bool, has_contexts: bool):
    """The callable the sampler runs: ``denoiser`` wrapped in classifier-free guidance (weight and interval) and/or
    classifier guidance as ``plan`` says — the one place those wrappers are put on, so every caller guides alike."""
    model: Any = denoiser.net
    if plan.guidance:
        if not (denoiser.num_classes or denoiser.context_dim):
            raise DdpmError("classifier-free guidance needs a class- or context-conditional model; this one is unconditional")
        if not (has_labels or has_contexts):
            raise DdpmError("classifier-free guidance needs class labels or context vectors to guide towards")
        model = ClassifierFreeGuidance(model, plan.guidance, null_label=denoiser.num_classes,
                                       interval=plan.guidance_interval, num_timesteps=denoiser.num_timesteps)
    if plan.classifier_guided:
        if not has_labels:
            raise DdpmError("classifier guidance needs class labels to guide towards")
        model = ClassifierGuidance(model, plan.classifier, plan.classifier_scale, denoiser.schedule, denoiser.prediction,
                                   pass_labels=bool(denoiser.num_classes) and not has_contexts)
    return model


def sample_labels(denoiser: Denoiser, plan: SamplingPlan, num: int, first_index: int = 0) -> torch.Tensor | None:
    """The labels [num] that samples ``first_index`` … ``first_index`` + num − 1 are drawn for: row i mod n of
    ``plan.labels``; without them a model with classes (or one-hot contexts, or a guiding classifier's classes) gets
    its classes in turn, 0, 1, …, K−1, 0, … (a grid K wide shows one class per column); None otherwise (and when
    context vectors are given without a classifier: they condition instead)."""
    index = torch.arange(first_index, first_index + num)
    if plan.labels is not None:
        return plan.labels.long()[index % len(plan.labels)]
    classes = denoiser.classes_shown or getattr(getattr(plan.classifier, "config", None), "num_classes", None)
    if not classes or (plan.contexts is not None and not plan.classifier_guided):
        return None
    return index % classes


@torch.no_grad()
def generate(
    denoiser: Denoiser,
    plan: SamplingPlan | None = None,
    num: int = 16,
    *,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    x_T: torch.Tensor | None = None,
    first_index: int = 0,
    streams: Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
    callback: Callback = None,
) -> torch.Tensor:
    """``num`` samples of ``denoiser`` drawn as ``plan`` says (default: the run's own [sample] settings,
    ``denoiser.plan()``), as uint8 [num, C, H, W] on the CPU.

    Sample i (counted from ``first_index``) draws its x_T and every step's noise from its own stream seeded from
    (``seed``, ``first_index`` + i) (``ddpm.rng.SampleNoise``; ``streams`` [num] names other streams), so a seed gives
    the same images whatever ``batch_size``, device or split of the work; it is conditioned on row i mod n of
    the plan's labels or contexts (``sample_labels``). ``x_T`` [num, C, H, W], when given, replaces the streams'
    first draw. ``progress(n)`` is told of each finished batch; ``callback(StepInfo)`` sees every model call."""
    plan = denoiser.plan() if plan is None else plan
    if not isinstance(plan, SamplingPlan):
        raise DdpmError(f"plan must be a SamplingPlan, got {type(plan).__name__}")
    if isinstance(num, bool) or not isinstance(num, int) or num < 0:
        raise DdpmError(f"the number of samples must be an integer ≥ 0, got {num!r}")
    device = denoiser.device if device is None else torch.device(device)
    shape = denoiser.shape
    labels = sample_labels(denoiser, plan, num, first_index)
    contexts = None
    if plan.contexts is not None:
        contexts = check_contexts(plan.contexts, denoiser.context_dim, len(plan.contexts))
        contexts = contexts[torch.arange(first_index, first_index + num) % len(contexts)]
    elif denoiser.context_dim and labels is not None and not plan.classifier_guided:
        # labels stand for one-hot contexts only when they are the model's own (with a classifier they are its
        # classes, whose meaning for a context model's vectors is unknown here: give contexts too)
        contexts = check_contexts(one_hot(labels, denoiser.context_dim), denoiser.context_dim, num)
    model = guided_model(denoiser, plan, has_labels=labels is not None, has_contexts=contexts is not None)
    if x_T is not None and tuple(x_T.shape) != (num, *shape):
        raise DdpmError(f"x_T has shape {tuple(x_T.shape)}; expected {(num, *shape)}")
    if streams is not None and len(streams) != num:
        raise DdpmError(f"{len(streams)} noise streams given for {num} samples")
    options = plan.sampler_options()
    if plan.sampler == "ddpm":  # only ancestral sampling uses the model's variance
        options["variance"] = denoiser.variance
    schedule = denoiser.schedule.to(device)
    out = []
    for start in range(0, num, batch_size):
        stop = min(start + batch_size, num)
        noise = rng.SampleNoise(seed, range(first_index + start, first_index + stop) if streams is None else streams[start:stop])
        x = rng.randn((stop - start, *shape), noise, device) if x_T is None else x_T[start:stop].to(device)
        cond = {}
        if contexts is not None:
            cond["context"] = contexts[start:stop].to(device)
        if labels is not None and (denoiser.num_classes or plan.classifier_guided):  # a classifier reads them too
            cond["y"] = labels[start:stop].to(device)
        x0 = sample(model, schedule, x, sampler=plan.sampler, prediction=denoiser.prediction, cond=cond or None,
                    generator=noise, callback=callback, **options)
        out.append(to_uint8(x0).cpu())
        if progress is not None:
            progress(len(x))
    return torch.cat(out) if out else torch.empty((0, *shape), dtype=torch.uint8)  # num = 0: a rank's empty share


def generate_across_ranks(denoiser: Denoiser, plan: SamplingPlan | None = None, num: int = 16, *, first_index: int = 0,
                          progress: Callable[[int], None] | None = None, **options: Any) -> torch.Tensor:
    """``generate`` of samples ``first_index`` … ``first_index`` + num − 1 shared among torchrun's ranks: each draws its
    ``distributed.shard`` of the indices and every rank gets all num images, on the CPU, in order. Sample i's noise
    and condition depend only on the seed and i, so they are the images one process makes."""
    start, stop = distributed.shard(num)
    images = generate(denoiser, plan, stop - start, first_index=first_index + start,
                      progress=distributed.counting_all_ranks(progress), **options)
    device = options.get("device") or denoiser.device
    return distributed.gather_rows(images.to(device), num).cpu()
