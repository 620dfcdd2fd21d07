"""Image grids, labelled panels and GIFs, built with Pillow so every pixel is the data's own (no resampling
other than nearest-neighbour enlargement)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..errors import DdpmError
from ..io import atomic_write


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """uint8 [N, C, H, W] → one uint8 image [rows·(H+pad)+pad, cols·(W+pad)+pad, C] on a black ground."""
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = np.zeros((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), dtype=np.uint8)
    for i, img in enumerate(images.numpy()):
        r, col = divmod(i, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = img.transpose(1, 2, 0)
    return grid


def to_pil(array: np.ndarray, scale: int = 1) -> Image.Image:
    """uint8 [H, W, C] (C = 1 or 3) → a Pillow image, enlarged ``scale``× by nearest neighbour."""
    im = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    return im


def save_image(image: Image.Image, path: str | Path, **options) -> Path:
    """Write a Pillow image atomically, in the format its suffix names (.png, .gif, …)."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise DdpmError(f"{path}: unknown image format {path.suffix!r}")
    return atomic_write(path, lambda f: image.save(f, format=fmt, **options))


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 1) -> Path:
    """Save uint8 [N, C, H, W] as a PNG grid (grayscale when C = 1), optionally enlarged ``scale``× (nearest)."""
    return save_image(to_pil(make_grid(images, nrow), scale), path)


def labelled_panel(cells: torch.Tensor, row_labels: Sequence[str], col_labels: Sequence[str], scale: int = 2,
                   pad: int = 2) -> Image.Image:
    """A table of images with text labels: cells uint8 [R, K, C, H, W] → RGB image with a header row of
    ``col_labels`` and a left column of ``row_labels``. Cell (r, k) has its top-left pixel at
    ``cell_origin(panel_layout, r, k)``; cells are enlarged ``scale``× by nearest neighbour, nothing else."""
    r, k, c, h, w = cells.shape
    font = ImageFont.load_default()
    label_w = max([_text_width(font, s) for s in row_labels] + [0]) + 8
    header_h = 14
    cw, ch = w * scale, h * scale
    width = label_w + k * (cw + pad) + pad
    height = header_h + r * (ch + pad) + pad
    panel = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(panel)
    for j, text in enumerate(col_labels):
        draw.text((label_w + pad + j * (cw + pad), 1), text, fill="black", font=font)
    for i, text in enumerate(row_labels):
        draw.text((2, header_h + pad + i * (ch + pad) + ch // 2 - 5), text, fill="black", font=font)
        for j in range(k):
            cell = to_pil(cells[i, j].permute(1, 2, 0).numpy(), scale).convert("RGB")
            panel.paste(cell, cell_origin(label_w, header_h, pad, cw, ch, i, j))
    panel.info["layout"] = (label_w, header_h, pad, cw, ch)
    return panel


def cell_origin(label_w: int, header_h: int, pad: int, cw: int, ch: int, i: int, j: int) -> tuple[int, int]:
    return label_w + pad + j * (cw + pad), header_h + pad + i * (ch + pad)


def _text_width(font, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return right - left


def save_gif(frames: Sequence[Image.Image], path: str | Path, duration_ms: int = 120, final_pause_ms: int = 1200) -> Path:
    """Write an endlessly looping GIF; the last frame stays up longer so the result can be seen."""
    if not frames:
        raise DdpmError("a GIF needs at least one frame")
    durations = [duration_ms] * (len(frames) - 1) + [final_pause_ms]
    frames = [f.convert("RGB") for f in frames]
    return save_image(frames[0], path, save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=False)
