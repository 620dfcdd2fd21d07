"""Evaluate a trained run: generate samples, score them (FID, domain scores, NLL) and log the result.

One result row per number of sampling steps, so ``steps=[10, 20, 50, 100, 1000]`` gives the
metric-versus-steps curves. Each row carries its settings (sampler, steps, number of samples, seed,
checkpoint step, wall time) and is appended to the run's ``metrics.jsonl`` with ``"kind": "eval"``.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import distributed
from .errors import DdpmError
from .generate import generate_across_ranks
from .io import check_writable
from .models import build_schedule, load_classifier, load_model
from .checkpoint import resolve_checkpoint


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
    nll_images: int = 256
    nll_variance: str | None = None  # None: the model's own (diffusion.variance); a fixed one may replace it
    nll_timesteps: int | None = None  # None: the exact sum over all T steps; K: the stratified estimate of K
    reference: str | None = None  # DATASET:SPLIT, folder or stats file; default: the run's dataset, test split
    bootstrap_draws: int = 200  # resamples of the samples' features behind each FID's 95% interval; 0: no interval


# The one definition of an evaluation table (``ddpm eval`` prints it, the report draws it as HTML):
# (row key, heading, format). A number is shown with its uncertainty where the row has one (UNCERTAINTY).
EVAL_COLUMNS = [("sampler", "sampler", "{}"), ("steps", "steps", "{}"), ("guidance", "w", "{:g}"),
                ("classifier_scale", "clf s", "{:g}"), ("num", "samples", "{}"),
                ("fid", "FID [95% bootstrap]", "{:.2f}"), ("domain_fid", "domain FID [95% bootstrap]", "{:.3f}"),
                ("domain_is", "domain IS", "{:.2f}"), ("domain_confident", "confident", "{:.1%}"),
                ("domain_asked", "asked class", "{:.1%}"), ("nll_bpd", "NLL bits/dim", "{:.3f}"),
                ("checkpoint_step", "ckpt step", "{}"), ("wall_s", "wall s", "{:.0f}")]
# key: (low, high) keys of its 95% interval, or the key of its spread, shown ± in the key's format: a standard
# error, except the IS analogue's, which is its standard deviation over 10 splits as the IS papers report it
UNCERTAINTY = {"fid": ("fid_low", "fid_high"), "domain_fid": ("domain_fid_low", "domain_fid_high"),
               "domain_is": "domain_is_std", "domain_confident": "domain_confident_se", "domain_asked": "domain_asked_se",
               "nll_bpd": "nll_bpd_stderr"}


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    if row.get(key) is None:
        return ""
    spread = UNCERTAINTY.get(key)
    if isinstance(spread, tuple) and all(row.get(k) is not None for k in spread):
        return f"{fmt.format(row[key])} [{fmt.format(row[spread[0]])}, {fmt.format(row[spread[1]])}]"
    if isinstance(spread, str) and row.get(spread) is not None:
        return f"{fmt.format(row[key])} ± {fmt.format(row[spread]).rstrip('%')}"
    return fmt.format(row[key])


def table_cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The heading row and one row of strings per evaluation (columns that no row has are left out)."""
    cols = [c for c in EVAL_COLUMNS if any(r.get(c[0]) is not None for r in rows)]
    return [[name for _, name, _ in cols]] + [[_cell(r, k, fmt) for k, _, fmt in cols] for r in rows]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of evaluation rows, headed by how they were computed (seed, reference)."""
    cells = table_cells(rows)
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    r0 = rows[0]
    head = f"seed {r0['seed']}, {'EMA' if r0.get('ema', True) else 'raw'} weights, reference {r0['reference']}"
    hist = [f"class histogram ({r['steps']} steps): {r['class_histogram']}" for r in rows if r.get("class_histogram")]
    return "\n".join([head, *lines, *hist])


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run directory that holds a checkpoint file (…/RUN/checkpoints/latest.safetensors), if any."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None


def evaluate(path: str | Path, settings: EvalSettings, *, device: torch.device | str = "cpu",
             bar: Callable[[int, str], Any] | None = None, log: bool = True) -> list[dict[str, Any]]:
    """Evaluate a run directory or checkpoint; returns one row per entry of ``settings.steps``.

    ``bar(total, description, unit)`` makes a progress bar (an object with ``update(n)`` and ``close()``)."""
    from .metrics.fid import dataset_stats, extract, image_set_stats
    from .metrics.frechet import FeatureStats, ResampledFrechet
    from .study.stats import bootstrap_fid  # FID with its 95% interval over the samples, as the studies report it

    if not (settings.fid or settings.domain or settings.nll):
        raise DdpmError("nothing to evaluate: ask for at least one of --fid, --domain, --nll")
    if settings.num < 2 and (settings.fid or settings.domain):
        raise DdpmError(f"--num must be at least 2 for FID (a covariance), got {settings.num}")
    checkpoint = resolve_checkpoint(path)
    model, config, step = load_model(checkpoint, use_ema=settings.use_ema, device=device)
    classifier = load_classifier(settings.classifier, config, device=device) if settings.classifier else None
    schedule = build_schedule(config)
    T = config.diffusion.num_timesteps
    # every sweep entry resolved (and refused) before any sampling or reference statistics are computed
    sweep = [config.sample_settings(sampler=settings.sampler, steps=T if steps is None else steps, eta=settings.eta,
                                    guidance=settings.guidance, guidance_interval=settings.guidance_interval,
                                    clip_x0=settings.clip_x0)
             for steps in (settings.steps or [config.sample.steps])]
    data = config.data
    reference = settings.reference or f"{data.dataset}:test"
    shape = (data.channels, data.image_size, data.image_size)
    num_classes = config.classes_shown() or (classifier.config.num_classes if classifier else None)
    contexts = None
    if settings.context is not None:
        from .data.context import parse_vector
        from .generate import check_contexts

        contexts = check_contexts(parse_vector(settings.context), getattr(config.model, "context_dim", None), settings.num)
    # the classes asked for in turn (their share read as asked is scored), unless context vectors are given
    labels = torch.arange(settings.num) % num_classes if num_classes and (contexts is None or classifier) else None
    log_to = run_dir_of(checkpoint) if log and distributed.world().is_main else None
    if log_to is not None:
        check_writable(log_to / "metrics.jsonl")  # before the sampling, which a write failure would throw away

    progress = progress_bars(bar)
    inception = domain_net = None
    if settings.fid:
        from .metrics.inception import InceptionFeatures

        inception = InceptionFeatures(device=device)
    if settings.domain:
        from .metrics.domain import DomainFeatures

        domain_net = DomainFeatures(data.dataset, device=device)

    def reference_stats(extractor) -> FeatureStats:
        with progress(0, f"reference {reference} ({extractor.feature}, computed once, then cached)") as update:
            if ":" in reference and not Path(reference).exists():  # a dataset split, read as the run reads its data
                return dataset_stats(reference, extractor, data_dir=data.data_dir, image_size=data.image_size,
                                     channels=data.channels, test_fraction=data.test_fraction, progress=update)
            return image_set_stats(reference, extractor, data_dir=data.data_dir, progress=update)

    def fid_row(key: str, feats: np.ndarray, extractor, ref: FeatureStats) -> dict[str, float]:
        """FID of the samples' features [N, D] (from ``extractor``) against ``ref`` and its 95% bootstrap interval over
        the N samples."""
        if not settings.bootstrap_draws:
            return {key: ResampledFrechet(feats, ref, feature=extractor.feature)()}
        with progress(0, f"{key} interval ({settings.bootstrap_draws} bootstrap draws)"):
            fid = bootstrap_fid(feats, ref, feature=extractor.feature, draws=settings.bootstrap_draws)
        return {key: fid.value, f"{key}_low": fid.low, f"{key}_high": fid.high, f"{key}_draws": settings.bootstrap_draws}

    def features(extractor, images: torch.Tensor, what: str) -> np.ndarray:
        with progress(len(images), what) as update:
            return extract(extractor, images, update)

    ref_inception = reference_stats(inception) if inception else None
    ref_domain = reference_stats(domain_net) if domain_net else None
    nll_row = {}
    if settings.nll:
        nll_row = nll_bound(model, schedule, config, device, images=settings.nll_images, timesteps=settings.nll_timesteps,
                            variance=settings.nll_variance, seed=settings.seed, batch_size=settings.batch_size,
                            progress=progress)
        nll_row.pop("nll_bpd_per_image")  # the log keeps the summary

    reference_said = (ref_inception or ref_domain).source if (ref_inception or ref_domain) else reference
    rows = []
    for sample in sweep:
        started = time.time()
        row: dict[str, Any] = {"kind": "eval", "checkpoint_step": step, "sampler": sample.sampler, "steps": sample.steps,
                               "eta": sample.eta if sample.sampler == "ddim" else None, "guidance": sample.guidance,
                               "guidance_interval": [sample.guidance_from, sample.guidance_to],
                               "clip_x0": sample.clip_x0, "num": settings.num,
                               **({"classifier": str(settings.classifier), "classifier_scale": settings.classifier_scale}
                                  if classifier else {}), **({"context": settings.context} if contexts is not None else {}), "seed": settings.seed, "ema": settings.use_ema,
                               "reference": reference_said}
        if settings.fid or settings.domain:
            with progress(settings.num, f"sampling {sample.sampler}, {sample.steps} steps") as update:
                # under torchrun the ranks share the samples; every rank then holds the images one process would
                images = generate_across_ranks(model, schedule, num=settings.num, shape=shape, **sample.generate_options(),
                                               **config.diffusion.model_options(), labels=labels, seed=settings.seed,
                                               contexts=contexts, classifier=classifier, classifier_scale=settings.classifier_scale,
                                               batch_size=settings.batch_size, device=device, progress=update)
            row["sampling_s"] = time.time() - started
            if inception:
                row.update(fid_row("fid", features(inception, images, "Inception features"), inception, ref_inception),
                           fid_reference_images=ref_inception.num)
            if domain_net:
                from .metrics.domain import FEATURE_DIM, domain_scores
                from .metrics.shares import binomial_se, binomial_share

                def features_and_logits(x: torch.Tensor) -> torch.Tensor:
                    feats, logits = domain_net.classify(x)
                    return torch.cat([torch.from_numpy(feats), logits.double()], 1)

                both = distributed.map_shards(features_and_logits, images)  # [N, 128 + 10], shared among ranks
                feats, logits = both[:, :FEATURE_DIM].numpy(), both[:, FEATURE_DIM:]
                row.update(fid_row("domain_fid", feats, domain_net, ref_domain))
                scores = domain_scores(logits)
                row.update(domain_confident=scores.confident, domain_threshold=scores.threshold,
                           domain_confident_se=float(binomial_se(scores.confident, len(logits))),
                           domain_is=scores.inception_score, domain_is_std=scores.inception_score_std,
                           class_histogram=scores.class_histogram)
                if labels is not None:  # how many samples read as the class they were asked for, ± binomial s.e.
                    asked = binomial_share((logits.argmax(1) == labels).numpy())
                    row.update(domain_asked=asked["value"], domain_asked_se=asked["se"])
        row.update(nll_row)
        row["wall_s"] = time.time() - started  # sampling and scoring of this row (the NLL's time is nll_s)
        rows.append(row)
        if log_to is not None:
            with (log_to / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(row) + "\n")
    return rows


def progress_bars(bar=None):
    """``progress(total, what, unit)``: a context manager yielding an update(n) callable for a progress bar of
    ``total`` items made by ``bar(total, what, unit)`` and closed on exit; it yields None without ``bar``."""

    @contextlib.contextmanager
    def progress(total: int, what: str, unit: str = "img"):
        b = bar(total, what, unit) if bar is not None else None
        try:
            yield b.update if b is not None else None
        finally:
            if b is not None:
                b.close()

    return progress


def nll_bound(model, schedule, config, device, *, images: int = 256, timesteps: int | None = None,
              variance: str | None = None, seed: int = 0, batch_size: int = 256, progress=None) -> dict[str, Any]:
    """NLL bound in bits/dim (DDPM eq. 5) on the first ``images`` images of the run's test split, with the model's own
    variance (or ``variance``, a fixed one, in its place) over all T steps or ``timesteps`` stratified ones; the
    images' own labels (or one-hot contexts) condition a conditional model. ``nll_bpd_per_image`` [n] lets two
    models scored on the same images be compared pairwise. Image i's noise and timesteps come from its own stream
    (seed, i), so the result does not depend on the batch size, and under torchrun the ranks share the images and
    every rank returns all n. ``progress``: a ``progress_bars`` factory (none by default)."""
    from .data import load_dataset
    from .generate import model_cond
    from .metrics.nll import vlb_terms
    from .rng import SampleNoise

    started = time.time()
    d = config.data
    test = load_dataset(d.dataset, root=d.data_dir, split="test", image_size=d.image_size, channels=d.channels,
                        test_fraction=d.test_fraction)
    n = min(images, len(test))
    variance = variance or config.diffusion.variance
    T = schedule.num_timesteps
    calls = T if timesteps is None or timesteps >= T - 1 else timesteps + 1
    learned = variance == "learned_range"
    # under torchrun each rank bounds its share of the images; image i's noise and timesteps come from its own
    # stream (seed, i), so the numbers are those of one process, whatever the batch size or number of ranks
    start, stop = distributed.shard(n)
    # (a rank may have no share: the empty rows keep torch.cat and the gather working)
    parts: dict[str, list[torch.Tensor]] = {"total": [torch.zeros(0, dtype=torch.float64)],
                                            "terms": [torch.zeros(0, T, dtype=torch.float64)],
                                            "prior": [torch.zeros(0, dtype=torch.float64)],
                                            **({"variance_fraction": [torch.zeros(0, T, dtype=torch.float64)]} if learned else {})}
    with (progress or progress_bars())(((n + batch_size - 1) // batch_size) * calls,
                                         f"NLL bound on {n} test images", "step") as update:
        update = distributed.counting_all_ranks(update)
        for idx in torch.arange(start, stop).split(batch_size):
            x0, y = test.batch(idx, device)
            cond = model_cond(config, y)  # the test images' own labels (or one-hot contexts)
            cond = None if cond is None else {key: value.to(device) for key, value in cond.items()}
            out = vlb_terms(model, schedule, x0, prediction=config.diffusion.prediction, variance=variance,
                            timesteps=timesteps, cond=cond, generator=SampleNoise(seed, idx.tolist()),
                            progress=update)
            for key, rows in parts.items():
                rows.append(out[key])
    # gathered on the device (NCCL moves no CPU tensors), every rank then holds all n images' bounds in order
    total, terms_all, prior, *fraction = (distributed.gather_rows(torch.cat(rows).to(device), n).cpu()
                                         for rows in parts.values())
    return {"nll_bpd": total.mean().item(), "nll_bpd_stderr": (total.std() / len(total) ** 0.5).item() if len(total) > 1 else None,
            "nll_images": n, "nll_variance": variance, "nll_timesteps": timesteps or T, "nll_prior_bpd": prior.mean().item(),
            "nll_decoder_bpd": terms_all[:, 0].mean().item(), "nll_terms_bpd": terms_all.mean(0).tolist(),
            "nll_bpd_per_image": total.tolist(), "nll_s": time.time() - started,
            # None (JSON null, not NaN) at steps no image drew in a stratified estimate
            **({"nll_variance_fraction": [None if v != v else v for v in fraction[0].nanmean(0).tolist()]}
               if fraction else {})}


def evaluate_classifier(path: str | Path, *, images: int = 1000, bands: int = 10, seed: int = 0,
                        device: torch.device | str = "cpu", log: bool = True) -> dict[str, Any]:
    """A noise-aware classifier's accuracy on the first ``images`` test images of its data, per band of timesteps
    (``metrics.noisy_accuracy``), from its EMA weights; appended to its metrics.jsonl (``"kind": "classifier_eval"``)."""
    from .data import load_dataset
    from .metrics.noisy_accuracy import noisy_accuracy

    checkpoint = resolve_checkpoint(path)
    classifier, config, step = load_model(checkpoint, device=device, kind="classifier")
    log_to = run_dir_of(checkpoint) if log else None
    if log_to is not None:
        check_writable(log_to / "metrics.jsonl")
    d = config.data
    test = load_dataset(d.dataset, root=d.data_dir, split="test", image_size=d.image_size, channels=d.channels,
                        limit=images, seed=seed, test_fraction=d.test_fraction)
    record = {**noisy_accuracy(classifier, build_schedule(config), test, bands=min(bands, config.diffusion.num_timesteps),
                               seed=seed, device=device), "checkpoint_step": step, "reference": f"{d.dataset}:test"}
    if log_to is not None:
        with (log_to / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
    return record


def format_accuracy(record: dict[str, Any]) -> str:
    """A classifier_eval record as text: one line per band, accuracy ± its standard error."""
    lines = [f"classifier accuracy on {record['images']} noisy {record['reference']} images per band of t "
             f"(checkpoint step {record['checkpoint_step']}, seed {record['seed']}):"]
    lines += [f"  t {lo:4d}..{hi:4d}: {acc:6.1%} ± {se:.1%}"
              for (lo, hi), acc, se in zip(record["bands"], record["accuracy_per_band"], record["accuracy_se"])]
    return "\n".join(lines + [f"  mean over the bands: {record['accuracy']:.1%}"])
