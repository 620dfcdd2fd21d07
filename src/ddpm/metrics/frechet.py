"""Feature statistics and the Fréchet distance between two Gaussians, in float64.

FID (Heusel et al. 2017) = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½).

tr((Σ₁Σ₂)^½) is the sum of the square roots of the eigenvalues of Σ₁Σ₂, which are those of the symmetric
positive semi-definite Σ₁^½ Σ₂ Σ₁^½; two symmetric eigendecompositions give it without the complex
round-off that ``scipy.linalg.sqrtm`` of the non-symmetric product shows when Σ is singular (fewer
samples than feature dimensions).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DdpmError
from ..io import atomic_write, read_npz

STATS_FORMAT = 1


@dataclass
class FeatureStats:
    """Mean [D] and covariance [D, D] (float64, unbiased) of ``num`` feature vectors from ``feature``."""

    mu: np.ndarray
    sigma: np.ndarray
    num: int
    feature: str
    source: str = ""

    @classmethod
    def from_features(cls, features: np.ndarray, feature: str, source: str = "") -> "FeatureStats":
        """features [N, D] → statistics; N ≥ 2 (a covariance needs two samples)."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2:
            raise DdpmError(f"features must be [N, D], got shape {features.shape}")
        if len(features) < 2:
            raise DdpmError(f"{source or 'an image set'} has {len(features)} image(s); FID needs at least 2 (a covariance)")
        return cls(features.mean(0), np.atleast_2d(np.cov(features, rowvar=False)), len(features), feature, source)  # [1, 1] for D = 1

    def save(self, path: str | Path) -> Path:
        """Write an .npz atomically (numpy writes into the open, fsynced handle; no file is left unclosed)."""
        return atomic_write(path, lambda f: np.savez(f, mu=self.mu, sigma=self.sigma, num=self.num, feature=self.feature,
                                                     source=self.source, format=STATS_FORMAT))

    @classmethod
    def load(cls, path: str | Path, arrays: dict[str, np.ndarray] | None = None) -> "FeatureStats":
        """Statistics written by ``save`` (or mu/sigma from another FID tool), checked: shapes, finite numbers.
        ``arrays``: the file's contents when already read (``ddpm.io.read_npz``)."""
        path = Path(path)
        f = read_npz(path) if arrays is None else arrays
        if "mu" not in f or "sigma" not in f:
            raise DdpmError(f"{path} is not a statistics file (an .npz with mu and sigma); it holds {', '.join(f) or 'nothing'}")
        try:
            mu, sigma = f["mu"].astype(np.float64), f["sigma"].astype(np.float64)
            num = int(f["num"]) if "num" in f else 0
        except (TypeError, ValueError) as e:
            raise DdpmError(f"{path}: mu, sigma and num must be numbers ({e})") from None
        feature = str(f["feature"]) if "feature" in f else "inception-2015-12-05"
        source = str(f["source"]) if "source" in f else str(path)
        if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
            raise DdpmError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not form a mean and covariance")
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise DdpmError(f"{path}: its mean or covariance holds NaN or infinite values (recompute the statistics)")
        return cls(mu, sigma, num, feature, source)


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _fid(mean_difference: np.ndarray, trace_a: float, trace_b: float, cross_eigenvalues: np.ndarray) -> float:
    """‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 Σ √λ, λ the eigenvalues of Σ₁^½ Σ₂ Σ₁^½ (or of any matrix sharing its nonzero ones)."""
    trace_sqrt = np.sqrt(np.clip(cross_eigenvalues, 0, None)).sum()
    return float(mean_difference @ mean_difference + trace_a + trace_b - 2 * trace_sqrt)


def check_same_extractor(feature: str, reference: FeatureStats) -> None:
    """Refuse to compare features of ``feature`` with statistics of another extractor (of the same width, say an
    Inception port with other weights): their distance would be a number that means nothing."""
    if feature != reference.feature:
        raise DdpmError(f"cannot compare statistics of different feature extractors: {feature} and {reference.feature}")


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """Fréchet distance between N(μ_a, Σ_a) and N(μ_b, Σ_b); refuses statistics of different features."""
    if a.mu.shape != b.mu.shape:
        raise DdpmError(f"cannot compare statistics of {len(a.mu)}-d features ({a.source or a.feature}) "
                        f"with {len(b.mu)}-d features ({b.source or b.feature})")
    check_same_extractor(a.feature, b)
    root_a = _sqrt_psd(a.sigma)
    cross = np.linalg.eigvalsh(root_a @ b.sigma @ root_a)
    return _fid(a.mu - b.mu, np.trace(a.sigma), np.trace(b.sigma), cross)


class ResampledFrechet:
    """FID against a reference of one feature set [n, D] taken with multiplicities: fast, for a bootstrap.

    A set drawn from the n rows x_i with multiplicities c_i (Σ c_i = n; all 1 for the set itself, a multinomial
    draw for a bootstrap resample) has μ = Σ c_i x_i / n and Σ = AᵀA over the rows a_i = √(c_i/(n−1)) (x_i − μ),
    exactly ``np.cov`` of the n rows with their repeats. With Σ_r^½ computed once and the rows mapped once,
    z_i = Σ_r^½ x_i, Σ_r^½ Σ Σ_r^½ = BᵀB with b_i = √(c_i/(n−1)) (z_i − Σ_r^½ μ), whose nonzero eigenvalues are
    those of the k × k Gram matrix BBᵀ over the k rows with c_i > 0: a draw costs one symmetric eigendecomposition
    of size min(k, D) — for 1000 Inception features (D = 2048) about 630 — instead of ``frechet_distance``'s two
    of size D and a covariance.
    """

    def __init__(self, features: np.ndarray, reference: FeatureStats, *, feature: str):
        """``features`` [n, D] from the extractor named ``feature``, which must be the reference's."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2 or x.shape[1] != len(reference.mu):
            raise DdpmError(f"features of shape {x.shape} cannot be compared with the {len(reference.mu)}-d features of "
                            f"{reference.source or reference.feature} (expected [N ≥ 2, {len(reference.mu)}])")
        check_same_extractor(feature, reference)
        self.reference, self.x = reference, x
        self.root = _sqrt_psd(reference.sigma)
        self.z = x @ self.root
        self.reference_trace = float(np.trace(reference.sigma))

    def __call__(self, counts: np.ndarray | None = None) -> float:
        """FID of the rows taken ``counts`` [n] times each (default: once each, the set itself; Σ counts = n)."""
        n = len(self.x)
        c = np.ones(n) if counts is None else np.asarray(counts, dtype=np.float64)
        kept = c > 0
        x, z, c = self.x[kept], self.z[kept], c[kept]
        weights = np.sqrt(c / (n - 1))[:, None]
        mu = c @ x / n
        a = weights * (x - mu)
        b = weights * (z - mu @ self.root)
        gram = b @ b.T if len(b) < b.shape[1] else b.T @ b
        return _fid(mu - self.reference.mu, float(np.einsum("ij,ij->", a, a)), self.reference_trace, np.linalg.eigvalsh(gram))
