"""An MLP denoiser: the baseline with the U-Net's interface, for ablations and tiny data."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .layers import timestep_embedding


@dataclass
class MLPConfig:
    image_size: int = 28
    in_channels: int = 1
    hidden: int = 1024
    depth: int = 4
    use_time: bool = True
    num_classes: int | None = None

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.depth < 1 or self.image_size < 1 or self.in_channels < 1:
            raise ValueError("model config: hidden, depth, image_size and in_channels must be positive")


class MLP(nn.Module):
    """x [B, C, H, W] flattened, residual SiLU layers each adding the time (and label) embedding → [B, C, H, W]."""

    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = c = config
        dim = c.in_channels * c.image_size**2
        self.input = nn.Linear(dim, c.hidden)
        self.time_embed = nn.Sequential(nn.Linear(128, c.hidden), nn.SiLU(), nn.Linear(c.hidden, c.hidden)) if c.use_time else None
        self.label_embed = nn.Embedding(c.num_classes + 1, c.hidden) if c.num_classes else None
        self.layers = nn.ModuleList(nn.Sequential(nn.LayerNorm(c.hidden), nn.SiLU(), nn.Linear(c.hidden, c.hidden)) for _ in range(c.depth))
        self.output = nn.Sequential(nn.LayerNorm(c.hidden), nn.SiLU(), nn.Linear(c.hidden, dim))
        nn.init.zeros_(self.output[-1].weight)
        nn.init.zeros_(self.output[-1].bias)

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
        return self.output(h).reshape(x.shape)
