"""Pictures of the processes: how each schedule destroys the data, one sampling run step by step, and
what different samplers make of the same initial noise."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from ..data import to_uint8
from ..errors import DdpmError
from ..generation import generate
from ..sampling import StepInfo
from ..schedules import NoiseSchedule
from .images import labelled_panel, make_grid, save_gif, to_pil

SCHEDULES = ("linear", "cosine", "sigmoid")


def default_times(num_timesteps: int, count: int = 8) -> list[int]:
    """``count`` timesteps from 0 to T−1, evenly spaced."""
    return sorted({round(i * (num_timesteps - 1) / (count - 1)) for i in range(count)})


def forward_strip(images: torch.Tensor, *, num_timesteps: int = 1000, times: Sequence[int] | None = None,
                  schedules: Sequence[str] = SCHEDULES, seed: int = 0, scale: int = 2) -> Image.Image:
    """x_t ~ q(x_t | x_0) for a few real images: uint8 [K, C, H, W] → a panel with one row per (schedule, image)
    and one column per t, after a first column holding the data itself. The same noise ε is used in every
    cell of a row, so the rows differ only by the schedule's ᾱ_t."""
    times = list(times) if times is not None else default_times(num_timesteps)
    x0 = images.float() / 127.5 - 1
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    rows, labels = [], []
    for name in schedules:
        schedule = NoiseSchedule.from_name(name, num_timesteps)
        for k in range(len(images)):
            cells = [images[k]]
            for t in times:
                tt = torch.tensor([t])
                cells.append(to_uint8(schedule.q_sample(x0[k:k + 1], tt, noise[k:k + 1]).float())[0])
            rows.append(torch.stack(cells))
            labels.append(name if k == 0 else "")
    return labelled_panel(torch.stack(rows), labels, ["data"] + [f"t={t}" for t in times], scale=scale)


class Trajectory:
    """Callback that keeps x_t and the predicted x₀ of every step of a sampling run (uint8, on the CPU)."""

    def __init__(self):
        self.steps: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def __call__(self, info: StepInfo) -> None:
        self.steps.append((info.t, to_uint8(info.x_t.clamp(-1, 1)).cpu(), to_uint8(info.x0_pred).cpu()))


def reverse_trajectory(denoiser, plan=None, *, num: int = 4, seed: int = 0, device=None) -> tuple[Trajectory, torch.Tensor]:
    """Sample ``num`` images of ``denoiser`` as ``plan`` says (default: the run's own) recording every step; returns
    the trajectory and the final uint8 images [num, C, H, W] — the first ``num`` samples ``ddpm sample --seed`` draws."""
    record = Trajectory()
    final = generate(denoiser, plan, num, seed=seed, batch_size=max(num, 1), device=device, callback=record)
    return record, final


def trajectory_gif(record: Trajectory, final: torch.Tensor, path: str | Path, scale: int = 3, max_frames: int = 60) -> Path:
    """GIF of a trajectory: each frame shows x_t (left) beside the predicted x₀ (right) for all samples,
    then the final samples. At most ``max_frames`` evenly chosen steps (the last always included)."""
    chosen = _evenly(len(record.steps), max_frames)
    frames = []
    for i in chosen:
        t, x_t, x0 = record.steps[i]
        frames.append(labelled_panel(torch.stack([x_t, x0], 1), [""] * len(x_t), [f"x_t, t={t}", "predicted x0"], scale=scale))
    frames.append(labelled_panel(torch.stack([final, final], 1), [""] * len(final), ["final", "final"], scale=scale))
    return save_gif(frames, path)


def trajectory_strip(record: Trajectory, final: torch.Tensor, columns: int = 8, scale: int = 2) -> Image.Image:
    """A panel for the first sample: row 1 x_t, row 2 the predicted x₀, at ``columns`` evenly chosen steps."""
    chosen = _evenly(len(record.steps), columns)
    x_t = torch.stack([record.steps[i][1][0] for i in chosen] + [final[0]])
    x0 = torch.stack([record.steps[i][2][0] for i in chosen] + [final[0]])
    labels = [f"t={record.steps[i][0]}" for i in chosen] + ["final"]
    return labelled_panel(torch.stack([x_t, x0]), ["x_t", "x0 pred"], labels, scale=scale)


def _evenly(n: int, count: int) -> list[int]:
    if n <= count:
        return list(range(n))
    return sorted({round(i * (n - 1) / (count - 1)) for i in range(count)})


SAMPLER_ROWS = (("DDPM, all T steps", "ddpm", {"steps": None}),
                ("DDPM, naive skip", "ddpm", {"skip": "naive"}),
                ("DDPM, respaced", "ddpm", {"skip": "respace"}),
                ("DDIM (eta 0)", "ddim", {"eta": 0.0}),
                ("DPM-Solver++ 2M", "dpm-solver++", {}))


def comparison_plans(plan, steps: int, include_full: bool = True) -> list[tuple[str, object]]:
    """(row label, plan) of each sampler row: ``plan`` (guidance, clipping, conditioning) with the row's sampler."""
    rows = []
    for label, name, options in SAMPLER_ROWS:
        row = plan.replace(sampler=name, **{"steps": steps, "eta": None, "skip": None, "spacing": None, "order": None, **options})
        if row.steps is None and not include_full:
            continue
        rows.append((label if "all" in label else f"{label} ({row.steps})", row))
    return rows


def sampler_comparison(denoiser, plan=None, *, steps: int = 20, num: int = 8, seed: int = 0, device=None, scale: int = 2,
                       include_full: bool = True) -> Image.Image:
    """One row per sampler (``SAMPLER_ROWS``, each with ``steps`` evaluations), all from the same x_T and the same
    per-sample noise streams, sampled as ``plan`` (default: the run's own) says otherwise."""
    plan = denoiser.plan() if plan is None else plan
    rows = comparison_plans(plan, steps, include_full)
    images = [generate(denoiser, row, num, seed=seed, device=device) for _, row in rows]
    return labelled_panel(torch.stack(images), [label for label, _ in rows], [""] * num, scale=scale)


def progress_gif(run_dir: Path, path: str | Path, scale: int = 2) -> Path:
    """GIF of the fixed-latent grids the trainer saved (progress/step_*.png), one frame per grid."""
    grids = sorted((Path(run_dir) / "progress").glob("step_*.png"))
    if not grids:
        raise DdpmError(f"{run_dir} has no progress grids (progress/step_*.png); train with train.sample_every > 0")
    frames = []
    for p in grids:
        with Image.open(p) as im:
            im = im.convert("RGB")
            if scale > 1:
                im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
            frames.append(labelled_panel_from_image(im, f"step {int(p.stem.split('_')[1])}"))
    return save_gif(frames, path, duration_ms=400)


def labelled_panel_from_image(im: Image.Image, title: str) -> Image.Image:
    """An image with a one-line title above it."""
    from PIL import ImageDraw

    out = Image.new("RGB", (im.width, im.height + 14), "white")
    out.paste(im, (0, 14))
    ImageDraw.Draw(out).text((2, 1), title, fill="black")
    return out


__all__ = ["forward_strip", "reverse_trajectory", "trajectory_gif", "trajectory_strip", "sampler_comparison",
           "progress_gif", "make_grid", "to_pil"]
