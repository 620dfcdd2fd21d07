"""Build a denoiser from a run config, and load one from a checkpoint ready to sample."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from .config import RunConfig
from .errors import DdpmError
from .nets import build_denoiser
from .schedules import NoiseSchedule

_UNET_KEYS = ("base_channels", "channel_mults", "num_res_blocks", "attention_resolutions", "head_channels",
              "dropout", "time_conditioning", "use_time", "rescale_skip", "num_classes", "patch_size")
_MLP_KEYS = ("hidden", "depth", "use_time", "num_classes")


def build_model(config: RunConfig) -> torch.nn.Module:
    """The network described by ``config`` (image size and channels already resolved from the data)."""
    m, d = config.model, config.data
    if d.image_size is None or d.channels is None:
        raise ValueError("resolve data.image_size and data.channels before building the model")
    options = asdict(m)
    keys = _UNET_KEYS if m.architecture == "unet" else _MLP_KEYS
    kwargs = {k: options[k] for k in keys}
    kwargs.update(image_size=d.image_size, in_channels=d.channels)
    try:
        return build_denoiser(m.architecture, **kwargs)
    except ValueError as e:
        raise DdpmError(str(e)) from None


def build_schedule(config: RunConfig) -> NoiseSchedule:
    return NoiseSchedule.from_name(config.diffusion.schedule, config.diffusion.num_timesteps)


def load_model(checkpoint: str | Path, *, use_ema: bool = True, device: str | torch.device = "cpu"):
    """(model in eval mode on ``device``, config, step) from a checkpoint file or run directory."""
    from .train.checkpoint import load_weights

    config, weights, ema, step = load_weights(checkpoint)
    model = build_model(config)
    try:
        model.load_state_dict(ema if use_ema and ema else weights)
    except RuntimeError as e:
        raise DdpmError(f"{checkpoint}: weights do not fit the model its config describes ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), config, step


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise DdpmError(f"unknown device {name!r}; expected auto, cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DdpmError("--device cuda was asked for but no CUDA GPU is available")
    return torch.device(name)
