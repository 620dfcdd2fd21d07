"""Hooks a program drives a training run with: ``Trainer.run(callbacks=[...])`` calls them after each step, after
each log record, after each checkpoint and at the end.

Every hook runs on the main rank only (rank 0, the one that writes the run directory; in one process, always),
so a hook that writes files or prints does it once under torchrun; it must not call collective operations
(``torch.distributed``), which the other ranks would never join. The trainer calls the hooks so that they change
nothing about training: the global RNGs (torch CPU and CUDA, numpy, Python) and the network's train/eval mode are
put back after them, so the same seed gives the same weights with or without callbacks (a hook that changes
the weights, the optimiser or the config on purpose does change the run).

    from ddpm.train import Trainer, every

    trainer.run(callbacks=[every(500, lambda t: save_grid(t.sample_ema(16, seed=0), f"grid_{t.step}.png"))])
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import DdpmError

if TYPE_CHECKING:
    from .trainer import Trainer


class Callback:
    """Override the hooks you need; the others do nothing. ``trainer.step`` is the number of optimiser steps done."""

    def on_step(self, trainer: Trainer) -> None:
        """After each optimiser step that counted (a skipped step, non-finite or an fp16 overflow, calls nothing),
        once that step's log record, progress grid and checkpoint, if any, are written."""

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """After each training record is written to the loggers: the record itself (``trainer.LogWindow``'s
        keys, as in metrics.jsonl)."""

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        """After each complete checkpoint: ``path``, its weights file (RUN/checkpoints/step_N.safetensors)."""

    def on_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        """When the run ends normally (train.steps, the time budget or ``stop_when``), after its last checkpoint:
        the summary ``Trainer.run`` returns. Not called when it raises (an error, ``Interrupted`` by a signal)."""


class Every(Callback):
    """Calls ``fn(trainer)`` after every ``n``-th step (trainer.step a multiple of n, counted from the run's
    start, so a resumed run keeps the cadence)."""

    def __init__(self, n: int, fn: Callable[[Trainer], Any]):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DdpmError(f"every(n, fn) needs n, a number of steps, to be a positive integer, got {n!r}")
        self.n, self.fn = n, fn

    def on_step(self, trainer: Trainer) -> None:
        if trainer.step % self.n == 0:
            self.fn(trainer)

    def __repr__(self) -> str:
        return f"every({self.n}, {self.fn!r})"


def every(n: int, fn: Callable[[Trainer], Any]) -> Callback:
    """A callback that calls ``fn(trainer)`` every ``n`` steps (after steps n, 2n, …)."""
    return Every(n, fn)
