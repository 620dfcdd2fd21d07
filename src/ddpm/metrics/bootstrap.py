"""FID with its bootstrap interval over the samples (the one home of the resample count and the level).

The n samples' feature vectors are resampled with replacement B times, the reference statistics held fixed, and
the 2.5 and 97.5 percentiles of the resampled FIDs, re-centred on the measured value, bound it. The re-centring
matters: a resample repeats some samples, which alone raises FID (the same 1/n bias as a smaller set). What the
interval covers: the FID of this model *at this n* (the spread from one draw of n samples to the next), which
is what comparing two models at equal n needs; not the model's large-sample FID, which FID at n overstates by
about tr(Σ)/n.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .frechet import FeatureStats, ResampledFrechet

BOOTSTRAP_DRAWS = 200
LEVEL = 0.95


@dataclass
class BootstrappedFID:
    """FID of the whole set, its 95% bootstrap interval and the B re-centred resampled values (for differences)."""

    value: float
    low: float
    high: float
    draws: np.ndarray
    num: int

    def as_dict(self) -> dict:
        """Plain data (study-result.json): the draws are kept, so that differences between arms can be bootstrapped."""
        return {"value": self.value, "low": self.low, "high": self.high, "num": self.num, "draws": self.draws.tolist()}


def bootstrap_fid(features: np.ndarray, reference: FeatureStats, *, feature: str, draws: int = BOOTSTRAP_DRAWS,
                  seed: int = 0) -> BootstrappedFID:
    """FID of features [n, D] of the extractor ``feature`` against ``reference``, with its re-centred bootstrap
    interval over the n rows."""
    fid = ResampledFrechet(features, reference, feature=feature)
    n = len(fid.x)
    rng = np.random.default_rng(seed)
    value = fid()
    values = np.array([fid(np.bincount(rng.integers(0, n, n), minlength=n)) for _ in range(draws)])
    values += value - values.mean()  # re-centred: the resampling's own upward bias removed
    tail = (1 - LEVEL) / 2
    return BootstrappedFID(value, float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail)), values, n)
