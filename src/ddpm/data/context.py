"""Context vectors: one float vector c ∈ R^k per training image, for a U-Net conditioned on them (``model.context_dim``).

Where they come from (``data.context``):
- ``onehot``: the dataset's labels as one-hot vectors (k = the number of classes): label conditioning through the
  context path, so that mixtures such as 0.5·"3" + 0.5·"5" can be asked for at sampling;
- a ``.npy`` file: a float array [N, k] whose row i belongs to image i of the training split in the dataset's own
  order (before any ``data.limit`` subset, which takes the same rows);
- ``json``: for a folder dataset, a sidecar beside each image (``cat.png`` → ``cat.json``) holding a list of k
  numbers, or an object with a ``"context"`` list.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import DdpmError
from ..io import read_npy

CONTEXT_SOURCES = ("onehot", "json")  # or the path of a .npy file


def check_context_source(spec: str) -> None:
    if spec not in CONTEXT_SOURCES and not spec.endswith(".npy"):
        raise DdpmError(f"data.context must be onehot, json or the path of a .npy file, got {spec!r}")


def onehot(labels: torch.Tensor | None, num_classes: int | None, dataset: str) -> torch.Tensor:
    """labels [N] → float32 [N, K] one-hot vectors."""
    if labels is None or not num_classes:
        raise DdpmError(f"data.context = onehot needs labels; dataset {dataset!r} has none")
    return torch.nn.functional.one_hot(labels, num_classes).float()


def from_npy(path: str | Path, num_images: int) -> torch.Tensor:
    """The [N, k] float vectors of a .npy file, checked: two dimensions, one row per image, finite numbers."""
    array = read_npy(path)
    if array.ndim != 2 or array.shape[1] < 1 or not np.issubdtype(array.dtype, np.number):
        raise DdpmError(f"context file {path} must hold numbers of shape [N, k], got {array.dtype} {list(array.shape)}")
    if len(array) != num_images:
        raise DdpmError(f"context file {path} has {len(array)} rows but the training split has {num_images} images "
                        "(one row per image, in the dataset's order)")
    return check_finite(torch.from_numpy(array.astype(np.float32)), f"context file {path}")


def from_sidecars(files: list[Path]) -> torch.Tensor:
    """The vectors of the JSON sidecars beside ``files`` (same stem, .json), all of one length."""
    rows = []
    for image in files:
        sidecar = image.with_suffix(".json")
        try:
            value = json.loads(sidecar.read_text())
        except FileNotFoundError:
            raise DdpmError(f"image {image} has no context sidecar {sidecar.name} (data.context = json)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DdpmError(f"context sidecar {sidecar} is not readable JSON: {e}") from None
        if isinstance(value, dict):
            value = value.get("context")
        if not isinstance(value, list) or not value or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise DdpmError(f"context sidecar {sidecar} must hold a list of numbers (or {{\"context\": [...]}})")
        if rows and len(value) != len(rows[0]):
            raise DdpmError(f"context sidecar {sidecar} has {len(value)} numbers; {files[0].with_suffix('.json').name} has {len(rows[0])}")
        rows.append(value)
    return check_finite(torch.tensor(rows, dtype=torch.float32), "the context sidecars")


def check_finite(contexts: torch.Tensor, source: str) -> torch.Tensor:
    bad = (~torch.isfinite(contexts)).any(1).nonzero().flatten()
    if len(bad):
        raise DdpmError(f"{source}: row {bad[0].item()} is not finite (NaN or infinity); {len(bad)} such row(s)")
    return contexts


def parse_vector(text: str) -> torch.Tensor:
    """A --context value: comma-separated numbers (one vector, [1, k]) or a .npy file of vectors ([n, k] or [k])."""
    if text.endswith(".npy"):
        array = read_npy(text)
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise DdpmError(f"context vector file {text} must hold numbers of shape [n, k] or [k], got {array.dtype} {list(array.shape)}")
        return check_finite(torch.from_numpy(array.astype(np.float32)), f"--context file {text}")
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise DdpmError(f"context vectors must be comma-separated numbers such as 0,0,1,0,0 or a .npy file, got {text!r}") from None
    return check_finite(torch.tensor([values], dtype=torch.float32), "--context")
