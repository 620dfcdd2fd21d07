"""Writing samples to files: an .npz, a .png grid or a folder of PNGs (batch by batch), and the memory check
that refuses, before any sampling, a file that could not be held in memory."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from .errors import DdpmError
from .io import atomic_write


def writes_one_file(out: Path) -> bool:
    """Whether ``out`` is one file holding every sample (.npz, .png grid) rather than a folder of PNGs, which
    can be written batch by batch (``write_samples(..., first_index=)``)."""
    return out.suffix in (".npz", ".png")


def write_samples(images: torch.Tensor, labels: torch.Tensor | None, out: Path, columns: int | None = None,
                  first_index: int = 0) -> Path:
    """uint8 [N, C, H, W] → .npz (arr_0 NHWC, arr_1 labels), a .png grid (``columns`` wide), or a directory of
    PNGs named by sample index (the first is ``first_index``: a folder is filled one batch at a time)."""
    from PIL import Image

    from .viz.images import save_grid, save_image

    nhwc = images.permute(0, 2, 3, 1).numpy()
    if out.suffix == ".npz":
        arrays = {"arr_0": nhwc} if labels is None else {"arr_0": nhwc, "arr_1": labels.numpy()}
        atomic_write(out, lambda f: np.savez(f, **arrays))
    elif out.suffix == ".png":
        save_grid(images, out, nrow=columns, scale=2)
    else:
        out.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(nhwc, start=first_index):
            save_image(Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img), out / f"{i:06d}.png")
    return out


def check_fits_in_memory(num: int, shape: tuple[int, int, int]) -> None:
    """Refuse, before sampling, ``num`` samples of ``shape`` (C, H, W) whose uint8 images cannot be held twice
    (the batches and the array written) in the memory available now; say how many would fit."""
    per_sample = 2 * math.prod(shape)
    available = available_memory()
    if available is not None and num * per_sample > available:
        c, h, w = shape
        raise DdpmError(f"{num} samples of {c}×{h}×{w} need {num * per_sample / 1e9:.1f} GB of memory for one .npz or .png, "
                        f"more than the {available / 1e9:.1f} GB available; about {available // per_sample} fit: sample "
                        "fewer, or write a folder of PNGs (--out DIR), which is written batch by batch")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (Linux: MemAvailable; elsewhere free pages), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
