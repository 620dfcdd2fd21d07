"""The training loop: AdamW with warm-up, gradient clipping, EMA, autocast, logs, grids and checkpoints."""
from __future__ import annotations

import copy
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..config import RunConfig
from ..data import ImageData, load_dataset
from ..errors import DdpmError
from ..generate import generate
from ..models import build_model, build_schedule
from ..objectives import training_loss
from ..viz import save_grid
from .checkpoint import STATE_NAME, WEIGHTS_NAME, load_state, load_weights, save_state, save_weights

NUM_LOSS_BUCKETS = 10  # the loss is also logged per tenth of the timestep range
MAX_BAD_STEPS = 10  # this many non-finite losses in a row stop the run


def resolve_config(config: RunConfig, data: ImageData) -> RunConfig:
    """Fill what the data decides: image size, channels and, for conditional runs, the class count."""
    d = replace(config.data, image_size=data.image_size, channels=data.channels)
    m = config.model
    if config.data.conditional:
        if data.num_classes is None:
            raise DdpmError(f"data.conditional is set but dataset {data.name!r} has no labels")
        m = replace(m, num_classes=data.num_classes)
    return replace(config, data=d, model=m)


def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """θ_ema ← decay·θ_ema + (1 − decay)·θ (buffers copied)."""
    with torch.no_grad():
        ema_params = [p for p in ema.parameters()]
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        for b_ema, b in zip(ema.buffers(), model.buffers()):
            b_ema.copy_(b)


