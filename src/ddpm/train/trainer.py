"""The training loop and its cadence: logs, progress grids, checkpoints, time budgets and signals.

The pieces it uses each hold one idea: ``run_dir`` (the run directory's lifecycle), ``state`` (the resume
state), ``step`` (one optimiser step), ``loggers`` (where log records go), ``callbacks`` (what a program hooks in).
"""
from __future__ import annotations

import copy
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from .. import distributed
from ..checkpoint import list_checkpoints, load_state, load_weights, save_checkpoint
from ..config import RunConfig, resume_config
from ..data import ImageData, load_dataset
from ..errors import DdpmError, TrainingDiverged
from ..conditioning import labels_for
from ..denoiser import Denoiser
from ..run_files import write_config
from ..generation import generate
from ..models import build_model, build_schedule, load_into
from ..nets import is_classifier
from ..progress import progress_bar
from ..viz import save_grid
from . import run_dir
from .callbacks import Callback
from .loggers import Logger, LoggerGroup, check_log_to, open_loggers
from ..timestep_sampler import TimestepSampler
from .state import DataOrder, global_rng_state, restore_global_rng_state, seed_global_rngs
from .step import lr_at, train_step

NUM_LOSS_BUCKETS = 10  # the loss is also logged per tenth of the timestep range
# Codes of the one stop decision all ranks agree on (the largest wins): a signal, then the time budget, then stop_when.
STOP_ASKED, STOP_TIME, STOP_SIGNAL = 1, 2, 100


class Interrupted(Exception):
    """Training stopped by SIGINT or SIGTERM after saving a checkpoint; ``signum`` says which."""

    def __init__(self, signum: int, step: int, out: Path):
        self.signum, self.step, self.out = signum, step, out
        super().__init__(f"{signal.Signals(signum).name} at step {step}: checkpoint saved; continue with "
                         f"ddpm train --resume {out}")


def progress_grid_size(config: RunConfig) -> int:
    """Images in each progress grid: train.progress_samples, at most sample.num; for a conditional run whole
    rows of the K classes (one class per column), at least one row."""
    k, n = config.classes_shown(), min(config.train.progress_samples, config.sample.num)
    return max(k, n - n % k) if k else n


def resolve_config(config: RunConfig, data: ImageData) -> RunConfig:
    """Fill what the data decides: image size, channels and, for conditional runs, the class count."""
    if config.data.conditional and data.num_classes is None:
        raise DdpmError(f"data.conditional is set but dataset {data.name!r} has no labels")
    if config.data.context is not None and data.contexts is None:
        raise DdpmError(f"data.context = {config.data.context!r} but the training data {data.name!r} came without its vectors")
    return config.resolved(data.image_size, data.channels, data.num_classes, data.context_dim)


def data_on_device(data: ImageData, device: torch.device, share: float = 0.25) -> ImageData:
    """The dataset's uint8 images held on the GPU when they take at most ``share`` of its free memory (MNIST
    47 MB, CIFAR-10 150 MB): each batch is then indexed there, with no host→device copy; else as it is (its
    batches go through pinned memory, ``ImageData.batch``)."""
    free, _ = torch.cuda.mem_get_info(device)
    if data.images.numel() > share * free:
        return data
    on = lambda values: None if values is None else values.to(device)  # noqa: E731
    return replace(data, images=data.images.to(device), labels=on(data.labels), contexts=on(data.contexts))


