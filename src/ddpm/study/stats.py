"""Honest numbers for studies: FID with a bootstrap interval, the real-vs-real floor at the same sample size,
binomial standard errors of shares (``metrics.shares``), and whether a difference between two arms exceeds the noise.

The FID of n samples is biased upwards by roughly tr(Σ)/n and scatters from one draw of n to the next. Its
interval here is the bootstrap over the samples' features (the reference statistics, from the test split, held
fixed): the n feature vectors are resampled with replacement B times, and the 2.5 and 97.5 percentiles of the
resampled FIDs, re-centred on the measured value, bound it. The re-centring matters: a resample repeats some
samples, which alone raises FID (fewer distinct points, the same 1/n bias as a smaller set), so the raw
percentiles sit above the measured value and, at small n, do not even contain it. The *floor* is the FID of n real training images against the same
reference: what a perfect model would score at this n. Two arms differ significantly when the 95% interval
of the difference of their bootstrapped FIDs excludes 0. The bootstrap is paired: every arm resamples the same
indices (one seed), and sample i of every arm shares its noise and label, so the difference's interval is narrower
than the two intervals side by side suggest.

With several training seeds the bootstrap still measures only the sampling noise of the trained models; how much a
difference moves from one training run to the next is the spread of the per-seed differences (``across_seeds``: a
t-interval over the K paired seeds). A study then calls a claim settled only when both intervals exclude 0.
"""
from __future__ import annotations


import numpy as np

from ..metrics.bootstrap import LEVEL


def difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high) of a − b over bootstrap draws paired by index (the same resampled sample indices in both arms):
    the 95% interval of the difference of two FIDs."""
    d = np.asarray(a) - np.asarray(b)
    tail = (1 - LEVEL) / 2
    return float(d.mean()), float(np.quantile(d, tail)), float(np.quantile(d, 1 - tail))


def paired_mean_se(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean, standard error) of a − b over items paired by index (the same test images, noise and timestep draws
    scored by two models, or by one model at two stages of training)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def paired_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high) of the mean of a − b over items paired by index (two models' NLL bounds of the same test
    images with the same timestep draws): the normal 95% interval, mean ± 1.96 standard errors of the differences."""
    mean, se = paired_mean_se(a, b)
    z = 1.959963984540054  # the standard normal's 97.5% quantile (LEVEL = 0.95)
    return mean, mean - z * se, mean + z * se


def across_seeds(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high) of a − b over K ≥ 2 training seeds paired by index (arm a's and arm b's run of seed k share
    their data order and evaluation noise): mean ± t_{K−1} · sd / √K, the 95% Student interval, wide for small K
    as it should be (t_1 = 12.7 for two seeds)."""
    import scipy.stats  # 0.7 s of import, which every `ddpm` command would pay at start-up (the CLI imports ddpm.study)

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    k = len(d)
    half = scipy.stats.t.ppf(1 - (1 - LEVEL) / 2, k - 1) * d.std(ddof=1) / np.sqrt(k)
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
