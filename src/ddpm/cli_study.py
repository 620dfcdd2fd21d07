"""``ddpm study``: one of the write-ups' experiments, every arm trained alike and scored with its uncertainty."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cli_flags import FMT, POSITIVE_FLAG, shared
from .config import TrainConfig
from .data import DATASETS
from .errors import DdpmError
from .metrics.domain import DOMAIN_OF
from .metrics.nll_bound import NLL_IMAGES
from .study.catalog import NLL_TIMESTEPS
from .validation import Bounds, flag, flag_of


def add_parser(sub) -> None:
    p = sub.add_parser("study", help="run one of the write-ups' experiments: every arm trained alike, scored with uncertainty",
                       formatter_class=FMT, parents=[shared("device")],
                       description="Train every arm of study NAME with the same budget (the mnist-demo recipe plus the arm's "
                                   "setting), score each on the same number of samples from the same seeds, and write "
                                   "OUT/study.md, OUT/study.json and OUT/report.html. A killed study continues where it "
                                   "stopped when run again with the same flags. ddpm study --list names the studies.")
    p.add_argument("name", nargs="?", help="the study (see --list)")
    p.add_argument("--list", action="store_true", help="name each study, its arms, claim, source and default budget")
    p.add_argument("--out", type=Path, help="the study directory (each arm an ordinary run directory under OUT/arms/)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=flag_of(TrainConfig, "max_minutes"), help="training minutes per arm (default: the study's)")
    budget.add_argument("--steps", type=flag_of(TrainConfig, "steps"), help="training steps per arm instead of minutes (reproducible)")
    p.add_argument("--seeds", type=POSITIVE_FLAG, default=1, help="train every arm this many times (seeds 0..K-1)")
    p.add_argument("--samples", type=flag(int, Bounds(2, 1_000_000)), help="samples scored per arm (default: the study's, "
                   "else 1000, and fewer in proportion under a smaller --minutes, at least 100)")
    p.add_argument("--nll", action="store_true", help="also score every arm's NLL bound in bits/dim (on by default in the "
                   "studies whose claims are about it: objectives, variance, budget)")
    p.add_argument("--nll-images", type=POSITIVE_FLAG, default=NLL_IMAGES, help="test images for the NLL bound (a "
                   f"stratified estimate over {NLL_TIMESTEPS} timesteps, the same images and timesteps in every arm)")
    p.add_argument("--only", action="append", metavar="ARM", help="run only this arm (repeatable); a later run without "
                   "--only gathers the table")
    p.add_argument("--data", choices=DATASETS, help="dataset (default: mnist)")
    p.add_argument("--data-dir", help="directory of the dataset files")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a key in every arm alike")
    p.add_argument("--inception", action="store_true", help="score with Inception features (default: the dataset's own "
                   "classifier where ddpm ships one, MNIST and Fashion-MNIST)")


def cmd_study(args: argparse.Namespace) -> int:
    from .models import pick_device
    from .study import StudySettings, describe, find_study, run_study, write

    if args.list:
        print(describe())
        return 0
    if args.name is None or args.out is None:
        raise DdpmError("name a study and its directory: ddpm study NAME --out DIR (ddpm study --list names them)")
    from .study.runner import labelled_overrides

    study = find_study(args.name)
    dataset = args.data or "mnist"
    overrides = ([f"data.dataset={json.dumps(dataset)}"] + ([f"data.data_dir={json.dumps(args.data_dir)}"] if args.data_dir else [])
                 + labelled_overrides(study, dataset, args.data_dir) + args.set)
    feature = "inception" if args.inception or dataset not in DOMAIN_OF else "domain"
    nll = args.nll or study.nll
    if nll and study.samples_one_model:
        raise DdpmError(f"study {study.name!r} scores one model in every arm, whose NLL the arms do not change; "
                        "score it once with ddpm eval RUN --nll")
    if nll and study.loss_times:
        raise DdpmError(f"study {study.name!r} scores held-out losses at single t, not samples or NLL; "
                        "score its run with ddpm eval RUN --nll")
    minutes = None if args.steps else (args.minutes or study.minutes)
    settings = StudySettings(study.name, minutes, args.steps, args.seeds, args.samples or study.default_samples(minutes),
                             tuple(overrides), feature, nll, args.nll_images)
    results = run_study(study, args.out, settings, device=pick_device(args.device), only=args.only, data_dir=args.data_dir,
                        log=lambda m: print(m, file=sys.stderr))
    if results is not None:
        paths = write(study, results, args.out)
        print(paths["md"].read_text())
        print(f"ddpm study: wrote {paths['md']}, {paths['json']} and {paths['html']}", file=sys.stderr)
    return 0
