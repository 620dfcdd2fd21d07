"""One optimiser step: label dropout, learning-rate warm-up, autocast, the loss, the non-finite check,
gradient clipping, the (scaled) optimiser step and the EMA update."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import RunConfig, TrainConfig
from ..guidance import drop_labels
from ..objectives import sample_timesteps_uniform, training_loss
from ..schedules import NoiseSchedule
from ..timestep_sampler import TimestepSampler

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def lr_at(t: TrainConfig, step: int) -> float:
    """Linear warm-up to train.lr over train.warmup_steps, then constant."""
    return t.lr * min(1.0, (step + 1) / max(1, t.warmup_steps))


def ema_decay_at(t: TrainConfig, step: int) -> float:
    """train.ema_decay, or with train.ema_warmup min(ema_decay, (1 + n)/(10 + n)) so early EMA follows the weights."""
    return min(t.ema_decay, (1 + step) / (10 + step)) if t.ema_warmup else t.ema_decay


def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """θ_ema ← decay·θ_ema + (1 − decay)·θ (buffers copied)."""
    with torch.no_grad():
        torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1.0 - decay)
        for b_ema, b in zip(ema.buffers(), model.buffers()):
            b_ema.copy_(b)


@dataclass
class StepResult:
    """``applied``: the weights changed (and the step counts). Otherwise ``reason`` says why not: "non-finite"
    (a loss or gradient that is not finite) or "fp16 overflow" (the grad scaler skipped the step and lowered
    its scale). Per example (detached) [B]: ``mse``, the plain squared error (comparable between runs whatever
    their objective), ``loss``, the objective that was minimised (``objectives.training_loss``), ``t``, the
    timesteps, and ``vlb``, the VLB terms L_t in bits/dim (None for L_simple)."""

    applied: bool
    reason: str | None
    mse: torch.Tensor
    loss: torch.Tensor
    t: torch.Tensor
    vlb: torch.Tensor | None = None


def train_step(model: torch.nn.Module, ema: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, schedule: NoiseSchedule, x: torch.Tensor, y: torch.Tensor | None, *,
               config: RunConfig, step: int, noise_gen: torch.Generator,
               timestep_sampler: TimestepSampler | None = None) -> StepResult:
    """One step on the batch x [B, C, H, W] (labels y [B] or None) at optimiser step ``step``; t from
    ``timestep_sampler`` (uniform when None), which then records the step's VLB terms."""
    t = config.train
    if y is not None:  # classifier-free guidance: the same net also learns ε(x_t, ∅)
        y = drop_labels(y, t.label_dropout, config.model.num_classes, noise_gen)
    for group in optimizer.param_groups:
        group["lr"] = lr_at(t, step)
    dtype = AUTOCAST_DTYPES.get(t.precision)
    with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        d = config.diffusion
        if timestep_sampler is None:  # uniform, without a sampler object built on every step
            t_steps, weights = sample_timesteps_uniform(len(x), schedule.num_timesteps, device=x.device, generator=noise_gen), None
        else:
            t_steps, weights = timestep_sampler.sample(len(x), x.device, noise_gen)
        out = training_loss(model, schedule, x, prediction=d.prediction, variance=d.variance, loss=d.loss, t=t_steps,
                            weights=weights, generator=noise_gen, cond={"y": y} if y is not None else None,
                            min_snr_gamma=d.min_snr_gamma)
    loss = out["loss"].mean()
    optimizer.zero_grad(set_to_none=True)
    vlb = out["vlb"].detach() if "vlb" in out else None
    result = StepResult(False, "non-finite", out["mse"].detach(), out["loss"].detach(), out["t"], vlb)
    if not torch.isfinite(loss):
        return result
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    # the norm is computed even without clipping: a non-finite gradient skips the step
    norm = torch.nn.utils.clip_grad_norm_(params, t.grad_clip if t.grad_clip > 0 else float("inf"))
    if not scaler.is_enabled() and not torch.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        return result
    scale = scaler.get_scale() if scaler.is_enabled() else None
    scaler.step(optimizer)
    scaler.update()
    if scale is not None and scaler.get_scale() < scale:  # the scaler found inf/NaN gradients and skipped the step
        optimizer.zero_grad(set_to_none=True)
        result.reason = "fp16 overflow" if scaler.get_scale() >= 1.0 else "non-finite"  # below 1: not an overflow
        return result
    update_ema(ema, model, ema_decay_at(t, step))
    if timestep_sampler is not None and vlb is not None:
        timestep_sampler.update(t_steps, vlb)
    result.applied, result.reason = True, None
    return result
