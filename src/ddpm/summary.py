"""A short Markdown summary of a run: what was trained, how long it took, where the pictures are."""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch

from .run_files import log_path
from .config import RunConfig
from .io import atomic_write_text


def write_summary(run_dir: Path, config: RunConfig, summary: dict[str, Any]) -> Path:
    log = [json.loads(line) for line in log_path(run_dir).read_text().splitlines() if line.strip()]
    last = log[-1] if log else {}
    m, t, s = config.model, config.train, config.sample
    lines = [
        f"# Run summary: {run_dir.name}",
        "",
        f"- data: {config.data.dataset}, {config.data.image_size}×{config.data.image_size}, {config.data.channels} channel(s)",
        f"- model: {m.ARCHITECTURE}, {summary['parameters'] / 1e6:.2f}M parameters"
        + (f", widths {m.base_channels}×{list(m.channel_mults)}" if m.ARCHITECTURE != "mlp" else f", {m.depth}×{m.hidden} wide")
        + (f", {m.patch_size}×{m.patch_size} patches" if m.ARCHITECTURE != "mlp" and m.patch_size > 1 else "")
        + (f", conditioned on {m.num_classes} classes (labels dropped {t.label_dropout:.0%} of the time)" if m.num_classes else "")
        + (f", conditioned on {m.context_dim}-d context vectors ({config.data.context}, {m.context_conditioning}; dropped "
           f"{t.label_dropout:.0%} of the time)" if getattr(m, "context_dim", None) else ""),
        f"- diffusion: {config.diffusion.schedule} schedule, T = {config.diffusion.num_timesteps}, predicts {config.diffusion.prediction}",
        f"- training: {summary['steps']} steps of batch {t.batch_size} ({summary['steps'] * t.batch_size} images) in "
        f"{summary['elapsed_s'] / 60:.1f} min ({summary['steps'] * t.batch_size / max(summary['elapsed_s'], 1e-9):.0f} images/s on average, "
        f"progress grids and checkpoints included), stopped by {summary['stopped_by']}; last logged loss {last.get('loss', float('nan')):.4f}",
        f"- sampling: {s.num} samples with {s.sampler}, {s.steps} steps, EMA weights"
        + (f", classifier-free guidance w = {s.guidance:g}" if config.classes_shown() and s.guidance else "")
        + (", one class per column" if config.classes_shown() else "")
        + f", in {summary.get('sampling_s', float('nan')):.1f} s",
        "- report: report.html" + (f", written in {summary['report_s']:.1f} s" if "report_s" in summary else ""),
        f"- total wall time: {summary.get('total_s', summary['elapsed_s']) / 60:.1f} min"
        + (f" ({summary['total_counts']})" if "total_counts" in summary else ""),
        f"- machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "",
        "![samples](samples.png)",
        "",
        "Progress grids from one fixed latent are in `progress/`; the loss log is `metrics.jsonl`.",
    ]
    return atomic_write_text(run_dir / "summary.md", "\n".join(lines) + "\n")
