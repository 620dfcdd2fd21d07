"""``ddpm report`` and ``ddpm viz``: a run's report page, and one picture at a time."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_flags import FMT, POSITIVE_FLAG, shared, weights
from .config import SAMPLER_NAMES, DiffusionConfig
from .data import DATASETS
from .errors import DdpmError
from .io import check_writable
from .validation import flag_of

VIZ_KINDS = ("forward", "schedules", "reverse", "progress", "loss", "samplers", "guidance", "interpolation")


def add_parsers(sub) -> None:
    p = sub.add_parser("report", help="write RUN/report.html: config, curves, samples, GIFs, strips, metrics", formatter_class=FMT,
                       parents=[shared("device")],
                       description="Draw every picture of a run into RUN/report/ and write RUN/report.html, a single self-contained page.")
    p.add_argument("run", help="a run directory")
    p.add_argument("--no-full-ddpm", action="store_true", help="leave the all-T-steps DDPM row out of the sampler comparison (faster)")

    p = sub.add_parser("viz", help="draw one picture", formatter_class=FMT, parents=[shared("device", "seed")],
                       description="forward: x_t strips of real images for each schedule; schedules: ᾱ_t and log-SNR plots; "
                                   "reverse: GIF (and a .png strip beside it) of one sampling run; progress: GIF of the training grids; "
                                   "loss: loss curve (and a heat map of the loss per timestep beside it); samplers: one grid per sampler "
                                   "from the same noise; guidance: one row per guidance weight from the same noise (and beside it "
                                   "a .gif of the reverse processes side by side); interpolation: the context walked from C1 to C2 "
                                   "(--between), one noise per row held fixed.")
    p.add_argument("what", choices=VIZ_KINDS)
    p.add_argument("run", nargs="?", help="a run directory (not needed for forward and schedules)")
    p.add_argument("--out", type=Path, required=True, help="the picture to write (.png, or .gif for reverse and progress)")
    p.add_argument("--data", choices=DATASETS, default="mnist", help="forward: dataset of the real images")
    p.add_argument("--data-dir", help="forward: directory of the dataset files")
    p.add_argument("--images", type=POSITIVE_FLAG, default=3, help="forward: number of real images")
    p.add_argument("--num-timesteps", type=flag_of(DiffusionConfig, "num_timesteps"), default=1000, help="forward, schedules: T")
    p.add_argument("--sampler", choices=SAMPLER_NAMES, default="ddim", help="reverse: the sampler")
    p.add_argument("--steps", type=POSITIVE_FLAG, default=50, help="reverse, samplers: sampling steps")
    p.add_argument("--num", type=POSITIVE_FLAG, default=4, help="reverse, samplers, guidance, interpolation: number of samples "
                   "(guidance: per weight, the classes in turn; interpolation: rows)")
    p.add_argument("--weights", type=weights, default=(0.0, 0.5, 1.0, 2.0, 4.0), metavar="W,W,…",
                   help="guidance: the classifier-free guidance weights (the classifier scales with --classifier)")
    p.add_argument("--classifier", type=Path, metavar="CLF", help="guidance: sweep classifier guidance by this classifier")
    p.add_argument("--between", nargs=2, metavar=("C1", "C2"),
                   help="interpolation: the two contexts, each a class of a onehot run (e.g. 3 5) or comma-separated numbers")
    p.add_argument("--frames", type=POSITIVE_FLAG, default=8, help="interpolation: steps from C1 to C2")


def cmd_report(args: argparse.Namespace) -> int:
    from .models import pick_device
    from .report import write_report

    path = write_report(args.run, device=pick_device(args.device), full_ddpm=not args.no_full_ddpm,
                        log=lambda m: print(m, file=sys.stderr))
    print(f"ddpm report: wrote {path}", file=sys.stderr)
    print(path)
    return 0


def cmd_viz(args: argparse.Namespace) -> int:
    from .denoiser import Denoiser
    from .models import pick_device
    from .viz import plots, process
    from .viz.images import save_image

    device = pick_device(args.device)
    out = args.out
    check_writable(out)
    if args.what == "guidance":
        _viz_guidance(args, device)
        return 0
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
        save_image(process.forward_strip(data.images, num_timesteps=args.num_timesteps, seed=args.seed), out)
    elif args.what == "progress":
        process.progress_gif(Path(args.run), out)
    elif args.what == "loss":
        plots.plot_loss(Path(args.run), out)
        plots.plot_loss_heatmap(Path(args.run), out.with_name(out.stem + "-heatmap.png"))
    else:
        denoiser = Denoiser.from_pretrained(args.run, device=device)
        plan = denoiser.plan(sampler=args.sampler, steps=args.steps)  # the run's guidance and clipping, this sampler
        if args.what == "interpolation":
            from .viz.guidance import interpolation_cells, interpolation_strip

            if args.between is None:
                raise DdpmError("ddpm viz interpolation needs --between C1 C2 (two classes of a onehot run, or two vectors)")
            start, end = (_context_of(text, denoiser) for text in args.between)
            save_image(interpolation_strip(interpolation_cells(denoiser, plan, start, end, frames=args.frames, rows=args.num,
                                                               seed=args.seed, device=device)), out)
        elif args.what == "reverse":
            record, final = process.reverse_trajectory(denoiser, plan, num=args.num, seed=args.seed, device=device)
            process.trajectory_gif(record, final, out)
            save_image(process.trajectory_strip(record, final), out.with_suffix(".png"))
        else:
            save_image(process.sampler_comparison(denoiser, plan, steps=args.steps, num=args.num, seed=args.seed,
                                                  device=device), out)
    print(f"ddpm viz: wrote {out}", file=sys.stderr)
    return 0


def _context_of(text: str, denoiser):
    """One --between value: a class of a onehot run, or comma-separated numbers → a context vector [k]."""
    import torch

    from .conditioning import check_contexts, one_hot
    from .data.context import parse_vector

    if not denoiser.context_dim:
        raise DdpmError("ddpm viz interpolation needs a run trained on context vectors (data.context)")
    if text.strip().isdigit() and denoiser.onehot:
        return one_hot(torch.tensor([int(text)]), denoiser.context_dim)[0]
    return check_contexts(parse_vector(text), denoiser.context_dim, 1)[0]


def _viz_guidance(args: argparse.Namespace, device) -> None:
    """ddpm viz guidance: the panel (OUT.png) and the reverse processes side by side (OUT.gif)."""
    from .denoiser import Denoiser
    from .models import load_classifier
    from .viz.guidance import guidance_sweep, sweep_gif, sweep_panel
    from .viz.images import save_image

    if args.run is None:
        raise DdpmError("ddpm viz guidance needs a run directory")
    if args.out.suffix != ".png":
        raise DdpmError("--out for guidance must end in .png (the .gif is written beside it)")
    check_writable(args.out.with_suffix(".gif"))
    denoiser = Denoiser.from_pretrained(args.run, device=device)
    classifier = load_classifier(args.classifier, denoiser.config, device=device) if args.classifier else None
    classes = denoiser.classes_shown or (classifier.config.num_classes if classifier else None)
    if not classes:
        raise DdpmError("ddpm viz guidance needs a class-conditional or onehot-context run, or --classifier CLF")
    plan = denoiser.plan(sampler=args.sampler, steps=args.steps)
    finals, records = guidance_sweep(denoiser, plan, args.weights, num=args.num, classifier=classifier, seed=args.seed,
                                     device=device)
    name = "s" if classifier else "w"
    save_image(sweep_panel(finals, args.weights, name), args.out)
    sweep_gif(records, finals, args.weights, name, args.out.with_suffix(".gif"))
    print(f"ddpm viz: wrote {args.out} and {args.out.with_suffix('.gif')}", file=sys.stderr)
