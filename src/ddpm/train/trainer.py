"""The training loop: AdamW with warm-up, gradient clipping, EMA, autocast, logs, grids and checkpoints."""
from __future__ import annotations

import copy
import json
import random
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from ..config import RunConfig
from ..data import ImageData, load_dataset
from ..errors import DdpmError
from ..generate import generate
from ..guidance import drop_labels
from ..models import build_model, build_schedule
from ..objectives import training_loss
from ..viz import save_grid
from .checkpoint import atomic_write, list_checkpoints, load_state, load_weights, resolve_checkpoint, save_checkpoint

NUM_LOSS_BUCKETS = 10  # the loss is also logged per tenth of the timestep range


class Interrupted(Exception):
    """Training stopped by SIGINT or SIGTERM after saving a checkpoint; ``signum`` says which."""

    def __init__(self, signum: int, step: int, out: Path):
        self.signum, self.step, self.out = signum, step, out
        super().__init__(f"{signal.Signals(signum).name} at step {step}: checkpoint saved; continue with "
                         f"ddpm train --resume {out}")


def progress_grid_size(config: RunConfig) -> int:
    """Images in each progress grid: train.progress_samples, at most sample.num; for a conditional run whole
    rows of the K classes (one class per column), at least one row."""
    k, n = config.model.num_classes, min(config.train.progress_samples, config.sample.num)
    return max(k, n - n % k) if k else n


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


