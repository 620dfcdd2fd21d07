"""Any folder of images (recursively), with class subfolders as labels when every image sits in one."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DdpmError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def list_images(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DdpmError(f"image folder {root} does not exist or is not a directory")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DdpmError(f"image folder {root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def load_image(path: Path, size: int, channels: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Resize the shorter side to ``size`` (Lanczos) and centre-crop: uint8 [C, size, size], original (W, H)."""
    try:
        with Image.open(path) as im:
            im.load()
            original = im.size
            im = im.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DdpmError(f"cannot read image {path}: {e}") from None
    w, h = im.size
    scale = size / min(w, h)
    if (w, h) != (size, size):
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.LANCZOS)
        left, top = (im.width - size) // 2, (im.height - size) // 2
        im = im.crop((left, top, left + size, top + size))
    arr = np.asarray(im, dtype=np.uint8)
    return (arr[None] if channels == 1 else arr.transpose(2, 0, 1)), original


def read_image_folder(root: Path, size: int, channels: int) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Images [N, C, size, size] uint8, labels [N] (or None) and the class names."""
    files = list_images(root)
    parents = {p.parent for p in files}
    classes: list[str] = []
    labels = None
    if all(p.parent != root and p.parent.parent == root for p in files) and len(parents) > 1:
        classes = sorted(p.name for p in parents)
        index = {name: i for i, name in enumerate(classes)}
        labels = np.array([index[p.parent.name] for p in files], dtype=np.int64)
    images, sizes = [], set()
    for p in files:
        arr, original = load_image(p, size, channels)
        images.append(arr)
        sizes.add(original)
    if len(sizes) > 1 or sizes != {(size, size)}:
        print(f"note: images in {root} have {len(sizes)} different size(s); all are resized and centre-cropped "
              f"to {size}×{size}", file=sys.stderr)
    return np.stack(images), labels, classes