class LogWindow:
    """Loss statistics since the last log record: ``loss``, the plain loss (a denoiser's squared error of its target,
    the same quantity whatever the weighting or objective, so runs compare; a classifier's cross-entropy in nats), the
    same per tenth of the timestep range, images/s; when the objective is weighted (Min-SNR), ``weighted_loss``, the
    objective itself; with a VLB objective ``vlb_loss`` (the mean L_t in bits/dim, T times it estimates the bound's
    sum) and the same per tenth of the timestep range, ``vlb_per_bucket``; for a classifier ``accuracy`` on its
    training batches and the same per tenth, ``accuracy_per_bucket``. With importance-sampled t every mean is weighted
    by the examples' 1/(T p_t) (a self-normalised importance estimate): it estimates the mean over uniform t that
    the other runs log, where the plain mean would follow the sampler to the timesteps of large L_t."""

    def __init__(self):
        self.started = time.time()
        self.steps, self.images, self.weighted_sum = 0, 0, None
        self.bucket_sum = torch.zeros(NUM_LOSS_BUCKETS, dtype=torch.float64)
        self.bucket_weight = torch.zeros(NUM_LOSS_BUCKETS, dtype=torch.float64)  # summed example weights (1 each: a count)
        self.per_bucket: dict[str, torch.Tensor] = {}  # vlb, correct: sums per bucket, when the step reports them

    def add(self, plain: torch.Tensor, t: torch.Tensor, num_timesteps: int, weighted: torch.Tensor | None = None,
            vlb: torch.Tensor | None = None, correct: torch.Tensor | None = None,
            importance: torch.Tensor | None = None) -> None:
        """plain [B] and t [B] of one step; ``weighted`` [B], the weighted objective, when it differs from plain;
        ``vlb`` [B], the VLB terms L_t, when the objective computes them; ``correct`` [B] for a classifier;
        ``importance`` [B], the examples' 1/(T p_t) when t was importance-sampled."""
        plain = plain.double().cpu()
        w = torch.ones_like(plain) if importance is None else importance.double().cpu()
        buckets = (t.cpu() * NUM_LOSS_BUCKETS // num_timesteps).clamp(max=NUM_LOSS_BUCKETS - 1)
        self.bucket_sum.index_add_(0, buckets, w * plain)
        self.bucket_weight.index_add_(0, buckets, w)
        self.steps, self.images = self.steps + 1, self.images + len(plain)
        if weighted is not None:
            self.weighted_sum = (self.weighted_sum or 0.0) + weighted.double().mean().item()
        for name, values in (("vlb", vlb), ("accuracy", correct)):
            if values is not None:
                sums = self.per_bucket.setdefault(name, torch.zeros(NUM_LOSS_BUCKETS, dtype=torch.float64))
                sums.index_add_(0, buckets, w * values.double().cpu())

    def summary(self, now: float) -> dict[str, Any]:
        steps = max(self.steps, 1)
        def per_bucket(sums: torch.Tensor) -> list[float | None]:
            return [(s / n if n else None) for s, n in zip(sums.tolist(), self.bucket_weight.tolist())]

        def overall(sums: torch.Tensor) -> float:
            total = self.bucket_weight.sum().item()
            return sums.sum().item() / total if total else 0.0

        out = {"loss": overall(self.bucket_sum), "images_per_s": self.images / max(now - self.started, 1e-9),
               "loss_per_bucket": per_bucket(self.bucket_sum)}
        if self.weighted_sum is not None:
            out["weighted_loss"] = self.weighted_sum / steps
        for name, sums in self.per_bucket.items():  # vlb_loss (the mean L_t), accuracy: over the window's examples
            out["vlb_loss" if name == "vlb" else name] = overall(sums)
            out[f"{name}_per_bucket"] = per_bucket(sums)
        return out


class Trainer:
    """Trains ``config`` into ``out_dir``: checkpoints/, metrics.jsonl, progress/ grids and config.json."""

    def __init__(self, config: RunConfig | None, out_dir: str | Path, device: torch.device, *, resume: bool | str | Path = False,
                 force: bool = False, data: ImageData | None = None, quiet: bool = False):
        """``resume``: False (a new run), True (continue ``out_dir`` from its latest checkpoint) or the path of one
        of its checkpoints. On resume ``config`` may be None (the saved config) or a config that differs from the
        saved one only where ``config.RESUME_CHANGEABLE`` allows (how long to train); anything else is refused.
        ``force``: replace a run already in ``out_dir``; its files are set aside when training starts and dropped
        once the new run's first checkpoint is complete (``run_dir``)."""
        self.out = Path(out_dir)
        self.world = distributed.world()
        self.device, self.quiet = device, quiet or not self.world.is_main
        checkpoint = None
        self.replacing, self.resumed = force and not resume, bool(resume)
        if resume:
            checkpoint, saved = run_dir.resume_point(self.out, None if resume is True else Path(resume))
            config = resume_config(saved, config)
        else:
            run_dir.check_new_run(self.out, force)
        check_log_to(config.train.log_to)  # a logger that cannot be built is refused before any file is touched
        d = config.data
        self.data = data or load_dataset(d.dataset, root=d.data_dir, split="train", image_size=d.image_size,
                                         channels=d.channels, limit=d.limit, seed=config.train.seed,
                                         test_fraction=d.test_fraction, context=d.context)
        self.config = resolve_config(config, self.data)
        t = self.config.train
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = t.tf32
            self.data = data_on_device(self.data, device)
        if t.batch_size > len(self.data):  # DataOrder would silently hand out smaller batches
            raise DdpmError(f"train.batch_size {t.batch_size} is more than the {len(self.data)} training images of "
                            f"{self.data.name}; lower it or use more data")
        split = self.world.size * t.accumulate
        if t.batch_size % split:
            raise DdpmError(f"train.batch_size {t.batch_size} must divide by the {self.world.size} processes × "
                            f"train.accumulate {t.accumulate} = {split}: it is the global batch, split over the processes "
                            "and then into micro-batches")
        seed_global_rngs(t.seed)
        self.model = build_model(self.config).to(device)
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        # the network the step runs: under torchrun DistributedDataParallel averages the ranks' gradients (and
        # starts every rank from rank 0's weights); checkpoints hold self.model, the same for any world size
        self.net = self.model if not self.world.distributed else torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=[device.index] if device.type == "cuda" else None)
        if t.compile:  # compiled on the first step (a minute on a GPU); the checkpoints hold the plain model
            self.net = torch.compile(self.net)
        self.schedule = build_schedule(self.config).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.scaler = torch.amp.GradScaler(device.type, enabled=t.precision == "fp16")
        self.step = 0
        self.data_order = DataOrder(len(self.data), t.seed + 1)
        self.timestep_sampler = TimestepSampler(t.timestep_sampler, self.config.diffusion.num_timesteps)
        self.noise_gen = torch.Generator(device=device).manual_seed(t.seed + 2)
        self.elapsed_before = 0.0
        self.started, self.start_step = time.time(), 0
        self.callbacks: list[Callback] = []  # those of the current ``run``
        # One seed for every progress grid: the same x_T and step noise, so successive grids show the same samples improving.
        self.progress_seed = t.seed + 3
        self.progress_labels = self.class_cycle(progress_grid_size(self.config))
        if checkpoint is not None:
            _, weights, ema_weights, _ = load_weights(checkpoint)
            load_into(self.model, weights, checkpoint)
            load_into(self.ema, ema_weights, checkpoint)
            self._load_state(load_state(checkpoint), checkpoint)
            if self.config.train.steps < self.step:  # refused before config.json or any file is touched
                raise DdpmError(f"train.steps = {self.config.train.steps} is below the checkpoint's step {self.step}: "
                                "the run has trained further already (give a larger --steps, or name an earlier "
                                "checkpoint with --resume CHECKPOINT)")
            distributed.barrier()  # every rank has read the checkpoint before rank 0 sets later ones aside
            if self.world.is_main:
                run_dir.forget_after(self.out, self.step)

    # -- state -------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"step": self.step, "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                **global_rng_state(self.device), **self.data_order.state_dict(),
                "timestep_sampler": self.timestep_sampler.state_dict(),
                "noise_rng": self.noise_gen.get_state().cpu(), "elapsed": self.elapsed_before + (time.time() - self.started)}

    def _load_state(self, state: dict[str, Any], source: Path) -> None:
        try:
            self.step = int(state["step"])
            self.optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
        except (KeyError, ValueError, RuntimeError, TypeError) as e:  # a state whose optimizer is another model's
            raise DdpmError(f"the resume state beside {source} does not fit this model: its optimizer state is another network's ({e})") from None
        restore_global_rng_state(state, self.device)
        self.data_order.load_state_dict(state)
        if "timestep_sampler" in state:  # absent in checkpoints from before importance sampling (always uniform)
            self.timestep_sampler.load_state_dict(state["timestep_sampler"])
        self.noise_gen.set_state(state["noise_rng"].to(self.noise_gen.device) if self.device.type != "cpu" else state["noise_rng"])
        self.elapsed_before = float(state["elapsed"])

    def save_checkpoint(self) -> Path | None:
        """Rank 0 writes the checkpoint (every rank holds the same weights and global state); None on the others."""
        if not self.world.is_main:
            return None
        path = save_checkpoint(self.out, self.step, self.model, self.ema, self.config, self._state(), keep=self.config.train.keep_checkpoints)
        run_dir.drop_set_aside(self.set_aside)  # the replaced run's files go only once this run has a checkpoint
        self.set_aside = None
        return path

    # -- pieces of the loop --------------------------------------------------------------------
    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """This rank's slice of the next global batch (the whole of it in one process): x, labels (a class-conditional
        run or a classifier), context vectors (a run on data.context)."""
        index = self.data_order.next(self.config.train.batch_size)
        start, stop = distributed.shard(len(index), self.world)
        x, y = self.data.batch(index[start:stop], self.device)
        if self.config.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        context = None if self.data.contexts is None else self.data.contexts[index[start:stop].to(self.data.contexts.device)].to(self.device)
        return x, (y if self.config.model.num_classes else None), context

    def class_cycle(self, num: int) -> torch.Tensor | None:
        """Labels 0, 1, …, K−1, 0, 1, … [num] for a class-conditional (or one-hot context) run (a grid of K columns
        then has one class per column); None for an unconditional one (or one on other context vectors: its grids
        show the null context, unconditional samples)."""
        return labels_for(self.config.classes_shown(), num)

    def denoiser(self) -> Denoiser:
        """The EMA weights as a ``Denoiser`` (sharing the trainer's module: no copy) — what the trainer samples."""
        return Denoiser.from_config(self.config, self.ema, step=self.step)

    def sample_ema(self, num: int, *, seed: int = 0, labels: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 samples [num, C, H, W] from the EMA weights with the run's [sample] settings (``generate``)."""
        denoiser = self.denoiser()
        return generate(denoiser, denoiser.plan(labels=labels), num, seed=seed, device=self.device)

    def save_progress_grid(self) -> Path | None:
        if not self.world.is_main:
            return None
        images = self.sample_ema(progress_grid_size(self.config), seed=self.progress_seed, labels=self.progress_labels)
        return save_grid(images, self.out / "progress" / f"step_{self.step:07d}.png", nrow=self.config.classes_shown())

    def _log(self, log: Logger, window: LogWindow, skipped: int) -> LogWindow:
        now = time.time()
        record = {"kind": "train", "step": self.step, **window.summary(now), "lr": lr_at(self.config.train, self.step - 1),
                  "elapsed_s": self.elapsed_before + now - self.started, "skipped_steps": skipped}
        log.write(record)
        self._notify("on_log", record)
        postfix = {"loss": f"{record['loss']:.4f}", "img_s": f"{record['images_per_s']:.0f}"}
        if self.deadline is not None:  # a time bar counts seconds: say where the steps are
            postfix["step"] = f"{self.step}/{self.config.train.steps}"
        self.bar.set_postfix(postfix)
        return LogWindow()

    def _make_bar(self):
        """Steps done of train.steps; with a time budget, the share done of whichever ends the run first, in
        seconds of the budget (a bar of 100 000 steps with an ETA of hours would hide that it stops in minutes)."""
        t = self.config.train
        if self.deadline is None:
            return progress_bar(t.steps, initial=self.step, unit="step", disable=self.quiet, desc="training")
        self.budget_s = self.deadline - self.started
        return progress_bar(round(self.budget_s), unit="s", disable=self.quiet, desc="training (time budget)")

    def _advance_bar(self) -> None:
        if self.deadline is None:
            self.bar.update(1)
            return
        t = self.config.train
        done = max(time.time() - self.started, self.budget_s * (self.step - self.start_step) / max(1, t.steps - self.start_step))
        self.bar.update(min(round(done), round(self.budget_s)) - self.bar.n)

    def _checkpoint(self) -> None:
        path = self.save_checkpoint()
        if path is not None:
            self._notify("on_checkpoint", path)

    def _notify(self, hook: str, *args: Any) -> None:
        """Call ``hook`` of each callback, on the main rank only. A callback that draws random numbers (a sample
        grid without a seed, a random evaluation batch) or switches the network to eval mode must not change the
        run: the global RNGs, which drive dropout and are saved for resume, and the train mode are put back."""
        if not self.callbacks or not self.world.is_main:
            return
        rngs, training = global_rng_state(self.device), self.model.training
        try:
            for callback in self.callbacks:
                getattr(callback, hook)(self, *args)
        finally:
            restore_global_rng_state(rngs, self.device)
            self.model.train(training)

    # -- the loop --------------------------------------------------------------------------------
    def run(self, stop_when: Callable[["Trainer"], str | None] | None = None,
            callbacks: Iterable[Callback] = ()) -> dict[str, Any]:
        """Train until train.steps or the time budget; SIGINT/SIGTERM save a checkpoint and raise ``Interrupted``.
        ``stop_when(trainer)``, asked before every step, may end training early by returning the reason.
        ``callbacks`` (``ddpm.train.callbacks``): called on the main rank after each step, log record and
        checkpoint, and with the returned summary at the end; they leave the training itself unchanged."""
        self.callbacks = list(callbacks)
        main = self.world.is_main  # the only rank that touches the run directory
        made_folder = not self.out.exists()
        created: list[str] = []
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.set_aside = run_dir.set_aside_old_run(self.out) if self.replacing else None
            created = [name for name in run_dir.STARTED_FILES if not (self.out / name).exists()]
            write_config(self.out, self.config)
        self.replacing = False
        if self.world.rank > 0:  # dropout masks of its own: from (seed, step, rank), not a copy of rank 0's
            torch.manual_seed(int(np.random.SeedSequence([self.config.train.seed, self.step, self.world.rank]).generate_state(1, np.uint64)[0]))
        stop_signal: list[int] = []
        previous = _install_handlers(lambda signum, frame: stop_signal.append(signum))
        try:
            # metrics.jsonl and, with train.log_to, TensorBoard; the other ranks log nothing
            loggers = open_loggers(self.out, self.config.train.log_to, first_step=self.step + 1) if main else LoggerGroup([])
            with loggers as log:
                return self._loop(log, stop_signal, stop_when)
        except BaseException:
            if main and not self.resumed and not list_checkpoints(self.out):  # a new run without a checkpoint: leave no trace
                run_dir.undo_new_run(self.out, created, made_folder, self.set_aside)
                self.set_aside = None
            raise
        finally:
            _restore_handlers(previous)

    def _loop(self, log, stop_signal: list[int], stop_when) -> dict[str, Any]:
        t = self.config.train
        self.started, self.start_step = time.time(), self.step
        self.deadline = None if t.max_minutes is None else self.started + 60 * t.max_minutes - self.elapsed_before
        window, bad_in_a_row, skipped = LogWindow(), 0, 0
        grid_every = 0 if is_classifier(self.config.model) else t.sample_every  # a classifier draws no samples
        self.model.train()
        stop_reason = "steps"
        with self._make_bar() as self.bar:
            while self.step < t.steps:
                reason = stop_when(self) if stop_when is not None else None
                # one decision for every rank (a signal to any of them, rank 0's clock, ``stop_when``): all stop at one step
                code = distributed.agree_max(STOP_SIGNAL + stop_signal[0] if stop_signal else
                                             STOP_TIME if self.deadline is not None and time.time() >= self.deadline else
                                             STOP_ASKED if reason else 0, self.device)
                if code >= STOP_SIGNAL:
                    stop_signal[:] = [code - STOP_SIGNAL]
                    break
                if code:
                    stop_reason = "time budget" if code == STOP_TIME else (reason or "stop_when")
                    break
                x, y, context = self.next_batch()
                result = train_step(self.net, self.ema, self.optimizer, self.scaler, self.schedule, x, y,
                                    config=self.config, step=self.step, noise_gen=self.noise_gen,
                                    timestep_sampler=self.timestep_sampler, context=context)
                if not result.applied:
                    skipped += 1
                    bad_in_a_row += result.reason == "non-finite"
                    if bad_in_a_row >= t.max_bad_steps:
                        raise TrainingDiverged(
                            f"the loss or its gradient was not finite {bad_in_a_row} steps in a row at step {self.step}; "
                            "training stopped (lower train.lr or use precision fp32); the last good checkpoint is kept")
                    continue
                bad_in_a_row = 0
                self.step += 1
                weighted = result.loss if self.config.diffusion.min_snr_gamma is not None else None
                window.add(result.plain, result.t, self.config.diffusion.num_timesteps, weighted, result.vlb, result.correct,
                           result.weights)
                self._advance_bar()
                if self.step % t.log_every == 0 or self.step == t.steps:
                    window = self._log(log, window, skipped)
                if grid_every and self.step % grid_every == 0:
                    self.save_progress_grid()
                if self.step % t.checkpoint_every == 0:
                    self._checkpoint()
                self._notify("on_step")
            if window.steps:  # what was trained since the last record (a time budget rarely ends on log_every)
                self._log(log, window, skipped)
        if self.world.is_main and (not list_checkpoints(self.out) or list_checkpoints(self.out)[-1][0] != self.step):
            self._checkpoint()
        distributed.barrier()  # no rank leaves before the checkpoint is complete
        if stop_signal:
            raise Interrupted(stop_signal[0], self.step, self.out)
        if grid_every and self.world.is_main and not (self.out / "progress" / f"step_{self.step:07d}.png").exists():
            self.save_progress_grid()
        summary = {"steps": self.step, "stopped_by": stop_reason, "skipped_steps": skipped,
                   "elapsed_s": self.elapsed_before + time.time() - self.started,
                   "parameters": sum(p.numel() for p in self.model.parameters())}
        self._notify("on_end", summary)
        return summary


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