class LogWindow:
    """Loss statistics since the last log record: mean loss, loss per tenth of the timestep range, images/s."""

    def __init__(self):
        self.started = time.time()
        self.steps, self.images, self.loss_sum = 0, 0, 0.0
        self.bucket_sum = torch.zeros(NUM_LOSS_BUCKETS, dtype=torch.float64)
        self.bucket_n = torch.zeros(NUM_LOSS_BUCKETS, dtype=torch.float64)

    def add(self, per_example: torch.Tensor, t: torch.Tensor, num_timesteps: int) -> None:
        per_example = per_example.double().cpu()
        buckets = (t.cpu() * NUM_LOSS_BUCKETS // num_timesteps).clamp(max=NUM_LOSS_BUCKETS - 1)
        self.bucket_sum.index_add_(0, buckets, per_example)
        self.bucket_n.index_add_(0, buckets, torch.ones_like(per_example))
        self.steps, self.images, self.loss_sum = self.steps + 1, self.images + len(per_example), self.loss_sum + per_example.mean().item()

    def summary(self, now: float) -> dict[str, Any]:
        return {"loss": self.loss_sum / max(self.steps, 1), "images_per_s": self.images / max(now - self.started, 1e-9),
                "loss_per_bucket": [(s / n if n else None) for s, n in zip(self.bucket_sum.tolist(), self.bucket_n.tolist())]}


class Trainer:
    """Trains ``config`` into ``out_dir``: checkpoints/, metrics.jsonl, progress/ grids and config.json."""

    def __init__(self, config: RunConfig, out_dir: str | Path, device: torch.device, *, resume: bool = False,
                 force: bool = False, data: ImageData | None = None, quiet: bool = False):
        self.out = Path(out_dir)
        self.device, self.quiet = device, quiet
        weights_path = self.out / "checkpoints" / WEIGHTS_NAME
        if resume:
            config, weights, ema_weights, _ = load_weights(weights_path)
        elif weights_path.exists() and not force:
            raise DdpmError(f"{self.out} already holds a run; use --resume to continue it or --force to overwrite it")
        d = config.data
        self.data = data or load_dataset(d.dataset, root=d.data_dir, split="train", image_size=d.image_size,
                                         channels=d.channels, limit=d.limit, seed=config.train.seed)
        self.config = resolve_config(config, self.data)
        t = self.config.train
        torch.manual_seed(t.seed)
        self.model = build_model(self.config).to(device)
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.schedule = build_schedule(self.config).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.step = 0
        self.data_gen = torch.Generator().manual_seed(t.seed + 1)
        self.noise_gen = torch.Generator(device=device).manual_seed(t.seed + 2)
        self.order = torch.randperm(len(self.data), generator=self.data_gen)
        self.position = 0
        self.elapsed_before = 0.0
        # One fixed latent for the progress grids, so successive grids show the same samples improving.
        self.fixed_latent = torch.randn((min(64, self.config.sample.num), self.data.channels, self.data.image_size,
                                         self.data.image_size), generator=torch.Generator().manual_seed(t.seed + 3))
        self.fixed_labels = (torch.arange(len(self.fixed_latent)) % self.data.num_classes
                             if self.config.model.num_classes else None)
        if resume:
            self.model.load_state_dict(weights)
            self.ema.load_state_dict(ema_weights)
            self._load_state(self.out / "checkpoints" / STATE_NAME)

    # -- state -------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "data_rng": self.data_gen.get_state(),
            "noise_rng": self.noise_gen.get_state().cpu(),
            "order": self.order,
            "position": self.position,
            "elapsed": self.elapsed_before + (time.time() - self.started),
        }

    def _load_state(self, path: Path) -> None:
        state = load_state(path)
        self.step = int(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        self.data_gen.set_state(state["data_rng"])
        self.noise_gen.set_state(state["noise_rng"].to(self.noise_gen.device) if self.device.type != "cpu" else state["noise_rng"])
        self.order, self.position = state["order"], int(state["position"])
        self.elapsed_before = float(state["elapsed"])

    def save_checkpoint(self) -> None:
        ckpt = self.out / "checkpoints"
        save_weights(ckpt / WEIGHTS_NAME, self.model, self.ema, self.config, self.step)
        save_state(ckpt / STATE_NAME, self._state())

    # -- pieces of a step --------------------------------------------------------------------------
    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        b = self.config.train.batch_size
        if self.position + b > len(self.order):  # new epoch: a fresh permutation (drop the ragged tail)
            self.order = torch.randperm(len(self.data), generator=self.data_gen)
            self.position = 0
        index = self.order[self.position:self.position + b]
        self.position += b
        x, y = self.data.batch(index, self.device)
        if self.config.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, (y if self.config.model.num_classes else None)

    def lr_at(self, step: int) -> float:
        t = self.config.train
        return t.lr * min(1.0, (step + 1) / max(1, t.warmup_steps))

    def ema_decay_at(self, step: int) -> float:
        t = self.config.train
        return min(t.ema_decay, (1 + step) / (10 + step)) if t.ema_warmup else t.ema_decay

    def sample_ema(self, num: int, *, seed: int = 0, x_T: torch.Tensor | None = None,
                   labels: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 samples [num, C, H, W] from the EMA weights with the run's [sample] settings."""
        s, d = self.config.sample, self.config.data
        return generate(self.ema, self.schedule, num=num, shape=(d.channels, d.image_size, d.image_size),
                        sampler=s.sampler, steps=s.steps, eta=s.eta, prediction=self.config.diffusion.prediction,
                        clip_x0=s.clip_x0, labels=labels, seed=seed, x_T=x_T, device=self.device)

    def save_progress_grid(self) -> Path:
        images = self.sample_ema(len(self.fixed_latent), x_T=self.fixed_latent, labels=self.fixed_labels)
        return save_grid(images, self.out / "progress" / f"step_{self.step:07d}.png")

    def _log(self, log, window: "LogWindow", skipped: int) -> "LogWindow":
        now = time.time()
        record = {"step": self.step, **window.summary(now), "lr": self.lr_at(self.step - 1),
                  "elapsed_s": self.elapsed_before + now - self.started, "skipped_steps": skipped}
        log.write(json.dumps(record) + "\n")
        log.flush()
        postfix = {"loss": f"{record['loss']:.4f}", "img_s": f"{record['images_per_s']:.0f}"}
        if self.deadline is not None:  # the bar's own ETA counts train.steps, which a time budget cuts short
            postfix["budget_left"] = f"{max(0.0, self.deadline - now) / 60:.1f}min"
        self.bar.set_postfix(postfix)
        return LogWindow()

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        t = self.config.train
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))
        autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision)
        scaler = torch.amp.GradScaler(self.device.type, enabled=t.precision == "fp16")
        self.started = time.time()
        deadline = self.deadline = None if t.max_minutes is None else self.started + 60 * t.max_minutes - self.elapsed_before
        log = (self.out / "metrics.jsonl").open("a")
        window = LogWindow()
        bad_in_a_row, skipped = 0, 0
        bar = self.bar = tqdm(total=t.steps, initial=self.step, disable=self.quiet, dynamic_ncols=True, unit="step")
        self.model.train()
        stop_reason = "steps"
        while self.step < t.steps:
            if deadline is not None and time.time() >= deadline:
                stop_reason = "time budget"
                break
            x, y = self.next_batch()
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(self.step)
            with torch.autocast(self.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                out = training_loss(self.model, self.schedule, x, prediction=self.config.diffusion.prediction,
                                    generator=self.noise_gen, cond={"y": y} if y is not None else None)
            loss = out["loss"].mean()
            if not torch.isfinite(loss):
                bad_in_a_row, skipped = bad_in_a_row + 1, skipped + 1
                self.optimizer.zero_grad(set_to_none=True)
                if bad_in_a_row >= MAX_BAD_STEPS:
                    raise DdpmError(f"the loss was not finite {bad_in_a_row} steps in a row at step {self.step}; "
                                    "training stopped (lower train.lr or use precision fp32); the last good checkpoint is kept")
                continue
            bad_in_a_row = 0
            self.optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if t.grad_clip > 0:
                scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
            scaler.step(self.optimizer)
            scaler.update()
            update_ema(self.ema, self.model, self.ema_decay_at(self.step))
            self.step += 1
            window.add(out["loss"].detach(), out["t"], self.config.diffusion.num_timesteps)
            bar.update(1)
            if self.step % t.log_every == 0 or self.step == t.steps:
                window = self._log(log, window, skipped)
            if t.sample_every and self.step % t.sample_every == 0:
                self.save_progress_grid()
            if self.step % t.checkpoint_every == 0:
                self.save_checkpoint()
        if window.steps:  # what was trained since the last record (a time budget rarely ends on log_every)
            self._log(log, window, skipped)
        bar.close()
        log.close()
        self.save_checkpoint()
        if t.sample_every and not (self.out / "progress" / f"step_{self.step:07d}.png").exists():
            self.save_progress_grid()
        return {"steps": self.step, "stopped_by": stop_reason, "skipped_steps": skipped,
                "elapsed_s": self.elapsed_before + time.time() - self.started,
                "parameters": sum(p.numel() for p in self.model.parameters())}
