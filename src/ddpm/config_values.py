"""Turning TOML data into typed config values: each dataclass field's type hint decides what it accepts
(``Optional``, ``Literal`` choices, bool, int, float, str, tuples of ints); anything else is one sentence naming the
key and what it must be. The schema itself — the dataclasses — lives in ``ddpm.config``."""
from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from typing import Any, Literal

from .errors import DdpmError

# what the data decides in a network's config (image size, input channels): never read from a file
DERIVED_MODEL_KEYS = ("image_size", "in_channels")


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word such as cosine


def build(cls: type, raw: Any, where: str):
    if not isinstance(raw, dict):
        raise DdpmError(f"{where} must be a table of keys")
    type_hints = typing.get_type_hints(cls)
    derived = DERIVED_MODEL_KEYS if hasattr(cls, "ARCHITECTURE") else ()  # a network's: what the data decides
    hints = {f.name: type_hints[f.name] for f in dataclasses.fields(cls) if f.name not in derived}
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise DdpmError(f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(hints)}")
    return cls(**{k: coerce(v, hints[k], f"{where} {k}") for k, v in raw.items()})


def coerce(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:  # Optional[X], X | None
        if value is None:
            return None
        return coerce(value, next(a for a in args if a is not type(None)), where)
    if origin is Literal:
        if value not in args:
            raise DdpmError(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise DdpmError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DdpmError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DdpmError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise DdpmError(f"{where} must be a string, got {value!r}")
        return value
    if hint is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise DdpmError(f"{where} must be a list of integers, got {value!r}")
        return tuple(value)
    raise TypeError(f"unsupported config type {hint}")  # a bug in this module, not a user error
