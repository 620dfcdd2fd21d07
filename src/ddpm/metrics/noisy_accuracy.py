"""How well a noise-aware classifier reads the class of x_t, per band of noise levels.

Each test image is classified once in each of K equal bands of 0..T−1, at a timestep drawn uniformly inside the
band and with fresh noise: x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε. A band's accuracy is the share of the n images read
correctly, with its binomial standard error √(p(1−p)/n). Guidance leans on the classifier's gradient at every t
the sampler visits, so this curve says where it can help: near chance at pure noise, near its clean accuracy at
low t.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..data import ImageData
from ..schedules import NoiseSchedule
from .shares import binomial_se


@torch.no_grad()
def noisy_accuracy(classifier: torch.nn.Module, schedule: NoiseSchedule, data: ImageData, *, bands: int = 10,
                   seed: int = 0, batch_size: int = 500, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The record {"kind": "classifier_eval", "images": n, "num_classes": K', "bands": [[t_lo, t_hi], …] (inclusive),
    "accuracy_per_band": [bands], "accuracy_se": [bands], "accuracy": mean over the bands} for ``classifier`` (eval mode) on
    the labelled ``data``. The draws (t and ε) come from ``seed`` alone, so two classifiers meet the same x_t."""
    T = schedule.num_timesteps
    edges = np.linspace(0, T, bands + 1).round().astype(int)
    bounds = [(int(edges[k]), int(max(edges[k + 1], edges[k] + 1))) for k in range(bands)]  # [lo, hi), never empty
    schedule = schedule.to(device)
    generator = torch.Generator().manual_seed(seed)
    correct = np.zeros(bands)
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)))
        x0, y = data.batch(index, device)
        for k, (lo, hi) in enumerate(bounds):
            t = torch.randint(lo, hi, (len(x0),), generator=generator)
            noise = torch.randn(x0.shape, generator=generator).to(device)
            x_t = schedule.q_sample(x0, t.to(device), noise)
            correct[k] += (classifier(x_t, schedule.timesteps[t.to(device)]).argmax(1) == y).sum().item()
    n = len(data)
    accuracy = correct / n
    return {"kind": "classifier_eval", "images": n, "seed": seed, "num_classes": data.num_classes,
            "bands": [[lo, hi - 1] for lo, hi in bounds],
            "accuracy_per_band": accuracy.tolist(), "accuracy_se": binomial_se(accuracy, n).tolist(),
            "accuracy": float(accuracy.mean())}
