"""Building blocks of the denoisers: time embedding, residual blocks with adaptive group norm, attention."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of timesteps t [B] → [B, dim] (Vaswani et al. 2017 §3.5, as in DDPM).

    emb = [cos(t ω_k), sin(t ω_k)], ω_k = max_period^(−k/(dim/2)), k = 0 … dim/2 − 1.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def group_norm(channels: int, groups: int = 32, min_group_channels: int = 4) -> nn.GroupNorm:
    """GroupNorm with at most ``groups`` groups of at least ``min_group_channels`` channels each.

    Groups of one channel would be instance norm, which erases each channel's mean: the net then cannot
    see or produce the image's overall brightness, and samples drift to all-white or all-black squares
    (seen with 32 channels in 32 groups). ADM's 32 groups on ≥ 128 channels keep ≥ 4 per group.
    """
    g = math.gcd(channels, max(1, min(groups, channels // min_group_channels)))
    return nn.GroupNorm(g, channels, eps=1e-6)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters so a residual branch starts as the identity (ADM, improved DDPM)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv3×3 → (+ embedding) → GroupNorm → SiLU → dropout → conv3×3, plus a skip.

    The embedding e [B, E] enters by addition (DDPM) or, with ``adaptive_norm``, as the scale and shift
    of the second normalisation, h = GN(h)(1 + s) + b (ADM's AdaGN, Dhariwal & Nichol 2021 §3).
    ``rescale`` divides the residual sum by √2 (NCSN++'s convention, Song et al. 2021; DDPM returns x + h). x [B, C, H, W] → [B, C', H, W].
    """

    def __init__(self, channels: int, out_channels: int, emb_dim: int | None, dropout: float,
                 adaptive_norm: bool, rescale: bool, groups: int = 32):
        super().__init__()
        self.adaptive_norm, self.rescale = adaptive_norm, rescale
        self.in_layers = nn.Sequential(group_norm(channels, groups), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb = None
        if emb_dim is not None:
            self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * out_channels if adaptive_norm else out_channels))
        self.out_norm = group_norm(out_channels, groups)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(dropout), zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1)))
        self.skip = nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        h = self.in_layers(x)
        if self.emb is not None:
            e = self.emb(emb)[:, :, None, None].to(h.dtype)
            if self.adaptive_norm:
                scale, shift = e.chunk(2, dim=1)
                h = self.out_norm(h) * (1 + scale) + shift
            else:
                h = self.out_norm(h + e)
        else:
            h = self.out_norm(h)
        h = self.out_layers(h)
        out = self.skip(x) + h
        return out * (1 / math.sqrt(2)) if self.rescale else out


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H×W positions (DDPM at 16×16), by scaled_dot_product_attention.

    x [B, C, H, W] → [B, C, H, W]; the output projection starts at zero so the block starts as identity.
    """

    def __init__(self, channels: int, head_channels: int = 64, rescale: bool = False, groups: int = 32):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.rescale = rescale
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # [B, heads, HW, C/heads]
        out = F.scaled_dot_product_attention(q, k, v)
        out = self.proj(out.transpose(-1, -2).reshape(b, c, h, w))
        out = x + out
        return out * (1 / math.sqrt(2)) if self.rescale else out
