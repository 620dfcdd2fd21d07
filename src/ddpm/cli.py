"""The ``ddpm`` command: parses strings, calls the library. A user's mistake ends in one sentence, exit 2."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .config import RunConfig
from .errors import DdpmError
from .sampling import SAMPLERS

EPILOG = "Run 'ddpm COMMAND --help' for the options of one command."


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a diffusion model", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Train a denoiser. Settings come from the defaults, then --config, then the flags, then --set.")
    p.add_argument("--config", type=Path, help="a TOML config (see configs/); its keys are those of --set")
    p.add_argument("--data", help="dataset: mnist, mnist-idx, fashion-mnist, cifar10 or folder (default: the config's, mnist)")
    p.add_argument("--data-dir", help="directory of the dataset files (IDX files, cifar-10-batches-py, image folder)")
    p.add_argument("--out", type=Path, required=True, help="run directory for checkpoints, logs and pictures")
    p.add_argument("--steps", type=int, help="number of optimiser steps (train.steps)")
    p.add_argument("--max-minutes", type=float, help="stop after this much wall time, saving a checkpoint (train.max_minutes)")
    p.add_argument("--batch-size", type=int, help="images per step (train.batch_size)")
    p.add_argument("--limit", type=int, help="train on a random subset of N images (data.limit)")
    p.add_argument("--seed", type=int, help="seed of weights, data order and noise (train.seed)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config key, e.g. --set model.base_channels=32 (repeatable)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite a run already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _sample_parser(sub) -> None:
    p = sub.add_parser("sample", help="generate images from a checkpoint", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Generate images. OUT ending in .npz gets arr_0 (uint8 NHWC) and arr_1 (labels, when "
                                   "conditional); ending in .png gets one grid; anything else is a directory of PNGs.")
    p.add_argument("checkpoint", help="a run directory or a .safetensors checkpoint")
    p.add_argument("--num", type=int, default=64, help="number of samples")
    p.add_argument("--sampler", default="dpm-solver++", help=f"one of {', '.join(SAMPLERS)}")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: 20 for dpm-solver++, 50 for ddim, all for ddpm)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM stochasticity in [0, 1]")
    p.add_argument("--label", type=int, default=None, help="class label for a conditional model (default: cycle through classes)")
    p.add_argument("--out", type=Path, required=True, help="FILE.npz, FILE.png or DIR/")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--batch-size", type=int, default=256, help="samples per batch")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of their EMA")
    p.add_argument("--no-clip", action="store_true", help="do not clamp the predicted x0 to [-1, 1] at each step")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="train the CPU demo on MNIST, sample and summarise", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Train configs/mnist-demo.toml (a few minutes on a laptop CPU), draw 64 samples and write "
                                   "samples.png, samples.npz and summary.md into the run directory.")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory (overwritten)")
    p.add_argument("--max-minutes", type=float, default=None, help="training time budget (default: the preset's)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddpm", description="Denoising diffusion probabilistic models.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"ddpm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub)
    _sample_parser(sub)
    _demo_parser(sub)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from .models import pick_device
    from .train import Trainer

    config = RunConfig.from_toml(args.config) if args.config else RunConfig()
    flags = {"data.dataset": args.data, "data.data_dir": args.data_dir, "train.steps": args.steps,
             "train.max_minutes": args.max_minutes, "train.batch_size": args.batch_size, "data.limit": args.limit,
             "train.seed": args.seed}
    overrides = [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None] + args.set
    config = config.with_overrides(overrides)
    device = pick_device(args.device)
    trainer = Trainer(config, args.out, device, resume=args.resume, force=args.force, quiet=args.quiet)
    print(f"training {trainer.config.model.architecture} ({sum(p.numel() for p in trainer.model.parameters()) / 1e6:.2f}M parameters) "
          f"on {trainer.data.name} ({len(trainer.data)} images) on {device} → {args.out}", file=sys.stderr)
    summary = trainer.run()
    print(json.dumps(summary))
    return 0


def write_samples(images: torch.Tensor, labels: torch.Tensor | None, out: Path) -> Path:
    """uint8 [N, C, H, W] → .npz (arr_0 NHWC, arr_1 labels), a .png grid, or a directory of PNGs."""
    from PIL import Image

    from .viz import save_grid

    nhwc = images.permute(0, 2, 3, 1).numpy()
    if out.suffix == ".npz":
        out.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"arr_0": nhwc} if labels is None else {"arr_0": nhwc, "arr_1": labels.numpy()}
        np.savez(out, **arrays)
    elif out.suffix == ".png":
        save_grid(images, out, scale=2)
    else:
        out.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(nhwc):
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(out / f"{i:06d}.png")
    return out


def cmd_sample(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .generate import generate
    from .models import build_schedule, load_model, pick_device

    if args.sampler not in SAMPLERS:
        raise DdpmError(f"unknown sampler {args.sampler!r}; expected one of {', '.join(SAMPLERS)}")
    if args.num < 1 or args.batch_size < 1:
        raise DdpmError("--num and --batch-size must be positive")
    device = pick_device(args.device)
    model, config, step = load_model(args.checkpoint, use_ema=not args.no_ema, device=device)
    num_classes = config.model.num_classes
    labels = None
    if num_classes:
        if args.label is not None and not 0 <= args.label < num_classes:
            raise DdpmError(f"--label must be in 0..{num_classes - 1} for this model")
        labels = torch.full((args.num,), args.label) if args.label is not None else torch.arange(args.num) % num_classes
    elif args.label is not None:
        raise DdpmError("--label was given but this model is unconditional")
    steps = args.steps or {"ddpm": None, "ddim": 50}.get(args.sampler, 20)
    started = time.time()
    with tqdm(total=args.num, unit="img", file=sys.stderr) as bar:
        try:
            images = generate(model, build_schedule(config), num=args.num, shape=(config.data.channels, config.data.image_size, config.data.image_size),
                              sampler=args.sampler, steps=steps, eta=args.eta, prediction=config.diffusion.prediction, clip_x0=not args.no_clip,
                              labels=labels, seed=args.seed, batch_size=args.batch_size, device=device, progress=bar.update)
        except ValueError as e:
            raise DdpmError(str(e)) from None
    out = write_samples(images, labels, args.out)
    print(f"wrote {args.num} samples ({args.sampler}, {steps or config.diffusion.num_timesteps} steps, checkpoint step {step}) "
          f"to {out} in {time.time() - started:.1f}s", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .models import pick_device
    from .summary import write_summary
    from .train import Trainer

    started = time.time()
    config = RunConfig.from_toml("mnist-demo")
    if args.max_minutes is not None:
        config = config.with_overrides([f"train.max_minutes={args.max_minutes}"])
    device = pick_device(args.device)
    trainer = Trainer(config, args.out, device, force=True)
    print(f"ddpm demo: training a {sum(p.numel() for p in trainer.model.parameters()) / 1e6:.2f}M-parameter U-Net on MNIST "
          f"for up to {config.train.max_minutes} minutes on {device}", file=sys.stderr)
    summary = trainer.run()
    sample_started = time.time()
    images = trainer.sample_ema(trainer.config.sample.num, seed=0)
    summary["sampling_s"] = time.time() - sample_started
    write_samples(images, None, args.out / "samples.npz")
    write_samples(images, None, args.out / "samples.png")
    summary["total_s"] = time.time() - started
    path = write_summary(args.out, trainer.config, summary)
    print(f"ddpm demo: done in {summary['total_s'] / 60:.1f} min; samples in {args.out / 'samples.png'}, summary in {path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"train": cmd_train, "sample": cmd_sample, "demo": cmd_demo}[args.command](args)
    except DdpmError as e:
        print(f"ddpm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file the user named cannot be written or read (permissions, full disk, …)
        print(f"ddpm {args.command}: error: {e.strerror or e}: {e.filename or ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ddpm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
