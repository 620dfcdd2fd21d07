"""The pieces of the ``ddpm`` command line that several commands share: the help formatter, argparse types and the
options declared once (``shared``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .config import SAMPLER_NAMES, SampleConfig, TrainConfig
from .errors import DdpmError
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


def sampling_flags(p: argparse.ArgumentParser, steps_type, steps_help: str) -> None:
    """--sampler, --steps, --eta, --guidance, --no-clip: each left unset keeps the run's own [sample] setting."""
    g = p.add_argument_group("sampling (each flag not given keeps the run's own [sample] setting)")
    g.add_argument("--sampler", choices=SAMPLER_NAMES, help="sampler (default: the run's sample.sampler)")
    g.add_argument("--steps", type=steps_type, help=f"{steps_help} (default: the run's sample.steps)")
    g.add_argument("--eta", type=flag_of(SampleConfig, "eta"), help="DDIM stochasticity in [0, 1] (ddim only; default: the run's sample.eta)")
    g.add_argument("--guidance", type=flag_of(SampleConfig, "guidance"), help="classifier-free guidance weight w ≥ 0 for a conditional model: "
                   "(1 + w)·ε(x, label) − w·ε(x, no label); 0 is plain conditional sampling (default: the run's sample.guidance)")
    g.add_argument("--guidance-interval", type=interval_flag, metavar="LO,HI",
                   help="apply the guidance only while t/T is in [LO, HI], e.g. 0.1,0.6 (Kynkäänniemi et al. 2024); "
                        "default: the run's sample.guidance_from,guidance_to (0,1: at every step)")
    g.add_argument("--context", metavar="C", help="context vectors for a model trained on data.context: comma-separated "
                   "numbers such as 0,0,1,0,0 (any vector, e.g. the mixture 0,0.5,0,0.5,0) or FILE.npy ([n, k]: sample i "
                   "gets row i mod n); default: the one-hot classes in turn for a onehot run, else the null context")
    g.add_argument("--classifier", type=Path, metavar="CLF", help="guide by this noise-aware classifier (ddpm train-classifier) "
                   "towards the labels: ancestral DDPM moves its mean by sΣ∇log p(y|x_t), DDIM and DPM-Solver++ their noise "
                   "estimate by −s√(1−ᾱ)∇log p(y|x_t) (Dhariwal & Nichol 2021); the model may be unconditional")
    g.add_argument("--classifier-scale", type=flag(float, NON_NEGATIVE), default=None, metavar="S",
                   help="the classifier scale s ≥ 0 (needs --classifier; default 1 with it)")
    g.add_argument("--no-clip", dest="clip_x0", action="store_const", const=False,
                   help="do not clamp the predicted x0 to [-1, 1] at each step (default: the run's sample.clip_x0)")


def interval_flag(text: str) -> tuple[float, float]:
    """A --guidance-interval value: LO,HI, fractions of T with 0 ≤ LO < HI ≤ 1."""
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"must be LO,HI (two fractions of T), got {text!r}")
    lo, hi = (flag_of(SampleConfig, name)(part) for name, part in zip(("guidance_from", "guidance_to"), parts))
    if lo >= hi:
        raise argparse.ArgumentTypeError(f"must have LO < HI, got {text}")
    return lo, hi


def steps_flag(text: str) -> int | str:
    """A --steps value: a positive integer, or 'all' (all T steps)."""
    return "all" if text.strip() == "all" else POSITIVE_FLAG(text)


def sample_flags(args: argparse.Namespace) -> dict:
    """The sampling flags the user gave (None: not given; the run's [sample] setting stays)."""
    return {"sampler": args.sampler, "eta": args.eta, "guidance": args.guidance, "clip_x0": args.clip_x0,
            "guidance_interval": args.guidance_interval}


def context_flag(args: argparse.Namespace, config, num: int):
    """--context as vectors [num, k] for the run's model (rows cycled), or None when not given."""
    from .data.context import parse_vector
    from .conditioning import check_contexts

    if args.context is None:
        return None
    if getattr(args, "label", None) is not None:
        raise DdpmError("give --label or --context, not both (a label is the one-hot context of a onehot run)")
    return check_contexts(parse_vector(args.context), getattr(config.model, "context_dim", None), num)


def classifier_flags(args: argparse.Namespace) -> tuple[Path | None, float]:
    """(--classifier, its scale: default 1 with a classifier); a scale without a classifier is refused."""
    if args.classifier is None:
        if args.classifier_scale is not None:
            raise DdpmError("--classifier-scale needs --classifier CLF (the noise-aware classifier to guide by)")
        return None, 0.0
    return args.classifier, 1.0 if args.classifier_scale is None else args.classifier_scale
