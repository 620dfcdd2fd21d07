"""Generate images from a trained denoiser in batches: the glue between a checkpoint and the samplers."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .guidance import ClassifierFreeGuidance
from .sampling import sample
from .schedules import NoiseSchedule


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[−1, 1] floats → uint8 [0, 255] (x·127.5 + 127.5, rounded and clamped)."""
    return (x.float() * 127.5 + 127.5).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    *,
    num: int,
    shape: tuple[int, int, int],
    sampler: str = "dpm-solver++",
    steps: int | None = 20,
    eta: float | None = None,
    prediction: str = "eps",
    clip_x0: bool = True,
    labels: torch.Tensor | None = None,
    guidance: float = 0.0,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    x_T: torch.Tensor | None = None,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """``num`` samples as uint8 [num, C, H, W]. The noise comes from one CPU generator seeded with ``seed``,
    so a seed gives the same images in any batch size and on any device. ``labels`` [num] condition a
    class-conditional model; ``guidance`` > 0 is the classifier-free guidance weight w."""
    if guidance:
        num_classes = getattr(getattr(model, "config", None), "num_classes", None)
        if not num_classes:
            raise ValueError("classifier-free guidance needs a class-conditional model; this one is unconditional")
        if labels is None:
            raise ValueError("classifier-free guidance needs class labels to guide towards")
        model = ClassifierFreeGuidance(model, guidance, null_label=num_classes)
    g = torch.Generator().manual_seed(seed)
    if x_T is None:
        x_T = torch.randn((num, *shape), generator=g)
    options = {"steps": steps, "prediction": prediction, "clip_x0": clip_x0, "generator": g}
    if eta is not None and sampler == "ddim":
        options["eta"] = eta
    out = []
    for start in range(0, num, batch_size):
        x = x_T[start:start + batch_size].to(device)
        cond = {"y": labels[start:start + batch_size].to(device)} if labels is not None else None
        x0 = sample(model, schedule, x, sampler=sampler, cond=cond, **options)
        out.append(to_uint8(x0).cpu())
        if progress is not None:
            progress(len(x))
    return torch.cat(out)


def write_samples(images: torch.Tensor, labels: torch.Tensor | None, out: Path, columns: int | None = None) -> Path:
    """uint8 [N, C, H, W] → .npz (arr_0 NHWC, arr_1 labels), a .png grid (``columns`` wide), or a directory of PNGs."""
    from PIL import Image

    from .viz import save_grid

    nhwc = images.permute(0, 2, 3, 1).numpy()
    if out.suffix == ".npz":
        out.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"arr_0": nhwc} if labels is None else {"arr_0": nhwc, "arr_1": labels.numpy()}
        np.savez(out, **arrays)
    elif out.suffix == ".png":
        save_grid(images, out, nrow=columns, scale=2)
    else:
        out.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(nhwc):
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(out / f"{i:06d}.png")
    return out
