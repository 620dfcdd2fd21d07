"""Checkpoints: weights and EMA weights in one safetensors file whose metadata carries the full config
and a format version (so ``ddpm sample CKPT`` needs nothing else), plus a resume-state file.

Both are written atomically: a temporary file in the same directory, fsync, then rename.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..config import FORMAT_VERSION, RunConfig
from ..errors import DdpmError

WEIGHTS_NAME = "latest.safetensors"
STATE_NAME = "latest-state.pt"


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then move the finished file over ``path``; a crash leaves the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_weights(path: Path, model: torch.nn.Module, ema: torch.nn.Module, config: RunConfig, step: int) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    metadata = {"format": "ddpm", "format_version": str(FORMAT_VERSION), "config": json.dumps(config.to_dict()), "step": str(step)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory (its latest checkpoint) or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / WEIGHTS_NAME
        if not path.is_file():
            raise DdpmError(f"{path.parent.parent} holds no checkpoint (expected {path})")
    elif not path.is_file():
        raise DdpmError(f"checkpoint {path} does not exist")
    return path


def load_weights(path: str | Path) -> tuple[RunConfig, dict[str, torch.Tensor], dict[str, torch.Tensor], int]:
    """(config, model weights, EMA weights, step) from a checkpoint file or run directory."""
    path = resolve_checkpoint(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise DdpmError(f"{path} is not a ddpm checkpoint (cannot read it as safetensors: {e})") from None
    if metadata.get("format") != "ddpm" or "config" not in metadata:
        raise DdpmError(f"{path} is a safetensors file but not a ddpm checkpoint (no ddpm config in its metadata)")
    version = int(metadata.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise DdpmError(f"{path} has checkpoint format {version}; this ddpm reads up to {FORMAT_VERSION}: upgrade ddpm")
    config = RunConfig.from_dict(json.loads(metadata["config"]), f"{path} config")
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    ema = {k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")}
    return config, model, ema, int(metadata.get("step", "0"))


def save_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file or a pickle that tries to run code
        raise DdpmError(f"{path} is not a valid resume state ({type(e).__name__}: {e})") from None
