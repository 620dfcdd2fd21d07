"""Inception Score (Salimans et al. 2016) over any classifier's logits, with the standard split protocol.

IS = exp(E_x KL(p(y|x) ‖ p(y))), computed on each of ``splits`` equal parts of the samples; the mean and
standard deviation over the parts are reported (10 splits in the original code). Its maximum is the number
of classes (confident predictions spread evenly over all classes); 1 is the minimum.
"""
from __future__ import annotations

import torch

from ..errors import DdpmError


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """logits [N, K] → (mean IS over splits, standard deviation over splits), computed in float64."""
    if logits.ndim != 2:
        raise DdpmError(f"inception_score takes logits [N, K], got shape {tuple(logits.shape)}")
    if not 1 <= splits <= len(logits):
        raise DdpmError(f"inception_score needs 1 ≤ splits ≤ number of samples ({len(logits)}), got {splits}")
    log_p = logits.double().log_softmax(1)
    scores = []
    for part in log_p.chunk(splits):
        log_marginal = part.exp().mean(0).log()
        kl = (part.exp() * (part - log_marginal)).sum(1).mean()
        scores.append(kl.exp())
    scores = torch.stack(scores)
    return scores.mean().item(), (scores.std(unbiased=False).item() if splits > 1 else 0.0)
