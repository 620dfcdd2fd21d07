"""Feature extractors by name — the one place a name becomes an extractor: "inception" (Inception-v3 with the
TF 2015-12-05 weights, 2048-d pool features: FID as the papers compute it) or "domain" (the small classifier
ddpm ships for MNIST and Fashion-MNIST, 128-d features and 10 logits)."""
from __future__ import annotations

import numpy as np
import torch

from .. import distributed
from ..errors import DdpmError
from .fid import extract

FEATURES = ("inception", "domain")


def feature_extractor(name: str, dataset: str | None = None, *, device: torch.device | str = "cpu",
                      batch_size: int | None = None):
    """The extractor called ``name`` (``dataset`` picks the domain classifier); ``batch_size`` images per forward
    pass (Inception's own default when None)."""
    if name == "inception":
        from .inception import InceptionFeatures

        return InceptionFeatures(device=device) if batch_size is None else InceptionFeatures(device=device, batch_size=batch_size)
    if name == "domain":
        from .domain import DomainFeatures

        return DomainFeatures(dataset or "", device=device)
    raise DdpmError(f"unknown feature extractor {name!r}; expected one of {', '.join(FEATURES)}")


def features_and_logits(extractor, images: torch.Tensor, progress=None) -> tuple[np.ndarray, torch.Tensor | None]:
    """(features float64 [N, D], logits float64 [N, K] or None for an extractor without a head) of uint8 images
    [N, C, H, W]; under torchrun the ranks share the rows and every rank gets all N in order."""
    if not hasattr(extractor, "classify"):
        return extract(extractor, images, progress), None
    counted = distributed.counting_all_ranks(progress)
    dim = extractor.dim

    def both(x: torch.Tensor) -> torch.Tensor:
        feats, logits = extractor.classify(x, counted)
        return torch.cat([torch.from_numpy(feats), logits.double()], 1)

    rows = distributed.map_shards(both, images)  # [N, D + K]
    return rows[:, :dim].numpy(), rows[:, dim:]
