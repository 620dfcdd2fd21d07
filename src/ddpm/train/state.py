"""What exact resume needs besides the weights: every RNG (torch, CUDA, numpy, python) and the data order.

Saved in ``step_N-state.pt`` with the optimizer; loaded with ``weights_only=True``, so only tensors and plain
Python values appear here.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from ..errors import DdpmError


class DataOrder:
    """A seeded order over a dataset of ``size`` items: one permutation per epoch, consumed in batches (the
    ragged tail of an epoch is dropped). Its state is part of the resume state."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(size, generator=self.generator)
        self.position = 0

    def next(self, batch_size: int) -> torch.Tensor:
        """Indices [batch_size] of the next batch."""
        if self.position + batch_size > len(self.order):  # new epoch: a fresh permutation
            self.order = torch.randperm(self.size, generator=self.generator)
            self.position = 0
        index = self.order[self.position:self.position + batch_size]
        self.position += batch_size
        return index

    def state_dict(self) -> dict[str, Any]:
        return {"data_rng": self.generator.get_state(), "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["order"]) != self.size:  # the same order over other data would be another run
            raise DdpmError(f"the checkpoint's data order covers {len(state['order'])} images but the dataset now has "
                            f"{self.size}: the data changed since the run started (resume needs the same data)")
        self.generator.set_state(state["data_rng"])
        self.order, self.position = state["order"], int(state["position"])


def seed_global_rngs(seed: int) -> None:
    """Seed every global RNG from ``seed`` (a 64-bit integer): torch's (CPU and CUDA), numpy's and Python's."""
    torch.manual_seed(seed)
    np.random.seed([seed & 0xFFFFFFFF, seed >> 32])  # numpy's legacy seed takes 32-bit words
    random.seed(seed)


def global_rng_state(device: torch.device) -> dict[str, Any]:
    """The global RNGs (dropout and anything else that draws from them) as tensors and plain values."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        "numpy_rng": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                      "cached_gaussian": float(cached)},
        "python_rng": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss_next": py_gauss},
    }


def restore_global_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") and device.type == "cuda":
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    n = state["numpy_rng"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python_rng"]
    random.setstate((p["version"], tuple(p["state"].tolist()), p["gauss_next"]))
