"""Readers of the official dataset file formats. Each returns uint8 images [N, C, H, W] and int64 labels [N]."""
from __future__ import annotations

import functools
import gzip
import io
import pickle
from pathlib import Path

import numpy as np

from ..errors import DdpmError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.name.endswith(".gz") else raw
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DdpmError(f"cannot read {path}: {e}") from None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format, gzipped or not): magic 0x0000 type ndim, big-endian int32 dims, data."""
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DdpmError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DdpmError(f"{path} is truncated: its IDX header is incomplete")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(data) != expected:
        raise DdpmError(f"{path} is truncated or corrupt: {len(data)} bytes, its header promises {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).copy()


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a pickle that names anything else is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2: a pure string conversion
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def safe_unpickle(data: bytes, path: Path, encoding: str = "latin1"):
    try:
        return _SafeUnpickler(io.BytesIO(data), encoding=encoding).load()
    except Exception as e:  # any failure here means the file is not what it claims to be
        raise DdpmError(f"{path} is not a valid dataset pickle: {e}") from None


def read_mnist_bundle(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The mnist.pkl.gz bundle: ((train), (validation), (test)), images float32 k/256 of shape [N, 784] → uint8
    images [N, 1, 28, 28] and int64 labels per split (train = train + validation). Parsed once per process and
    version of the file (a study or a test session reads it many times, 2–3 s each); every call gets its own copies."""
    try:
        stat = path.stat()
    except OSError as e:
        raise DdpmError(f"cannot read {path}: {e}") from None
    parsed = _parse_mnist_bundle(path, stat.st_mtime_ns, stat.st_size)
    return {split: (images.copy(), labels.copy()) for split, (images, labels) in parsed.items()}


@functools.lru_cache(maxsize=1)
def _parse_mnist_bundle(path: Path, mtime_ns: int, size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    parts = safe_unpickle(_read_bytes(path), path)
    try:
        (xtr, ytr), (xva, yva), (xte, yte) = parts
    except (TypeError, ValueError):
        raise DdpmError(f"{path} is not an MNIST bundle (expected three (images, labels) pairs)") from None

    def to_uint8(x: np.ndarray) -> np.ndarray:  # ×256 is exact in float32 (a power of two), so no float64 is needed
        return np.clip(np.rint(np.asarray(x, dtype=np.float32) * 256), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)

    return {
        "train": (np.concatenate([to_uint8(xtr), to_uint8(xva)]), np.concatenate([ytr, yva]).astype(np.int64)),
        "test": (to_uint8(xte), np.asarray(yte, dtype=np.int64)),
    }


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch of CIFAR-10's "python version": a dict with b'data' uint8 [N, 3072] and b'labels'."""
    batch = safe_unpickle(_read_bytes(path), path, encoding="bytes")
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DdpmError(f"{path} is not a CIFAR-10 batch (expected a dict with data and labels)")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DdpmError(f"{path} is not a CIFAR-10 batch (data must be uint8 [N, 3072] with N labels)")
    return data.reshape(-1, 3, 32, 32), labels
