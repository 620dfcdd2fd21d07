"""The DDPM/ADM U-Net. It knows nothing about diffusion: it maps (x [B, C, H, W], t [B], y [B]) to [B, C', H, W]."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import DdpmError
from ..validation import IMAGE_SIZE, POSITIVE_INT, UNIT_HALF_OPEN, bounded, check_fields
from .layers import AttentionBlock, ResBlock, group_norm, timestep_embedding, zero_init

TimeConditioning = Literal["adagn", "add"]
ContextConditioning = Literal["scale", "adagn"]


@dataclass
class UNetConfig:
    """Sizes and switches of the U-Net: THE config of this network, nested as ``[model]`` in a run's config
    (with ``architecture = "unet"``), where ``image_size``, ``in_channels`` and ``num_classes`` come from the data.

    ``image_size`` is the side of the (square) input; None until known (the checks that need it wait).
    The DDPM CIFAR-10 model (35.7M parameters) is base_channels=128, channel_mults=(1, 2, 2, 2),
    num_res_blocks=2, attention_resolutions=(16,), head_channels=256 (one head), dropout=0.1,
    time_conditioning="add", rescale_skip=False (the preset ``cifar10``).
    """

    ARCHITECTURE: ClassVar[str] = "unet"

    image_size: int | None = bounded(None, IMAGE_SIZE)
    in_channels: int = bounded(1, POSITIVE_INT)
    base_channels: int = bounded(64, POSITIVE_INT)
    channel_mults: tuple[int, ...] = bounded((1, 2, 2), POSITIVE_INT)
    num_res_blocks: int = bounded(2, POSITIVE_INT)
    attention_resolutions: tuple[int, ...] = bounded((7,), POSITIVE_INT)  # feature-map sides that get self-attention
    head_channels: int = bounded(64, POSITIVE_INT)
    dropout: float = bounded(0.1, UNIT_HALF_OPEN)
    time_conditioning: TimeConditioning = "adagn"
    use_time: bool = True  # False removes the time input entirely (the "no t" ablation)
    rescale_skip: bool = False  # divide residual sums by √2 (NCSN++; DDPM's blocks return x + h)
    num_classes: int | None = bounded(None, POSITIVE_INT)  # class conditioning; index num_classes means "no label"
    # conditioning on a float vector c ∈ R^k (from data.context); a learned null vector stands for "no context"
    context_dim: int | None = bounded(None, POSITIVE_INT)
    # how c enters: "scale" multiplies the decoder's features by (1 + s_i(c)) before each up block (the write-up's
    # "context multiplied into the up-sampling blocks, time embedding added"); "adagn" adds c's embedding to the time
    # embedding, so it scales and shifts every residual block's normalisation (as the labels do)
    context_conditioning: ContextConditioning = "scale"
    norm_groups: int = bounded(32, POSITIVE_INT)
    # Side of the square pixel patches folded into channels before the first level (pixel-unshuffle) and
    # unfolded after the last (pixel-shuffle): 2 runs the whole net at half resolution, about 4× fewer
    # FLOPs at the top level for the same width (as in "simple diffusion", Hoogeboom et al. 2023).
    patch_size: int = bounded(1, POSITIVE_INT)

    def __post_init__(self) -> None:
        self.channel_mults = tuple(self.channel_mults)
        self.attention_resolutions = tuple(self.attention_resolutions)
        self.validate()

    def resolutions(self) -> list[int]:
        """Feature-map sides, one per level: image_size/patch_size, then halved at each level."""
        if self.image_size is None:
            raise DdpmError("model config: image_size is not known yet (it comes from the data)")
        return [self.image_size // self.patch_size // 2**i for i in range(len(self.channel_mults))]

    def validate(self) -> None:
        """Every rule of this config, each failure one sentence naming the key (DdpmError)."""
        def bad(msg: str) -> DdpmError:
            return DdpmError(f"model config: {msg}")

        check_fields(self, "model")  # every number's range, declared on its field
        if not self.channel_mults:
            raise bad("channel_mults must list at least one level")
        if self.time_conditioning not in ("adagn", "add"):
            raise bad(f"time_conditioning must be 'adagn' or 'add', got {self.time_conditioning!r}")
        if self.context_conditioning not in ("scale", "adagn"):
            raise bad(f"context_conditioning must be 'scale' or 'adagn', got {self.context_conditioning!r}")
        if self.image_size is None:
            return  # the rules below need the image size, which a run config learns from its data
        if self.image_size % self.patch_size:
            raise bad(f"patch_size must be a positive divisor of image_size {self.image_size}, got {self.patch_size}")
        levels = len(self.channel_mults)
        if (self.image_size // self.patch_size) % 2 ** (levels - 1):
            raise bad(f"image_size/patch_size = {self.image_size // self.patch_size} must be divisible by 2^{levels - 1} "
                      f"for {levels} levels (channel_mults)")
        unreachable = sorted(set(self.attention_resolutions) - set(self.resolutions()))
        if unreachable:
            raise bad(f"attention_resolutions {unreachable} are never reached; the feature maps are {self.resolutions()}")


class Encoder(nn.Module):
    """The U-Net's first half, shared by the U-Net and the noise-aware classifier (``nets.classifier``): the time
    embedding, the input convolution, the down levels (residual blocks, attention, strided convolutions) and the
    middle block. ``encode(x [B, C, H, W], emb [B, E] or None)`` → (the middle's output, the skips of every level)."""

    def build_time_embedding(self, c: UNetConfig, emb_dim: int | None) -> None:
        """Make ``time_embed``: the MLP on the sinusoidal embedding (None without the time input)."""
        ch = c.base_channels
        self.time_embed = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)) if c.use_time else None

    def build_encoder(self, c: UNetConfig, emb_dim: int | None) -> list[int]:
        """Make ``input``, ``down`` and ``middle`` (the module names, hence the checkpoint keys, are the U-Net's)
        and return the channels of the skips, in order, and the middle's channels last."""
        ch = c.base_channels
        self.input = nn.Conv2d(c.in_channels * c.patch_size**2, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skips, cur = [ch], ch
        resolutions = c.resolutions()
        for level, mult in enumerate(c.channel_mults):
            for _ in range(c.num_res_blocks):
                blocks = [self.res_block(cur, ch * mult, emb_dim)]
                cur = ch * mult
                if resolutions[level] in c.attention_resolutions:
                    blocks.append(self.attention_block(cur))
                self.down.append(nn.ModuleList(blocks))
                skips.append(cur)
            if level < len(c.channel_mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(cur, cur, 3, stride=2, padding=1)]))
                skips.append(cur)
        self.middle = nn.ModuleList([self.res_block(cur, cur, emb_dim), self.attention_block(cur), self.res_block(cur, cur, emb_dim)])
        return skips + [cur]

    def res_block(self, cin: int, cout: int, emb_dim: int | None) -> ResBlock:
        c = self.config
        return ResBlock(cin, cout, emb_dim, c.dropout, c.time_conditioning == "adagn", c.rescale_skip, c.norm_groups)

    def attention_block(self, channels: int) -> AttentionBlock:
        return AttentionBlock(channels, self.config.head_channels, self.config.rescale_skip, self.config.norm_groups)

    def time_embedding(self, t: torch.Tensor) -> torch.Tensor | None:
        """The time embedding [B, E] of timesteps t [B], or None without the time input."""
        return None if self.time_embed is None else self.time_embed(timestep_embedding(t, self.config.base_channels))

    def encode(self, x: torch.Tensor, emb: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        p = self.config.patch_size
        h = self.input(F.pixel_unshuffle(x, p) if p > 1 else x)
        hs = [h]
        for blocks in self.down:
            for block in blocks:
                h = block(h, emb) if isinstance(block, ResBlock) else block(h)
            hs.append(h)
        for block in self.middle:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)
        return h, hs


