"""The noise-aware classifier of classifier guidance (Dhariwal & Nichol 2021, §4): p_φ(y | x_t, t).

It is the U-Net's encoder half (the same time-conditioned residual blocks, attention and down levels, built by
``unet.Encoder``) followed by a pooling head. It knows nothing about diffusion either: trained on x_t at random t
of a run's schedule (``objectives.classifier_loss``), it maps (x_t [B, C, H, W], t [B]) to logits [B, K].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..errors import DdpmError
from ..validation import IMAGE_SIZE, POSITIVE_INT, UNIT_HALF_OPEN, bounded
from .layers import group_norm, zero_init
from .unet import Encoder, UNetConfig


@dataclass
class ClassifierConfig(UNetConfig):
    """The classifier's sizes: the U-Net's keys (one home for them, ``UNetConfig``), with ``num_classes`` the
    number of classes it tells apart (from the data) and defaults sized for MNIST on a CPU (0.4M parameters at
    28×28: ADM's classifier is the same encoder at ImageNet widths). Nested as ``[model]`` with
    ``architecture = "classifier"``; ``ddpm train-classifier`` writes it."""

    ARCHITECTURE: ClassVar[str] = "classifier"

    image_size: int | None = bounded(None, IMAGE_SIZE)
    base_channels: int = bounded(32, POSITIVE_INT)
    channel_mults: tuple[int, ...] = bounded((1, 2, 2), POSITIVE_INT)
    num_res_blocks: int = bounded(1, POSITIVE_INT)
    attention_resolutions: tuple[int, ...] = bounded((7,), POSITIVE_INT)
    dropout: float = bounded(0.0, UNIT_HALF_OPEN)


class NoisyClassifier(Encoder):
    """forward(x_t [B, C, H, W], t [B] int timesteps) → logits [B, K] of p_φ(y | x_t, t).

    Encoder (time embedding added or AdaGN, as the U-Net's ``time_conditioning``) → GroupNorm → SiLU → global
    average pool → linear to K logits, zero-initialised so that training starts at the uniform prediction (loss log K).
    """

    def __init__(self, config: ClassifierConfig, out_channels: int | None = None):
        super().__init__()
        if config.image_size is None:
            raise DdpmError("ClassifierConfig.image_size must be set to build a classifier")
        if not config.num_classes:
            raise DdpmError("a classifier needs its number of classes (model.num_classes, from labelled data)")
        if config.context_dim:
            raise DdpmError("a classifier takes no context vector (model.context_dim); it reads the class from x_t")
        self.config = c = config
        emb_dim = 4 * c.base_channels if c.use_time else None
        self.build_time_embedding(c, emb_dim)
        *_, cur = self.build_encoder(c, emb_dim)
        self.head = nn.Sequential(group_norm(cur, c.norm_groups), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  zero_init(nn.Linear(cur, c.num_classes)))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h, _ = self.encode(x, self.time_embedding(t))
        return self.head(h)
