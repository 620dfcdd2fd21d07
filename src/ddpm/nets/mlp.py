"""An MLP denoiser: the baseline with the U-Net's interface, for ablations and tiny data."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..errors import DdpmError
from ..validation import POSITIVE_INT, bounded, check_fields
from .layers import timestep_embedding


@dataclass
class MLPConfig:
    """THE config of the MLP, nested as ``[model]`` with ``architecture = "mlp"`` in a run's config (where
    ``image_size``, ``in_channels`` and ``num_classes`` come from the data)."""

    ARCHITECTURE: ClassVar[str] = "mlp"

    image_size: int | None = bounded(None, POSITIVE_INT)
    in_channels: int = bounded(1, POSITIVE_INT)
    hidden: int = bounded(1024, POSITIVE_INT)
    depth: int = bounded(4, POSITIVE_INT)
    use_time: bool = True
    # x_t times a learned gain of (t, label) added to the output (EDM's c_skip, learned): eps ≈ x_t at high noise is
    # 784-dimensional, which a hidden width below that cannot carry (without it the study's 440-wide MLP stalls at
    # loss ≈ 0.5 and samples noise)
    input_skip: bool = True
    num_classes: int | None = bounded(None, POSITIVE_INT)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_fields(self, "model")  # every number's range, declared on its field


class MLP(nn.Module):
    """x [B, C, H, W] flattened, residual SiLU layers each adding the time (and label) embedding → [B, C', H, W],
    plus g(t, y)·x on the first C output channels when ``input_skip`` (g: one learned scalar per sample)."""

    def __init__(self, config: MLPConfig, out_channels: int | None = None):
        super().__init__()
        if config.image_size is None:
            raise DdpmError("MLPConfig.image_size must be set to build an MLP")
        self.config = c = config
        dim = c.in_channels * c.image_size**2
        out_dim = (out_channels or c.in_channels) * c.image_size**2
        self.input = nn.Linear(dim, c.hidden)
        self.time_embed = nn.Sequential(nn.Linear(128, c.hidden), nn.SiLU(), nn.Linear(c.hidden, c.hidden)) if c.use_time else None
        self.label_embed = nn.Embedding(c.num_classes + 1, c.hidden) if c.num_classes else None
        self.layers = nn.ModuleList(nn.Sequential(nn.LayerNorm(c.hidden), nn.SiLU(), nn.Linear(c.hidden, c.hidden)) for _ in range(c.depth))
        self.output = nn.Sequential(nn.LayerNorm(c.hidden), nn.SiLU(), nn.Linear(c.hidden, out_dim))
        self.skip_gain = nn.Linear(c.hidden, 1) if c.input_skip else None
        for layer in (self.output[-1], self.skip_gain):  # the net starts at output 0
            if layer is not None:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.input(x.flatten(1))
        emb = torch.zeros_like(h)
        if self.time_embed is not None:
            emb = emb + self.time_embed(timestep_embedding(t, 128))
        if self.label_embed is not None:
            y = torch.full((x.shape[0],), self.config.num_classes, device=x.device, dtype=torch.long) if y is None else y
            emb = emb + self.label_embed(y)
        elif y is not None:
            raise ValueError("this model is unconditional (num_classes=None) but labels y were given")
        for layer in self.layers:
            h = (h + layer(h + emb)) / math.sqrt(2)
        out = self.output(h).reshape(x.shape[0], -1, *x.shape[2:])
        if self.skip_gain is None:
            return out
        skip = self.skip_gain(emb).view(-1, 1, 1, 1) * x
        return torch.cat([out[:, : x.shape[1]] + skip, out[:, x.shape[1] :]], dim=1)
