"""Typed run configuration: dataclasses loaded from TOML, checked on construction, saved in every checkpoint."""
from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from .errors import DdpmError

FORMAT_VERSION = 2  # 2: checkpoints/step_N.safetensors + step_N-state.pt, sha256 in the metadata
PRESETS_DIR = Path(__file__).parent / "configs"


@dataclass
class DataConfig:
    dataset: str = "mnist"
    data_dir: Optional[str] = None
    image_size: Optional[int] = None  # None: the dataset's own size
    channels: Optional[int] = None  # None: the dataset's own channels
    limit: Optional[int] = None  # train on a random subset of this many images
    conditional: bool = False  # condition the model on class labels


@dataclass
class DiffusionConfig:
    schedule: Literal["linear", "cosine", "sigmoid"] = "linear"
    num_timesteps: int = 1000
    prediction: Literal["eps", "x0", "v"] = "eps"
    min_snr_gamma: Optional[float] = None  # Min-SNR-γ loss weighting (Hang et al. 2023); 5 is their choice


@dataclass
class ModelConfig:
    architecture: Literal["unet", "mlp"] = "unet"
    base_channels: int = 64
    channel_mults: tuple = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple = (7,)
    head_channels: int = 64
    dropout: float = 0.1
    time_conditioning: Literal["adagn", "add"] = "adagn"
    use_time: bool = True
    rescale_skip: bool = False
    num_classes: Optional[int] = None  # set from the data when data.conditional
    patch_size: int = 1  # fold p×p pixel patches into channels first: p = 2 is ≈ 4× cheaper at the top level
    hidden: int = 1024  # mlp only
    depth: int = 4  # mlp only


@dataclass
class TrainConfig:
    steps: int = 10_000
    max_minutes: Optional[float] = None  # stop (and save) when this much wall time has passed
    batch_size: int = 128
    lr: float = 2e-4
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True  # decay min(ema_decay, (1 + n)/(10 + n)) so early EMA follows the weights
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    seed: int = 0
    log_every: int = 50
    sample_every: int = 500  # fixed-latent grid every N steps (0: never)
    progress_samples: int = 64  # images per fixed-latent grid (at most sample.num; conditional: whole rows of classes)
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2  # complete checkpoints kept; older ones are deleted once a newer one is complete
    max_bad_steps: int = 10  # this many non-finite losses or gradients in a row stop the run
    label_dropout: float = 0.1  # conditional runs: share of labels replaced by "no label" (classifier-free guidance)


