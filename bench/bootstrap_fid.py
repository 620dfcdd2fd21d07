"""The cost of a study's bootstrap FID interval: one resampled FID, the old way against ``ResampledFrechet``.

    .venv/bin/python bench/bootstrap_fid.py [--draws 5]

A study scores every arm with 200 bootstrap draws (``study.stats.bootstrap_fid``). The old way built each draw's
statistics from the resampled rows and called ``frechet_distance`` (a covariance and two D × D symmetric
eigendecompositions per draw); ``ResampledFrechet`` weights the rows by their counts, maps them through the
reference's Σ^½ once, and takes one eigendecomposition of size min(distinct rows, D). Both give the same value
(tests/test_metrics.py); this prints the time per draw of each, side by side in one run, for the domain
classifier's 128-d features and Inception's 2048-d ones (synthetic Gaussian features: the cost does not depend on
the values), and the whole 200-draw interval it implies. Prints a Markdown table for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from ddpm.metrics.frechet import FeatureStats, ResampledFrechet, frechet_distance
from ddpm.metrics.bootstrap import BOOTSTRAP_DRAWS


def per_draw(fn, draws: int) -> float:
    start = time.perf_counter()
    for _ in range(draws):
        fn()
    return (time.perf_counter() - start) / draws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=5, help="timed draws per case")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, numpy {np.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("| features | n | old: rows → frechet_distance, s/draw | ResampledFrechet, s/draw | speed-up | 200-draw interval, old → new |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for dim, n in [(128, 1000), (2048, 1000), (2048, 10000)]:
        reference = FeatureStats.from_features(rng.normal(size=(max(3000, dim + n), dim)), "f", "reference")
        features = rng.normal(size=(n, dim))
        rows = [rng.integers(0, n, n) for _ in range(args.draws)]
        old_rows, new_rows = iter(rows), iter(rows)
        old = per_draw(lambda: frechet_distance(FeatureStats.from_features(features[next(old_rows)], "f"), reference), args.draws)
        fid = ResampledFrechet(features, reference, feature="f")
        new = per_draw(lambda: fid(np.bincount(next(new_rows), minlength=n)), args.draws)
        print(f"| {dim}-d | {n} | {old:.4f} | {new:.4f} | {old / new:.1f}× | "
              f"{old * BOOTSTRAP_DRAWS:.0f} s → {new * BOOTSTRAP_DRAWS:.0f} s |")


if __name__ == "__main__":
    main()
