"""The ``ddpm`` command: parses strings, calls the library. A user's mistake ends in one sentence, exit 2."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import __version__, cli_eval, cli_study, cli_viz, distributed
from .cli_flags import (FMT, POSITIVE_FLAG, SEED_FLAG, classifier_flags, context_flag, sample_flags, sampling_flags,
                        shared as shared_flags, steps_flag)
from .config import CLASSIFIER_TRAINING, FAST_CUDA, RESUME_CHANGEABLE, DataConfig, RunConfig, TrainConfig
from .data import DATASETS
from .errors import DdpmError, TrainingDiverged
from .nets import is_classifier
from .validation import NON_NEGATIVE, POSITIVE, flag, flag_of

EPILOG = "Run 'ddpm COMMAND --help' for the options of one command."


def _training_flags(p: argparse.ArgumentParser, what: str) -> None:
    """The flags of a training command (``train``, ``train-classifier``): where, how long, on what, resume, force."""
    p.add_argument("--data", choices=DATASETS, help=f"dataset (default: {what})")
    p.add_argument("--data-dir", help="directory of the dataset files (IDX files, cifar-10-batches-py, image folder)")
    p.add_argument("--out", type=Path, help="run directory for checkpoints, logs and pictures (required unless --resume names the run)")
    p.add_argument("--steps", type=flag_of(TrainConfig, "steps"), help="number of optimiser steps (train.steps)")
    p.add_argument("--max-minutes", type=flag_of(TrainConfig, "max_minutes"), help="stop after this much wall time, saving a checkpoint (train.max_minutes)")
    p.add_argument("--batch-size", type=flag_of(TrainConfig, "batch_size"), help="images per step (train.batch_size)")
    p.add_argument("--limit", type=flag_of(DataConfig, "limit"), help="train on a random subset of N images (data.limit)")
    p.add_argument("--seed", type=SEED_FLAG, help="seed of weights, data order and noise (train.seed)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config key, e.g. --set model.base_channels=32 (repeatable)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_OR_CKPT",
                   help="continue a run exactly where its latest checkpoint (or the named checkpoint file) left it, with its saved "
                        "config (only --steps and --max-minutes may change); without a value, the run in --out")
    p.add_argument("--force", action="store_true", help="replace a run already in --out: its files are set aside (RUN/.replaced-*/) "
                   "when the new run starts training and deleted once the new run's first checkpoint is complete")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a diffusion model", formatter_class=FMT, parents=[shared_flags("device")],
                       description="Train a denoiser. Settings come from the defaults, then --config, then the flags, then --set. "
                                   "A folder dataset holds out data.test_fraction of its images (or its test/ subfolder) as "
                                   "the test split, never trained on.")
    p.add_argument("--config", type=Path, help="a TOML config (see configs/); its keys are those of --set")
    _training_flags(p, "the config's, mnist")
    p.add_argument("--context", help="condition on a float vector per image (data.context): onehot (the labels as one-hot "
                   "vectors), json (a folder dataset's sidecars: cat.png → cat.json holding a list of numbers) or FILE.npy "
                   "([N, k], one row per training image in the dataset's order)")
    p.add_argument("--fast", action="store_true", help="CUDA: train the fastest honest way, "
                   + ", ".join(f"{k}={json.dumps(v)}" for k, v in FAST_CUDA.items()) + " (bench/gpu.py measures each)")

    p = sub.add_parser("train-classifier", help="train a noise-aware classifier for classifier guidance", formatter_class=FMT,
                       parents=[shared_flags("device")],
                       description="Train the classifier p(y | x_t, t) of classifier guidance (Dhariwal & Nichol 2021) on x_t at "
                                   "random t of RUN's noise schedule, with RUN's data, image size and channels (another labelled "
                                   "dataset with --data). Settings: " + ", ".join(f"train.{k}={v}" for k, v in CLASSIFIER_TRAINING.items())
                                   + ", then the flags, then --set (model.* are the U-Net encoder's keys). At the end its accuracy on "
                                   "noisy test images per band of timesteps is printed and logged (the plot: ddpm report OUT).")
    p.add_argument("run", nargs="?", help="the diffusion run (directory or checkpoint) to guide; not needed with --resume")
    _training_flags(p, "RUN's")
    p.add_argument("--eval-images", type=POSITIVE_FLAG, default=1000, help="test images for the accuracy per timestep band")


def _sample_parser(sub) -> None:
    p = sub.add_parser("sample", help="generate images from a checkpoint", formatter_class=FMT,
                       parents=[shared_flags("device", "seed", "batch-size", "no-ema")],
                       description="Generate images with the run's [sample] settings, replaced by the sampling flags given. "
                                   "OUT ending in .npz gets arr_0 (uint8 NHWC) and arr_1 (labels, when conditional); "
                                   "ending in .png gets one grid; anything else is a directory of PNGs.")
    p.add_argument("checkpoint", help="a run directory or a .safetensors checkpoint")
    p.add_argument("-n", "--num", type=POSITIVE_FLAG, default=64,
                   help="number of samples (under torchrun write -n: torchrun's parser takes --num for its --numa-binding)")
    p.add_argument("--label", type=flag(int, NON_NEGATIVE), default=None,
                   help="class label for a conditional or classifier-guided model (default: cycle through the classes)")
    p.add_argument("--out", type=Path, required=True, help="FILE.npz, FILE.png or DIR/")
    sampling_flags(p, steps_flag, "sampling steps (network evaluations), or 'all' (= T)")


def _demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="train the CPU demo on MNIST, sample and summarise", formatter_class=FMT, parents=[shared_flags("device")],
                       description="Train configs/mnist-demo.toml (a few minutes on a laptop CPU), draw 100 samples (ten of each digit, "
                                   "classifier-free guidance w = 2) and write samples.png, samples.npz, summary.md and report.html "
                                   "into the run directory.")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory (overwritten)")
    p.add_argument("--max-minutes", type=flag_of(TrainConfig, "max_minutes"), default=None, help="training time budget (default: the preset's)")
    p.add_argument("--finish-within", type=flag(float, POSITIVE), default=9.25, metavar="MINUTES",
                   help="end the whole demo (training, sampling, report) within this many minutes of --started-at: "
                        "training stops early when the work after it would not fit")
    p.add_argument("--started-at", type=flag(float), default=None, metavar="UNIX_TIME",
                   help="when the demo's clock started (make demo passes its own start, so the install counts); default: now")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddpm", description="Denoising diffusion probabilistic models.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"ddpm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub)
    _sample_parser(sub)
    _demo_parser(sub)
    cli_eval.add_parsers(sub)
    cli_viz.add_parsers(sub)
    cli_study.add_parser(sub)
    return parser


# the flags of the settings a resumed run may change (config.RESUME_CHANGEABLE, the one home of that rule)
# (train.log_to may change too, from Python: ddpm.fit(..., resume=True) with another config)
RESUME_FLAGS = " and ".join("--" + key.partition(".")[2].replace("_", "-") for key in RESUME_CHANGEABLE
                            if key in ("train.steps", "train.max_minutes"))


def _start_training(args: argparse.Namespace, device, new_config, extra: list[str] = (), classifier: bool = False):
    """The Trainer of a training command: resuming (``--resume``, only --steps and --max-minutes may change) or a new
    run from ``new_config()``, then the flags, then ``extra`` and --set. ``classifier``: the run resumed must be a
    noise-aware classifier (``train-classifier``)."""
    from .train import Trainer
    from .train.run_dir import resume_point

    if args.resume:
        if getattr(args, "config", None) or getattr(args, "run", None) or getattr(args, "context", None) or args.data or args.data_dir or args.set or args.limit \
                or args.batch_size or args.seed is not None or args.force or getattr(args, "fast", False):
            raise DdpmError(f"--resume continues a run with its saved config; only {RESUME_FLAGS} may change")
        out, checkpoint = _resume_target(args.resume, args.out)
        _, saved = resume_point(out, checkpoint)
        if classifier and not is_classifier(saved.model):
            raise DdpmError(f"{out} is a diffusion run, not a classifier; resume it with ddpm train --resume")
        changes = {key: getattr(args, key.partition(".")[2], None) for key in RESUME_CHANGEABLE}  # the flags given
        config = saved.with_overrides([f"{k}={json.dumps(v)}" for k, v in changes.items() if v is not None])
        return Trainer(config, out, device, resume=checkpoint or True, quiet=args.quiet)
    if args.out is None:
        raise DdpmError("--out is required (the run directory to create)")
    flags = {"data.dataset": args.data, "data.data_dir": args.data_dir, "train.steps": args.steps,
             "train.max_minutes": args.max_minutes, "train.batch_size": args.batch_size, "data.limit": args.limit,
             "train.seed": args.seed, "data.context": getattr(args, "context", None)}
    overrides = [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None] + list(extra) + args.set
    return Trainer(new_config().with_overrides(overrides), args.out, device, force=args.force, quiet=args.quiet)


def _train_and_report(args: argparse.Namespace, trainer) -> dict:
    """Say what is trained, train, print the summary (rank 0)."""
    verb = f"resuming at step {trainer.step}" if args.resume else "training"
    if trainer.world.is_main:
        print(f"{verb} {trainer.config.model.ARCHITECTURE} ({sum(p.numel() for p in trainer.model.parameters()) / 1e6:.2f}M parameters) "
              f"on {trainer.data.name} ({len(trainer.data)} images) on {trainer.device}"
              + (f" × {trainer.world.size} processes" if trainer.world.distributed else "") + f" → {trainer.out}", file=sys.stderr)
    summary = trainer.run()
    if trainer.world.is_main:
        print(json.dumps(summary))
    return summary


def cmd_train(args: argparse.Namespace) -> int:
    from .models import pick_device

    device = pick_device(args.device)
    if args.fast and not args.resume and device.type != "cuda":  # (with --resume: refused as any other change)
        raise DdpmError(f"--fast sets the CUDA path (bf16, TF32, channels-last, torch.compile); on {device} keep the defaults")
    fast = [f"{k}={json.dumps(v)}" for k, v in FAST_CUDA.items()] if args.fast else []
    trainer = _start_training(args, device, lambda: RunConfig.from_toml(args.config) if args.config else RunConfig(), fast)
    _train_and_report(args, trainer)
    return 0


def cmd_train_classifier(args: argparse.Namespace) -> int:
    from .checkpoint import load_config
    from .config import classifier_config
    from .evaluate import evaluate_classifier, format_accuracy
    from .models import pick_device

    device = pick_device(args.device)
    if not args.resume and args.run is None:
        raise DdpmError("name the diffusion run to train a classifier for (ddpm train-classifier RUN --out CLF)")
    trainer = _start_training(args, device, lambda: classifier_config(load_config(args.run)), classifier=True)
    _train_and_report(args, trainer)
    if trainer.world.is_main:
        record = evaluate_classifier(trainer.out, images=args.eval_images, device=device)
        print(format_accuracy(record), file=sys.stderr)
    return 0


def _resume_target(resume, out: Path | None) -> tuple[Path, Path | None]:
    """(run directory, the checkpoint file named or None for the latest) from --resume [RUN_OR_CKPT] and --out."""
    if resume is True:
        if out is None:
            raise DdpmError("--resume needs the run: --resume RUN or --out RUN --resume")
        return out, None
    target = Path(resume)
    if target.is_file():
        run = target.parent.parent
        if out is not None and out.resolve() != run.resolve():
            raise DdpmError(f"--out {out} is not the run of checkpoint {target} ({run})")
        return run, target
    if not target.is_dir():
        raise DdpmError(f"--resume {target}: no such run directory or checkpoint file")
    return target, None


def cmd_sample(args: argparse.Namespace) -> int:
    from .denoiser import Denoiser
    from .conditioning import labels_for
    from .generation import generate_across_ranks, sample_labels
    from .io import check_writable
    from .models import load_classifier, pick_device
    from .progress import progress_bar
    from .sample_files import check_fits_in_memory, write_samples, writes_one_file

    device = pick_device(args.device)
    denoiser = Denoiser.from_pretrained(args.checkpoint, use_ema=not args.no_ema, device=device)
    clf_path, scale = classifier_flags(args)
    classifier = load_classifier(clf_path, denoiser.config, device=device) if clf_path else None
    num_classes = denoiser.classes_shown or (classifier.config.num_classes if classifier else None)
    contexts = context_flag(args, denoiser.config, args.num)
    labels = labels_for(num_classes, args.num, args.label) if args.label is not None else None
    plan = denoiser.plan(**sample_flags(args), steps=denoiser.num_timesteps if args.steps == "all" else args.steps,
                         classifier=classifier, classifier_scale=scale, labels=labels, contexts=contexts)
    labels = sample_labels(denoiser, plan, args.num)
    check_writable(args.out)  # before the sampling, which a write failure would throw away
    if writes_one_file(args.out):
        check_fits_in_memory(args.num, denoiser.shape)
    # a folder of PNGs is written batch by batch (sample i's noise depends only on the seed and i: same images)
    chunk = args.num if writes_one_file(args.out) else args.batch_size
    columns = num_classes if num_classes and args.label is None else None
    world = distributed.world()
    started = time.time()
    with progress_bar(args.num, unit="img", desc="sampling", disable=not world.is_main) as bar:
        for start in range(0, args.num, chunk):
            stop = min(start + chunk, args.num)
            # under torchrun the ranks share the samples and rank 0 writes them: the same images as one process
            images = generate_across_ranks(denoiser, plan, stop - start, seed=args.seed, batch_size=args.batch_size,
                                           device=device, first_index=start, progress=bar.update)
            if world.is_main:
                write_samples(images, None if labels is None else labels[start:stop], args.out, columns=columns, first_index=start)
    distributed.barrier()
    if world.is_main:
        print(f"wrote {args.num} samples ({plan.describe(denoiser.num_timesteps)}, checkpoint step {denoiser.step}) "
              f"to {args.out} in {time.time() - started:.1f}s" + (f" on {world.size} processes" if world.distributed else ""),
              file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .models import pick_device

    started = time.time() if args.started_at is None else args.started_at
    summary = run_demo(args.out, pick_device(args.device), started=started, finish_within=args.finish_within,
                       max_minutes=args.max_minutes, log=lambda m: print(m, file=sys.stderr))
    print(f"ddpm demo: done in {summary['total_s'] / 60:.1f} min; report in {summary['report_path']}; samples in "
          f"{args.out / 'samples.png'}, summary in {summary['summary_path']}", file=sys.stderr)
    return 0


DISTRIBUTED_COMMANDS = ("train", "train-classifier", "sample", "eval", "fid", "fid-stats")
COMMANDS = {"train": cmd_train, "train-classifier": cmd_train_classifier, "sample": cmd_sample, "demo": cmd_demo,
            **cli_eval.COMMANDS, "report": cli_viz.cmd_report, "viz": cli_viz.cmd_viz, "study": cli_study.cmd_study}


# Library errors name settings, not flags (a notebook user has no flags); the command line says them as its flags.
FLAG_OF_SETTING = {"resume=True": "--resume", "force=True": "--force", "data.data_dir": "--data-dir",
                   "device cuda was asked for": "--device cuda was asked for"}


def in_flags(message: str) -> str:
    """A library error as the command line says it: each setting named by the flag that sets it."""
    for setting, option in FLAG_OF_SETTING.items():
        message = message.replace(setting, option)
    return message


def main(argv: list[str] | None = None) -> int:
    """The one error boundary: a user's mistake (DdpmError) is one sentence and exit 2, a diverged run exit 3,
    a signal during training exit 128 + its number (after the checkpoint), never a traceback for either."""
    from .train import Interrupted

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse has printed its one line (a refused choice, --help): return its status
        return int(e.code or 0)
    try:
        if args.command in DISTRIBUTED_COMMANDS and distributed.launched_by_torchrun():
            from .models import pick_device

            distributed.init(pick_device(args.device).type)
        elif distributed.launched_by_torchrun():
            raise DdpmError(f"ddpm {args.command} runs in one process; under torchrun: {', '.join(DISTRIBUTED_COMMANDS)}")
        return COMMANDS[args.command](args)
    except DdpmError as e:
        print(f"ddpm {args.command}: error: {in_flags(str(e))}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"ddpm {args.command}: error: {e}", file=sys.stderr)
        return 3
    except Interrupted as e:
        print(f"ddpm {args.command}: {e}", file=sys.stderr)
        return 128 + e.signum
    except OSError as e:  # a file the user named cannot be written or read (permissions, full disk, …)
        print(f"ddpm {args.command}: error: {e.strerror or e}: {e.filename or ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ddpm {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        distributed.finish()


if __name__ == "__main__":
    sys.exit(main())
