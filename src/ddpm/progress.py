"""Progress a person can read: a tqdm bar on a terminal, a plain line every few seconds in a log file.

In a non-interactive stream (CI, ``nohup``, ``> file``) a tqdm bar writes thousands of carriage-return
updates that a log shows as one enormous line; there ``LineProgress`` prints an ordinary line instead.
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

LINE_INTERVAL_S = 10.0  # seconds between two lines of a LineProgress


def progress_bar(total: float | None = None, *, desc: str = "", unit: str = "it", initial: float = 0,
                 disable: bool = False, leave: bool = True, file: TextIO | None = None):
    """A tqdm bar when ``file`` (default stderr) is a terminal, else a ``LineProgress``; both take
    ``update(n)``, ``set_postfix(dict)`` and ``close()`` and work as context managers."""
    file = file or sys.stderr
    interactive = hasattr(file, "isatty") and file.isatty()
    if disable or interactive:
        return tqdm(total=total or None, desc=desc or None, unit=unit, initial=initial, disable=disable, leave=leave,
                    dynamic_ncols=True, file=file)
    return LineProgress(total, desc=desc, unit=unit, initial=initial, file=file)


class LineProgress:
    """The tqdm calls ddpm uses, printed as one plain line every ``interval`` seconds and once at the end."""

    def __init__(self, total: float | None = None, *, desc: str = "", unit: str = "it", initial: float = 0,
                 file: TextIO | None = None, interval: float = LINE_INTERVAL_S):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.file, self.interval = file or sys.stderr, interval
        self.started = self.last_printed = time.time()
        self.initial, self.postfix, self.closed = initial, {}, False

    def update(self, n: float = 1) -> None:
        self.n += n
        if time.time() - self.last_printed >= self.interval:
            self._print()

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def refresh(self) -> None:
        self._print()

    def line(self) -> str:
        elapsed = time.time() - self.started
        done = f"{self.n:g}/{self.total:g}" if self.total else f"{self.n:g}"
        percent = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
        return f"{self.desc + ': ' if self.desc else ''}{done} {self.unit}{percent}, {elapsed:.0f} s, {rate:.3g} {self.unit}/s{extra}"

    def _print(self) -> None:
        print(self.line(), file=self.file, flush=True)
        self.last_printed = time.time()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._print()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
