"""The ``ddpm`` command: parses strings, calls the library. A user's mistake ends in one sentence, exit 2."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import __version__, cli_study, cli_viz, distributed
from .cli_flags import FMT, POSITIVE_FLAG, SEED_FLAG, shared as shared_flags
from .config import CLASSIFIER_TRAINING, FAST_CUDA, SAMPLER_NAMES, DataConfig, RunConfig, SampleConfig, TrainConfig
from .data import DATASETS
from .errors import DdpmError, TrainingDiverged
from .nets import is_classifier
from .metrics.domain import DOMAIN_OF
from .schedules import FIXED_VARIANCES
from .io import check_writable
from .validation import NON_NEGATIVE, POSITIVE, flag, flag_of

EPILOG = "Run 'ddpm COMMAND --help' for the options of one command."


def _sampling_flags(p: argparse.ArgumentParser, steps_type, steps_help: str) -> None:
    """--sampler, --steps, --eta, --guidance, --no-clip: each left unset keeps the run's own [sample] setting."""
    g = p.add_argument_group("sampling (each flag not given keeps the run's own [sample] setting)")
    g.add_argument("--sampler", choices=SAMPLER_NAMES, help="sampler (default: the run's sample.sampler)")
    g.add_argument("--steps", type=steps_type, help=f"{steps_help} (default: the run's sample.steps)")
    g.add_argument("--eta", type=flag_of(SampleConfig, "eta"), help="DDIM stochasticity in [0, 1] (ddim only; default: the run's sample.eta)")
    g.add_argument("--guidance", type=flag_of(SampleConfig, "guidance"), help="classifier-free guidance weight w ≥ 0 for a conditional model: "
                   "(1 + w)·ε(x, label) − w·ε(x, no label); 0 is plain conditional sampling (default: the run's sample.guidance)")
    g.add_argument("--guidance-interval", type=_interval, metavar="LO,HI",
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
    _sampling_flags(p, _steps, "sampling steps (network evaluations), or 'all' (= T)")


def _interval(text: str) -> tuple[float, float]:
    """A --guidance-interval value: LO,HI, fractions of T with 0 ≤ LO < HI ≤ 1."""
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"must be LO,HI (two fractions of T), got {text!r}")
    lo, hi = (flag_of(SampleConfig, name)(part) for name, part in zip(("guidance_from", "guidance_to"), parts))
    if lo >= hi:
        raise argparse.ArgumentTypeError(f"must have LO < HI, got {text}")
    return lo, hi


def _steps(text: str) -> int | str:
    """A --steps value: a positive integer, or 'all' (all T steps)."""
    return "all" if text.strip() == "all" else POSITIVE_FLAG(text)


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


