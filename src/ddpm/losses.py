"""Elementwise loss helpers shared by the training objectives and the likelihood code."""
from __future__ import annotations

import torch


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension but the batch: [B, …] -> [B]."""
    return x.reshape(x.shape[0], -1).mean(dim=1)
