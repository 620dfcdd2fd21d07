"""Scoring a set of samples — the one pipeline ``ddpm eval`` and the studies share: features (and a domain
classifier's logits), the FID against a reference with its bootstrap interval over the samples, and the shares a
classifier reads (confidently; as the class asked for) with their binomial standard errors."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .metrics.bootstrap import BOOTSTRAP_DRAWS, BootstrappedFID, bootstrap_fid
from .metrics.domain import DomainScores, domain_scores
from .metrics.features import features_and_logits
from .metrics.frechet import FeatureStats, ResampledFrechet
from .metrics.shares import binomial_se, binomial_share


@dataclass
class SampleScores:
    """What one set of n samples scored: ``fid`` (value, and its 95% bootstrap interval at this n when drawn),
    and, for an extractor with a classification head, its ``domain`` scores, the ``confident`` share and, when
    classes were asked for, the ``asked`` share ({"value", "se", "num"})."""

    feature: str
    num: int
    fid: float
    interval: BootstrappedFID | None
    domain: DomainScores | None = None
    confident: dict[str, Any] | None = None
    asked: dict[str, Any] | None = None
    features: np.ndarray | None = None  # [n, D], for a caller that measures more on them


def score_samples(images: torch.Tensor, extractor, reference: FeatureStats, *, labels: torch.Tensor | None = None,
                  draws: int = BOOTSTRAP_DRAWS, progress=None) -> SampleScores:
    """Score uint8 images [n, C, H, W] (asked for classes ``labels`` [n], or None) with ``extractor`` against
    ``reference``; ``draws`` bootstrap resamples for the FID's interval (0: the value alone)."""
    feats, logits = features_and_logits(extractor, images, progress)
    if draws:
        interval = bootstrap_fid(feats, reference, feature=extractor.feature, draws=draws)
        fid = interval.value
    else:
        interval, fid = None, ResampledFrechet(feats, reference, feature=extractor.feature)()
    out = SampleScores(extractor.feature, len(images), fid, interval, features=feats)
    if logits is not None:
        out.domain = domain_scores(logits)
        out.confident = {"value": out.domain.confident, "se": float(binomial_se(out.domain.confident, len(logits))),
                         "num": len(logits)}
        if labels is not None:  # how many samples read as the class they were asked for
            out.asked = binomial_share((logits.argmax(1) == labels.cpu()).numpy())
    return out


def score(images: torch.Tensor, reference: str | FeatureStats | torch.Tensor = "mnist:test", *, feature: str = "inception",
          labels: torch.Tensor | None = None, draws: int = BOOTSTRAP_DRAWS, device: torch.device | str = "cpu",
          data_dir: str | None = None) -> SampleScores:
    """FID (with its 95% bootstrap interval at this n) and, with ``feature="domain"``, the domain classifier's shares, of
    uint8 images [n, C, H, W] (``ddpm.generate``'s output) against ``reference``: "DATASET:SPLIT" (statistics computed
    once and cached, at the images' size), saved ``FeatureStats``, or real uint8 images [m, C, H, W]. Say which
    reference and n when you quote the number: FID at n is biased upwards by about tr(Σ)/n."""
    from .errors import DdpmError
    from .metrics.features import feature_extractor
    from .metrics.fid import dataset_stats, extract

    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.ndim != 4:
        raise DdpmError("images must be a uint8 tensor [n, C, H, W] (what ddpm.generate returns)")
    dataset = reference.split(":")[0] if isinstance(reference, str) else "mnist"
    extractor = feature_extractor(feature, dataset, device=device)
    if isinstance(reference, str):
        reference = dataset_stats(reference, extractor, data_dir=data_dir, image_size=images.shape[-1],
                                  channels=images.shape[1])
    elif torch.is_tensor(reference):
        reference = FeatureStats.from_features(extract(extractor, reference), extractor.feature, "the images given")
    return score_samples(images, extractor, reference, labels=labels, draws=draws)
