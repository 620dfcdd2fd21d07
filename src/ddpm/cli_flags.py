"""The pieces of the ``ddpm`` command line that several commands share: the help formatter, argparse types and the
options declared once (``shared``)."""
from __future__ import annotations

import argparse

from .config import TrainConfig
from .validation import NON_NEGATIVE, POSITIVE_INT, flag, flag_of


class FMT(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show or the help already says it."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


DEVICES = "auto, cpu, cuda or cuda:N"
# argparse types: each flag's range and finiteness checked as it is parsed (ddpm.validation)
POSITIVE_FLAG = flag(int, POSITIVE_INT)
SEED_FLAG = flag_of(TrainConfig, "seed")


def shared(*flags: str) -> argparse.ArgumentParser:
    """A parent parser with the options several commands share, each declared here once."""
    p = argparse.ArgumentParser(add_help=False)
    if "device" in flags:
        p.add_argument("--device", default="auto", help=DEVICES)
    if "seed" in flags:
        p.add_argument("--seed", type=SEED_FLAG, default=0, help="noise seed")
    if "batch-size" in flags:
        p.add_argument("--batch-size", type=POSITIVE_FLAG, default=256, help="samples per batch")
    if "no-ema" in flags:
        p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of their EMA")
    return p


def weights(text: str) -> tuple[float, ...]:
    """A --weights value: comma-separated guidance strengths ≥ 0."""
    return tuple(flag(float, NON_NEGATIVE)(part) for part in text.split(","))
