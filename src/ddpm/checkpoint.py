"""Checkpoints that survive a crash at any moment.

A checkpoint of step N is two files in ``RUN/checkpoints/``:

* ``step_0000000N.safetensors`` — weights and EMA weights; its metadata carries the full config and the
  format version, so ``ddpm sample CKPT`` needs nothing else;
* ``step_0000000N-state.pt`` — what resuming needs besides (optimizer, RNG states, data order), loaded
  with ``weights_only=True`` so a pickle that tries to run code is refused.

Each file is written atomically (temporary file in the same directory, fsync, rename, fsync of the
directory), the state first and the weights last: a weights file that exists is complete and so is its state.
Older checkpoints are deleted only after a newer one is complete, keeping the last ``keep`` of them, so a
kill at any moment leaves at least one complete checkpoint once the first has been written.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from .config import FORMAT_VERSION, RunConfig, migrate
from .errors import DdpmError, NonFiniteWeights
from .io import atomic_write_bytes

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d{8,})\.safetensors$")


def weights_name(step: int) -> str:
    return f"step_{step:08d}.safetensors"


def state_path(weights: Path) -> Path:
    return weights.with_name(weights.name.replace(".safetensors", "-state.pt"))


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as (step, weights file), oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def _tensors(model: torch.nn.Module, ema: torch.nn.Module) -> dict[str, torch.Tensor]:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    return tensors


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names and bytes, in name order: detects a flipped bit that safetensors' header check misses."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _write_weights(path: Path, tensors: dict[str, torch.Tensor], config: RunConfig, step: int, state_sha256: str | None) -> None:
    metadata = {"format": "ddpm", "format_version": str(FORMAT_VERSION), "config": json.dumps(config.to_dict()),
                "step": str(step), "sha256": tensors_digest(tensors)}
    if state_sha256 is not None:
        metadata["state_sha256"] = state_sha256
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata))


def _check_finite(tensors: dict[str, torch.Tensor], step: int) -> None:
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise NonFiniteWeights(f"refusing to save a checkpoint at step {step}: {len(bad)} weight tensor(s) are not finite "
                               f"(first: {bad[0]}); the previous checkpoint is kept")


def save_weights(run_dir: Path, step: int, model: torch.nn.Module, config: RunConfig) -> Path:
    """A checkpoint of weights alone (``Denoiser.save_pretrained``): ``model``'s weights stored as both the raw and
    the EMA weights, no resume state beside them (it samples, evaluates and reports, but does not resume)."""
    tensors = {name: tensor.clone() if name.startswith("ema.") else tensor
               for name, tensor in _tensors(model, model).items()}  # safetensors refuses two names of one memory
    _check_finite(tensors, step)
    path = Path(run_dir) / CHECKPOINT_DIR / weights_name(step)
    _write_weights(path, tensors, config, step, None)
    return path


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, ema: torch.nn.Module, config: RunConfig,
                    state: dict[str, Any], keep: int = 2) -> Path:
    """Write the checkpoint of ``step`` (state first, weights last), then prune all but the last ``keep``.
    Weights that are not finite are never written: the previous checkpoint stays the latest."""
    tensors = _tensors(model, ema)
    _check_finite(tensors, step)
    path = Path(run_dir) / CHECKPOINT_DIR / weights_name(step)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    state_bytes = buffer.getvalue()
    atomic_write_bytes(state_path(path), state_bytes)
    # the weights record their state's digest: a state file of another checkpoint or run is caught on resume
    _write_weights(path, tensors, config, step, hashlib.sha256(state_bytes).hexdigest())
    for _, old in list_checkpoints(run_dir)[:-keep]:
        state_path(old).unlink(missing_ok=True)
        old.unlink(missing_ok=True)
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory (its latest complete checkpoint) or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise DdpmError(f"{path} holds no checkpoint (expected {path / CHECKPOINT_DIR / 'step_*.safetensors'})")
        return found[-1][1]
    if not path.is_file():
        raise DdpmError(f"checkpoint {path} does not exist")
    return path


def _previous_hint(path: Path) -> str:
    """' ; the previous checkpoint X (step N) is intact: …' when the run has an older one."""
    older = [(s, p) for s, p in list_checkpoints(path.parent.parent) if p != path and p.name < path.name]
    if not older:
        return ""
    step, prev = older[-1]
    return f"; the previous checkpoint {prev} (step {step}) is intact: name that file instead (e.g. --resume {prev})"


def load_weights(path: str | Path) -> tuple[RunConfig, dict[str, torch.Tensor], dict[str, torch.Tensor], int]:
    """(config, model weights, EMA weights, step) from a checkpoint file or run directory, checksum verified."""
    path = resolve_checkpoint(path)
    metadata, tensors = _read(path, with_tensors=True)
    if "sha256" in metadata and tensors_digest(tensors) != metadata["sha256"]:
        raise DdpmError(f"{path} is corrupt (its tensors do not match the checksum written with them){_previous_hint(path)}")
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    ema = {k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")}
    return _config(path, metadata), model, ema, int(metadata.get("step", "0"))


def load_config(path: str | Path) -> RunConfig:
    """The config of a checkpoint file or run directory from its metadata alone (no tensor is read, so no
    checksum either: for decisions made before the weights are loaded, which ``load_weights`` then verifies)."""
    path = resolve_checkpoint(path)
    return _config(path, _read(path, with_tensors=False)[0])


def _read(path: Path, with_tensors: bool) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()} if with_tensors else {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise DdpmError(f"{path} is not a ddpm checkpoint or is truncated (cannot read it as safetensors: {e})"
                        f"{_previous_hint(path)}") from None
    if metadata.get("format") != "ddpm" or "config" not in metadata:
        raise DdpmError(f"{path} is a safetensors file but not a ddpm checkpoint (no ddpm config in its metadata)")
    version = int(metadata.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise DdpmError(f"{path} has checkpoint format {version}; this ddpm reads up to {FORMAT_VERSION}: upgrade ddpm")
    return metadata, tensors


def _config(path: Path, metadata: dict[str, str]) -> RunConfig:
    try:
        raw = migrate(json.loads(metadata["config"]), int(metadata.get("format_version", "0")))
    except json.JSONDecodeError as e:
        raise DdpmError(f"{path}: the config in its metadata is not valid JSON ({e})") from None
    config = RunConfig.from_dict(raw, f"{path} config")
    if config.model.image_size is None and config.data.image_size is not None:  # saved resolved: fill the network's sizes
        config = config.resolved(config.data.image_size, config.data.channels, config.model.num_classes,
                                 getattr(config.model, "context_dim", None))
    return config


def load_state(weights: Path) -> dict[str, Any]:
    """The resume state beside a weights file, loaded without running any pickled code, and checked to be the one
    written with those weights (their metadata's ``state_sha256``; checkpoints written before it had none)."""
    path = state_path(weights)
    if not path.is_file():
        raise DdpmError(f"{weights} has no resume state beside it ({path.name}); it can be sampled from but not resumed")
    data = path.read_bytes()
    expected = _read(weights, with_tensors=False)[0].get("state_sha256")
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise DdpmError(f"{path} is not the resume state written with {weights.name} (its checksum differs from the one "
                        f"the weights record: a file of another checkpoint or run, or a damaged one){_previous_hint(weights)}")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file or a pickle that tries to run code
        raise DdpmError(f"{path} is not a valid resume state ({type(e).__name__}: {str(e).splitlines()[0]})"
                        f"{_previous_hint(weights)}") from None
