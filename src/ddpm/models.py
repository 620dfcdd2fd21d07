"""Build a denoiser from a run config, and load one from a checkpoint ready to sample."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoint import load_weights
from .config import RunConfig
from .distributed import launched_by_torchrun
from .errors import DdpmError
from .nets import build_network, is_classifier
from .schedules import NoiseSchedule
from .variance import output_channels


def build_model(config: RunConfig) -> torch.nn.Module:
    """The network described by ``config`` (resolved: image size and channels known from the data)."""
    if config.model.image_size is None:
        raise ValueError("resolve the config with its data (RunConfig.resolved) before building the model")
    return build_network(config.model, out_channels=output_channels(config.model.in_channels, config.diffusion.variance))


def build_schedule(config: RunConfig) -> NoiseSchedule:
    return NoiseSchedule.from_name(config.diffusion.schedule, config.diffusion.num_timesteps)


def load_into(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load ``weights`` into ``model``, or say in one sentence that they belong to another architecture."""
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise DdpmError(f"{source}: weights do not fit the model its config describes ({weight_mismatch(model, weights)}; "
                        "was it written by another version of ddpm?)") from None


def weight_mismatch(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> str:
    """What differs between ``model``'s parameters and ``weights``: missing and unexpected names, then shapes."""
    expected = model.state_dict()

    def names(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    shapes = [f"{k} {list(weights[k].shape)} for {list(v.shape)}" for k, v in expected.items()
              if k in weights and weights[k].shape != v.shape]
    parts = [f"{kind} {names(keys)}" for kind, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes))
             if keys]
    return "; ".join(parts) or "the weights do not load"


def load_model(checkpoint: str | Path, *, use_ema: bool = True, device: str | torch.device = "cpu", kind: str = "denoiser"):
    """(model in eval mode on ``device``, config, step) from a checkpoint file or run directory of ``kind``: a
    diffusion model ("denoiser") or a noise-aware classifier ("classifier"); the other kind is refused."""
    config, weights, ema, step = load_weights(checkpoint)
    if is_classifier(config.model) != (kind == "classifier"):
        raise DdpmError(f"{checkpoint} is a noise-aware classifier, not a diffusion model (it guides one as its classifier)"
                        if kind == "denoiser" else f"{checkpoint} is a diffusion model, not a classifier "
                        "(train one for it with ddpm train-classifier)")
    model = build_model(config)
    load_into(model, ema if use_ema and ema else weights, checkpoint)
    return model.to(device).eval(), config, step


def load_classifier(checkpoint: str | Path, config: RunConfig, *, device: str | torch.device = "cpu"):
    """The noise-aware classifier at ``checkpoint`` (EMA weights, eval mode, on ``device``) to guide the diffusion model
    of ``config``, or one sentence saying why it cannot: it must know the same images (size, channels), the same
    noise schedule (name and T: its t must mean the same x_t) and, for a class-conditional model, as many classes."""
    classifier, clf, _ = load_model(checkpoint, device=device, kind="classifier")
    mismatches = [f"{what} {theirs} (the model's: {ours})" for what, theirs, ours in (
        ("image size", clf.data.image_size, config.data.image_size), ("channels", clf.data.channels, config.data.channels),
        ("schedule", clf.diffusion.schedule, config.diffusion.schedule),
        ("T", clf.diffusion.num_timesteps, config.diffusion.num_timesteps),
        ("classes", clf.model.num_classes, config.model.num_classes or clf.model.num_classes)) if theirs != ours]
    if mismatches:
        raise DdpmError(f"classifier {checkpoint} was trained for other images or another diffusion: {', '.join(mismatches)}")
    return classifier


def pick_device(name: str = "auto") -> torch.device:
    """auto (CUDA when there is a GPU), cpu, cuda or cuda:N; under torchrun, auto and cuda mean this rank's own GPU
    (cuda:LOCAL_RANK)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and torch.cuda.is_available() and launched_by_torchrun():
        name = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    if name not in ("cpu", "cuda") and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise DdpmError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DdpmError("device cuda was asked for but no CUDA GPU is available")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # NCCL and every bare .cuda() use this rank's GPU
    return device
