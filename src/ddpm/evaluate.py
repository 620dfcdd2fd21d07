"""Evaluate a trained run: generate samples, score them (FID, domain scores, NLL) and log the result.

One result row per number of sampling steps, so ``steps=[10, 20, 50, 100, 1000]`` gives the
metric-versus-steps curves. Each row carries its settings (sampler, steps, number of samples, seed,
checkpoint step, wall time) and is appended to the run's ``metrics.jsonl`` with ``"kind": "eval"``.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .errors import DdpmError
from .generate import generate
from .models import build_schedule, load_model
from .train.checkpoint import resolve_checkpoint


@dataclass
class EvalSettings:
    num: int = 10000
    sampler: str = "ddim"
    steps: list[int | None] = field(default_factory=lambda: [50])
    eta: float = 0.0
    guidance: float = 0.0  # classifier-free guidance weight w (conditional models)
    seed: int = 0
    batch_size: int = 256
    clip_x0: bool = True
    use_ema: bool = True
    fid: bool = True
    domain: bool = False
    nll: bool = False
    nll_images: int = 256
    nll_variance: str = "beta_tilde"
    reference: str | None = None  # DATASET:SPLIT, folder or stats file; default: the run's dataset, test split


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run directory that holds a checkpoint file (…/RUN/checkpoints/latest.safetensors), if any."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None


def evaluate(path: str | Path, settings: EvalSettings, *, device: torch.device | str = "cpu",
             bar: Callable[[int, str], Any] | None = None, log: bool = True) -> list[dict[str, Any]]:
    """Evaluate a run directory or checkpoint; returns one row per entry of ``settings.steps``.

    ``bar(total, description)`` makes a progress bar (an object with ``update(n)`` and ``close()``)."""
    from .metrics.fid import dataset_stats, image_set_stats
    from .metrics.frechet import FeatureStats, frechet_distance

    if not (settings.fid or settings.domain or settings.nll):
        raise DdpmError("nothing to evaluate: ask for at least one of --fid, --domain, --nll")
    if settings.num < 2 and (settings.fid or settings.domain):
        raise DdpmError(f"--num must be at least 2 for FID (a covariance), got {settings.num}")
    checkpoint = resolve_checkpoint(path)
    model, config, step = load_model(checkpoint, use_ema=settings.use_ema, device=device)
    schedule = build_schedule(config)
    for steps in settings.steps:  # fail before any sampling or reference statistics are computed
        if steps is not None and not 1 <= steps <= schedule.num_timesteps:
            raise DdpmError(f"steps must be an integer in 1..{schedule.num_timesteps} (the schedule's T), got {steps}")
    data = config.data
    reference = settings.reference or f"{data.dataset}:test"
    shape = (data.channels, data.image_size, data.image_size)
    num_classes = config.model.num_classes
    labels = torch.arange(settings.num) % num_classes if num_classes else None

    @contextlib.contextmanager
    def progress(total: int, what: str):
        """An update(n) callable for a progress bar of ``total`` items (None without ``bar``)."""
        b = bar(total, what) if bar is not None else None
        try:
            yield b.update if b is not None else None
        finally:
            if b is not None:
                b.close()

    inception = domain_net = None
    if settings.fid:
        from .metrics.inception import InceptionFeatures

        inception = InceptionFeatures(device=device)
    if settings.domain:
        from .metrics.domain import DomainFeatures

        domain_net = DomainFeatures(data.dataset, device=device)

    def reference_stats(extractor) -> FeatureStats:
        with progress(0, f"reference {reference} ({extractor.feature}, computed once, then cached)") as update:
            if ":" in reference and not Path(reference).exists():
                return dataset_stats(reference, extractor, data_dir=data.data_dir, progress=update)
            return image_set_stats(reference, extractor, data_dir=data.data_dir, progress=update)

    def features(extractor, images: torch.Tensor, what: str) -> np.ndarray:
        with progress(len(images), what) as update:
            return extractor(images, progress=update)

    ref_inception = reference_stats(inception) if inception else None
    ref_domain = reference_stats(domain_net) if domain_net else None
    nll_row = _nll(model, schedule, config, settings, device, progress) if settings.nll else {}

    rows = []
    for steps in settings.steps:
        started = time.time()
        row: dict[str, Any] = {"kind": "eval", "checkpoint_step": step, "sampler": settings.sampler,
                               "steps": steps or config.diffusion.num_timesteps, "eta": settings.eta if settings.sampler == "ddim" else None,
                               "guidance": settings.guidance,
                               "num": settings.num, "seed": settings.seed, "ema": settings.use_ema, "reference": reference}
        if settings.fid or settings.domain:
            with progress(settings.num, f"sampling {settings.sampler}, {row['steps']} steps") as update:
                try:
                    images = generate(model, schedule, num=settings.num, shape=shape, sampler=settings.sampler, steps=steps,
                                      eta=settings.eta, prediction=config.diffusion.prediction, clip_x0=settings.clip_x0,
                                      labels=labels, guidance=settings.guidance, seed=settings.seed,
                                      batch_size=settings.batch_size, device=device,
                                      progress=update)
                except ValueError as e:
                    raise DdpmError(str(e)) from None
            row["sampling_s"] = time.time() - started
            if inception:
                stats = FeatureStats.from_features(features(inception, images, "Inception features"), inception.feature, "samples")
                row["fid"] = frechet_distance(stats, ref_inception)
                row["fid_reference_images"] = ref_inception.num
            if domain_net:
                from .metrics.domain import domain_scores

                feats, logits = domain_net.classify(images)
                row["domain_fid"] = frechet_distance(FeatureStats.from_features(feats, domain_net.feature, "samples"), ref_domain)
                scores = domain_scores(logits)
                row.update(domain_confident=scores.confident, domain_threshold=scores.threshold,
                           domain_is=scores.inception_score, domain_is_std=scores.inception_score_std,
                           class_histogram=scores.class_histogram)
        row.update(nll_row)
        row["wall_s"] = time.time() - started  # sampling and scoring of this row (the NLL's time is nll_s)
        rows.append(row)
        if log:
            run_dir = run_dir_of(checkpoint)
            if run_dir is not None:
                with (run_dir / "metrics.jsonl").open("a") as f:
                    f.write(json.dumps(row) + "\n")
    return rows


def _nll(model, schedule, config, settings: EvalSettings, device, progress) -> dict[str, Any]:
    """NLL bound in bits/dim on the first ``nll_images`` images of the test split."""
    from .data import load_dataset
    from .metrics.nll import vlb_terms

    started = time.time()
    d = config.data
    test = load_dataset(d.dataset, root=d.data_dir, split="test", image_size=d.image_size, channels=d.channels)
    n = min(settings.nll_images, len(test))
    g = torch.Generator().manual_seed(settings.seed)
    totals, terms, priors = [], [], []
    with progress(((n + settings.batch_size - 1) // settings.batch_size) * schedule.num_timesteps,
                  f"NLL bound on {n} test images") as update:
        for idx in torch.arange(n).split(settings.batch_size):
            x0, y = test.batch(idx, device)
            cond = {"y": y} if config.model.num_classes and y is not None else None
            out = vlb_terms(model, schedule, x0, prediction=config.diffusion.prediction, variance=settings.nll_variance,
                            cond=cond, generator=g, progress=update)
            totals.append(out["total"])
            terms.append(out["terms"])
            priors.append(out["prior"])
    total, terms_all = torch.cat(totals), torch.cat(terms)
    return {"nll_bpd": total.mean().item(), "nll_bpd_stderr": (total.std() / len(total) ** 0.5).item() if len(total) > 1 else None,
            "nll_images": n, "nll_variance": settings.nll_variance, "nll_prior_bpd": torch.cat(priors).mean().item(),
            "nll_decoder_bpd": terms_all[:, 0].mean().item(), "nll_terms_bpd": terms_all.mean(0).tolist(),
            "nll_s": time.time() - started}