@dataclass
class SampleConfig:
    sampler: Literal["ddpm", "ddim", "dpm-solver++"] = "dpm-solver++"
    steps: int = 20
    num: int = 64
    eta: float = 0.0
    clip_x0: bool = True  # clamp the predicted x₀ to the data range [−1, 1] at every step
    guidance: float = 0.0  # classifier-free guidance weight w (conditional models): (1 + w)·ε(c) − w·ε(∅)


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> "RunConfig":
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        unknown = sorted(set(raw) - set(sections))
        if unknown:
            raise DdpmError(f"{source}: unknown section(s) {', '.join(unknown)}; expected {', '.join(sections)}")
        built = {name: _build(hints[name], raw.get(name, {}), f"{source}: [{name}]") for name in sections}
        config = cls(**built)
        config.check(source)
        return config

    @classmethod
    def from_toml(cls, path: str | Path) -> "RunConfig":
        """Load a TOML file, or a shipped preset by name (``mnist-demo``, ``mnist``, ``fashion-mnist``, ``cifar10``)."""
        path = Path(path)
        if not path.exists() and (PRESETS_DIR / f"{path.name}.toml").is_file():
            path = PRESETS_DIR / f"{path.name}.toml"
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise DdpmError(f"config file {path} does not exist") from None
        except OSError as e:
            raise DdpmError(f"cannot read config file {path}: {e.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise DdpmError(f"config file {path} is not valid TOML: {e}") from None
        return cls.from_dict(raw, str(path))

    def with_overrides(self, overrides: list[str]) -> "RunConfig":
        """Apply ``section.key=value`` strings (value in TOML syntax; bare words are strings)."""
        raw = self.to_dict()
        for item in overrides:
            key, sep, value = item.partition("=")
            section, dot, name = key.strip().partition(".")
            if not sep or not dot:
                raise DdpmError(f"override {item!r} must look like section.key=value, e.g. train.steps=500")
            if section not in raw:
                raise DdpmError(f"override {item!r}: unknown section {section!r}; expected one of {', '.join(raw)}")
            if name not in raw[section]:
                raise DdpmError(f"override {item!r}: unknown key {name!r} in [{section}]; expected one of {', '.join(raw[section])}")
            raw[section][name] = _parse_value(value.strip())
        return RunConfig.from_dict(raw, "override")

    def check(self, source: str = "config") -> None:
        """Range checks that types alone cannot express, each naming the key."""
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise DdpmError(f"{source}: {key} must be {what}")

        t, d, m, s = self.train, self.diffusion, self.model, self.sample
        need(1 <= d.num_timesteps <= 10_000, "diffusion.num_timesteps", "in 1..10000")
        need(t.steps >= 1, "train.steps", "a positive integer")
        need(d.min_snr_gamma is None or d.min_snr_gamma > 0, "diffusion.min_snr_gamma", "positive (or absent)")
        need(t.max_minutes is None or t.max_minutes > 0, "train.max_minutes", "positive")
        need(t.batch_size >= 1, "train.batch_size", "a positive integer")
        need(t.lr > 0, "train.lr", "positive")
        need(t.warmup_steps >= 0, "train.warmup_steps", "zero or more")
        need(t.grad_clip >= 0, "train.grad_clip", "zero (off) or more")
        need(0 <= t.ema_decay < 1, "train.ema_decay", "in [0, 1)")
        need(t.keep_checkpoints >= 1, "train.keep_checkpoints", "at least 1")
        need(t.max_bad_steps >= 1, "train.max_bad_steps", "at least 1")
        need(t.log_every >= 1 and t.checkpoint_every >= 1 and t.sample_every >= 0, "train.log_every/checkpoint_every/sample_every", "positive")
        need(t.progress_samples >= 1, "train.progress_samples", "a positive integer")
        need(1 <= s.steps <= d.num_timesteps, "sample.steps", f"in 1..{d.num_timesteps} (diffusion.num_timesteps)")
        need(s.num >= 1, "sample.num", "a positive integer")
        need(0 <= s.eta <= 1, "sample.eta", "in [0, 1]")
        need(self.data.limit is None or self.data.limit >= 1, "data.limit", "a positive integer")
        need(self.data.channels in (None, 1, 3), "data.channels", "1 or 3")
        need(0 <= m.dropout < 1, "model.dropout", "in [0, 1)")
        need(0 <= t.label_dropout < 1, "train.label_dropout", "in [0, 1)")
        need(s.guidance >= 0, "sample.guidance", "zero (no guidance) or more")
        need(s.guidance == 0 or self.data.conditional or m.num_classes, "sample.guidance",
             "0 for an unconditional model (set data.conditional = true to train one that can be guided)")


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word such as cosine


def _build(cls: type, raw: Any, where: str):
    if not isinstance(raw, dict):
        raise DdpmError(f"{where} must be a table of keys")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise DdpmError(f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(hints)}")
    return cls(**{k: _coerce(v, hints[k], f"{where} {k}") for k, v in raw.items()})


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), where)
    if origin is Literal:
        if value not in args:
            raise DdpmError(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise DdpmError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DdpmError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DdpmError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise DdpmError(f"{where} must be a string, got {value!r}")
        return value
    if hint is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise DdpmError(f"{where} must be a list of integers, got {value!r}")
        return tuple(value)
    raise TypeError(f"unsupported config type {hint}")  # a bug in this module, not a user error
