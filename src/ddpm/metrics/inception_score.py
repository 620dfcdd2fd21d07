"""Inception Score (Salimans et al. 2016) over any classifier's logits, with the standard split protocol.

IS = exp(E_x KL(p(y|x) ‖ p(y))), computed on each of ``splits`` parts of the samples, part i being samples
i·N//splits … (i+1)·N//splits − 1 as in the original code (so N need not divide evenly); the mean and the
(population) standard deviation over the parts are reported (10 splits in the original code). Its maximum is the number
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
    n = len(log_p)
    for i in range(splits):  # not torch.chunk: for N = 12 and 10 splits it makes 6 parts of 2
        part = log_p[i * n // splits:(i + 1) * n // splits]
        log_marginal = part.exp().mean(0).log()
        kl = (part.exp() * (part - log_marginal)).sum(1).mean()
        scores.append(kl.exp())
    scores = torch.stack(scores)
    return scores.mean().item(), (scores.std(unbiased=False).item() if splits > 1 else 0.0)
