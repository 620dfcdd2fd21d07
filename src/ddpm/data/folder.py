"""Any folder of images (recursively), with class subfolders as labels when every image sits in one.

Test split: a folder with its own ``test/`` subfolder uses it as the test split and the rest (or ``train/``,
when present) for training; any other folder holds out ``test_fraction`` of its images (a fixed draw for a
given folder: seeded with ``SPLIT_SEED``, whatever the run's seed), which training never sees.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DdpmError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
SPLIT_SEED = 0  # the held-out share is the same for every run on a folder


def split_files(root: Path, split: str, test_fraction: float) -> tuple[list[Path], Path]:
    """(image files of ``split``, the folder their class subfolders sit in)."""
    test_dir = root / "test"
    if test_dir.is_dir():
        if split == "test":
            return list_images(test_dir), test_dir
        base = root / "train" if (root / "train").is_dir() else root
        files = [p for p in list_images(base) if test_dir not in p.parents]
        if not files:
            raise DdpmError(f"image folder {base} holds no training images besides its test/ subfolder")
        return files, base
    files = list_images(root)
    if len(files) < 2:
        raise DdpmError(f"image folder {root} needs at least 2 images to hold some out as its test split")
    num_test = min(len(files) - 1, max(1, round(test_fraction * len(files))))
    order = np.random.default_rng(SPLIT_SEED).permutation(len(files))
    held_out = set(order[:num_test].tolist())
    return [p for i, p in enumerate(files) if (i in held_out) == (split == "test")], root


def class_names(base: Path, files: list[Path]) -> list[str]:
    """First-level subfolder names when every image sits in one and there are several; else none."""
    parents = {p.parent for p in files}
    if len(parents) > 1 and all(p.parent != base and p.parent.parent == base for p in files):
        return sorted(p.name for p in parents)
    return []


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


def read_image_folder(root: Path, size: int, channels: int, split: str = "train",
                      test_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Images [N, C, size, size] uint8, labels [N] (or None) and the class names of one split."""
    files, base = split_files(root, split, test_fraction)
    if (root / "test").is_dir():  # the classes are those of the training folder
        train_files, train_base = split_files(root, "train", test_fraction) if split == "test" else (files, base)
        classes = class_names(train_base, train_files)
    else:  # both splits share one class list, found over the whole folder
        classes = class_names(root, list_images(root))
    labels = None
    if classes:
        index = {name: i for i, name in enumerate(classes)}
        unknown = sorted({p.parent.name for p in files if p.parent.name not in index or p.parent.parent != base})
        if unknown:
            raise DdpmError(f"{base}: class folder(s) {', '.join(unknown)} are not among the training classes {', '.join(classes)}")
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
