"""Evaluate a trained run: generate samples, score them (FID, domain scores, NLL) and log the result.

One result row per number of sampling steps, so ``steps=[10, 20, 50, 100, 1000]`` gives the
metric-versus-steps curves. Each row carries its settings (sampler, steps, number of samples, seed,
checkpoint step, wall time) and is appended to the run's ``metrics.jsonl`` with ``"kind": "eval"``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from . import distributed
from .checkpoint import CHECKPOINT_DIR, resolve_checkpoint
from .conditioning import check_contexts
from .data.context import parse_vector
from .denoiser import Denoiser
from .errors import DdpmError
from .generation import generate_across_ranks, sample_labels
from .io import check_writable
from .metrics.bootstrap import BOOTSTRAP_DRAWS
from .metrics.features import feature_extractor
from .metrics.fid import dataset_stats, image_set_stats
from .metrics.frechet import FeatureStats
from .metrics.nll_bound import NLL_IMAGES, nll_bound
from .models import load_classifier, load_model
from .progress import progress_bars
from .run_files import append_record, log_path
from .scoring import SampleScores, score_samples


@dataclass
class EvalSettings:
    """What to score and how. The sampling settings left None are the run's own [sample] settings
    (``RunConfig.sample_settings``); ``steps`` is a sweep, an entry None meaning all T steps."""

    num: int = 10000
    sampler: str | None = None
    steps: list[int | None] | None = None
    eta: float | None = None
    guidance: float | None = None
    guidance_interval: tuple[float, float] | None = None
    clip_x0: bool | None = None
    classifier: str | Path | None = None  # a noise-aware classifier guiding the sampling (``ClassifierGuidance``)
    classifier_scale: float = 0.0
    context: str | None = None  # context vectors for a model on data.context: "a,b,…" or FILE.npy (``data.context.parse_vector``)
    seed: int = 0
    batch_size: int = 256
    use_ema: bool = True
    fid: bool = True
    domain: bool = False
    nll: bool = False
    nll_images: int = NLL_IMAGES
    nll_variance: str | None = None  # None: the model's own (diffusion.variance); a fixed one may replace it
    nll_timesteps: int | None = None  # None: the exact sum over all T steps; K: the stratified estimate of K
    reference: str | None = None  # DATASET:SPLIT, folder or stats file; default: the run's dataset, test split
    bootstrap_draws: int = BOOTSTRAP_DRAWS  # resamples of the samples' features behind each FID's 95% interval; 0: no interval


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run directory that holds a checkpoint file (…/RUN/checkpoints/latest.safetensors), if any."""
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINT_DIR else None


def evaluate(path: str | Path, settings: EvalSettings, *, device: torch.device | str = "cpu",
             bar: Callable[[int, str], Any] | None = None, log: bool = True) -> list[dict[str, Any]]:
    """Evaluate a run directory or checkpoint; returns one row per entry of ``settings.steps``.

    ``bar(total, description, unit)`` makes a progress bar (an object with ``update(n)`` and ``close()``)."""
    if not (settings.fid or settings.domain or settings.nll):
        raise DdpmError("nothing to evaluate: ask for at least one of fid, domain, nll")
    if settings.num < 2 and (settings.fid or settings.domain):
        raise DdpmError(f"the number of samples must be at least 2 for FID (a covariance), got {settings.num}")
    checkpoint = resolve_checkpoint(path)
    denoiser = Denoiser.from_pretrained(checkpoint, use_ema=settings.use_ema, device=device)
    config = denoiser.config
    classifier = load_classifier(settings.classifier, config, device=device) if settings.classifier else None
    contexts = None
    if settings.context is not None:
        contexts = check_contexts(parse_vector(settings.context), denoiser.context_dim, settings.num)
    # every sweep entry resolved (and refused) before any sampling or reference statistics are computed
    plans = [denoiser.plan(sampler=settings.sampler, steps=denoiser.num_timesteps if steps is None else steps,
                           eta=settings.eta, guidance=settings.guidance, guidance_interval=settings.guidance_interval,
                           clip_x0=settings.clip_x0, classifier=classifier, contexts=contexts,
                           classifier_scale=settings.classifier_scale if classifier else 0.0)
             for steps in (settings.steps or [config.sample.steps])]
    data = config.data
    reference = settings.reference or f"{data.dataset}:test"
    # the classes asked for in turn (their share read as asked is scored), unless context vectors are given
    labels = sample_labels(denoiser, plans[0], settings.num)
    log_to = run_dir_of(checkpoint) if log and distributed.world().is_main else None
    if log_to is not None:
        check_writable(log_path(log_to))  # before the sampling, which a write failure would throw away

    progress = progress_bars(bar)
    extractors = [(key, feature_extractor(name, data.dataset, device=device))
                  for key, name, wanted in (("fid", "inception", settings.fid), ("domain_fid", "domain", settings.domain))
                  if wanted]

    def reference_stats(extractor) -> FeatureStats:
        with progress(0, f"reference {reference} ({extractor.feature}, computed once, then cached)") as update:
            if ":" in reference and not Path(reference).exists():  # a dataset split, read as the run reads its data
                return dataset_stats(reference, extractor, data_dir=data.data_dir, image_size=data.image_size,
                                     channels=data.channels, test_fraction=data.test_fraction, progress=update)
            return image_set_stats(reference, extractor, data_dir=data.data_dir, progress=update)

    references = {key: reference_stats(extractor) for key, extractor in extractors}
    nll_row = {}
    if settings.nll:
        nll_row = nll_bound(denoiser, images=settings.nll_images, timesteps=settings.nll_timesteps,
                            variance=settings.nll_variance, seed=settings.seed, batch_size=settings.batch_size,
                            device=device, progress=progress)
        nll_row.pop("nll_bpd_per_image")  # the log keeps the summary

    reference_said = next(iter(references.values())).source if references else reference
    rows = []
    for plan in plans:
        started = time.time()
        row: dict[str, Any] = {"kind": "eval", "checkpoint_step": denoiser.step, "sampler": plan.sampler, "steps": plan.steps,
                               "eta": plan.eta, "guidance": plan.guidance, "guidance_interval": list(plan.guidance_interval),
                               "clip_x0": plan.clip_x0, "num": settings.num,
                               **({"classifier": str(settings.classifier), "classifier_scale": settings.classifier_scale}
                                  if classifier else {}), **({"context": settings.context} if contexts is not None else {}),
                               "seed": settings.seed, "ema": settings.use_ema, "reference": reference_said}
        if extractors:
            with progress(settings.num, f"sampling {plan.sampler}, {plan.steps} steps") as update:
                # under torchrun the ranks share the samples; every rank then holds the images one process would
                images = generate_across_ranks(denoiser, plan, settings.num, seed=settings.seed,
                                               batch_size=settings.batch_size, device=device, progress=update)
            row["sampling_s"] = time.time() - started
            for key, extractor in extractors:
                with progress(len(images), f"{extractor.feature} features, FID and its interval") as update:
                    scores = score_samples(images, extractor, references[key], labels=labels,
                                           draws=settings.bootstrap_draws, progress=update)
                row.update(fid_columns(key, scores, settings.bootstrap_draws))
                if key == "fid":
                    row["fid_reference_images"] = references[key].num
        row.update(nll_row)
        row["wall_s"] = time.time() - started  # sampling and scoring of this row (the NLL's time is nll_s)
        rows.append(row)
        if log_to is not None:
            append_record(log_to, row)
    return rows


