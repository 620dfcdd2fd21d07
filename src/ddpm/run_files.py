"""The files of a run directory, named once: what the trainer writes, what ``Denoiser.save_pretrained`` writes and
what every command reads.

    RUN/config.json                the run's config (also inside every checkpoint's metadata)
    RUN/metrics.jsonl              one JSON record per line: training logs, evaluations ("kind" says which)
    RUN/checkpoints/step_N.safetensors (+ step_N-state.pt to resume)   see ``ddpm.checkpoint``
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .io import atomic_write_text

CONFIG_FILE = "config.json"
LOG_FILE = "metrics.jsonl"
MODEL_CARD = "README.md"


def write_config(run_dir: Path, config) -> None:
    """RUN/config.json, written atomically: ``config`` (a ``RunConfig``) as plain data."""
    atomic_write_text(Path(run_dir) / CONFIG_FILE, json.dumps(config.to_dict(), indent=2))


def log_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / LOG_FILE


def append_record(run_dir: str | Path, record: dict[str, Any]) -> None:
    """Append one record to RUN/metrics.jsonl (a line is written whole, so a reader sees complete lines)."""
    with log_path(run_dir).open("a") as f:
        f.write(json.dumps(record) + "\n")
