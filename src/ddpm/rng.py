"""Random draws that give the same numbers for a seed whichever device and batch the result lives in.

A ``torch.Generator`` draws on its own device; drawing there and moving the result to ``device`` makes a
CPU generator's stream independent of where the tensors end up (CPU and CUDA generators differ).

``SampleNoise`` gives every sample its own stream, seeded from (seed, sample index) as EDM's
``StableRandomState`` does: sample i of a run is the same image whatever the batch size, the batch it
falls in or the machine that draws it (which is what lets sampling be split across processes).
"""
from __future__ import annotations

from typing import Iterable, Union

import numpy as np
import torch

from .errors import DdpmError


def sample_seed(seed: int, index: int) -> int:
    """The 64-bit seed of sample ``index`` of a run seeded ``seed`` (numpy's SeedSequence mixes the pair,
    so neighbouring seeds and indices give unrelated streams)."""
    if seed < 0 or index < 0:
        raise DdpmError(f"seeds and sample indices must be non-negative, got seed {seed}, index {index}")
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0])


class SampleNoise:
    """One CPU generator per sample: ``randn(shape)`` with shape [B, …] stacks a draw of shape […] from each
    of the B streams, in order. Built for the samples ``indices`` of a run seeded ``seed``."""

    def __init__(self, seed: int, indices: Iterable[int]):
        self.generators = [torch.Generator().manual_seed(sample_seed(seed, int(i))) for i in indices]

    def __len__(self) -> int:
        return len(self.generators)

    def draw(self, fn, shape, device, dtype) -> torch.Tensor:
        shape = tuple(shape)
        if not shape or shape[0] != len(self.generators):
            raise DdpmError(f"noise for a batch of shape {shape} asked of {len(self.generators)} per-sample streams")
        out = torch.stack([fn(shape[1:], generator=g, dtype=dtype) for g in self.generators])
        return out.to(device)


Generator = Union[torch.Generator, SampleNoise, None]


def _draw(fn, shape, generator: Generator, device, dtype) -> torch.Tensor:
    if isinstance(generator, SampleNoise):
        return generator.draw(fn, shape, device, dtype)
    source = generator.device if generator is not None else device
    return fn(tuple(shape), generator=generator, device=source, dtype=dtype).to(device)


def randn(shape, generator: Generator, device: torch.device | str = "cpu",
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``device``, drawn on the generator's device (or per sample)."""
    return _draw(torch.randn, shape, generator, device, dtype)


def rand(shape, generator: Generator, device: torch.device | str = "cpu",
         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform [0, 1) numbers of ``shape`` on ``device``, drawn on the generator's device (or per sample)."""
    return _draw(torch.rand, shape, generator, device, dtype)
