"""Plots (matplotlib, Agg backend): schedules, the training loss, the loss per timestep over training and
metrics against the number of sampling steps."""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..run_files import log_path
from ..errors import DdpmError
from ..io import atomic_write
from ..schedules import NoiseSchedule


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=100, bbox_inches="tight"))
    finally:
        _pyplot().close(fig)


def read_records(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    """The records of one ``kind`` (train, eval, classifier_eval) in a run's metrics.jsonl, in order; half-written
    lines are skipped."""
    path = log_path(run_dir)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("kind", "train") == kind:
            records.append(record)
    return records


def read_log(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(training records, evaluation records) of a run's metrics.jsonl."""
    return read_records(run_dir, "train"), read_records(run_dir, "eval")


def plot_schedules(path: str | Path, num_timesteps: int = 1000, names: Sequence[str] = ("linear", "cosine", "sigmoid")) -> Path:
    """ᾱ_t and log-SNR = log(ᾱ_t / (1 − ᾱ_t)) against t/T, one curve per schedule."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    u = (np.arange(num_timesteps) + 1) / num_timesteps
    for name in names:
        s = NoiseSchedule.from_name(name, num_timesteps)
        a.plot(u, s.alphas_cumprod.numpy(), label=name)
        b.plot(u, np.log(s.snr().numpy()), label=name)
    a.set(xlabel="t / T", ylabel="ᾱ_t (signal kept)", title=f"ᾱ_t, T = {num_timesteps}")
    b.set(xlabel="t / T", ylabel="log SNR", title="log-SNR = log ᾱ/(1−ᾱ)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_loss(run_dir: Path, path: str | Path, smoothing: float | None = None) -> Path:
    """The logged training loss (thin) and its bias-corrected exponential moving average (thick), log scale.
    The default smoothing spans about a tenth of the records (at most 0.9, i.e. ~10 records)."""
    train, _ = read_log(run_dir)
    if not train:
        raise DdpmError(f"{run_dir} has no training records in metrics.jsonl")
    steps = np.array([r["step"] for r in train])
    loss = np.array([r["loss"] for r in train])
    if smoothing is None:
        smoothing = min(0.9, max(0.0, 1 - 10 / len(loss)))
    smooth, avg = [], 0.0
    for k, v in enumerate(loss, start=1):
        avg = smoothing * avg + (1 - smoothing) * v
        smooth.append(avg / (1 - smoothing**k) if smoothing > 0 else v)  # bias correction: no pull towards 0 or the start
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(steps, loss, alpha=0.35, lw=1, label="logged (mean per window)")
    ax.plot(steps, smooth, lw=2, label=f"EMA {smoothing:.2f}")
    ax.set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save(fig, path)


def plot_loss_curves(runs: dict[str, Path], path: str | Path) -> Path:
    """The logged training loss of several runs on one plot (log scale), one line per run name."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for name, run_dir in runs.items():
        train = read_records(run_dir, "train")
        if train:
            ax.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1.2, label=name)
    ax.set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    ax.grid(alpha=0.3, which="both")
    if ax.lines:  # runs that logged nothing yet leave an empty plot, without a legend
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_fid_vs_evaluations(families: dict[str, list[tuple]], path: str | Path, floor: dict[str, Any] | None = None) -> Path:
    """FID (with its 95% interval) against network evaluations per sample, one line per family of settings (a
    sampler), and beside it the wall time of the sampling. ``families``: name → [(evaluations, fid, low, high, s)];
    ``floor``: the FID between two real sets of the samples' size ("value", "low", "high", "num"), drawn as a band."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    # families can coincide (DDIM with η = 1 is ancestral DDPM with β̃): each its own line style and marker
    for (name, points), style, marker in zip(families.items(), itertools.cycle(("-", "--", ":", "-.")),
                                             itertools.cycle("os^vDP")):
        nfe, fid, low, high, seconds = (np.array(v, dtype=float) for v in zip(*sorted(points)))
        axes[0].errorbar(nfe, fid, yerr=[fid - low, high - fid], marker=marker, linestyle=style, capsize=2, label=name,
                         fillstyle="none")
        axes[1].plot(nfe, seconds, marker=marker, linestyle=style, label=name, fillstyle="none")
    if floor is not None:
        axes[0].axhspan(floor["low"], floor["high"], color="grey", alpha=0.2)
        axes[0].axhline(floor["value"], color="grey", linestyle="--", linewidth=1,
                        label=f"floor: {floor['num']} real vs real")
    axes[0].set(xscale="log", yscale="log", xlabel="network evaluations per sample", ylabel="FID", title="FID (95% interval)")
    axes[1].set(xscale="log", yscale="log", xlabel="network evaluations per sample", ylabel="s", title="sampling wall time")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_fid_vs_fidelity(families: dict[str, list[dict[str, Any]]], path: str | Path) -> Path:
    """A guidance study: FID (diversity and quality, with its 95% interval) against the share of samples read as the
    asked class (fidelity, ± its binomial standard error), one line per family of arms, each point named by its arm.
    ``families``: name → study results of its arms (each with "fid", "asked" and "arm")."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, arms in families.items():
        arms = sorted(arms, key=lambda r: r["asked"]["value"])
        asked = np.array([[100 * r["asked"]["value"], 100 * r["asked"]["se"]] for r in arms])
        fid = np.array([[r["fid"]["value"], r["fid"]["low"], r["fid"]["high"]] for r in arms])
        ax.errorbar(asked[:, 0], fid[:, 0], xerr=asked[:, 1], yerr=[fid[:, 0] - fid[:, 1], fid[:, 2] - fid[:, 0]],
                    marker="o", capsize=2, label=name)
        for r, x, y in zip(arms, asked[:, 0], fid[:, 0]):
            ax.annotate(r["arm"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set(xlabel="read as the asked class (%)", ylabel="FID", yscale="log", title="guidance: fidelity against FID")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def stage_ticks(minutes: list[float]) -> list[float]:
    """One x tick per stage of a budget study: the recipes' measured minutes of one stage differ by a few percent
    (5.1 and 5.3), and a tick for each would overprint its labels; a tick within 10% of the one before is dropped."""
    ticks: list[float] = []
    for m in sorted(minutes):
        if not ticks or m > 1.1 * ticks[-1]:
            ticks.append(m)
    return ticks


def plot_quality_vs_training(families: dict[str, list[dict[str, Any]]], path: str | Path) -> Path:
    """A budget study: FID (with its 95% interval) against training minutes, one line per recipe, and beside it the NLL
    bound (± 2 standard errors) where the arms have one. ``families``: name → study results of its arms."""
    plt = _pyplot()
    with_nll = any("nll" in r for arms in families.values() for r in arms)
    fig, axes = plt.subplots(1, 1 + with_nll, figsize=(5.5 * (1 + with_nll), 3.8), squeeze=False)
    for name, arms in families.items():
        arms = sorted(arms, key=lambda r: r["train_minutes"])
        minutes = np.array([r["train_minutes"] for r in arms])
        fid = np.array([[r["fid"]["value"], r["fid"]["low"], r["fid"]["high"]] for r in arms])
        axes[0, 0].errorbar(minutes, fid[:, 0], yerr=[fid[:, 0] - fid[:, 1], fid[:, 2] - fid[:, 0]], marker="o", capsize=2,
                            label=name)
        if with_nll:
            nll = np.array([[r["nll"]["value"], r["nll"]["se"]] for r in arms])
            axes[0, 1].errorbar(minutes, nll[:, 0], yerr=2 * nll[:, 1], marker="o", capsize=2, label=name)
    axes[0, 0].set(xscale="log", yscale="log", xlabel="training minutes", ylabel="FID", title="FID (95% interval)")
    if with_nll:
        axes[0, 1].set(xscale="log", xlabel="training minutes", ylabel="bits/dim", title="NLL bound (± 2 s.e.)")
    ticks = stage_ticks([r["train_minutes"] for arms in families.values() for r in arms])
    for ax in axes[0]:
        ax.set_xticks(ticks, [f"{m:.0f}" if m >= 10 else f"{m:.2g}" for m in ticks])  # 5.1, 15, 120 (not 1.2e+02)
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_losses_over_training(stages: list[dict[str, Any]], path: str | Path) -> Path:
    """A loss study: the held-out loss at each single t (one line each, ± 2 standard errors) against training steps,
    each relative to its first stage's value (log scale), so that the timesteps' progress compares."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    steps = np.array([r["steps"] for r in stages], dtype=float)
    for t in stages[0]["losses"]:
        value = np.array([r["losses"][t]["value"] for r in stages])
        se = np.array([r["losses"][t]["se"] for r in stages])
        ax.errorbar(steps, value / value[0], yerr=2 * se / value[0], marker="o", capsize=2, label=f"t = {t}")
    ax.set(xlabel="training step", ylabel="loss / first stage's", yscale="log", title="held-out loss at single timesteps")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_loss_heatmap(run_dir: Path, path: str | Path) -> Path:
    """Loss per tenth of the timestep range (rows) over training (columns), each normalised by its first value,
    so it shows which noise levels the model has learned and when."""
    train, _ = read_log(run_dir)
    records = [r for r in train if r.get("loss_per_bucket")]
    if not records:
        raise DdpmError(f"{run_dir} has no per-timestep losses in metrics.jsonl")
    table = np.array([[np.nan if v is None else v for v in r["loss_per_bucket"]] for r in records], dtype=float).T
    first = np.array([row[np.isfinite(row)][0] if np.isfinite(row).any() else np.nan for row in table])
    rel = table / first[:, None]
    buckets = table.shape[0]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    steps = [r["step"] for r in records]
    # Each record closes a logging window: column k spans (step_{k−1}, step_k], the first one from its window's start.
    first_window = steps[1] - steps[0] if len(steps) > 1 else steps[0]
    im = ax.imshow(np.log10(rel), aspect="auto", origin="lower", cmap="viridis",
                   extent=(max(0, steps[0] - first_window), steps[-1], 0, 1), interpolation="nearest")
    ax.set(xlabel="step", ylabel="t / T", title=f"loss per timestep bucket ({buckets} buckets), relative to its first value")
    fig.colorbar(im, ax=ax, label="log10(loss / first loss)")
    return _save(fig, path)


def plot_metrics_vs_steps(evals: list[dict[str, Any]], path: str | Path) -> Path:
    """Each metric that evaluations measured, against the number of sampling steps (one line per sampler)."""
    metrics = [(k, name) for k, name in (("fid", "FID"), ("domain_fid", "domain FID"), ("domain_confident", "confident share"))
               if any(k in e for e in evals)]
    if not metrics:
        raise DdpmError("no evaluation records with sample metrics")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.4), squeeze=False)
    for ax, (key, name) in zip(axes[0], metrics):
        for sampler in sorted({e["sampler"] for e in evals}):
            pts = sorted((e["steps"], e[key]) for e in evals if e["sampler"] == sampler and key in e)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=sampler)
        ax.set(xscale="log", xlabel="sampling steps", ylabel=name, title=name)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    return _save(fig, path)


def plot_classifier_accuracy(record: dict[str, Any], path: str | Path) -> Path:
    """A noise-aware classifier's accuracy on noisy test images per band of timesteps (``metrics.noisy_accuracy``),
    with ±2 standard errors and the chance level 1/K."""
    bands = np.array(record["bands"], dtype=float)
    middle = bands.mean(axis=1)
    accuracy, se = np.array(record["accuracy_per_band"]), np.array(record["accuracy_se"])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.errorbar(middle, accuracy, yerr=2 * se, marker="o", capsize=3, label="accuracy ± 2 s.e.")
    if record.get("num_classes"):
        ax.axhline(1 / record["num_classes"], color="grey", ls="--", lw=1, label="chance")
    ax.set(xlabel="t (middle of each band)", ylabel="accuracy", ylim=(0, 1.02),
           title=f"classifier on noisy test images ({record['images']} per band)\nmean {record['accuracy']:.1%}")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_nll_terms(record: dict[str, Any], path: str | Path) -> Path:
    """The variational bound's terms L_t in bits/dim against t (the ELBO-per-step plot) and, for a learned-range
    variance, beside it the mean interpolation f of Σ_θ = β^f β̃^(1−f) against t (0: β̃, 1: β), over the test
    images. With a stratified estimate (K < T steps) only the drawn steps are drawn, as points."""
    terms = np.array(record["nll_terms_bpd"])
    T = len(terms)
    K = record.get("nll_timesteps") or T
    fraction = record.get("nll_variance_fraction")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2 if fraction else 1, figsize=(11 if fraction else 6, 3.4), squeeze=False)
    ax = axes[0][0]
    t = np.arange(T)
    if K >= T - 1:
        ax.plot(t, terms)
    else:
        drawn = terms > 0
        ax.plot(t[drawn], terms[drawn], ".", ms=3)
    estimate = "" if K >= T - 1 else f", from {K} of {T} steps"
    ax.set(xlabel="t", ylabel="bits/dim", yscale="log",
           title=f"VLB terms: total {record['nll_bpd']:.3f} bits/dim{estimate}\nL_0 {terms[0]:.3f}, prior {record['nll_prior_bpd']:.2e}")
    ax.grid(alpha=0.3, which="both")
    if fraction:
        f = np.array([np.nan if v is None else v for v in fraction], dtype=float)
        ax = axes[0][1]
        ax.plot(t[np.isfinite(f)], f[np.isfinite(f)], ".", ms=3)
        ax.axhline(0, color="grey", lw=0.8)
        ax.axhline(1, color="grey", lw=0.8)
        ax.set(xlabel="t", ylabel="f (0: β̃, 1: β)", title="learned Σ_θ = β^f β̃^(1−f)\nmean f over the test images")
        ax.grid(alpha=0.3)
    return _save(fig, path)
