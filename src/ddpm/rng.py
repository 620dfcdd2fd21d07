"""Random draws that give the same numbers for a seed whichever device the result lives on.

A ``torch.Generator`` draws on its own device; drawing there and moving the result to ``device`` makes a
CPU generator's stream independent of where the tensors end up (CPU and CUDA generators differ).
"""
from __future__ import annotations

import torch


def _draw(fn, shape, generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    source = generator.device if generator is not None else device
    return fn(tuple(shape), generator=generator, device=source, dtype=dtype).to(device)


def randn(shape, generator: torch.Generator | None, device: torch.device | str = "cpu",
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``device``, drawn on the generator's device."""
    return _draw(torch.randn, shape, generator, device, dtype)


def rand(shape, generator: torch.Generator | None, device: torch.device | str = "cpu",
         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform [0, 1) numbers of ``shape`` on ``device``, drawn on the generator's device."""
    return _draw(torch.rand, shape, generator, device, dtype)