def _record_step(line: str) -> int:
    """The step of a training log record; evaluation records count as step 0 (always kept) and a line
    that does not parse (half-written when the process was killed) as infinitely late (dropped)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return sys.maxsize
    return int(record.get("step", 0)) if record.get("kind", "train") == "train" else 0


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

    def __init__(self, config: RunConfig | None, out_dir: str | Path, device: torch.device, *, resume: bool | str | Path = False,
                 force: bool = False, data: ImageData | None = None, quiet: bool = False):
        """``resume``: False (a new run), True (continue ``out_dir`` from its latest checkpoint, with its
        saved config) or the path of one of its checkpoints (continue from that one)."""
        self.out = Path(out_dir)
        self.device, self.quiet = device, quiet
        checkpoint = weights = ema_weights = None
        if resume:
            checkpoint, config = self._find_resume_point(resume, config)
            if checkpoint is not None:
                config, weights, ema_weights, _ = load_weights(checkpoint)
        elif (list_checkpoints(self.out) or (self.out / "config.json").exists()) and not force:
            raise DdpmError(f"{self.out} already holds a run; use --resume to continue it or --force to overwrite it")
        elif force:
            for _, old in list_checkpoints(self.out):  # a fresh run must not resume into the old one's files
                old.with_name(old.name.replace(".safetensors", "-state.pt")).unlink(missing_ok=True)
                old.unlink()
            (self.out / "metrics.jsonl").unlink(missing_ok=True)
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
        self.scaler = torch.amp.GradScaler(device.type, enabled=t.precision == "fp16")
        self.step = 0
        self.data_gen = torch.Generator().manual_seed(t.seed + 1)
        self.noise_gen = torch.Generator(device=device).manual_seed(t.seed + 2)
        self.order = torch.randperm(len(self.data), generator=self.data_gen)
        self.position = 0
        self.elapsed_before = 0.0
        self.started, self.start_step = time.time(), 0
        # One fixed latent for the progress grids, so successive grids show the same samples improving.
        self.fixed_latent = torch.randn((progress_grid_size(self.config), self.data.channels, self.data.image_size,
                                         self.data.image_size), generator=torch.Generator().manual_seed(t.seed + 3))
        self.fixed_labels = self.class_cycle(len(self.fixed_latent))
        if checkpoint is not None:
            self.model.load_state_dict(weights)
            self.ema.load_state_dict(ema_weights)
            self._load_state(load_state(checkpoint))
            self._forget_after(checkpoint)

    def _find_resume_point(self, resume: bool | str | Path, config: RunConfig | None) -> tuple[Path | None, RunConfig]:
        """(checkpoint to resume from or None, config). A run killed before its first checkpoint restarts
        from step 0 with its saved config.json, which gives the same result as never having started."""
        if resume is not True:
            return resolve_checkpoint(resume), config
        if list_checkpoints(self.out):
            return resolve_checkpoint(self.out), config
        saved = self.out / "config.json"
        if not saved.is_file():
            raise DdpmError(f"{self.out} holds no run to resume (no checkpoints and no config.json)")
        try:
            config = RunConfig.from_dict(json.loads(saved.read_text()), str(saved))
        except json.JSONDecodeError as e:
            raise DdpmError(f"{saved} is not valid JSON ({e})") from None
        print(f"note: {self.out} has no checkpoint yet; starting it again from step 0 with its config.json", file=sys.stderr)
        return None, config

    def _forget_after(self, checkpoint: Path) -> None:
        """Resuming from step N: set aside later checkpoints (renamed *.abandoned, never deleted) and drop
        training log records after step N, so the continued run's log has no duplicate steps."""
        for step, path in list_checkpoints(self.out):
            if step > self.step:
                for p in (path, path.with_name(path.name.replace(".safetensors", "-state.pt"))):
                    if p.exists():
                        p.rename(p.with_name(p.name + ".abandoned"))
                print(f"note: set aside {path.name} (step {step}), newer than the resumed step {self.step}", file=sys.stderr)
        log = self.out / "metrics.jsonl"
        if log.is_file():
            lines = log.read_text().splitlines(keepends=True)
            keep = [line for line in lines if _record_step(line) <= self.step]
            if len(keep) != len(lines):
                atomic_write(log, lambda tmp: Path(tmp).write_text("".join(keep)))

    # -- state -------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        py_version, py_state, py_gauss = random.getstate()
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "numpy_rng": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                          "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
            "python_rng": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss_next": py_gauss},
            "data_rng": self.data_gen.get_state(),
            "noise_rng": self.noise_gen.get_state().cpu(),
            "order": self.order,
            "position": self.position,
            "elapsed": self.elapsed_before + (time.time() - self.started),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        n = state["numpy_rng"]
        np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
        p = state["python_rng"]
        random.setstate((p["version"], tuple(p["state"].tolist()), p["gauss_next"]))
        self.data_gen.set_state(state["data_rng"])
        self.noise_gen.set_state(state["noise_rng"].to(self.noise_gen.device) if self.device.type != "cpu" else state["noise_rng"])
        self.order, self.position = state["order"], int(state["position"])
        self.elapsed_before = float(state["elapsed"])

    def save_checkpoint(self) -> Path:
        return save_checkpoint(self.out, self.step, self.model, self.ema, self.config, self._state(), keep=self.config.train.keep_checkpoints)

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

    def class_cycle(self, num: int) -> torch.Tensor | None:
        """Labels 0, 1, …, K−1, 0, 1, … [num] for a class-conditional run (a grid of K columns then has one
        class per column); None for an unconditional one."""
        k = self.config.model.num_classes
        return torch.arange(num) % k if k else None

    def sample_ema(self, num: int, *, seed: int = 0, x_T: torch.Tensor | None = None,
                   labels: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 samples [num, C, H, W] from the EMA weights with the run's [sample] settings."""
        s, d = self.config.sample, self.config.data
        return generate(self.ema, self.schedule, num=num, shape=(d.channels, d.image_size, d.image_size),
                        sampler=s.sampler, steps=s.steps, eta=s.eta, prediction=self.config.diffusion.prediction,
                        clip_x0=s.clip_x0, labels=labels, guidance=s.guidance if labels is not None else 0.0,
                        seed=seed, x_T=x_T, device=self.device)

    def save_progress_grid(self) -> Path:
        images = self.sample_ema(len(self.fixed_latent), x_T=self.fixed_latent, labels=self.fixed_labels)
        return save_grid(images, self.out / "progress" / f"step_{self.step:07d}.png", nrow=self.config.model.num_classes)

    def _log(self, log, window: "LogWindow", skipped: int) -> "LogWindow":
        now = time.time()
        record = {"kind": "train", "step": self.step, **window.summary(now), "lr": self.lr_at(self.step - 1),
                  "elapsed_s": self.elapsed_before + now - self.started, "skipped_steps": skipped}
        log.write(json.dumps(record) + "\n")
        log.flush()
        postfix = {"loss": f"{record['loss']:.4f}", "img_s": f"{record['images_per_s']:.0f}"}
        if self.deadline is not None:  # the bar's own ETA counts train.steps, which a time budget cuts short
            postfix["budget_left"] = f"{max(0.0, self.deadline - now) / 60:.1f}min"
        self.bar.set_postfix(postfix)
        return LogWindow()

    # -- the loop --------------------------------------------------------------------------------
    def run(self, stop_when: Callable[["Trainer"], str | None] | None = None) -> dict[str, Any]:
        """Train until train.steps or the time budget; SIGINT/SIGTERM save a checkpoint and raise ``Interrupted``.
        ``stop_when(trainer)``, asked before every step, may end training early by returning the reason."""
        t = self.config.train
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write(self.out / "config.json", lambda tmp: Path(tmp).write_text(json.dumps(self.config.to_dict(), indent=2)))
        stop_signal: list[int] = []
        previous = _install_handlers(lambda signum, frame: stop_signal.append(signum))
        try:
            return self._loop(t, stop_signal, stop_when)
        finally:
            _restore_handlers(previous)

    def _loop(self, t, stop_signal: list[int], stop_when) -> dict[str, Any]:
        autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision)
        self.started, self.start_step = time.time(), self.step
        deadline = self.deadline = None if t.max_minutes is None else self.started + 60 * t.max_minutes - self.elapsed_before
        log = (self.out / "metrics.jsonl").open("a")
        window = LogWindow()
        bad_in_a_row, skipped = 0, 0
        bar = self.bar = tqdm(total=t.steps, initial=self.step, disable=self.quiet, dynamic_ncols=True, unit="step")
        self.model.train()
        stop_reason = "steps"
        params = [p for p in self.model.parameters() if p.requires_grad]
        while self.step < t.steps:
            if stop_signal:
                break
            if deadline is not None and time.time() >= deadline:
                stop_reason = "time budget"
                break
            if stop_when is not None and (reason := stop_when(self)):
                stop_reason = reason
                break
            x, y = self.next_batch()
            if y is not None:  # classifier-free guidance: the same net also learns ε(x_t, ∅)
                y = drop_labels(y, t.label_dropout, self.config.model.num_classes, self.noise_gen)
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(self.step)
            with torch.autocast(self.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                out = training_loss(self.model, self.schedule, x, prediction=self.config.diffusion.prediction,
                                    generator=self.noise_gen, cond={"y": y} if y is not None else None,
                                    min_snr_gamma=self.config.diffusion.min_snr_gamma)
            loss = out["loss"].mean()
            self.optimizer.zero_grad(set_to_none=True)
            finite = bool(torch.isfinite(loss))
            if finite:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
                # the norm is computed even without clipping: a non-finite gradient skips the step
                norm = torch.nn.utils.clip_grad_norm_(params, t.grad_clip if t.grad_clip > 0 else float("inf"))
                finite = bool(torch.isfinite(norm)) or t.precision == "fp16"  # fp16: the scaler skips and rescales
            if not finite:
                bad_in_a_row, skipped = bad_in_a_row + 1, skipped + 1
                self.optimizer.zero_grad(set_to_none=True)
                if bad_in_a_row >= t.max_bad_steps:
                    log.close()
                    bar.close()
                    raise DdpmError(f"the loss or its gradient was not finite {bad_in_a_row} steps in a row at step {self.step}; "
                                    "training stopped (lower train.lr or use precision fp32); the last good checkpoint is kept")
                continue
            bad_in_a_row = 0
            self.scaler.step(self.optimizer)
            self.scaler.update()
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
        if not list_checkpoints(self.out) or list_checkpoints(self.out)[-1][0] != self.step:
            self.save_checkpoint()
        if stop_signal:
            raise Interrupted(stop_signal[0], self.step, self.out)
        if t.sample_every and not (self.out / "progress" / f"step_{self.step:07d}.png").exists():
            self.save_progress_grid()
        return {"steps": self.step, "stopped_by": stop_reason, "skipped_steps": skipped,
                "elapsed_s": self.elapsed_before + time.time() - self.started,
                "parameters": sum(p.numel() for p in self.model.parameters())}


def _install_handlers(handler) -> dict[int, Any]:
    """Route SIGINT and SIGTERM to ``handler`` (only possible in the main thread; elsewhere nothing changes)."""
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread
            pass
    return previous


def _restore_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
