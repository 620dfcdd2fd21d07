"""The ``ddpm`` command: parses strings, calls the library. A user's mistake ends in one sentence, exit 2."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from . import __version__
from .config import RunConfig
from .errors import DdpmError
from .generate import write_samples
from .sampling import SAMPLERS

EPILOG = "Run 'ddpm COMMAND --help' for the options of one command."


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a diffusion model", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Train a denoiser. Settings come from the defaults, then --config, then the flags, then --set.")
    p.add_argument("--config", type=Path, help="a TOML config (see configs/); its keys are those of --set")
    p.add_argument("--data", help="dataset: mnist, mnist-idx, fashion-mnist, cifar10 or folder (default: the config's, mnist)")
    p.add_argument("--data-dir", help="directory of the dataset files (IDX files, cifar-10-batches-py, image folder)")
    p.add_argument("--out", type=Path, help="run directory for checkpoints, logs and pictures (required unless --resume names the run)")
    p.add_argument("--steps", type=int, help="number of optimiser steps (train.steps)")
    p.add_argument("--max-minutes", type=float, help="stop after this much wall time, saving a checkpoint (train.max_minutes)")
    p.add_argument("--batch-size", type=int, help="images per step (train.batch_size)")
    p.add_argument("--limit", type=int, help="train on a random subset of N images (data.limit)")
    p.add_argument("--seed", type=int, help="seed of weights, data order and noise (train.seed)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config key, e.g. --set model.base_channels=32 (repeatable)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_OR_CKPT",
                   help="continue a run exactly where its latest checkpoint (or the named checkpoint file) left it, with its saved "
                        "config; without a value, the run in --out")
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
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance weight w ≥ 0 for a conditional model: "
                   "(1 + w)·ε(x, label) − w·ε(x, no label); 0 is plain conditional sampling (default: the run's sample.guidance)")
    p.add_argument("--out", type=Path, required=True, help="FILE.npz, FILE.png or DIR/")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--batch-size", type=int, default=256, help="samples per batch")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of their EMA")
    p.add_argument("--no-clip", action="store_true", help="do not clamp the predicted x0 to [-1, 1] at each step")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="train the CPU demo on MNIST, sample and summarise", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Train configs/mnist-demo.toml (a few minutes on a laptop CPU), draw 100 samples (ten of each digit, "
                                   "classifier-free guidance w = 2) and write samples.png, samples.npz, summary.md and report.html "
                                   "into the run directory.")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory (overwritten)")
    p.add_argument("--max-minutes", type=float, default=None, help="training time budget (default: the preset's)")
    p.add_argument("--finish-within", type=float, default=9.25, metavar="MINUTES",
                   help="end the whole demo (training, sampling, report) within this many minutes of --started-at: "
                        "training stops early when the work after it would not fit")
    p.add_argument("--started-at", type=float, default=None, metavar="UNIX_TIME",
                   help="when the demo's clock started (make demo passes its own start, so the install counts); default: now")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _eval_parsers(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("eval", help="sample from a run and score it (FID, domain scores, NLL)", formatter_class=fmt,
                       description="Generate --num samples per entry of --steps, score them against the dataset's test split, "
                                   "print a table and append each result to the run's metrics.jsonl. Without --fid, --domain or "
                                   "--nll: FID, plus the domain scores where a shipped classifier knows the dataset.")
    p.add_argument("run", help="a run directory or a .safetensors checkpoint")
    p.add_argument("--num", type=int, default=10000, help="samples per evaluation")
    p.add_argument("--sampler", default="ddim", help=f"one of {', '.join(SAMPLERS)}")
    p.add_argument("--steps", default="50", help="sampling steps, or a comma-separated sweep such as 10,20,50,100,1000 ('all' = T)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM stochasticity in [0, 1]")
    p.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance weight w (conditional models)")
    p.add_argument("--fid", action="store_true", help="Inception FID against the reference")
    p.add_argument("--domain", action="store_true", help="domain classifier scores: classifier FID, IS analogue, confident share, class histogram")
    p.add_argument("--nll", action="store_true", help="NLL bound in bits/dim on test images (T network calls per batch)")
    p.add_argument("--nll-images", type=int, default=256, help="test images for --nll")
    p.add_argument("--nll-variance", default="beta_tilde", help="fixed reverse variance for --nll: beta_tilde or beta")
    p.add_argument("--reference", help="reference set: DATASET:SPLIT, an image folder or a statistics .npz (default: the run's dataset, test split)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--batch-size", type=int, default=256, help="samples per batch")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of their EMA")
    p.add_argument("--no-log", action="store_true", help="do not append the results to the run's metrics.jsonl")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")

    p = sub.add_parser("fid", help="FID between two image sets", formatter_class=fmt,
                       description="Print the FID between A and B, each an image folder, an .npz with arr_0 (uint8 NHWC samples) "
                                   "or mu/sigma (statistics), or DATASET:SPLIT such as mnist:test (cached reference statistics). "
                                   "Inception-v3 (TF 2015-12-05 weights) pool features; images are resized to 299×299 as StyleGAN3 does "
                                   "and grayscale is repeated to RGB.")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--feature", default="inception", help="inception, or domain for the MNIST/Fashion-MNIST classifier's features (then --dataset)")
    p.add_argument("--dataset", default="mnist", help="which domain classifier --feature domain uses")
    p.add_argument("--data-dir", help="directory of the dataset files for DATASET:SPLIT")
    p.add_argument("--batch-size", type=int, default=32, help="images per Inception batch")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")

    p = sub.add_parser("fid-stats", help="compute and cache FID reference statistics of a dataset split", formatter_class=fmt,
                       description="Compute the Inception statistics of DATASET:SPLIT (e.g. mnist:test) once; later FIDs read them "
                                   "from the cache ($DDPM_CACHE, else ~/.cache/ddpm).")
    p.add_argument("spec", help="DATASET:SPLIT, e.g. mnist:test or fashion-mnist:train")
    p.add_argument("--out", type=Path, help="also write the statistics to this .npz")
    p.add_argument("--feature", default="inception", help="inception, or domain (MNIST/Fashion-MNIST classifier features)")
    p.add_argument("--data-dir", help="directory of the dataset files")
    p.add_argument("--refresh", action="store_true", help="recompute even if cached")
    p.add_argument("--batch-size", type=int, default=32, help="images per Inception batch")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


VIZ_KINDS = ("forward", "schedules", "reverse", "progress", "loss", "samplers")


def _viz_parsers(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("report", help="write RUN/report.html: config, curves, samples, GIFs, strips, metrics", formatter_class=fmt,
                       description="Draw every picture of a run into RUN/report/ and write RUN/report.html, a single self-contained page.")
    p.add_argument("run", help="a run directory")
    p.add_argument("--no-full-ddpm", action="store_true", help="leave the all-T-steps DDPM row out of the sampler comparison (faster)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")

    p = sub.add_parser("viz", help="draw one picture", formatter_class=fmt,
                       description="forward: x_t strips of real images for each schedule; schedules: ᾱ_t and log-SNR plots; "
                                   "reverse: GIF (and a .png strip beside it) of one sampling run; progress: GIF of the training grids; "
                                   "loss: loss curve (and a heat map of the loss per timestep beside it); samplers: one grid per sampler "
                                   "from the same noise.")
    p.add_argument("what", choices=VIZ_KINDS)
    p.add_argument("run", nargs="?", help="a run directory (not needed for forward and schedules)")
    p.add_argument("--out", type=Path, required=True, help="the picture to write (.png, or .gif for reverse and progress)")
    p.add_argument("--data", default="mnist", help="forward: dataset of the real images")
    p.add_argument("--data-dir", help="forward: directory of the dataset files")
    p.add_argument("--images", type=int, default=3, help="forward: number of real images")
    p.add_argument("--num-timesteps", type=int, default=1000, help="forward, schedules: T")
    p.add_argument("--sampler", default="ddim", help=f"reverse: one of {', '.join(SAMPLERS)}")
    p.add_argument("--steps", type=int, default=50, help="reverse, samplers: sampling steps")
    p.add_argument("--num", type=int, default=4, help="reverse, samplers: number of samples")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddpm", description="Denoising diffusion probabilistic models.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"ddpm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub)
    _sample_parser(sub)
    _demo_parser(sub)
    _eval_parsers(sub)
    _viz_parsers(sub)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from .models import pick_device
    from .train import Trainer
    from .train.trainer import Interrupted

    device = pick_device(args.device)
    if args.resume:
        if args.config or args.data or args.data_dir or args.set or args.limit or args.batch_size or args.seed is not None:
            raise DdpmError("--resume continues a run with its saved config; only --steps and --max-minutes may change")
        out, resume = _resume_target(args.resume, args.out)
        trainer = Trainer(None, out, device, resume=resume, quiet=args.quiet)
        extend = [f"train.{k}={json.dumps(v)}" for k, v in (("steps", args.steps), ("max_minutes", args.max_minutes)) if v is not None]
        if extend:
            trainer.config = trainer.config.with_overrides(extend)
    else:
        if args.out is None:
            raise DdpmError("--out is required (the run directory to create)")
        config = RunConfig.from_toml(args.config) if args.config else RunConfig()
        flags = {"data.dataset": args.data, "data.data_dir": args.data_dir, "train.steps": args.steps,
                 "train.max_minutes": args.max_minutes, "train.batch_size": args.batch_size, "data.limit": args.limit,
                 "train.seed": args.seed}
        overrides = [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None] + args.set
        config = config.with_overrides(overrides)
        trainer = Trainer(config, args.out, device, force=args.force, quiet=args.quiet)
    verb = f"resuming at step {trainer.step}" if args.resume else "training"
    print(f"{verb} {trainer.config.model.architecture} ({sum(p.numel() for p in trainer.model.parameters()) / 1e6:.2f}M parameters) "
          f"on {trainer.data.name} ({len(trainer.data)} images) on {device} → {trainer.out}", file=sys.stderr)
    try:
        summary = trainer.run()
    except Interrupted as e:
        print(f"ddpm train: {e}", file=sys.stderr)
        return 128 + e.signum
    print(json.dumps(summary))
    return 0


def _resume_target(resume, out: Path | None) -> tuple[Path, bool | Path]:
    """(run directory, True or a checkpoint file) from --resume [RUN_OR_CKPT] and --out."""
    if resume is True:
        if out is None:
            raise DdpmError("--resume needs the run: --resume RUN or --out RUN --resume")
        return out, True
    target = Path(resume)
    if target.is_file():
        run = target.parent.parent
        if out is not None and out.resolve() != run.resolve():
            raise DdpmError(f"--out {out} is not the run of checkpoint {target} ({run})")
        return run, target
    if not target.is_dir():
        raise DdpmError(f"--resume {target}: no such run directory or checkpoint file")
    return target, True


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
    guidance = config.sample.guidance if args.guidance is None else args.guidance
    if guidance < 0:
        raise DdpmError(f"--guidance must be zero or more, got {guidance}")
    if guidance and not num_classes:
        raise DdpmError("--guidance needs a class-conditional model (trained with data.conditional = true); this one is unconditional")
    steps = args.steps or {"ddpm": None, "ddim": 50}.get(args.sampler, 20)
    started = time.time()
    with tqdm(total=args.num, unit="img", file=sys.stderr) as bar:
        try:
            images = generate(model, build_schedule(config), num=args.num, shape=(config.data.channels, config.data.image_size, config.data.image_size),
                              sampler=args.sampler, steps=steps, eta=args.eta, prediction=config.diffusion.prediction, clip_x0=not args.no_clip,
                              labels=labels, guidance=guidance, seed=args.seed, batch_size=args.batch_size, device=device,
                              progress=bar.update)
        except ValueError as e:
            raise DdpmError(str(e)) from None
    out = write_samples(images, labels, args.out, columns=num_classes if num_classes and args.label is None else None)
    guided = f", guidance w = {guidance:g}" if guidance else ""
    print(f"wrote {args.num} samples ({args.sampler}, {steps or config.diffusion.num_timesteps} steps{guided}, checkpoint step {step}) "
          f"to {out} in {time.time() - started:.1f}s", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .models import pick_device

    if args.finish_within is not None and not (0 < args.finish_within < math.inf):  # NaN fails too
        raise DdpmError(f"--finish-within must be positive minutes, not {args.finish_within:g}")
    if args.started_at is not None and not math.isfinite(args.started_at):
        raise DdpmError(f"--started-at must be a Unix time in seconds, not {args.started_at:g}")
    started = time.time() if args.started_at is None else args.started_at
    summary = run_demo(args.out, pick_device(args.device), started=started, finish_within=args.finish_within,
                       max_minutes=args.max_minutes, log=lambda m: print(m, file=sys.stderr))
    print(f"ddpm demo: done in {summary['total_s'] / 60:.1f} min; report in {summary['report_path']}; samples in "
          f"{args.out / 'samples.png'}, summary in {summary['summary_path']}", file=sys.stderr)
    return 0


def _parse_steps(text: str) -> list[int | None]:
    steps = []
    for part in text.split(","):
        part = part.strip()
        if part == "all":
            steps.append(None)
        elif part.isdigit() and int(part) > 0:
            steps.append(int(part))
        else:
            raise DdpmError(f"--steps must be positive integers or 'all', comma-separated; got {text!r}")
    return steps


def _bar(total: int, what: str):
    from tqdm import tqdm

    return tqdm(total=total or None, desc=what, unit="img", file=sys.stderr, leave=False, dynamic_ncols=True)


def _extractor(feature: str, dataset: str, device, batch_size: int):
    if feature == "inception":
        from .metrics.inception import InceptionFeatures

        return InceptionFeatures(device=device, batch_size=batch_size)
    if feature == "domain":
        from .metrics.domain import DomainFeatures

        return DomainFeatures(dataset, device=device)
    raise DdpmError(f"unknown --feature {feature!r}; expected inception or domain")


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import EvalSettings, evaluate
    from .metrics.domain import DOMAIN_OF
    from .models import pick_device
    from .train.checkpoint import load_weights

    if args.sampler not in SAMPLERS:
        raise DdpmError(f"unknown sampler {args.sampler!r}; expected one of {', '.join(SAMPLERS)}")
    if args.num < 1 or args.batch_size < 1 or args.nll_images < 1:
        raise DdpmError("--num, --batch-size and --nll-images must be positive")
    if args.nll_variance not in ("beta", "beta_tilde"):
        raise DdpmError(f"unknown --nll-variance {args.nll_variance!r}; expected beta or beta_tilde")
    fid, domain, nll = args.fid, args.domain, args.nll
    if not (fid or domain or nll):
        config = load_weights(args.run)[0]
        fid, domain = True, config.data.dataset in DOMAIN_OF
    settings = EvalSettings(num=args.num, sampler=args.sampler, steps=_parse_steps(args.steps), eta=args.eta,
                            guidance=args.guidance, seed=args.seed,
                            batch_size=args.batch_size, use_ema=not args.no_ema, fid=fid, domain=domain, nll=nll,
                            nll_images=args.nll_images, nll_variance=args.nll_variance, reference=args.reference)
    rows = evaluate(args.run, settings, device=pick_device(args.device), bar=_bar, log=not args.no_log)
    print(format_table(rows))
    return 0


COLUMNS = [("steps", "steps", "{}"), ("fid", "FID", "{:.2f}"), ("domain_fid", "domain FID", "{:.3f}"),
           ("domain_is", "domain IS", "{:.2f}"), ("domain_confident", "confident", "{:.1%}"), ("nll_bpd", "NLL bits/dim", "{:.3f}"),
           ("wall_s", "wall s", "{:.0f}")]


def format_table(rows: list[dict]) -> str:
    """A plain-text table of evaluation rows (columns that no row has are left out)."""
    cols = [c for c in COLUMNS if any(r.get(c[0]) is not None for r in rows)]
    cells = [[name for _, name, _ in cols]] + [[fmt.format(r[k]) if r.get(k) is not None else "" for k, _, fmt in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    r0 = rows[0]
    head = f"{r0['sampler']} sampler, {r0['num']} samples, seed {r0['seed']}, checkpoint step {r0['checkpoint_step']}, reference {r0['reference']}"
    hist = [f"class histogram ({r['steps']} steps): {r['class_histogram']}" for r in rows if r.get("class_histogram")]
    return "\n".join([head, *lines, *hist])


def cmd_fid(args: argparse.Namespace) -> int:
    from .metrics.fid import fid_between
    from .models import pick_device

    extractor = _extractor(args.feature, args.dataset, pick_device(args.device), args.batch_size)
    bar = _bar(0, f"{extractor.feature} features")
    try:
        value, a, b = fid_between(args.a, args.b, extractor, data_dir=args.data_dir, progress=bar.update)
    finally:
        bar.close()
    print(f"FID {value:.4f}  ({extractor.feature} features; {a.num or '?'} images in A, {b.num or '?'} in B)", file=sys.stderr)
    print(f"{value:.6f}")
    return 0


def cmd_fid_stats(args: argparse.Namespace) -> int:
    from .metrics.fid import dataset_stats
    from .models import pick_device

    dataset = args.spec.partition(":")[0]
    extractor = _extractor(args.feature, dataset, pick_device(args.device), args.batch_size)
    bar = _bar(0, f"{args.spec} {extractor.feature} features")
    try:
        stats = dataset_stats(args.spec, extractor, data_dir=args.data_dir, refresh=args.refresh, progress=bar.update)
    finally:
        bar.close()
    if args.out:
        stats.save(args.out)
    print(f"{args.spec}: {stats.num} images, {len(stats.mu)}-d {stats.feature} statistics cached"
          + (f" and written to {args.out}" if args.out else ""), file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .models import pick_device
    from .report import write_report

    path = write_report(args.run, device=pick_device(args.device), full_ddpm=not args.no_full_ddpm,
                        log=lambda m: print(m, file=sys.stderr))
    print(f"ddpm report: wrote {path}", file=sys.stderr)
    print(path)
    return 0


def cmd_viz(args: argparse.Namespace) -> int:
    from .models import build_schedule, load_model, pick_device
    from .viz import plots, process

    device = pick_device(args.device)
    out = args.out
    if args.what in ("reverse", "progress") and out.suffix != ".gif":
        raise DdpmError(f"--out for {args.what} must end in .gif")
    if args.what not in ("reverse", "progress") and out.suffix != ".png":
        raise DdpmError(f"--out for {args.what} must end in .png")
    if args.what not in ("forward", "schedules") and args.run is None:
        raise DdpmError(f"ddpm viz {args.what} needs a run directory")
    if args.what == "schedules":
        plots.plot_schedules(out, args.num_timesteps)
    elif args.what == "forward":
        from .data import load_dataset

        data = load_dataset(args.data, root=args.data_dir, split="test", limit=args.images, seed=args.seed)
        out.parent.mkdir(parents=True, exist_ok=True)
        process.forward_strip(data.images, num_timesteps=args.num_timesteps, seed=args.seed).save(out)
    elif args.what == "progress":
        try:
            process.progress_gif(Path(args.run), out)
        except ValueError as e:
            raise DdpmError(str(e)) from None
    elif args.what == "loss":
        try:
            plots.plot_loss(Path(args.run), out)
            plots.plot_loss_heatmap(Path(args.run), out.with_name(out.stem + "-heatmap.png"))
        except ValueError as e:
            raise DdpmError(str(e)) from None
    else:
        if args.sampler not in SAMPLERS:
            raise DdpmError(f"unknown sampler {args.sampler!r}; expected one of {', '.join(SAMPLERS)}")
        model, config, _ = load_model(args.run, device=device)
        schedule = build_schedule(config).to(device)
        d = config.data
        shape = (d.channels, d.image_size, d.image_size)
        cond = {"y": torch.arange(args.num, device=device) % config.model.num_classes} if config.model.num_classes else None
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            if args.what == "reverse":
                record, final = process.reverse_trajectory(model, schedule, shape, num=args.num, sampler=args.sampler, steps=args.steps,
                                                           prediction=config.diffusion.prediction, seed=args.seed, cond=cond, device=device,
                                                           clip_x0=config.sample.clip_x0)
                process.trajectory_gif(record, final, out)
                process.trajectory_strip(record, final).save(out.with_suffix(".png"))
            else:
                process.sampler_comparison(model, schedule, shape, steps=args.steps, num=args.num, prediction=config.diffusion.prediction,
                                           seed=args.seed, cond=cond, device=device, clip_x0=config.sample.clip_x0).save(out)
        except ValueError as e:
            raise DdpmError(str(e)) from None
    print(f"ddpm viz: wrote {out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {"train": cmd_train, "sample": cmd_sample, "demo": cmd_demo, "eval": cmd_eval, "fid": cmd_fid, "fid-stats": cmd_fid_stats,
                    "report": cmd_report, "viz": cmd_viz}
        return commands[args.command](args)
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
