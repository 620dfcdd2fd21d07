"""Small shared fixtures for the training and CLI tests: sklearn's 8×8 digits as an ImageData."""
import numpy as np
import torch

from ddpm.config import RunConfig
from ddpm.data import DIGIT_CLASSES, ImageData


def sklearn_digits(n: int = 300) -> ImageData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images[:n] * 255 / 16).astype(np.uint8)[:, None]  # 0..16 → 0..255
    return ImageData("digits", torch.from_numpy(images), torch.from_numpy(digits.target[:n].astype(np.int64)), DIGIT_CLASSES)


def tiny_config(**sections) -> RunConfig:
    raw = {
        "data": {"dataset": "mnist"},
        "diffusion": {"num_timesteps": 100},
        "model": {"base_channels": 16, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_resolutions": [4],
                  "head_channels": 16, "dropout": 0.0},
        "train": {"steps": 30, "batch_size": 32, "lr": 2e-3, "warmup_steps": 5, "log_every": 10, "sample_every": 0,
                  "checkpoint_every": 1000, "ema_decay": 0.9},
        "sample": {"sampler": "ddim", "steps": 5, "num": 8},
    }
    for section, values in sections.items():
        raw[section].update(values)
    return RunConfig.from_dict(raw)


def drop_state_digest(weights) -> None:
    """Rewrite a checkpoint's weights file without the state file's checksum, as checkpoints written before
    ddpm recorded it (so the checks behind it, on the state's contents, can be exercised)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(weights), framework="pt") as f:
        metadata = {k: v for k, v in (f.metadata() or {}).items() if k != "state_sha256"}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(weights), metadata=metadata)


def denoiser_of(model, schedule, shape, *, prediction="eps", variance="fixed_small", num_classes=None, context_dim=None,
                onehot=False):
    """A ``Denoiser`` around any callable ``model(x_t, t, **cond)`` (a stand-in network of a test)."""
    from ddpm.denoiser import Denoiser

    return Denoiser(net=model, schedule=schedule, shape=tuple(shape), prediction=prediction, variance=variance,
                    num_classes=num_classes, context_dim=context_dim, onehot=onehot)


PLAN_FIELDS = ("sampler", "steps", "eta", "skip", "spacing", "order", "clip_x0", "guidance", "guidance_interval",
               "classifier", "classifier_scale", "labels", "contexts")


def generate_with(model, schedule, *, num, shape, prediction="eps", variance="fixed_small", **options):
    """``ddpm.generate`` of a stand-in ``model``: the plan's fields and generate's own keyword arguments in one call."""
    from ddpm.generation import generate
    from ddpm.sampling.plan import SamplingPlan

    plan = SamplingPlan(**{k: options.pop(k) for k in PLAN_FIELDS if k in options})
    return generate(denoiser_of(model, schedule, shape, prediction=prediction, variance=variance), plan, num, **options)