def _eval_parsers(sub) -> None:
    p = sub.add_parser("eval", help="sample from a run and score it (FID, domain scores, NLL)", formatter_class=FMT,
                       parents=[shared_flags("device", "seed", "batch-size", "no-ema")],
                       description="Generate --num samples per entry of --steps with the run's [sample] settings (replaced by "
                                   "the sampling flags given), score them against the dataset's test split read at the run's "
                                   "image size (a folder dataset: its held-out share or test/ subfolder), print a table and "
                                   "append each result to the run's metrics.jsonl. Without --fid, --domain or --nll: FID, plus "
                                   "the domain scores where a shipped classifier knows the dataset.")
    p.add_argument("run", help="a run directory or a .safetensors checkpoint")
    p.add_argument("-n", "--num", type=POSITIVE_FLAG, default=10000, help="samples per evaluation (-n under torchrun)")
    _sampling_flags(p, str, "sampling steps, or a comma-separated sweep such as 10,20,50,100,all ('all' = T)")
    p.add_argument("--fid", action="store_true", help="Inception FID against the reference")
    p.add_argument("--domain", action="store_true", help="domain classifier scores: classifier FID, IS analogue, confident share, class histogram")
    p.add_argument("--nll", action="store_true", help="NLL bound in bits/dim on test images (T network calls per batch)")
    p.add_argument("--nll-images", type=POSITIVE_FLAG, default=256, help="test images for --nll")
    p.add_argument("--nll-variance", choices=FIXED_VARIANCES, default=None,
                   help="a fixed reverse variance σ² for --nll in place of the model's own (diffusion.variance)")
    p.add_argument("--nll-timesteps", type=POSITIVE_FLAG, default=None,
                   help="estimate the bound's sum over T steps from this many stratified ones (with its standard "
                        "error); default: all T, exact")
    p.add_argument("--reference", help="reference set: DATASET:SPLIT, an image folder or a statistics .npz (default: the run's dataset, test split)")
    bootstrap_flag(p, "the samples behind each FID's")
    p.add_argument("--no-log", action="store_true", help="do not append the results to the run's metrics.jsonl")

    p = sub.add_parser("fid", help="FID between two image sets", formatter_class=FMT, parents=[shared_flags("device")],
                       description="Print the FID between A and B, each an image folder, an .npz with arr_0 (uint8 NHWC samples) "
                                   "or mu/sigma (statistics), or DATASET:SPLIT such as mnist:test (cached reference statistics). "
                                   "Inception-v3 (TF 2015-12-05 weights) pool features; images are resized to 299×299 as StyleGAN3 does "
                                   "and grayscale is repeated to RGB.")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--feature", choices=FEATURES, default="inception", help="inception, or domain for the MNIST/Fashion-MNIST classifier's features (then --dataset)")
    p.add_argument("--dataset", choices=tuple(DOMAIN_OF), default="mnist", help="which domain classifier --feature domain uses")
    p.add_argument("--data-dir", help="directory of the dataset files for DATASET:SPLIT")
    p.add_argument("--batch-size", type=POSITIVE_FLAG, default=32, help="images per Inception batch")
    bootstrap_flag(p, "A's images (else B's, the other set held fixed) behind the FID's")

    p = sub.add_parser("fid-stats", help="compute and cache FID reference statistics of a dataset split", formatter_class=FMT,
                       parents=[shared_flags("device")],
                       description="Compute the Inception statistics of DATASET:SPLIT (e.g. mnist:test) once; later FIDs read them "
                                   "from the cache ($DDPM_CACHE, else ~/.cache/ddpm).")
    p.add_argument("spec", help="DATASET:SPLIT, e.g. mnist:test or fashion-mnist:train")
    p.add_argument("--out", type=Path, help="also write the statistics to this .npz")
    p.add_argument("--feature", choices=FEATURES, default="inception", help="inception, or domain (MNIST/Fashion-MNIST classifier features)")
    p.add_argument("--data-dir", help="directory of the dataset files")
    p.add_argument("--refresh", action="store_true", help="recompute even if cached")
    p.add_argument("--batch-size", type=POSITIVE_FLAG, default=32, help="images per Inception batch")


FEATURES = ("inception", "domain")


def bootstrap_flag(p: argparse.ArgumentParser, what: str) -> None:
    """--bootstrap-draws: how many resamples of ``what`` 95% interval (``study.stats.bootstrap_fid``)."""
    p.add_argument("--bootstrap-draws", type=flag(int, NON_NEGATIVE), default=200, metavar="B",
                   help=f"resamples of {what} 95%% interval (0: none, which saves minutes on a CPU at 10k Inception "
                        "features)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddpm", description="Denoising diffusion probabilistic models.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"ddpm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub)
    _sample_parser(sub)
    _demo_parser(sub)
    _eval_parsers(sub)
    cli_viz.add_parsers(sub)
    cli_study.add_parser(sub)
    return parser


def _start_training(args: argparse.Namespace, device, new_config, extra: list[str] = (), classifier: bool = False):
    """The Trainer of a training command: resuming (``--resume``, only --steps and --max-minutes may change) or a new
    run from ``new_config()``, then the flags, then ``extra`` and --set. ``classifier``: the run resumed must be a
    noise-aware classifier (``train-classifier``)."""
    from .train import Trainer
    from .train.run_dir import resume_point

    if args.resume:
        if getattr(args, "config", None) or getattr(args, "run", None) or getattr(args, "context", None) or args.data or args.data_dir or args.set or args.limit \
                or args.batch_size or args.seed is not None or args.force or getattr(args, "fast", False):
            raise DdpmError("--resume continues a run with its saved config; only --steps and --max-minutes may change")
        out, checkpoint = _resume_target(args.resume, args.out)
        _, saved = resume_point(out, checkpoint)
        if classifier and not is_classifier(saved.model):
            raise DdpmError(f"{out} is a diffusion run, not a classifier; resume it with ddpm train --resume")
        changes = {"train.steps": args.steps, "train.max_minutes": args.max_minutes}
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


