"""Which timesteps a training batch uses: uniform, or importance-sampled by the loss (improved DDPM §3.3).

``loss_aware`` keeps the last ``HISTORY`` values of L_t per timestep; until every timestep has that many it
samples uniformly, then p_t ∝ √E[L_t²], mixed with ``UNIFORM_SHARE`` of the uniform distribution so that no
timestep starves. Each example's loss is multiplied by 1/(T p_t), which keeps the objective's expectation
that of uniform sampling (the estimator stays unbiased, its variance drops).
"""
from __future__ import annotations

from typing import Any

import torch

from .errors import DdpmError
from .objectives import sample_timesteps_uniform

TIMESTEP_SAMPLERS = ("uniform", "loss_aware")
HISTORY = 10
UNIFORM_SHARE = 0.001


class TimestepSampler:
    """t [B] and the importance weights [B] that make the weighted loss an unbiased estimate of the uniform one."""

    def __init__(self, kind: str, num_timesteps: int):
        if kind not in TIMESTEP_SAMPLERS:
            raise DdpmError(f"unknown timestep sampler {kind!r}; expected one of {', '.join(TIMESTEP_SAMPLERS)}")
        self.kind, self.num_timesteps = kind, num_timesteps
        self.history = torch.zeros(num_timesteps, HISTORY, dtype=torch.float64)
        self.count = torch.zeros(num_timesteps, dtype=torch.long)  # uniform keeps these empty: nothing to learn

    def probabilities(self) -> torch.Tensor:
        """p_t, float64 [T], summing to 1."""
        T = self.num_timesteps
        if self.kind == "uniform" or (self.count < HISTORY).any():
            return torch.full((T,), 1.0 / T, dtype=torch.float64)
        w = self.history.pow(2).mean(1).sqrt()
        w = w / w.sum()
        return w * (1 - UNIFORM_SHARE) + UNIFORM_SHARE / T

    def sample(self, batch_size: int, device: torch.device | str,
               generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(t int64 [B], weights float32 [B] = 1/(T p_t), None for uniform sampling) on ``device``, drawn with
        ``generator`` (on its device)."""
        if self.kind == "uniform":
            return sample_timesteps_uniform(batch_size, self.num_timesteps, device=device, generator=generator), None
        p = self.probabilities()
        gen_device = generator.device if generator is not None else torch.device("cpu")
        t = torch.multinomial(p.to(gen_device), batch_size, replacement=True, generator=generator).to(device)
        weights = 1.0 / (self.num_timesteps * p[t.cpu()])
        return t, weights.to(device=device, dtype=torch.float32)

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Record the per-example losses [B] (the VLB terms L_t) seen at timesteps t [B]."""
        if self.kind == "uniform":
            return
        for step, loss in zip(t.tolist(), losses.detach().double().cpu().tolist()):
            if self.count[step] == HISTORY:
                self.history[step, :-1] = self.history[step, 1:].clone()
                self.history[step, -1] = loss
            else:
                self.history[step, self.count[step]] = loss
                self.count[step] += 1

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "history": self.history.clone(), "count": self.count.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["kind"] != self.kind or state["history"].shape != self.history.shape:
            raise DdpmError(f"the saved timestep sampler ({state['kind']}, T = {len(state['history'])}) is not this run's")
        self.history, self.count = state["history"].clone(), state["count"].clone()