def fid_columns(key: str, scores: SampleScores, draws: int) -> dict[str, Any]:
    """An evaluation row's columns of one extractor's scores: the FID and its interval (``key``, ``key_low``, …)
    and, for the domain classifier, its shares and IS analogue."""
    row: dict[str, Any] = {key: scores.fid}
    if scores.interval is not None:
        row.update({f"{key}_low": scores.interval.low, f"{key}_high": scores.interval.high, f"{key}_draws": draws})
    if scores.domain is not None:
        d = scores.domain
        row.update(domain_confident=d.confident, domain_threshold=d.threshold, domain_confident_se=scores.confident["se"],
                   domain_is=d.inception_score, domain_is_std=d.inception_score_std, class_histogram=d.class_histogram)
        if scores.asked is not None:  # how many samples read as the class they were asked for, ± binomial s.e.
            row.update(domain_asked=scores.asked["value"], domain_asked_se=scores.asked["se"])
    return row


def evaluate_classifier(path: str | Path, *, images: int = 1000, bands: int = 10, seed: int = 0,
                        device: torch.device | str = "cpu", log: bool = True) -> dict[str, Any]:
    """A noise-aware classifier's accuracy on the first ``images`` test images of its data, per band of timesteps
    (``metrics.noisy_accuracy``), from its EMA weights; appended to its metrics.jsonl (``"kind": "classifier_eval"``)."""
    from .data import load_dataset
    from .metrics.noisy_accuracy import noisy_accuracy
    from .models import build_schedule

    checkpoint = resolve_checkpoint(path)
    classifier, config, step = load_model(checkpoint, device=device, kind="classifier")
    log_to = run_dir_of(checkpoint) if log else None
    if log_to is not None:
        check_writable(log_path(log_to))
    d = config.data
    test = load_dataset(d.dataset, root=d.data_dir, split="test", image_size=d.image_size, channels=d.channels,
                        limit=images, seed=seed, test_fraction=d.test_fraction)
    record = {**noisy_accuracy(classifier, build_schedule(config), test, bands=min(bands, config.diffusion.num_timesteps),
                               seed=seed, device=device), "checkpoint_step": step, "reference": f"{d.dataset}:test"}
    if log_to is not None:
        append_record(log_to, record)
    return record


def format_accuracy(record: dict[str, Any]) -> str:
    """A classifier_eval record as text: one line per band, accuracy ± its standard error."""
    lines = [f"classifier accuracy on {record['images']} noisy {record['reference']} images per band of t "
             f"(checkpoint step {record['checkpoint_step']}, seed {record['seed']}):"]
    lines += [f"  t {lo:4d}..{hi:4d}: {acc:6.1%} ± {se:.1%}"
              for (lo, hi), acc, se in zip(record["bands"], record["accuracy_per_band"], record["accuracy_se"])]
    return "\n".join(lines + [f"  mean over the bands: {record['accuracy']:.1%}"])
