"""``ddpm demo`` (what ``make demo`` runs): train the CPU demo preset on MNIST, sample, summarise and write the
report, all inside one wall-clock budget that may count from before this process began (``make demo`` passes
the moment it started, so the install is inside the budget too).

The training time is what the budget leaves once the work after training is paid for. That work is a known
number of network evaluations (the samples, the last progress grid, the report's trajectories), so its cost
is predicted from the training throughput measured so far: a slower or busier machine trains for less time
instead of overrunning.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from .config import RunConfig
from .sample_files import write_samples
from .guidance import images_per_sample
from .train.trainer import progress_grid_size

# Forward-only image evaluations per second, per trained image per second (the trainer's average, progress
# grids and checkpoints included). Measured 3.4 and 3.6 on the 2-core build machine (guided sampling of 100
# images, a batch of 200, against training at batch 32); 3.0 leaves a margin.
FORWARDS_PER_TRAINED_IMAGE = 3.0
# Seconds after training that do not scale with the network: the last checkpoint, the report's plots, GIFs
# and PNGs, reading test images for the forward strip. About 8 s on the build machine (a 13 s report less its
# ~5 s of network evaluations); 15 leaves a margin.
FIXED_SECONDS_AFTER_TRAINING = 15.0
# Steps before the measured throughput is trusted (the first steps pay for warm-up and allocation).
STEPS_BEFORE_ESTIMATE = 30
# Fewer steps than this and the samples are mostly noise: the demo says so instead of presenting them silently.
STEPS_FOR_DIGITS = 500
STOPPED_BY_BUDGET = "the demo's overall time budget"


def evaluations_after_training(config: RunConfig, step: int) -> int:
    """Image evaluations of the network still to run when training stops at ``step``: the demo's samples,
    the last progress grid unless one was just drawn at this step, and the report's own sampling (without
    its full-T DDPM row). ``config``: as the trainer resolved it (num_classes set)."""
    from .report import network_evaluations

    s, every = config.sample, config.train.sample_every
    per_image = (s.steps or config.diffusion.num_timesteps) * images_per_sample(config.classes_shown(), s.guidance)
    grid_due = every and (step == 0 or step % every)
    progress = progress_grid_size(config) if grid_due else 0
    return (s.num + progress) * per_image + network_evaluations(config, full_ddpm=False)


class FinishBy:
    """``Trainer.run(stop_when=FinishBy(deadline))``: stop training once the work that must follow it
    would no longer end by ``deadline`` (a ``time.time()`` value)."""

    def __init__(self, deadline: float):
        self.deadline = deadline

    def seconds_after_training(self, trainer) -> float:
        """Predicted seconds from now to the end of the demo if training stopped now."""
        steps = trainer.step - trainer.start_step
        if steps < STEPS_BEFORE_ESTIMATE:
            return FIXED_SECONDS_AFTER_TRAINING
        trained_per_s = steps * trainer.config.train.batch_size / max(time.time() - trainer.started, 1e-9)
        evaluations = evaluations_after_training(trainer.config, trainer.step)
        return FIXED_SECONDS_AFTER_TRAINING + evaluations / (FORWARDS_PER_TRAINED_IMAGE * trained_per_s)

    def __call__(self, trainer) -> str | None:
        if time.time() + self.seconds_after_training(trainer) >= self.deadline:
            return STOPPED_BY_BUDGET
        return None


def run_demo(out: Path, device: torch.device, *, started: float, finish_within: float | None = None,
             max_minutes: float | None = None, log: Callable[[str], None] = print) -> dict:
    """Train configs/mnist-demo.toml into ``out``, then write samples.npz, samples.png (one class per column),
    summary.md and report.html. ``finish_within`` minutes count from ``started`` (a ``time.time()`` value);
    ``max_minutes`` replaces the preset's training budget. Returns the trainer's summary with timings added."""
    from .report import write_report
    from .summary import write_summary
    from .train import Trainer

    config = RunConfig.from_toml("mnist-demo")
    if max_minutes is not None:
        config = config.with_overrides([f"train.max_minutes={max_minutes}"])
    trainer = Trainer(config, out, device, force=True)
    deadline = None if finish_within is None else started + 60 * finish_within
    budget = f"up to {config.train.max_minutes} minutes" + (
        f", ending by {time.strftime('%H:%M:%S', time.localtime(deadline))} so that the whole demo takes {finish_within:g} minutes"
        if deadline else "")
    log(f"ddpm demo: training a {sum(p.numel() for p in trainer.model.parameters()) / 1e6:.2f}M-parameter U-Net on MNIST "
        f"for {budget} on {device}")
    summary = trainer.run(stop_when=FinishBy(deadline) if deadline else None)
    if summary["stopped_by"] == STOPPED_BY_BUDGET and summary["steps"] < STEPS_FOR_DIGITS:
        log(f"ddpm demo: the overall budget left time for only {summary['steps']} training steps (the install or a busy "
            f"machine took the rest), too few for clear digits; run `ddpm demo` again now that the install is done, "
            f"or give --finish-within more minutes")
    sample_started = time.time()
    labels = trainer.class_cycle(trainer.config.sample.num)
    images = trainer.sample_ema(trainer.config.sample.num, seed=0, labels=labels)
    summary["sampling_s"] = time.time() - sample_started
    write_samples(images, labels, out / "samples.npz")
    write_samples(images, labels, out / "samples.png", columns=trainer.config.classes_shown())
    report_started = time.time()
    summary["report_path"] = write_report(out, device=device, full_ddpm=False, log=log, samples=images)
    summary["report_s"] = time.time() - report_started
    summary["total_s"] = time.time() - started
    summary["total_counts"] = f"since {time.strftime('%H:%M:%S', time.localtime(started))}, when the demo's clock started"
    summary["summary_path"] = write_summary(out, trainer.config, summary)
    return summary
