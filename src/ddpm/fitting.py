"""``fit``: train a run from Python in one call — a config, a directory, a budget — and get its ``Denoiser`` back."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

from .config import RunConfig
from .denoiser import Denoiser
from .errors import DdpmError


def fit(config: RunConfig | str, out: str | Path, *, steps: int | None = None, minutes: float | None = None,
        device: str | torch.device = "auto", force: bool = False, resume: bool = False, data=None,
        callbacks: Sequence = (), quiet: bool = True) -> Denoiser:
    """Train ``config`` (a ``RunConfig`` or a preset name such as "mnist-demo") into the run directory ``out`` for
    ``steps`` optimiser steps and/or ``minutes`` of wall time (default: the config's train.steps and
    train.max_minutes), exactly as ``ddpm train`` does (checkpoints, metrics.jsonl, progress grids); returns the
    trained model's ``Denoiser`` (EMA weights, eval mode). ``resume``: continue ``out``; ``force``: replace a run
    there (set aside until the new run's first checkpoint is complete); ``data``: an ``ImageData`` to train on
    instead of the config's dataset; ``callbacks``: ``ddpm.train.callbacks`` hooks."""
    from .models import pick_device
    from .train import Trainer

    if isinstance(config, str):
        config = RunConfig.from_toml(config)
    if not isinstance(config, RunConfig):
        raise DdpmError(f"config must be a RunConfig or a preset name, got {type(config).__name__}")
    train = config.train
    if steps is not None or minutes is not None:
        train = replace(train, steps=train.steps if steps is None else steps,
                        max_minutes=train.max_minutes if minutes is None else minutes)
        config = RunConfig.from_dict(replace(config, train=train).to_dict(), "fit")  # checked like any config
    device = pick_device(device) if isinstance(device, str) else device
    trainer = Trainer(config, out, device, resume=resume, force=force, data=data, quiet=quiet)
    trainer.run(callbacks=callbacks) if callbacks else trainer.run()
    return Denoiser.from_pretrained(out, device=device)
