"""Samplers: stateless functions with one signature

    sampler(model, schedule, x_T, *, steps, prediction, clip_x0, generator, callback, cond, …) -> x_0

where ``model(x_t, t, **cond)`` is any callable returning a prediction shaped like x_t and ``t`` holds
the schedule's original timestep indices. ``sample`` picks one by name.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import torch

from ..errors import DdpmError
from ..schedules import NoiseSchedule
from .common import StepInfo
from .ddim import ddim
from .ddpm import ddpm
from .dpm_solver import dpm_solver_pp
from .plan import DEFAULT_SAMPLER

SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {"ddpm": ddpm, "ddim": ddim, "dpm-solver++": dpm_solver_pp}


def sample(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    sampler: str = DEFAULT_SAMPLER,
    **options: Any,
) -> torch.Tensor:
    """Run the sampler named ``sampler`` ("ddpm" | "ddim" | "dpm-solver++", default ``plan.DEFAULT_SAMPLER``) from
    x_T [B, …] to x_0 [B, …].

    ``options`` are that sampler's keyword arguments (``steps``, ``eta``, ``clip_x0``, ``generator``,
    ``callback``, …); one that the sampler does not take is an error rather than silently ignored.
    """
    if sampler not in SAMPLERS:
        raise DdpmError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")
    fn = SAMPLERS[sampler]
    accepted = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]
    for key in options:
        if key not in accepted:
            raise DdpmError(f"sampler {sampler!r} takes no option {key!r}; its options are {', '.join(accepted)}")
    return fn(model, schedule, x_T, **options)


__all__ = ["SAMPLERS", "StepInfo", "sample", "ddpm", "ddim", "dpm_solver_pp"]
