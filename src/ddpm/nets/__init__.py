"""Denoiser networks. They know nothing about diffusion: (x, t, y) → tensor shaped like x."""
from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from torch import nn

from .mlp import MLP, MLPConfig
from .unet import UNet, UNetConfig

ARCHITECTURES = {"unet": (UNet, UNetConfig), "mlp": (MLP, MLPConfig)}


def build_denoiser(architecture: str, **options: Any) -> nn.Module:
    """Build ``architecture`` ("unet" | "mlp") from its config fields; unknown fields are an error."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {', '.join(ARCHITECTURES)}")
    net_cls, cfg_cls = ARCHITECTURES[architecture]
    allowed = {f.name for f in fields(cfg_cls)}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"unknown model option(s) {', '.join(unknown)} for {architecture}; allowed: {', '.join(sorted(allowed))}")
    return net_cls(cfg_cls(**options))


__all__ = ["ARCHITECTURES", "MLP", "MLPConfig", "UNet", "UNetConfig", "asdict", "build_denoiser"]
