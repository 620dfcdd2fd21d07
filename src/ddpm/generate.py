"""Generate images from a trained denoiser in batches: the glue between a checkpoint and the samplers."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import distributed, rng
from .data import to_uint8
from .errors import DdpmError
from .guidance import ClassifierFreeGuidance, ClassifierGuidance
from .io import atomic_write
from .sampling import sample
from .schedules import NoiseSchedule


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    *,
    num: int,
    shape: tuple[int, int, int],
    sampler: str = "dpm-solver++",
    steps: int | None = 20,
    eta: float | None = None,
    prediction: str = "eps",
    variance: str = "fixed_small",
    clip_x0: bool = True,
    skip: str = "respace",
    labels: torch.Tensor | None = None,
    contexts: torch.Tensor | None = None,
    guidance: float = 0.0,
    guidance_interval: tuple[float, float] = (0.0, 1.0),
    classifier: torch.nn.Module | None = None,
    classifier_scale: float = 0.0,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    x_T: torch.Tensor | None = None,
    first_index: int = 0,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """``num`` samples as uint8 [num, C, H, W]. Sample i draws its x_T and every step's noise from its own stream
    seeded from (``seed``, ``first_index`` + i) (``ddpm.rng.SampleNoise``), so a seed gives the same images
    whatever ``batch_size``, device or split of the work (``first_index`` lets a shard continue the count).
    ``x_T`` [num, C, H, W], when given, replaces the streams' first draw. ``labels`` [num] condition a class-conditional
    model; ``contexts`` [num, k] a model on context vectors, for which ``labels`` alone stand for their one-hot vectors
    (a run on data.context = onehot) unless a classifier guides (then they are the classifier's). ``guidance`` > 0 is the classifier-free guidance
    weight w, applied while t/T is in ``guidance_interval``. ``classifier`` (a noise-aware classifier, ``models.load_classifier``)
    with ``classifier_scale`` s > 0 guides towards ``labels`` (``guidance.ClassifierGuidance``; s = 0: unguided, the
    classifier is not called), on its own or on top of classifier-free guidance. ``eta`` is DDIM's and refused for another sampler, like every option a sampler does not take
    (``SampleConfig.generate_options`` gives these arguments from a run's settings). ``prediction`` and ``variance``
    describe the model's output (``DiffusionConfig.model_options``); only ancestral DDPM uses a learned variance."""
    if eta is not None and sampler != "ddim":
        raise DdpmError(f"eta is DDIM's stochasticity; the {sampler!r} sampler takes no eta")
    net_config = getattr(model, "config", None)
    num_classes, context_dim = getattr(net_config, "num_classes", None), getattr(net_config, "context_dim", None)
    guided_by_classifier = classifier is not None and classifier_scale > 0
    # labels stand for one-hot contexts only when they are the model's own (with a classifier they are its classes,
    # whose meaning for a context model's vectors is unknown here: give ``contexts`` too)
    if contexts is not None or (context_dim and labels is not None and not guided_by_classifier):
        contexts = check_contexts(contexts if contexts is not None else one_hot(labels, context_dim), context_dim, num)
    if guidance:
        if not (num_classes or context_dim):
            raise DdpmError("classifier-free guidance needs a class- or context-conditional model; this one is unconditional")
        if labels is None and contexts is None:
            raise DdpmError("classifier-free guidance needs class labels or context vectors to guide towards")
        model = ClassifierFreeGuidance(model, guidance, null_label=num_classes, interval=guidance_interval,
                                       num_timesteps=schedule.num_timesteps)
    if guided_by_classifier:
        if labels is None:
            raise DdpmError("classifier guidance needs class labels to guide towards")
        model = ClassifierGuidance(model, classifier, classifier_scale, schedule, prediction,
                                   pass_labels=bool(num_classes) and contexts is None)
    if x_T is not None and tuple(x_T.shape) != (num, *shape):
        raise DdpmError(f"x_T has shape {tuple(x_T.shape)}; expected {(num, *shape)}")
    options = {"steps": steps, "prediction": prediction, "clip_x0": clip_x0}
    if sampler == "ddpm":  # its variance, and how it skips steps (``skip="naive"``: the comparison, not a method)
        options.update(variance=variance, skip=skip)
    if eta is not None:
        options["eta"] = eta
    out = []
    for start in range(0, num, batch_size):
        stop = min(start + batch_size, num)
        noise = rng.SampleNoise(seed, range(first_index + start, first_index + stop))
        x = rng.randn((stop - start, *shape), noise, device) if x_T is None else x_T[start:stop].to(device)
        cond = {}
        if contexts is not None:
            cond["context"] = contexts[start:stop].to(device)
        if labels is not None and (num_classes or guided_by_classifier):  # a classifier reads them too
            cond["y"] = labels[start:stop].to(device)
        x0 = sample(model, schedule, x, sampler=sampler, cond=cond or None, generator=noise, **options)
        out.append(to_uint8(x0).cpu())
        if progress is not None:
            progress(len(x))
    return torch.cat(out) if out else torch.empty((0, *shape), dtype=torch.uint8)  # num = 0: a rank's empty share


def generate_across_ranks(model: torch.nn.Module, schedule: NoiseSchedule, *, num: int,
                          labels: torch.Tensor | None = None, contexts: torch.Tensor | None = None, first_index: int = 0,
                          device: torch.device | str = "cpu", progress: Callable[[int], None] | None = None,
                          **options) -> torch.Tensor:
    """``generate`` of samples ``first_index`` … ``first_index`` + num − 1 (``labels`` [num], ``contexts`` [num, k] theirs), shared among
    torchrun's ranks: each draws its ``distributed.shard`` of the indices and every rank gets all num images, on the
    CPU, in order. Sample i's noise depends only on the seed and i, so they are the images one process makes."""
    start, stop = distributed.shard(num)
    images = generate(model, schedule, num=stop - start, labels=None if labels is None else labels[start:stop],
                      contexts=None if contexts is None else contexts[start:stop], first_index=first_index + start,
                      device=device, progress=distributed.counting_all_ranks(progress), **options)
    return distributed.gather_rows(images.to(device), num).cpu()


def one_hot(labels: torch.Tensor, k: int) -> torch.Tensor:
    """labels [n] → float32 one-hot vectors [n, k]: the contexts of a run on data.context = onehot."""
    if labels.min() < 0 or labels.max() >= k:
        raise DdpmError(f"the label must be in 0..{k - 1} for this model, got {labels.max().item()}")
    return torch.nn.functional.one_hot(labels.long(), k).float()


def check_contexts(contexts: torch.Tensor, context_dim: int | None, num: int) -> torch.Tensor:
    """Context vectors [n, k] for ``num`` samples: refused for a model without context, of the wrong length or not
    finite; n = num, or n rows cycled (sample i gets row i mod n: one row for all, a few mixtures in turn)."""
    if not context_dim:
        raise DdpmError("a context vector was given but this model takes none (it was not trained with data.context)")
    if contexts.ndim != 2 or contexts.shape[1] != context_dim:
        raise DdpmError(f"context vectors must have {context_dim} numbers for this model, got {contexts.shape[-1]}")
    if not torch.isfinite(contexts).all():
        raise DdpmError("context vectors must be finite numbers (no NaN or infinity)")
    return contexts.float()[torch.arange(num) % len(contexts)] if len(contexts) != num else contexts.float()


def model_cond(config, labels: torch.Tensor | None) -> dict | None:
    """The model's keyword arguments that ask for classes ``labels`` [n]: y for a class-conditional run, their one-hot
    context vectors for a run on data.context = onehot, None otherwise (an unconditional model, or one on other
    context vectors: the null context)."""
    if labels is None:
        return None
    if config.data.context == "onehot":
        return {"context": one_hot(labels, config.model.context_dim)}
    return {"y": labels} if config.model.num_classes else None


def labels_for(num_classes: int | None, num: int, label: int | None = None) -> torch.Tensor | None:
    """Labels [num] to sample a model with: None for an unconditional model, ``label`` for every sample, or
    (default) 0, 1, …, K−1, 0, … so that a grid of K columns shows one class per column."""
    if not num_classes:
        if label is not None:
            raise DdpmError("a label was given but this model is unconditional")
        return None
    if label is None:
        return torch.arange(num) % num_classes
    if not 0 <= label < num_classes:
        raise DdpmError(f"the label must be in 0..{num_classes - 1} for this model, got {label}")
    return torch.full((num,), label)


def writes_one_file(out: Path) -> bool:
    """Whether ``out`` is one file holding every sample (.npz, .png grid) rather than a folder of PNGs, which
    can be written batch by batch (``write_samples(..., first_index=)``)."""
    return out.suffix in (".npz", ".png")


def write_samples(images: torch.Tensor, labels: torch.Tensor | None, out: Path, columns: int | None = None,
                  first_index: int = 0) -> Path:
    """uint8 [N, C, H, W] → .npz (arr_0 NHWC, arr_1 labels), a .png grid (``columns`` wide), or a directory of
    PNGs named by sample index (the first is ``first_index``: a folder is filled one batch at a time)."""
    from PIL import Image

    from .viz.images import save_grid, save_image

    nhwc = images.permute(0, 2, 3, 1).numpy()
    if out.suffix == ".npz":
        arrays = {"arr_0": nhwc} if labels is None else {"arr_0": nhwc, "arr_1": labels.numpy()}
        atomic_write(out, lambda f: np.savez(f, **arrays))
    elif out.suffix == ".png":
        save_grid(images, out, nrow=columns, scale=2)
    else:
        out.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(nhwc, start=first_index):
            save_image(Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img), out / f"{i:06d}.png")
    return out


def check_fits_in_memory(num: int, shape: tuple[int, int, int]) -> None:
    """Refuse, before sampling, ``num`` samples of ``shape`` (C, H, W) whose uint8 images cannot be held twice
    (the batches and the array written) in the memory available now; say how many would fit."""
    per_sample = 2 * math.prod(shape)
    available = available_memory()
    if available is not None and num * per_sample > available:
        c, h, w = shape
        raise DdpmError(f"{num} samples of {c}×{h}×{w} need {num * per_sample / 1e9:.1f} GB of memory for one .npz or .png, "
                        f"more than the {available / 1e9:.1f} GB available; about {available // per_sample} fit: sample "
                        "fewer, or write a folder of PNGs (--out DIR), which is written batch by batch")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (Linux: MemAvailable; elsewhere free pages), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
