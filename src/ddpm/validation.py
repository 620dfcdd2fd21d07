"""The one mechanism that checks numeric settings: each declares its range once, as a ``Bounds``.

A config field carries its Bounds in the dataclass field's metadata (``bounded``) and ``check_fields`` checks
every such field of a config object; a command-line flag parses through ``flag`` (its own Bounds) or
``flag_of`` (the Bounds of the config field it stands for, so the flag and the key can never disagree).
Whatever the bounds, a float must be finite and an integer must fit in 64 bits (torch's and numpy's seeds and
counters): NaN, ±inf and 10**30 are never valid settings. A failure is one ``DdpmError`` sentence naming the
setting, the range and the value.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import DdpmError

INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Bounds:
    """lo ≤ value ≤ hi (either end None: unbounded; ``lo_open``/``hi_open``: strict)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, value: float) -> bool:
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def describe(self, integer: bool) -> str:
        """What a valid value is, in words: "a positive integer", "zero or more", "in [0, 1)", "in 1..10000"."""
        lo, hi = self.lo, self.hi
        if integer and lo is not None and self.lo_open:  # integers: x > a is x ≥ a + 1
            lo = lo + 1
        if integer and hi is not None and self.hi_open:
            hi = hi - 1
        kind = "an integer" if integer else "a finite number"
        if lo is None and hi is None:
            return kind
        if hi is None:
            if lo == 0 and (integer or not self.lo_open):
                return "zero or more"
            if integer:
                return "a positive integer" if lo == 1 else f"an integer ≥ {_num(lo)}"
            return ("positive" if lo == 0 else f"> {_num(lo)}") if self.lo_open else f"≥ {_num(lo)}"
        if lo is None:
            return f"≤ {_num(hi)}" if integer or not self.hi_open else f"< {_num(hi)}"
        if integer:
            return f"in {_num(lo)}..{_num(hi)}"
        return f"in {'(' if self.lo_open else '['}{_num(lo)}, {_num(hi)}{')' if self.hi_open else ']'}"


POSITIVE_INT = Bounds(lo=1)
NON_NEGATIVE = Bounds(lo=0)
POSITIVE = Bounds(lo=0, lo_open=True)
UNIT = Bounds(0, 1)
UNIT_HALF_OPEN = Bounds(0, 1, hi_open=True)
SEED = Bounds(0, INT64_MAX)
IMAGE_SIZE = Bounds(4, 4096)  # pixels a side: the U-Net needs 4 (two 2× levels); 4096 is past any dataset here


def bounded(default: Any, bounds: Bounds, **kwargs: Any) -> Any:
    """A dataclass field whose value (or, for a tuple, each item; None is always allowed) must lie in ``bounds``."""
    return field(default=default, metadata={"bounds": bounds}, **kwargs)


def check_number(value: Any, integer: bool, bounds: Bounds | None, name: str) -> None:
    """Raise one DdpmError sentence unless ``value`` is finite (a float), fits in 64 bits (an int) and lies in ``bounds``."""
    bounds = bounds or Bounds()
    what = bounds.describe(integer)
    unbounded = bounds.lo is None or bounds.hi is None  # then say what the universal rule adds
    if integer and abs(value) > INT64_MAX:
        raise DdpmError(f"{name} must be {what}{' below 2^63' if unbounded else ''}, got {value!r}")
    if not integer and not math.isfinite(value):
        finite = unbounded and not what.startswith("a finite")
        raise DdpmError(f"{name} must be {'finite and ' if finite else ''}{what}, got {value!r}")
    if not bounds.contains(value):
        raise DdpmError(f"{name} must be {what}, got {value!r}")


def check_fields(config: Any, prefix: str) -> None:
    """Check every int and float field of the dataclass ``config`` (named ``prefix.field``) by ``check_number``."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        kind = _number_kind(hints[f.name])
        value = getattr(config, f.name)
        if kind is None or value is None:
            continue
        items = enumerate(value) if isinstance(value, tuple) else [(None, value)]
        for i, item in items:
            check_number(item, kind is int, f.metadata.get("bounds"), f"{prefix}.{f.name}" + ("" if i is None else f"[{i}]"))


def numeric_fields(cls: type) -> list[tuple[str, bool]]:
    """(name, has its own Bounds) for every int or float field of a config dataclass (for the test that each has)."""
    hints = typing.get_type_hints(cls)
    return [(f.name, "bounds" in f.metadata) for f in dataclasses.fields(cls) if _number_kind(hints[f.name])]


def flag(kind: type, bounds: Bounds | None = None) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses an int or a float and applies ``check_number`` (a refusal is argparse's
    one line: "argument --num: must be a positive integer, got 0")."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {(bounds or Bounds()).describe(kind is int)}, got {text!r}") from None
        try:
            check_number(value, kind is int, bounds, "value")
        except DdpmError as e:  # the same sentence as for a config key, less the name
            raise argparse.ArgumentTypeError(str(e).removeprefix("value ")) from None
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def flag_of(cls: type, name: str) -> Callable[[str], Any]:
    """The argparse type of a flag that sets the config field ``cls.name``: that field's kind and Bounds."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return flag(_number_kind(typing.get_type_hints(cls)[name]), f.metadata.get("bounds"))


def _number_kind(hint: Any) -> type | None:
    """int or float for a numeric field (also Optional[…] and tuple[int, ...]); None for any other."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        rest = [a for a in args if a is not type(None)]
        return _number_kind(rest[0]) if len(rest) == 1 else None
    if origin is tuple:
        return _number_kind(args[0]) if args else None
    return hint if hint in (int, float) else None


def _num(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)
