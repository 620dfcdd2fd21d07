"""Pictures of guidance: the same noise sampled at several guidance strengths (a panel and a GIF of the reverse
processes side by side), and a strip that walks from one context vector to another with the noise held fixed."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from .. import rng
from ..data import to_uint8
from ..guidance import ClassifierFreeGuidance, ClassifierGuidance
from ..sampling import sample
from ..schedules import NoiseSchedule
from .images import labelled_panel, save_gif
from .process import Trajectory, _evenly


def guided(model, weight: float, schedule: NoiseSchedule, *, null_label: int | None, prediction: str,
           classifier=None, pass_labels: bool = False, interval: tuple[float, float] = (0.0, 1.0)):
    """``model`` guided with strength ``weight``: the classifier scale s when a classifier is given, else the
    classifier-free weight w (applied while t/T is in ``interval``)."""
    if classifier is not None:
        return ClassifierGuidance(model, classifier, weight, schedule, prediction, pass_labels=pass_labels)
    return ClassifierFreeGuidance(model, weight, null_label=null_label, interval=interval, num_timesteps=schedule.num_timesteps)


def guidance_sweep(model, schedule: NoiseSchedule, shape: tuple[int, int, int], weights: Sequence[float], *, cond: dict,
                   sampler: str = "ddpm", steps: int | None = 50, prediction: str = "eps", variance: str = "fixed_small",
                   clip_x0: bool = True, null_label: int | None = None, classifier=None, seed: int = 0, device="cpu",
                   interval: tuple[float, float] = (0.0, 1.0)) -> tuple[torch.Tensor, list[Trajectory]]:
    """Sample the n conditions of ``cond`` (y [n] and/or context [n, k]) once per weight, every run from the same
    per-sample noise (x_T and each step's): uint8 [W, n, C, H, W] and each run's trajectory. ``null_label``: the
    model's "no label" index (a class-conditional model; None for one on context vectors or an unconditional one
    guided by ``classifier``, whose scales the weights then are)."""
    n = len(next(iter(cond.values())))
    finals, records = [], []
    options = {"variance": variance} if sampler == "ddpm" else {}
    for weight in weights:
        net = guided(model, weight, schedule, null_label=null_label, prediction=prediction, classifier=classifier,
                     pass_labels=null_label is not None, interval=interval)
        noise = rng.SampleNoise(seed, range(n))  # fresh streams per weight: the same x_T, then the same step noise
        record = Trajectory()
        x0 = sample(net, schedule, rng.randn((n, *shape), noise, device), sampler=sampler, steps=steps, prediction=prediction,
                    clip_x0=clip_x0, generator=noise, callback=record, cond=cond, **options)
        finals.append(to_uint8(x0).cpu())
        records.append(record)
    return torch.stack(finals), records


def sweep_panel(finals: torch.Tensor, weights: Sequence[float], name: str, scale: int = 2) -> Image.Image:
    """One row per weight ("w = …" or "s = …"), one column per sample."""
    return labelled_panel(finals, [f"{name} = {w:g}" for w in weights], [""] * finals.shape[1], scale=scale)


def sweep_gif(records: list[Trajectory], finals: torch.Tensor, weights: Sequence[float], name: str, path: str | Path,
              scale: int = 2, max_frames: int = 40) -> Path:
    """The reverse processes of every weight side by side: frame i shows x_t of step i, one row per weight."""
    chosen = _evenly(len(records[0].steps), max_frames)
    frames = []
    for i in chosen:
        t = records[0].steps[i][0]
        cells = torch.stack([record.steps[i][1] for record in records])
        frames.append(labelled_panel(cells, [f"{name} = {w:g}" for w in weights], [f"x_t, t={t}"] + [""] * (cells.shape[1] - 1),
                                     scale=scale))
    frames.append(sweep_panel(finals, weights, name, scale))
    return save_gif(frames, path)


def interpolation_cells(model, schedule: NoiseSchedule, shape: tuple[int, int, int], start: torch.Tensor, end: torch.Tensor, *,
                        frames: int = 8, rows: int = 4, guidance: float = 0.0, sampler: str = "ddpm", steps: int | None = 50,
                        prediction: str = "eps", variance: str = "fixed_small", clip_x0: bool = True, seed: int = 0,
                        device="cpu") -> torch.Tensor:
    """uint8 [rows, frames, C, H, W]: context c = (1 − λ) c₁ + λ c₂ for ``frames`` values of λ from 0 to 1 (columns),
    row r drawn with the noise (x_T and step noise) of sample r, held fixed along the row: what the model makes of
    the vectors between two contexts [k]."""
    lambdas = torch.linspace(0, 1, frames)
    contexts = ((1 - lambdas)[:, None] * start[None].float() + lambdas[:, None] * end[None].float())  # [frames, k]
    contexts = contexts.repeat(rows, 1).to(device)  # row-major: sample (r, f) is row r, column f
    noise = rng.SampleNoise(seed, [r for r in range(rows) for _ in range(frames)])  # the same stream along a row
    net = ClassifierFreeGuidance(model, guidance, null_label=None) if guidance else model
    options = {"variance": variance} if sampler == "ddpm" else {}
    x0 = sample(net, schedule, rng.randn((rows * frames, *shape), noise, device), sampler=sampler, steps=steps,
                prediction=prediction, clip_x0=clip_x0, generator=noise, cond={"context": contexts}, **options)
    return to_uint8(x0).cpu().view(rows, frames, *shape)


def interpolation_strip(cells: torch.Tensor, scale: int = 2) -> Image.Image:
    """The panel of ``interpolation_cells``, each column headed by λ, the share of c₂."""
    frames = cells.shape[1]
    return labelled_panel(cells, [""] * len(cells), [f"{v:.2f}" for v in torch.linspace(0, 1, frames).tolist()], scale=scale)
