"""Pictures of guidance: the same noise sampled at several guidance strengths (a panel and a GIF of the reverse
processes side by side), and a strip that walks from one context vector to another with the noise held fixed."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from ..generation import generate
from .images import labelled_panel, save_gif
from .process import Trajectory, _evenly


def sweep_plans(plan, weights: Sequence[float], classifier=None) -> list:
    """``plan`` once per weight: the classifier scale s when a ``classifier`` is given (classifier guidance alone,
    no classifier-free weight), else the classifier-free weight w (with the plan's guidance interval)."""
    if classifier is not None:
        return [plan.replace(guidance=0.0, classifier=classifier, classifier_scale=float(w)) for w in weights]
    return [plan.replace(guidance=float(w)) for w in weights]


def guidance_sweep(denoiser, plan, weights: Sequence[float], *, num: int, classifier=None, seed: int = 0,
                   device=None) -> tuple[torch.Tensor, list[Trajectory]]:
    """Sample ``num`` images (the plan's labels or contexts, or the classes in turn) once per weight, every run from
    the same per-sample noise (x_T and each step's): uint8 [W, num, C, H, W] and each run's trajectory. ``classifier``
    given: the weights are its scales."""
    finals, records = [], []
    for weighted in sweep_plans(plan, weights, classifier):
        record = Trajectory()
        finals.append(generate(denoiser, weighted, num, seed=seed, batch_size=max(num, 1), device=device, callback=record))
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


def interpolation_cells(denoiser, plan, start: torch.Tensor, end: torch.Tensor, *, frames: int = 8, rows: int = 4,
                        seed: int = 0, device=None) -> torch.Tensor:
    """uint8 [rows, frames, C, H, W]: context c = (1 − λ) c₁ + λ c₂ for ``frames`` values of λ from 0 to 1 (columns),
    row r drawn with the noise (x_T and step noise) of sample r, held fixed along the row, sampled as ``plan`` says
    (its guidance included): what the model makes of the vectors between two contexts [k]."""
    lambdas = torch.linspace(0, 1, frames)
    contexts = ((1 - lambdas)[:, None] * start[None].float() + lambdas[:, None] * end[None].float())  # [frames, k]
    contexts = contexts.repeat(rows, 1)  # row-major: sample (r, f) is row r, column f
    streams = [r for r in range(rows) for _ in range(frames)]  # the same noise stream along a row
    images = generate(denoiser, plan.replace(contexts=contexts, labels=None), rows * frames, seed=seed,
                      device=device, streams=streams)
    return images.view(rows, frames, *denoiser.shape)


def interpolation_strip(cells: torch.Tensor, scale: int = 2) -> Image.Image:
    """The panel of ``interpolation_cells``, each column headed by λ, the share of c₂."""
    frames = cells.shape[1]
    return labelled_panel(cells, [""] * len(cells), [f"{v:.2f}" for v in torch.linspace(0, 1, frames).tolist()], scale=scale)
