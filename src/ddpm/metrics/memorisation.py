"""Does a model copy its training images? Nearest-neighbour distances in pixel space, set against held-out data.

For each sample the distance to its nearest training image (root-mean-square over pixels in [−1, 1]) is compared
with the same distance for real test images, which the model never saw: ``nn_ratio`` is the median over samples
divided by the median over test images (≈ 1: as far from the training set as new real data; ≪ 1: copies), and
``near_copies`` the share of samples closer to a training image than 99% of test images are (≈ 1% for a model that
does not copy, with its binomial standard error).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..data import from_uint8
from .shares import binomial_share

NEAR_QUANTILE = 0.01


def nearest_distances(queries: torch.Tensor, train: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """uint8 [n, C, H, W] and [N, C, H, W] → the RMS pixel distance [n] of each query to its nearest training image."""
    reference = from_uint8(train).flatten(1)
    dims = reference.shape[1]
    out = []
    for part in queries.split(chunk):
        out.append(torch.cdist(from_uint8(part).flatten(1), reference).min(1).values / dims**0.5)
    return torch.cat(out)


def memorisation(samples: torch.Tensor, test: torch.Tensor, train: torch.Tensor) -> dict[str, Any]:
    """The record {"nn_ratio", "near_copies": {value, se, num}, "sample_nn_median", "test_nn_median", "threshold"}."""
    d_samples, d_test = nearest_distances(samples, train).numpy(), nearest_distances(test, train).numpy()
    threshold = float(np.quantile(d_test, NEAR_QUANTILE))
    return {"nn_ratio": float(np.median(d_samples) / np.median(d_test)), "sample_nn_median": float(np.median(d_samples)),
            "test_nn_median": float(np.median(d_test)), "threshold": threshold, "train_images": len(train),
            "near_copies": binomial_share(d_samples < threshold)}