class UNet(Encoder):
    """ADM-style U-Net: residual blocks with time (and label) embedding, attention at chosen resolutions,
    optionally working on p×p pixel patches folded into channels (``patch_size``).

    forward(x [B, C, H, W], t [B] int timesteps, y [B] int labels or None, context [B, k] floats or None,
    context_mask [B] bool or None) → [B, C_out, H, W].
    With class conditioning, y = num_classes (or y=None) is the "no label" input of classifier-free guidance. With
    context vectors (``context_dim`` = k), a learned null vector replaces the rows where ``context_mask`` is False (or
    every row when context=None), then a small MLP embeds c into the embedding width (``embed_context``).
    ``out_channels`` (default: in_channels, an ε, x₀ or v prediction) is decided by what the diffusion
    model predicts, not by the network's config.
    """

    def __init__(self, config: UNetConfig, out_channels: int | None = None):
        super().__init__()
        if config.image_size is None:
            raise DdpmError("UNetConfig.image_size must be set to build a U-Net")
        self.config = c = config
        ch = c.base_channels
        emb_dim = 4 * ch if (c.use_time or c.num_classes or c.context_dim) else None
        self.build_time_embedding(c, emb_dim)
        self.label_embed = nn.Embedding(c.num_classes + 1, emb_dim) if c.num_classes else None
        *skips, cur = self.build_encoder(c, emb_dim)  # built in this order, the weights' initial draws are as before
        resolutions = c.resolutions()
        self.up = nn.ModuleList()
        scaled: list[int] = []  # the channels of h entering each up block ("scale" context conditioning)
        for level, mult in reversed(list(enumerate(c.channel_mults))):
            for i in range(c.num_res_blocks + 1):
                scaled.append(cur)
                blocks = [self.res_block(cur + skips.pop(), ch * mult, emb_dim)]
                cur = ch * mult
                if resolutions[level] in c.attention_resolutions:
                    blocks.append(self.attention_block(cur))
                if level > 0 and i == c.num_res_blocks:
                    blocks.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cur, cur, 3, padding=1)))
                self.up.append(nn.ModuleList(blocks))
        patch_area = c.patch_size**2
        self.out = nn.Sequential(group_norm(cur, c.norm_groups), nn.SiLU(), zero_init(nn.Conv2d(cur, (out_channels or c.in_channels) * patch_area, 3, padding=1)))
        self.context_embed = self.null_context = self.context_scales = None
        if c.context_dim:
            self.null_context = nn.Parameter(torch.zeros(c.context_dim))
            self.context_embed = nn.Sequential(nn.Linear(c.context_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
            if c.context_conditioning == "scale":  # zero-initialised: training starts from the unscaled decoder
                self.context_scales = nn.ModuleList(zero_init(nn.Linear(emb_dim, channels)) for channels in scaled)

    def embed(self, t: torch.Tensor, y: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor | None:
        emb = self.time_embedding(t)
        if self.label_embed is not None:
            if y is None:
                y = torch.full((batch,), self.config.num_classes, dtype=torch.long, device=device)
            label = self.label_embed(y)
            emb = label if emb is None else emb + label
        elif y is not None:
            raise ValueError("this model is unconditional (num_classes=None) but labels y were given")
        return emb

    def embed_context(self, context: torch.Tensor | None, mask: torch.Tensor | None, batch: int) -> torch.Tensor:
        """The context embedding [B, E] of c [B, k]: the learned null vector where ``mask`` [B] is False or c is None."""
        k = self.config.context_dim
        null = self.null_context.expand(batch, k)
        if context is None:
            return self.context_embed(null)
        if context.shape != (batch, k):
            raise ValueError(f"context must be [{batch}, {k}], got {list(context.shape)}")
        context = context.to(null.dtype)
        if mask is not None:
            context = torch.where(mask.view(-1, 1), context, null)
        return self.context_embed(context)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(t, y, x.shape[0], x.device)
        scales = None
        if self.context_embed is not None:
            c_emb = self.embed_context(context, context_mask, x.shape[0])
            if self.context_scales is None:  # "adagn": into every block's embedding, beside t (and y)
                emb = c_emb if emb is None else emb + c_emb
            else:
                scales = [1 + layer(F.silu(c_emb))[:, :, None, None] for layer in self.context_scales]
        elif context is not None:
            raise ValueError("this model takes no context (context_dim=None) but a context was given")
        h, hs = self.encode(x, emb)
        for i, blocks in enumerate(self.up):
            if scales is not None:  # "scale": the decoder's features multiplied by the context (write-up's cemb·up)
                h = h * scales[i].to(h.dtype)
            h = torch.cat([h, hs.pop()], dim=1)
            for block in blocks:
                h = block(h, emb) if isinstance(block, ResBlock) else block(h)
        out = self.out(h)
        p = self.config.patch_size
        return F.pixel_shuffle(out, p) if p > 1 else out
