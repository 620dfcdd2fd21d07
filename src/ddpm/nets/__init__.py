"""Denoiser networks. They know nothing about diffusion: (x, t, y) → tensor shaped like x.

Each network's config dataclass is THE config of that network (``UNet(UNetConfig(...))``, as nanoGPT's
``GPT(GPTConfig)``); a run config nests one of them as its ``[model]`` section.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Union

from torch import nn

from ..errors import DdpmError
from .classifier import ClassifierConfig, NoisyClassifier
from .mlp import MLP, MLPConfig
from .unet import UNet, UNetConfig

NetConfig = Union[UNetConfig, MLPConfig, ClassifierConfig]
# every network a run may train: the denoisers, and the noise-aware classifier of classifier guidance
ARCHITECTURES: dict[str, tuple[type[nn.Module], type]] = {"unet": (UNet, UNetConfig), "mlp": (MLP, MLPConfig),
                                                          "classifier": (NoisyClassifier, ClassifierConfig)}


def is_classifier(config: NetConfig) -> bool:
    """Whether a [model] config is a noise-aware classifier rather than a denoiser."""
    return config.ARCHITECTURE == "classifier"


def build_network(config: NetConfig, out_channels: int | None = None) -> nn.Module:
    """The network a config describes (``out_channels`` defaults to the input's)."""
    net_cls, _ = ARCHITECTURES[config.ARCHITECTURE]
    return net_cls(config, out_channels=out_channels)


def build_denoiser(architecture: str, **options: Any) -> nn.Module:
    """Build ``architecture`` ("unet" | "mlp") from its config fields; unknown fields are an error."""
    if architecture not in ARCHITECTURES:
        raise DdpmError(f"unknown architecture {architecture!r}; expected one of {', '.join(ARCHITECTURES)}")
    cfg_cls = ARCHITECTURES[architecture][1]
    unknown = sorted(set(options) - {f.name for f in fields(cfg_cls)})
    if unknown:
        raise DdpmError(f"unknown model option(s) {', '.join(unknown)} for {architecture}; "
                        f"allowed: {', '.join(sorted(f.name for f in fields(cfg_cls)))}")
    return build_network(cfg_cls(**options))


__all__ = ["ARCHITECTURES", "ClassifierConfig", "MLP", "MLPConfig", "NetConfig", "NoisyClassifier", "is_classifier", "UNet", "UNetConfig", "build_denoiser", "build_network"]
