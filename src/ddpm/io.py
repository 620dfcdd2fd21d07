"""Files in and out. Atomic writes: every file ddpm writes for a user goes through here, so a crash or a full
disk at any moment leaves either the old file or the complete new one, never half of one. Checked reads of the
arrays users hand us (.npz): anything that is not one is a one-sentence DdpmError, never numpy's traceback.

Imports nothing of ddpm but its errors; everything that writes files imports it.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from .errors import DdpmError


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path`` opened for binary writing, flush and fsync that
    handle, then rename it over ``path`` and fsync the directory. On any error the temporary file is removed
    and ``path`` is untouched; an OSError without a file name (a full disk, a file size limit) is raised again
    naming ``path``, so the user learns which file could not be written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(f.fileno(), 0o666 & ~umask)  # mkstemp's 0600 would hide the file from the user's group
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        if e.filename not in (None, tmp):
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def check_writable(path: str | Path) -> None:
    """Refuse now, before the expensive work that would produce it, an output ``path`` (a file to write, replace
    or append to, or a folder to fill) that cannot be written: a temporary file is made and removed in its folder,
    or in the nearest folder that exists on the way to it. Nothing is created or left behind. One DdpmError naming
    the path otherwise."""
    path = Path(path).absolute()
    if path.is_file():  # a file to replace or append to
        if not os.access(path, os.W_OK):
            raise DdpmError(f"cannot write {path}: the file is read-only")
        folder = path.parent
    else:
        folder = path
        while not folder.exists():
            folder = folder.parent
        if not folder.is_dir():
            raise DdpmError(f"cannot write {path}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".ddpm-write-check-")
    except OSError as e:
        raise DdpmError(f"cannot write {path}: {e.strerror or e} in {folder}") from None
    os.close(fd)
    os.unlink(probe)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file (no pickles), read in full; a missing, empty, truncated or foreign file is one
    DdpmError naming it."""
    def read(f) -> dict[str, np.ndarray]:
        return {name: f[name] for name in f.files}

    return _read_numpy(path, ".npz", read)


def read_npy(path: str | Path) -> np.ndarray:
    """The array of a .npy file (no pickles); a missing, empty, truncated or foreign file is one DdpmError naming it."""
    return _read_numpy(path, ".npy", lambda array: array)


def _read_numpy(path: str | Path, kind: str, read):
    try:
        with contextlib.ExitStack() as stack:
            loaded = np.load(path, allow_pickle=False)
            if hasattr(loaded, "close"):  # an .npz archive: closed once its arrays are read
                stack.callback(loaded.close)
            return read(loaded)
    except FileNotFoundError:
        raise DdpmError(f"{path} does not exist") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        reason = "it is empty" if isinstance(e, EOFError) else f"{type(e).__name__}: {e}"
        raise DdpmError(f"{path} is not a readable {kind} file ({reason})") from None


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (directories cannot be opened for fsync on some systems: skip there)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
