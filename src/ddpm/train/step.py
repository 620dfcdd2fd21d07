"""One optimiser step of a denoiser or a noise-aware classifier: label dropout, learning-rate warm-up, autocast, the loss (over micro-batches when
accumulating), the non-finite check, gradient clipping, the (scaled) optimiser step and the EMA update; the same
on one process and on N (each rank its slice of the global batch)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .. import distributed
from ..config import RunConfig, TrainConfig
from ..guidance import drop_labels, dropped
from ..nets import is_classifier
from ..objectives import classifier_loss, sample_timesteps_uniform, training_loss
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
    its scale). Per example (detached) [B]: ``plain``, the plain loss (a denoiser's squared error, comparable between
    runs whatever their objective; a classifier's cross-entropy), ``loss``, the objective that was minimised
    (``objectives.training_loss``), ``t``, the timesteps, ``vlb``, the VLB terms L_t in bits/dim (None for
    L_simple), for a classifier ``correct`` (1.0 where its most likely class was the label), and with importance-sampled
    timesteps ``weights``, each example's 1/(T p_t) (None for uniform t)."""

    applied: bool
    reason: str | None
    plain: torch.Tensor
    loss: torch.Tensor
    t: torch.Tensor
    vlb: torch.Tensor | None = None
    correct: torch.Tensor | None = None
    weights: torch.Tensor | None = None


def _condition(y: torch.Tensor | None, context: torch.Tensor | None, keep: torch.Tensor | None, chunk: slice) -> dict | None:
    """The model's keyword arguments for one micro-batch: its labels, or its context vectors and which are kept."""
    if context is not None:
        return {"context": context[chunk], "context_mask": keep[chunk]}
    return {"y": y[chunk]} if y is not None else None


def train_step(model: torch.nn.Module, ema: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, schedule: NoiseSchedule, x: torch.Tensor, y: torch.Tensor | None, *,
               config: RunConfig, step: int, noise_gen: torch.Generator,
               timestep_sampler: TimestepSampler | None = None, context: torch.Tensor | None = None) -> StepResult:
    """One step on this process's part x [b, C, H, W] (labels y [b] or None, context vectors [b, k] or None) of the global batch of b·N examples
    (N processes, ``ddpm.distributed``; b = train.batch_size with one) at optimiser step ``step``.

    The random draws (label dropout, t from ``timestep_sampler`` or uniform, the noise) are made for the whole
    global batch in one order and sliced to this rank's part, so N processes train on exactly what one process
    would. ``train.accumulate`` micro-batches per process are summed into one gradient (``model`` under
    DistributedDataParallel synchronises only on the last). Every decision to skip the step is agreed by all
    ranks. The result's per-example tensors cover the global batch (gathered from the ranks)."""
    t = config.train
    world = distributed.world()
    b = len(x)
    size, part = b * world.size, slice(world.rank * b, (world.rank + 1) * b)
    classifier = is_classifier(config.model)
    if y is not None and not classifier:  # classifier-free guidance: the same net also learns ε(x_t, ∅)
        y = drop_labels(y, t.label_dropout, config.model.num_classes, noise_gen, size=size, part=part)
    keep_context = None
    if context is not None:  # the same for context vectors: the learned null context where dropped
        keep_context = ~dropped(b, t.label_dropout, noise_gen, x.device, size, part)
    for group in optimizer.param_groups:
        group["lr"] = lr_at(t, step)
    if timestep_sampler is None:  # uniform, without a sampler object built on every step
        t_steps, weights = sample_timesteps_uniform(size, schedule.num_timesteps, device=x.device, generator=noise_gen), None
    else:
        t_steps, weights = timestep_sampler.sample(size, x.device, noise_gen)
    noise = torch.randn((size, *x.shape[1:]), device=x.device, dtype=x.dtype, generator=noise_gen)
    t_all, weights_all = t_steps, weights  # the global batch's (the same on every rank): the sampler's history, the log
    t_steps, noise, weights = t_steps[part], noise[part], None if weights is None else weights[part]
    dtype = AUTOCAST_DTYPES.get(t.precision)
    d = config.diffusion
    optimizer.zero_grad(set_to_none=True)
    outs, finite = [], True
    micro = b // t.accumulate
    for i in range(t.accumulate):
        chunk = slice(i * micro, (i + 1) * micro)
        with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = classifier_loss(model, schedule, x[chunk], y[chunk], t=t_steps[chunk], noise=noise[chunk]) if classifier else training_loss(model, schedule, x[chunk], prediction=d.prediction, variance=d.variance, loss=d.loss,
                                t=t_steps[chunk], noise=noise[chunk], weights=None if weights is None else weights[chunk],
                                cond=_condition(y, context, keep_context, chunk), min_snr_gamma=d.min_snr_gamma)
        outs.append(out)
        loss = out["loss"].mean() / t.accumulate
        # one rank's non-finite loss skips the step on all (a rank leaving out its backward would hang the others)
        finite = not distributed.agree_max(int(not torch.isfinite(loss)), x.device)
        if not finite:
            break
        last = i == t.accumulate - 1
        with contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync():
            scaler.scale(loss).backward()
    for o in outs:  # the plain loss: a denoiser's squared error whatever its weighting, a classifier's objective itself
        o["plain"] = o.get("mse", o["loss"])
    gathered = {k: distributed.gather_rows(torch.cat([o[k].detach() for o in outs]), size) if finite else
                torch.cat([o[k].detach() for o in outs]) for k in ("plain", "loss", "t", "vlb", "correct") if k in outs[0]}
    result = StepResult(False, "non-finite", gathered["plain"], gathered["loss"], gathered["t"], gathered.get("vlb"),
                        gathered.get("correct"), weights_all)
    if not finite:
        optimizer.zero_grad(set_to_none=True)
        return result
    scaler.unscale_(optimizer)
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    # the norm is computed even without clipping: a non-finite gradient skips the step (the gradients are the
    # ranks' average, the same on every rank, so every rank decides alike)
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
    if timestep_sampler is not None and result.vlb is not None:
        timestep_sampler.update(t_all, result.vlb)
    result.applied, result.reason = True, None
    return result
