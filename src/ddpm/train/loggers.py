"""Where the trainer's log records go, behind one interface: ``Logger.write(record)`` and ``Logger.close()``.

``RUN/metrics.jsonl`` is always written (``JsonlLogger``: the file every ddpm command reads); with
``train.log_to = "jsonl+tensorboard"`` the records' numbers also go to TensorBoard event files in
``RUN/tensorboard/`` (``TensorBoardLogger``; the optional extra ``pip install ddpm[tensorboard]``), where most
users look at their curves. Records are the trainer's ``kind = "train"`` dicts (``trainer.LogWindow``); evaluation
records are appended to metrics.jsonl by ``ddpm.evaluate`` and do not pass through here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import DdpmError
from ..run_files import LOG_FILE

TENSORBOARD_DIR = "tensorboard"


def wants_tensorboard(log_to: str) -> bool:
    """Whether ``train.log_to`` ("jsonl" or "jsonl+tensorboard") includes TensorBoard."""
    return "tensorboard" in log_to.split("+")


def check_log_to(log_to: str) -> None:
    """Refuse, in one sentence, a ``train.log_to`` whose logger cannot be built here (TensorBoard not installed).
    The trainer calls this when it is built, so the mistake shows before any file of the run is written."""
    if wants_tensorboard(log_to):
        _summary_writer_class(log_to)


def _summary_writer_class(log_to: str):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's module imports the tensorboard package and fails without it
        raise DdpmError(f"train.log_to = {log_to!r} needs the tensorboard package, which is not installed: "
                        "pip install ddpm[tensorboard] (or set train.log_to = \"jsonl\")") from None
    return SummaryWriter


class Logger:
    """Receives each log record (a dict of JSON values) with ``write``; ``close`` releases its files. A logger
    writes records as they come (flushed), so a run killed mid-way has its curves up to its last record."""

    def write(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Logger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class JsonlLogger(Logger):
    """Appends one JSON object per line to ``path`` (RUN/metrics.jsonl), flushed after every record."""

    def __init__(self, path: str | Path):
        self.file = Path(path).open("a")

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TensorBoardLogger(Logger):
    """The numbers of each record as TensorBoard scalars at step ``record["step"]``: key ``k`` as tag
    ``"{kind}/{k}"`` (``train/loss``, ``train/lr``, ``train/images_per_s``, …); a per-bucket list
    ``{name}_per_bucket`` as one tag per tenth of the timestep range, ``"{kind}_buckets/{name}_{i}"`` (bucket 0 the
    least noisy; empty buckets, None, are left out), in a group of their own so the main curves are not buried
    under ten charts per list. Strings and booleans are not scalars and are skipped. Event files hold float32.

    ``purge_step``: events of earlier writers in the same folder at this step or later are hidden (TensorBoard's
    own mechanism): the trainer passes the first step it will log, so a resumed run shows no abandoned curve past
    its checkpoint and a new run none of an attempt that left events behind."""

    def __init__(self, folder: str | Path, purge_step: int | None = None, log_to: str = "jsonl+tensorboard"):
        self.writer = _summary_writer_class(log_to)(str(folder), purge_step=purge_step)

    def write(self, record: dict[str, Any]) -> None:
        kind, step = record.get("kind", "train"), int(record["step"])
        for key, value in record.items():
            if key in ("kind", "step") or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"{kind}/{key}", value, step)
            elif isinstance(value, list) and key.endswith("_per_bucket"):
                name = key.removesuffix("_per_bucket")
                for i, v in enumerate(value):
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        self.writer.add_scalar(f"{kind}_buckets/{name}_{i}", v, step)
        self.writer.flush()  # as metrics.jsonl: a curve is visible as soon as its record exists

    def close(self) -> None:
        self.writer.close()


class LoggerGroup(Logger):
    """Several loggers as one: each record goes to each of them, in order."""

    def __init__(self, loggers: list[Logger]):
        self.loggers = list(loggers)

    def write(self, record: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.write(record)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


def open_loggers(run_dir: str | Path, log_to: str, *, first_step: int = 1) -> LoggerGroup:
    """The loggers ``train.log_to`` asks for, writing into ``run_dir``: metrics.jsonl always, then TensorBoard.
    ``first_step``: the first step the run will log (the TensorBoard logger hides older events from there on)."""
    run_dir = Path(run_dir)
    loggers: list[Logger] = [JsonlLogger(run_dir / LOG_FILE)]
    try:
        if wants_tensorboard(log_to):
            loggers.append(TensorBoardLogger(run_dir / TENSORBOARD_DIR, purge_step=first_step, log_to=log_to))
    except BaseException:
        LoggerGroup(loggers).close()
        raise
    return LoggerGroup(loggers)
