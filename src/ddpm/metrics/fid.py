"""FID between image sets: folders, ``.npz`` sample files, saved statistics and dataset splits.

An image set is named by a string:

* a directory — every image in it (recursively), read with Pillow as RGB (grayscale repeated); images of
  different sizes are each resized to 299×299 by the network's own resampling (said once);
* ``FILE.npz`` holding ``arr_0`` — uint8 NHWC samples (guided-diffusion's convention, what ``ddpm sample``
  writes) — or ``mu`` and ``sigma`` — saved statistics (what ``ddpm fid-stats`` writes);
* ``DATASET:SPLIT`` (``mnist:test``, ``fashion-mnist:train``, ``cifar10:test`` …) — reference statistics
  of that split, computed once and cached under ``cache_dir()/fid-stats``.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .. import distributed
from ..errors import DdpmError
from ..io import check_writable, read_npz
from .frechet import FeatureStats, frechet_distance

def cache_dir() -> Path:
    """$DDPM_CACHE, else $XDG_CACHE_HOME/ddpm, else ~/.cache/ddpm."""
    if os.environ.get("DDPM_CACHE"):
        return Path(os.environ["DDPM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ddpm"


def npz_images(path: Path, arrays: dict[str, np.ndarray]) -> torch.Tensor:
    """arr_0 of an .npz (``arrays``, its contents): uint8 [N, H, W, C] (or [N, H, W]) → uint8 [N, C, H, W]."""
    f = arrays
    if "arr_0" not in f:
        raise DdpmError(f"{path} has neither arr_0 (images) nor mu/sigma (statistics)")
    arr = f["arr_0"]
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (1, 3)):
        raise DdpmError(f"{path}: arr_0 must be uint8 images [N, H, W, C] with C = 1 or 3, got {arr.dtype} {arr.shape}")
    return torch.from_numpy(arr[..., None] if arr.ndim == 3 else arr).permute(0, 3, 1, 2).contiguous()


def folder_images(root: Path) -> list[tuple[Path, tuple[int, int]]]:
    """(path, size) of the images in ``root``, grouped by size (the order their features are computed in)."""
    from ..data.folder import list_images

    by_size: dict[tuple[int, int], list[Path]] = defaultdict(list)
    for path in list_images(root):
        try:
            with Image.open(path) as im:
                by_size[im.size].append(path)
        except (UnidentifiedImageError, OSError) as e:
            raise DdpmError(f"cannot read image {path}: {e}") from None
    if len(by_size) > 1:
        print(f"note: images in {root} have {len(by_size)} different sizes; each is resized to 299×299 for Inception",
              file=sys.stderr)
    return [(path, size) for size, paths in by_size.items() for path in paths]


def folder_batches(images: list[tuple[Path, tuple[int, int]]], batch_size: int = 256) -> Iterator[torch.Tensor]:
    """uint8 [B, 3, H, W] batches of ``folder_images``' images (or a slice of them), a batch never mixing sizes
    (no resizing here)."""
    for _, group in itertools.groupby(images, key=lambda item: item[1]):
        paths = [path for path, _ in group]
        for start in range(0, len(paths), batch_size):
            arrays = []
            for path in paths[start:start + batch_size]:
                try:
                    with Image.open(path) as im:
                        arrays.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
                except (UnidentifiedImageError, OSError, SyntaxError) as e:
                    raise DdpmError(f"cannot read image {path}: {e}") from None
            yield torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def dataset_stats(spec: str, extractor, *, data_dir: str | None = None, image_size: int | None = None,
                  channels: int | None = None, test_fraction: float = 0.1, refresh: bool = False,
                  progress: Callable[[int], None] | None = None) -> FeatureStats:
    """Cached statistics of a dataset split ``DATASET:SPLIT`` under the extractor's features, read at
    ``image_size`` and ``channels`` (default: the dataset's own; a run is scored at its own size). Its
    ``source`` says what the reference was: split, images, size, folder."""
    from ..data import DATASETS, load_dataset

    name, _, split = spec.partition(":")
    if name not in DATASETS:
        raise DdpmError(f"{spec!r} is not a folder, an .npz file or DATASET:SPLIT with a dataset in {', '.join(DATASETS)}")
    split = split or "test"
    # each way of reading the split gets its own cache entry: a user's own copy (--data-dir), a size, channels,
    # a folder's held-out share
    variant = f"{Path(data_dir).resolve() if data_dir else ''}|{image_size}|{channels}|{test_fraction if name == 'folder' else ''}"
    key = f"{name}-{split}" + (f"-{hashlib.sha1(variant.encode()).hexdigest()[:8]}" if variant != "|None|None|" else "")
    path = cache_dir() / "fid-stats" / f"{key}-{extractor.feature}.npz"
    # under torchrun every rank takes part in computing it unless every rank can read the cache
    if not refresh and not distributed.agree_max(int(not path.is_file())):
        return FeatureStats.load(path)
    check_writable(path)  # before computing what could not be cached
    data = load_dataset(name, root=data_dir, split=split, image_size=image_size, channels=channels, test_fraction=test_fraction)
    held_out = f", {test_fraction:g} of the folder held out" if name == "folder" and not (Path(data_dir) / "test").is_dir() else ""
    source = f"{name}:{split} ({len(data)} images, {data.image_size}×{data.image_size}{held_out})"
    stats = FeatureStats.from_features(extract(extractor, data.images, progress), extractor.feature, source=source)
    if distributed.world().is_main:
        stats.save(path)
    return stats


def extract(extractor, images: torch.Tensor, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """``extractor(images)`` [N, D]: under torchrun each rank extracts its share of the rows and all are gathered
    in order (the features of one process, a world-size-th of the time); ``progress`` counts all ranks' images."""
    counted = distributed.counting_all_ranks(progress)
    return distributed.map_shards(lambda x: torch.from_numpy(np.asarray(extractor(x, progress=counted))), images).numpy()


def image_set_features(spec: str, extractor, *, data_dir: str | None = None,
                       progress: Callable[[int], None] | None = None) -> np.ndarray | FeatureStats:
    """The features [N, D] of an image set named as in the module docstring, or its statistics where the set is
    statistics (a mu/sigma .npz, a cached DATASET:SPLIT): what a bootstrap over its images needs, when it has them."""
    path = Path(spec)
    if path.is_dir():
        # under torchrun each rank reads and extracts its share of the images; the features are gathered in order
        images = folder_images(path)
        start, stop = distributed.shard(len(images))
        counted = distributed.counting_all_ranks(progress)
        mine = [extractor(batch, progress=counted) for batch in folder_batches(images[start:stop])]
        feats = np.concatenate(mine) if mine else np.zeros((0, extractor.dim))
        return distributed.gather_rows(torch.from_numpy(feats), len(images)).numpy()
    if path.suffix == ".npz":
        arrays = read_npz(path)
        if {"mu", "sigma"} <= set(arrays):
            return FeatureStats.load(path, arrays)
        return extract(extractor, npz_images(path, arrays), progress)
    if ":" in spec and not path.exists():
        return dataset_stats(spec, extractor, data_dir=data_dir, progress=progress)
    raise DdpmError(f"{spec!r} is not an image folder, an .npz file (arr_0 images or mu/sigma statistics) or DATASET:SPLIT")


def image_set_stats(spec: str, extractor, *, data_dir: str | None = None,
                    progress: Callable[[int], None] | None = None) -> FeatureStats:
    """Statistics of an image set named as in the module docstring."""
    return _as_stats(image_set_features(spec, extractor, data_dir=data_dir, progress=progress), extractor, spec)


def _as_stats(features: np.ndarray | FeatureStats, extractor, spec: str) -> FeatureStats:
    if isinstance(features, FeatureStats):
        return features
    return FeatureStats.from_features(features, extractor.feature, source=spec)


@dataclass
class FidBetween:
    """The FID between sets A and B (their statistics ``a``, ``b``) and its 95% bootstrap interval over the images of
    ``resampled`` ("A", else "B"; the other set held fixed, as a reference is), or no interval (``resampled`` "")
    when neither set is images — saved statistics cannot be resampled — or no draws were asked for."""

    value: float
    a: FeatureStats
    b: FeatureStats
    low: float | None = None
    high: float | None = None
    draws: int = 0
    resampled: str = ""


def fid_between(a: str, b: str, extractor, *, draws: int = 0, data_dir: str | None = None, progress=None) -> FidBetween:
    """FID between image sets ``a`` and ``b``; with ``draws`` > 0 also its bootstrap interval (``study.stats``)
    over the rows of the first set that holds images, the second held fixed (FID is symmetric)."""
    fa, fb = (image_set_features(spec, extractor, data_dir=data_dir, progress=progress) for spec in (a, b))
    sa, sb = _as_stats(fa, extractor, a), _as_stats(fb, extractor, b)
    sides = [(name, feats, other) for name, feats, other in (("A", fa, sb), ("B", fb, sa)) if isinstance(feats, np.ndarray)]
    if not draws or not sides:
        return FidBetween(frechet_distance(sa, sb), sa, sb)
    from .bootstrap import bootstrap_fid

    name, feats, other = sides[0]
    fid = bootstrap_fid(feats, other, feature=extractor.feature, draws=draws)  # it refuses another extractor's
    return FidBetween(fid.value, sa, sb, fid.low, fid.high, draws, name)