def _sample_flags(args: argparse.Namespace) -> dict:
    """The sampling flags the user gave (None: not given; the run's [sample] setting stays)."""
    return {"sampler": args.sampler, "eta": args.eta, "guidance": args.guidance, "clip_x0": args.clip_x0,
            "guidance_interval": args.guidance_interval}


def _contexts(args: argparse.Namespace, config, num: int):
    """--context as vectors [num, k] for the run's model (rows cycled), or None when not given."""
    from .data.context import parse_vector
    from .generate import check_contexts

    if args.context is None:
        return None
    if getattr(args, "label", None) is not None:
        raise DdpmError("give --label or --context, not both (a label is the one-hot context of a onehot run)")
    return check_contexts(parse_vector(args.context), getattr(config.model, "context_dim", None), num)


def _classifier_flags(args: argparse.Namespace) -> tuple[Path | None, float]:
    """(--classifier, its scale: default 1 with a classifier); a scale without a classifier is refused."""
    if args.classifier is None:
        if args.classifier_scale is not None:
            raise DdpmError("--classifier-scale needs --classifier CLF (the noise-aware classifier to guide by)")
        return None, 0.0
    return args.classifier, 1.0 if args.classifier_scale is None else args.classifier_scale


def cmd_sample(args: argparse.Namespace) -> int:
    from .generate import check_fits_in_memory, generate_across_ranks, labels_for, write_samples, writes_one_file
    from .io import check_writable
    from .models import build_schedule, load_classifier, load_model, pick_device
    from .progress import progress_bar

    device = pick_device(args.device)
    model, config, step = load_model(args.checkpoint, use_ema=not args.no_ema, device=device)
    T = config.diffusion.num_timesteps
    settings = config.sample_settings(**_sample_flags(args), steps=T if args.steps == "all" else args.steps)
    clf_path, scale = _classifier_flags(args)
    classifier = load_classifier(clf_path, config, device=device) if clf_path else None
    num_classes = config.classes_shown() or (classifier.config.num_classes if classifier else None)
    contexts = _contexts(args, config, args.num)
    labels = labels_for(num_classes, args.num, args.label) if contexts is None or classifier else None
    shape = (config.data.channels, config.data.image_size, config.data.image_size)
    check_writable(args.out)  # before the sampling, which a write failure would throw away
    if writes_one_file(args.out):
        check_fits_in_memory(args.num, shape)
    # a folder of PNGs is written batch by batch (sample i's noise depends only on the seed and i: same images)
    chunk = args.num if writes_one_file(args.out) else args.batch_size
    columns = num_classes if num_classes and args.label is None else None
    world = distributed.world()
    started = time.time()
    with progress_bar(args.num, unit="img", desc="sampling", disable=not world.is_main) as bar:
        for start in range(0, args.num, chunk):
            stop = min(start + chunk, args.num)
            # under torchrun the ranks share the samples and rank 0 writes them: the same images as one process
            images = generate_across_ranks(model, build_schedule(config), num=stop - start, shape=shape,
                                           **settings.generate_options(), **config.diffusion.model_options(),
                                           labels=None if labels is None else labels[start:stop], seed=args.seed,
                                           contexts=None if contexts is None else contexts[start:stop],
                                           classifier=classifier, classifier_scale=scale,
                                           batch_size=args.batch_size, device=device, first_index=start, progress=bar.update)
            if world.is_main:
                write_samples(images, None if labels is None else labels[start:stop], args.out, columns=columns, first_index=start)
    distributed.barrier()
    interval = (settings.guidance_from, settings.guidance_to)
    guided = (f", guidance w = {settings.guidance:g}" + (f" for t/T in [{interval[0]:g}, {interval[1]:g}]" if interval != (0, 1) else "")
              if settings.guidance else "") + (f", classifier scale {scale:g}" if classifier else "")
    eta = f", eta {settings.eta:g}" if settings.sampler == "ddim" else ""
    if world.is_main:
        print(f"wrote {args.num} samples ({settings.sampler}, {settings.steps} steps{eta}{guided}, checkpoint step {step}) "
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


def _parse_steps(text: str | None) -> list[int | None] | None:
    """--steps of ddpm eval: None (not given), or positive integers and 'all' (None: all T), comma-separated."""
    if text is None:
        return None
    try:
        return [None if step == "all" else step for step in map(_steps, text.split(","))]
    except argparse.ArgumentTypeError:
        raise DdpmError(f"--steps must be positive integers or 'all', comma-separated; got {text!r}") from None


def _bar(total: int, what: str, unit: str = "img"):
    from .progress import progress_bar

    return progress_bar(total or None, desc=what, unit=unit, leave=False, disable=not distributed.world().is_main)


def _extractor(feature: str, dataset: str, device, batch_size: int):
    if feature == "inception":
        from .metrics.inception import InceptionFeatures

        return InceptionFeatures(device=device, batch_size=batch_size)
    from .metrics.domain import DomainFeatures

    return DomainFeatures(dataset, device=device)


def cmd_eval(args: argparse.Namespace) -> int:
    from .checkpoint import load_config
    from .evaluate import EvalSettings, evaluate, format_table
    from .models import pick_device

    fid, domain, nll = args.fid, args.domain, args.nll
    if not (fid or domain or nll):
        config = load_config(args.run)
        fid, domain = True, config.data.dataset in DOMAIN_OF
    classifier, scale = _classifier_flags(args)
    settings = EvalSettings(num=args.num, steps=_parse_steps(args.steps), **_sample_flags(args), seed=args.seed,
                            classifier=classifier, classifier_scale=scale, context=args.context,
                            batch_size=args.batch_size, use_ema=not args.no_ema, fid=fid, domain=domain, nll=nll,
                            nll_images=args.nll_images, nll_variance=args.nll_variance, nll_timesteps=args.nll_timesteps,
                            reference=args.reference, bootstrap_draws=args.bootstrap_draws)
    rows = evaluate(args.run, settings, device=pick_device(args.device), bar=_bar, log=not args.no_log)
    if distributed.world().is_main:
        print(format_table(rows))
    return 0


def cmd_fid(args: argparse.Namespace) -> int:
    from .metrics.fid import fid_between
    from .models import pick_device

    extractor = _extractor(args.feature, args.dataset, pick_device(args.device), args.batch_size)
    bar = _bar(0, f"{extractor.feature} features")
    try:
        fid = fid_between(args.a, args.b, extractor, draws=args.bootstrap_draws, data_dir=args.data_dir,
                          progress=bar.update)
    finally:
        bar.close()
    if distributed.world().is_main:
        if fid.resampled:
            interval = f" [{fid.low:.4f}, {fid.high:.4f}] (95% bootstrap over {fid.resampled}'s images, {fid.draws} draws)"
        else:
            interval = " (no interval: " + ("--bootstrap-draws 0)" if not args.bootstrap_draws else
                                            "both sets are saved statistics, which cannot be resampled)")
        print(f"FID {fid.value:.4f}{interval}  ({extractor.feature} features; {fid.a.num or '?'} images in A, "
              f"{fid.b.num or '?'} in B)", file=sys.stderr)
        print(f"{fid.value:.6f}")
    return 0


def cmd_fid_stats(args: argparse.Namespace) -> int:
    from .metrics.fid import dataset_stats
    from .models import pick_device

    dataset = args.spec.partition(":")[0]
    if args.out:
        check_writable(args.out)
    extractor = _extractor(args.feature, dataset, pick_device(args.device), args.batch_size)
    bar = _bar(0, f"{args.spec} {extractor.feature} features")
    try:
        stats = dataset_stats(args.spec, extractor, data_dir=args.data_dir, refresh=args.refresh, progress=bar.update)
    finally:
        bar.close()
    if not distributed.world().is_main:
        return 0
    if args.out:
        stats.save(args.out)
    print(f"{args.spec}: {stats.num} images, {len(stats.mu)}-d {stats.feature} statistics cached"
          + (f" and written to {args.out}" if args.out else ""), file=sys.stderr)
    return 0


# What torchrun can spread over processes (each rank its share of the steps' batch, of the sample indices or of
# the images whose features are extracted; rank 0 writes and prints).
DISTRIBUTED_COMMANDS = ("train", "train-classifier", "sample", "eval", "fid", "fid-stats")
COMMANDS = {"train": cmd_train, "train-classifier": cmd_train_classifier, "sample": cmd_sample, "demo": cmd_demo, "eval": cmd_eval, "fid": cmd_fid,
            "fid-stats": cmd_fid_stats, "report": cli_viz.cmd_report, "viz": cli_viz.cmd_viz,
            "study": cli_study.cmd_study}


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
        print(f"ddpm {args.command}: error: {e}", file=sys.stderr)
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
