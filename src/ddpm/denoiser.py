"""``Denoiser``: a trained network together with everything a sampler, a loss or the NLL needs to use it.

A network knows nothing of diffusion; a ``Denoiser`` binds it once to its noise schedule, what it predicts
(ε, x₀, v or μ̃), its reverse variance, its image shape and its kind of conditioning (classes, context vectors),
as k-diffusion's wrappers and NVlabs/edm's preconditioned nets carry what their samplers read. Built from a run's
config (``from_config``), loaded from a run directory or checkpoint (``from_pretrained``, as diffusers names it),
written back in the run-directory format (``save_pretrained``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from .checkpoint import CHECKPOINT_DIR, list_checkpoints, resolve_checkpoint, save_weights
from .config import RunConfig
from .errors import DdpmError
from .io import atomic_write_text
from .models import build_model, build_schedule, load_model
from .parameterization import Prediction, check_prediction
from .run_files import CONFIG_FILE, LOG_FILE, MODEL_CARD, write_config
from .schedules import NoiseSchedule
from .variance import VARIANCE_TYPES, VarianceType


@dataclass
class Denoiser:
    """A network with its diffusion: ``denoiser(x_t [B, C, H, W], t [B] int64 original timesteps, **cond)`` returns
    the network's output (the prediction [B, C, H, W], or [B, 2C, H, W] with a learned variance: mean part first).

    - ``net``: any ``torch.nn.Module`` (or callable) ``(x_t, t, y=None, context=None) -> output``.
    - ``schedule``: the ``NoiseSchedule`` it was trained on (T, β, ᾱ in float64).
    - ``prediction``: "eps" | "x0" | "v" | "mu"; ``variance``: "fixed_small" | "fixed_large" | "learned" |
      "learned_range" (improved DDPM eq. 15).
    - ``shape``: (C, H, W) of one image, in [−1, 1].
    - ``num_classes``: classes of a class-conditional net (index ``num_classes`` is "no label"), else None;
      ``context_dim``: length k of its context vectors, else None; ``onehot``: its contexts are one-hot labels
      (a run on data.context = "onehot"), so labels stand for them.
    - ``config``, ``step``: the run config and checkpoint step it came from (None for a network built by hand).
    """

    net: Any
    schedule: NoiseSchedule
    shape: tuple[int, int, int]
    prediction: Prediction = "eps"
    variance: VarianceType = "fixed_small"
    num_classes: Optional[int] = None
    context_dim: Optional[int] = None
    onehot: bool = False
    config: Optional[RunConfig] = field(default=None, repr=False)
    step: Optional[int] = None
    source: Optional[Path] = None  # the checkpoint file it was loaded from

    def __post_init__(self) -> None:
        check_prediction(self.prediction)
        if self.variance not in VARIANCE_TYPES:
            raise DdpmError(f"unknown variance {self.variance!r}; expected one of {', '.join(VARIANCE_TYPES)}")
        if not isinstance(self.schedule, NoiseSchedule):
            raise DdpmError(f"schedule must be a NoiseSchedule, got {type(self.schedule).__name__}")
        if len(self.shape) != 3 or not all(isinstance(n, int) and n > 0 for n in self.shape):
            raise DdpmError(f"shape must be (channels, height, width) of positive integers, got {self.shape!r}")
        net_config = getattr(self.net, "config", None)  # a ddpm network says how it is conditioned
        if self.num_classes is None:
            self.num_classes = getattr(net_config, "num_classes", None)
        if self.context_dim is None:
            self.context_dim = getattr(net_config, "context_dim", None)

    def __repr__(self) -> str:
        net = type(self.net).__name__
        if isinstance(self.net, torch.nn.Module):
            net += f", {sum(p.numel() for p in self.net.parameters()) / 1e6:.2f}M parameters"
        cond = (f"{self.num_classes} classes" if self.num_classes else
                f"{self.context_dim}-d contexts" + (" (one-hot labels)" if self.onehot else "") if self.context_dim
                else "unconditional")
        c, h, w = self.shape
        step = "" if self.step is None else f", step {self.step}"
        return (f"Denoiser({net}; {self.schedule.name} schedule, T = {self.num_timesteps}; predicts {self.prediction}, "
                f"variance {self.variance}; {c}×{h}×{w} images; {cond}{step})")

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, *args: Any, **cond: Any) -> torch.Tensor:
        return self.net(x_t, t, *args, **cond)

    # -- building ------------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: RunConfig, net: torch.nn.Module | None = None, *, step: int | None = None,
                    source: Path | None = None) -> "Denoiser":
        """The denoiser a resolved run config describes (image size and channels known), around ``net`` (default: a
        new network with fresh weights)."""
        if config.model.image_size is None:
            raise DdpmError("the config's image size is not known yet: resolve it with its data (RunConfig.resolved)")
        d, diffusion = config.data, config.diffusion
        return cls(net=build_model(config) if net is None else net, schedule=build_schedule(config),
                   shape=(d.channels, d.image_size, d.image_size), prediction=diffusion.prediction,
                   variance=diffusion.variance, num_classes=config.model.num_classes,
                   context_dim=getattr(config.model, "context_dim", None), onehot=d.context == "onehot",
                   config=config, step=step, source=source)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, use_ema: bool = True, device: str | torch.device = "cpu") -> "Denoiser":
        """Load a run directory (its latest complete checkpoint) or a checkpoint file: the EMA weights unless
        ``use_ema`` is False, in eval mode, on ``device``."""
        checkpoint = resolve_checkpoint(path)
        net, config, step = load_model(checkpoint, use_ema=use_ema, device=device)
        return cls.from_config(config, net, step=step, source=checkpoint).to(device)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write this denoiser as a run directory ``directory`` that ``from_pretrained`` and every ``ddpm`` command
        read: config.json, checkpoints/step_N.safetensors (its weights as both the raw and the EMA weights; no
        resume state, so it samples but does not resume) and a README.md model card. A directory that holds a run
        already is refused (nothing is overwritten). Returns the checkpoint file."""
        if self.config is None:
            raise DdpmError("save_pretrained needs the run config the denoiser was built from (Denoiser.from_config)")
        if not isinstance(self.net, torch.nn.Module):
            raise DdpmError("save_pretrained saves a torch.nn.Module's weights; this denoiser's net is a plain callable")
        out = Path(directory)
        if list_checkpoints(out) or (out / CONFIG_FILE).exists():
            raise DdpmError(f"{out} already holds a run; save into a new directory")
        (out / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
        write_config(out, self.config)
        path = save_weights(out, self.step or 0, self.net, self.config)
        atomic_write_text(out / MODEL_CARD, self.model_card())
        return path

    # -- conveniences --------------------------------------------------------------------------------------------
    def to(self, device: str | torch.device) -> "Denoiser":
        """Move the network and the schedule to ``device`` (in place); returns self."""
        if isinstance(self.net, torch.nn.Module):
            self.net.to(device)
        self.schedule = self.schedule.to(device)
        return self

    def eval(self) -> "Denoiser":
        if isinstance(self.net, torch.nn.Module):
            self.net.eval()
        return self

    @property
    def device(self) -> torch.device:
        if isinstance(self.net, torch.nn.Module):
            for p in self.net.parameters():
                return p.device
        return torch.device("cpu")

    @property
    def num_timesteps(self) -> int:
        return self.schedule.num_timesteps

    @property
    def classes_shown(self) -> int | None:
        """How many classes its samples are asked for: its classes, or the length of its one-hot contexts."""
        return self.context_dim if self.onehot else self.num_classes

    def plan(self, **overrides: Any):
        """The ``SamplingPlan`` of the run's [sample] settings with ``overrides`` (sampler, steps, eta, clip_x0,
        guidance, guidance_interval, and the plan's other fields). The run's rule: another sampler than the run's
        drops its DDIM eta; the result is checked against this model (steps ≤ T, guidance only when conditional)."""
        from .sampling.plan import SamplingPlan

        if self.config is None:
            return SamplingPlan(**overrides)
        keys = ("sampler", "steps", "eta", "clip_x0", "guidance", "guidance_interval")
        settings = self.config.sample_settings(**{k: overrides.pop(k) for k in keys if k in overrides})
        return plan_from_settings(settings, **overrides)

    def model_card(self) -> str:
        """A README.md for a saved denoiser: what it is, how it was trained, its last evaluation."""
        c = self.config
        params = sum(p.numel() for p in self.net.parameters()) if isinstance(self.net, torch.nn.Module) else None
        cond = (f"class-conditional ({self.num_classes} classes)" if self.num_classes else
                f"conditioned on {self.context_dim}-d context vectors" if self.context_dim else "unconditional")
        lines = [f"# ddpm model: {c.model.ARCHITECTURE} on {c.data.dataset}", "",
                 f"- network: {c.model.ARCHITECTURE}" + (f", {params / 1e6:.2f}M parameters" if params else ""),
                 f"- images: {self.shape[0]}×{self.shape[1]}×{self.shape[2]}, in [−1, 1]; {cond}",
                 f"- diffusion: {c.diffusion.schedule} schedule, T = {c.diffusion.num_timesteps}, predicts "
                 f"{self.prediction}, variance {self.variance}, loss {c.diffusion.loss}",
                 f"- trained: {self.step or 0} steps, batch {c.train.batch_size}, lr {c.train.lr:g}, "
                 f"EMA decay {c.train.ema_decay:g}, seed {c.train.seed}",
                 f"- sampled by default with: {self.plan().describe(self.num_timesteps)}", ""]
        last = self._last_evaluation()
        if last:
            scores = ", ".join(f"{k} {last[k]:.4g}" for k in ("fid", "domain_fid", "nll_bpd") if last.get(k) is not None)
            lines += ["## Last evaluation", "",
                      f"{scores} ({last.get('num')} samples, {last.get('sampler')} {last.get('steps')} steps, "
                      f"reference {last.get('reference')}, checkpoint step {last.get('checkpoint_step')})", ""]
        lines += ["## Use", "", "```python", "from ddpm import Denoiser, generate",
                  "denoiser = Denoiser.from_pretrained(\"THIS_DIRECTORY\")",
                  "images = generate(denoiser, denoiser.plan(), 16, seed=0)  # uint8 [16, C, H, W]", "```", "",
                  "or `ddpm sample THIS_DIRECTORY --num 64 --out grid.png`.", ""]
        return "\n".join(lines)

    def _last_evaluation(self) -> dict[str, Any] | None:
        if self.source is None or self.source.parent.name != CHECKPOINT_DIR:
            return None
        log = self.source.parent.parent / LOG_FILE
        if not log.is_file():
            return None
        rows = []
        for line in log.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a half-written last line
                continue
            if record.get("kind") == "eval":
                rows.append(record)
        return rows[-1] if rows else None


def plan_from_settings(settings, **fields: Any):
    """The ``SamplingPlan`` of a ``config.SampleConfig`` (a run's [sample] section, overrides applied), with the
    plan's other ``fields`` (labels, contexts, classifier, …)."""
    from .sampling.plan import SamplingPlan

    return SamplingPlan(sampler=settings.sampler, steps=settings.steps, clip_x0=settings.clip_x0,
                        eta=settings.eta if settings.sampler == "ddim" else None, guidance=settings.guidance,
                        guidance_interval=(settings.guidance_from, settings.guidance_to), **fields)
