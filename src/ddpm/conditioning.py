"""What a sample is conditioned on: labels, their one-hot context vectors, context vectors given by a user, and
the network's keyword arguments (``y``, ``context``) that ask for them."""
from __future__ import annotations

import torch

from .denoiser import Denoiser
from .errors import DdpmError


def one_hot(labels: torch.Tensor, k: int) -> torch.Tensor:
    """labels [n] → float32 one-hot vectors [n, k]: the contexts of a run on data.context = onehot."""
    if labels.min() < 0 or labels.max() >= k:
        raise DdpmError(f"the label must be in 0..{k - 1} for this model, got {labels.max().item()}")
    return torch.nn.functional.one_hot(labels.long(), k).float()


def check_contexts(contexts: torch.Tensor, context_dim: int | None, num: int) -> torch.Tensor:
    """Context vectors [n, k] for ``num`` samples: refused for a model without context, of the wrong length or not
    finite; n = num, or n rows cycled (sample i gets row i mod n: one row for all, a few mixtures in turn)."""
    if not context_dim:
        raise DdpmError("a context vector was given but this model takes none (it was not trained with data.context)")
    if contexts.ndim != 2 or contexts.shape[1] != context_dim:
        raise DdpmError(f"context vectors must have {context_dim} numbers for this model, got {contexts.shape[-1]}")
    if not torch.isfinite(contexts).all():
        raise DdpmError("context vectors must be finite numbers (no NaN or infinity)")
    return contexts.float()[torch.arange(num) % len(contexts)] if len(contexts) != num else contexts.float()


def model_cond(denoiser: Denoiser, labels: torch.Tensor | None) -> dict | None:
    """The network's keyword arguments that ask for classes ``labels`` [n]: y for a class-conditional model, their
    one-hot context vectors for a model on one-hot contexts, None otherwise (an unconditional model, or one on other
    context vectors: the null context)."""
    if labels is None:
        return None
    if denoiser.onehot:
        return {"context": one_hot(labels, denoiser.context_dim)}
    return {"y": labels} if denoiser.num_classes else None


def labels_for(num_classes: int | None, num: int, label: int | None = None) -> torch.Tensor | None:
    """Labels [num] to sample a model with: None for an unconditional model, ``label`` for every sample, or
    (default) 0, 1, …, K−1, 0, … so that a grid of K columns shows one class per column."""
    if not num_classes:
        if label is not None:
            raise DdpmError("a label was given but this model is unconditional")
        return None
    if label is None:
        return torch.arange(num) % num_classes
    if not 0 <= label < num_classes:
        raise DdpmError(f"the label must be in 0..{num_classes - 1} for this model, got {label}")
    return torch.full((num,), label)
