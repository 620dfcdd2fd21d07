"""The one home of a share's uncertainty: the binomial standard error √(p(1−p)/n)."""
from __future__ import annotations

import numpy as np


def binomial_se(p, n: int):
    """Standard error of a share p (a float or an array of them) measured on n independent trials."""
    return np.sqrt(np.asarray(p, dtype=float) * (1 - np.asarray(p, dtype=float)) / n)


def binomial_share(hits) -> dict:
    """The share of True in ``hits`` [n] with its binomial standard error: {"value", "se", "num"}."""
    hits = np.asarray(hits, dtype=bool)
    p = float(hits.mean())
    return {"value": p, "se": float(binomial_se(p, len(hits))), "num": len(hits)}
