"""Typed run configuration: dataclasses loaded from TOML, checked on construction, saved in every checkpoint."""
from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Optional

from .data import DATASETS
from .config_values import DERIVED_MODEL_KEYS, build, parse_value
from .data.context import check_context_source
from .errors import DdpmError
from .nets import ARCHITECTURES, ClassifierConfig, NetConfig, UNetConfig, is_classifier
from .objectives import LOSSES
from .parameterization import PREDICTIONS
from .sampling.plan import DEFAULT_CLIP_X0, DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLER_NAMES
from .schedules import SCHEDULE_NAMES
from .timestep_sampler import TIMESTEP_SAMPLERS
from .validation import (IMAGE_SIZE, NON_NEGATIVE, POSITIVE, POSITIVE_INT, SEED, UNIT, UNIT_HALF_OPEN, Bounds, bounded,
                         check_fields)
from .variance import VARIANCE_TYPES, is_learned

# The choices of each setting come from the module that implements them (argparse reuses the same tuples).
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")

# 2: checkpoints/step_N.safetensors + step_N-state.pt, sha256 in the metadata;
# 3: [model] holds only the chosen network's keys (format 2 also carried the other network's: see ``migrate``).
FORMAT_VERSION = 3
PRESETS_DIR = Path(__file__).parent / "configs"


@dataclass
class DataConfig:
    dataset: Literal[DATASETS] = "mnist"
    data_dir: Optional[str] = None
    image_size: Optional[int] = bounded(None, IMAGE_SIZE)  # None: the dataset's own size
    channels: Optional[int] = bounded(None, Bounds(1, 3))  # 1 or 3 (checked in RunConfig.check); None: the dataset's own channels
    limit: Optional[int] = bounded(None, POSITIVE_INT)  # train on a random subset of this many images
    conditional: bool = False  # condition the model on class labels
    # condition the model on a float vector per image instead (model.context_dim from it): "onehot" (the labels as
    # one-hot vectors), "json" (a folder dataset's sidecars, cat.png → cat.json) or a .npy file [N, k] (ddpm.data.context)
    context: Optional[str] = None
    # folder datasets: the share of images held out as the test split (never trained on), unless the folder has
    # its own test/ subfolder; a fixed draw for a given folder
    test_fraction: float = bounded(0.1, Bounds(0, 1, lo_open=True, hi_open=True))


@dataclass
class DiffusionConfig:
    schedule: Literal[SCHEDULE_NAMES] = "linear"
    num_timesteps: int = bounded(1000, Bounds(1, 10_000))
    prediction: Literal[PREDICTIONS] = "eps"  # what the network's mean output is: ε, x₀, v or the posterior mean μ̃
    # reverse variance Σ_θ: fixed_small (β̃), fixed_large (β), learned (log Σ) or learned_range (improved DDPM eq. 15)
    variance: Literal[VARIANCE_TYPES] = "fixed_small"
    # objective: simple (L_simple), hybrid (L_simple + 0.001·L_vlb, the VLB training only Σ), vlb (the true bound's
    # terms L_t), rescaled_vlb (× T); see ddpm.objectives
    loss: Literal[LOSSES] = "simple"
    min_snr_gamma: Optional[float] = bounded(None, POSITIVE)  # Min-SNR-γ loss weighting (Hang et al. 2023); 5 is their choice


# The [model] section is the chosen network's own config dataclass (one home for its fields and defaults);
# ``architecture`` picks which. Image size, input channels and (for conditional runs) the class count come
# from the data (``RunConfig.resolved``), so a config file never sets them under [model].
ModelConfig = NetConfig


@dataclass
class TrainConfig:
    steps: int = bounded(10_000, POSITIVE_INT)
    max_minutes: Optional[float] = bounded(None, POSITIVE)  # stop (and save) when this much wall time has passed
    batch_size: int = bounded(128, POSITIVE_INT)  # the global batch: under torchrun split over the processes
    lr: float = bounded(2e-4, Bounds(0, 1, lo_open=True))  # Adam's step size: above 1 only diverges
    warmup_steps: int = bounded(100, NON_NEGATIVE)
    weight_decay: float = bounded(0.0, UNIT)  # AdamW's, decoupled: each step shrinks weights by lr·weight_decay
    grad_clip: float = bounded(1.0, NON_NEGATIVE)  # global gradient norm; 0: off
    ema_decay: float = bounded(0.999, UNIT_HALF_OPEN)
    ema_warmup: bool = True  # decay min(ema_decay, (1 + n)/(10 + n)) so early EMA follows the weights
    precision: Literal[PRECISIONS] = "fp32"
    channels_last: bool = False
    compile: bool = False  # torch.compile the denoiser for training (CUDA: faster after a warm-up; CPU: needs a C++ compiler)
    tf32: bool = False  # CUDA: TF32 matmuls and convolutions in fp32 (10-bit mantissa products; Ampere and newer)
    seed: int = bounded(0, SEED)
    log_every: int = bounded(50, POSITIVE_INT)
    sample_every: int = bounded(500, NON_NEGATIVE)  # fixed-latent grid every N steps (0: never)
    progress_samples: int = bounded(64, POSITIVE_INT)  # images per fixed-latent grid (at most sample.num; conditional: whole rows of classes)
    checkpoint_every: int = bounded(1000, POSITIVE_INT)
    keep_checkpoints: int = bounded(2, POSITIVE_INT)  # complete checkpoints kept; older ones are deleted once a newer one is complete
    # micro-batches per process and step, their gradients summed (a global batch larger than memory allows);
    # train.batch_size must divide by processes × accumulate
    accumulate: int = bounded(1, POSITIVE_INT)
    max_bad_steps: int = bounded(10, POSITIVE_INT)  # this many non-finite losses or gradients in a row stop the run
    label_dropout: float = bounded(0.1, UNIT_HALF_OPEN)  # conditional runs: share of labels replaced by "no label" (classifier-free guidance)
    # uniform, or loss_aware: t importance-sampled ∝ √E[L_t²] (improved DDPM §3.3; for the VLB objectives)
    timestep_sampler: Literal[TIMESTEP_SAMPLERS] = "uniform"
    # where training records go: RUN/metrics.jsonl always; "jsonl+tensorboard" also writes them as TensorBoard
    # scalars in RUN/tensorboard/ (pip install ddpm[tensorboard]; ddpm.train.loggers)
    log_to: Literal["jsonl", "jsonl+tensorboard"] = "jsonl"


@dataclass
class SampleConfig:
    # the defaults are the SamplingPlan's (ddpm.sampling.plan), their one home
    sampler: Literal[SAMPLER_NAMES] = DEFAULT_SAMPLER
    steps: int = bounded(DEFAULT_STEPS, POSITIVE_INT)  # at most diffusion.num_timesteps
    num: int = bounded(64, POSITIVE_INT)
    eta: float = bounded(0.0, UNIT)
    clip_x0: bool = DEFAULT_CLIP_X0  # clamp the predicted x₀ to the data range [−1, 1] at every step
    guidance: float = bounded(0.0, NON_NEGATIVE)  # classifier-free guidance weight w (conditional models): (1 + w)·ε(c) − w·ε(∅)
    # guidance only while t/T lies in [guidance_from, guidance_to] (Kynkäänniemi et al. 2024, "guidance interval");
    # elsewhere the plain conditional prediction, one network pass instead of two
    guidance_from: float = bounded(0.0, UNIT)
    guidance_to: float = bounded(1.0, UNIT)


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    model: ModelConfig = field(default_factory=UNetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what config.json and checkpoints hold); [model] starts with its architecture and leaves
        out what the data decides."""
        raw = asdict(self)
        model = {k: v for k, v in raw["model"].items() if k not in DERIVED_MODEL_KEYS}
        raw["model"] = {"architecture": self.model.ARCHITECTURE, **model}
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> "RunConfig":
        if not isinstance(raw, dict):
            raise DdpmError(f"{source} must be a table of sections, got {type(raw).__name__}")
        sections = [f.name for f in dataclasses.fields(cls)]
        hints = typing.get_type_hints(cls)
        unknown = sorted(set(raw) - set(sections))
        if unknown:
            raise DdpmError(f"{source}: unknown section(s) {', '.join(unknown)}; expected {', '.join(sections)}")
        built = {name: build(hints[name], raw.get(name, {}), f"{source}: [{name}]") for name in sections if name != "model"}
        config = cls(**built, model=_build_model(raw.get("model", {}), f"{source}: [model]"))
        config.check(source)
        return config

    def resolved(self, image_size: int, channels: int, num_classes: int | None, context_dim: int | None = None) -> "RunConfig":
        """This config with what the data decides filled in: data.image_size and data.channels, the network's
        image_size and in_channels, for a conditional run model.num_classes, for a run on context vectors
        model.context_dim. The one place these are set."""
        d = replace(self.data, image_size=image_size, channels=channels)
        m = replace(self.model, image_size=image_size, in_channels=channels,
                    num_classes=num_classes if self.data.conditional else self.model.num_classes)
        if self.data.context is not None:
            m = replace(m, context_dim=context_dim)
        return replace(self, data=d, model=m)

    def classes_shown(self) -> int | None:
        """How many classes the samples of this run are asked for (one per grid column, labels cycling): the model's
        classes, or the length of its one-hot context vectors (data.context = onehot); None when there are none."""
        if self.data.context == "onehot":
            return getattr(self.model, "context_dim", None)
        return self.model.num_classes

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
            if section == "model" and name == "architecture":
                # another network: keep only the keys both networks have
                raw["model"] = {"architecture": parse_value(value.strip())}
                continue
            known = raw[section] if section != "model" else _model_keys(raw["model"])
            if name not in known:
                raise DdpmError(f"override {item!r}: unknown key {name!r} in [{section}]; expected one of {', '.join(known)}")
            raw[section][name] = parse_value(value.strip())
        return RunConfig.from_dict(raw, "override")

    def sample_settings(self, *, sampler: str | None = None, steps: int | None = None, eta: float | None = None,
                        clip_x0: bool | None = None, guidance: float | None = None, num: int | None = None,
                        guidance_interval: tuple[float, float] | None = None) -> SampleConfig:
        """The one rule for how a command samples: the run's [sample] section, replaced by each setting that was
        actually given (None: not given). Another sampler than the run's resets eta to 0 unless eta is given.
        The result is checked like a config (eta only for ddim, steps in 1..T, guidance only when conditional)."""
        s = self.sample
        given = {k: v for k, v in dict(sampler=sampler, steps=steps, eta=eta, clip_x0=clip_x0, guidance=guidance,
                                       num=num).items() if v is not None}
        if sampler is not None and sampler != s.sampler and eta is None:
            given["eta"] = 0.0
        if guidance_interval is not None:
            given["guidance_from"], given["guidance_to"] = guidance_interval
        raw = self.to_dict()
        raw["sample"].update(given)
        return RunConfig.from_dict(raw, "sample settings").sample

    def changed_keys(self, other: "RunConfig") -> list[str]:
        """``section.key`` names whose values differ between two configs."""
        a, b = self.to_dict(), other.to_dict()
        return sorted(f"{section}.{key}" for section in a for key in set(a[section]) | set(b[section])
                      if a[section].get(key) != b[section].get(key))

    def check(self, source: str = "config") -> None:
        """Range checks that types alone cannot express, each naming the key."""
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise DdpmError(f"{source}: {key} must be {what}")

        for section in ("data", "diffusion", "train", "sample"):  # every number's range and finiteness, declared on its field
            check_fields(getattr(self, section), f"{source}: {section}")
        t, d, m, s = self.train, self.diffusion, self.model, self.sample
        need(d.loss != "hybrid" or is_learned(d.variance), "diffusion.loss",
             f"simple or vlb with diffusion.variance = {d.variance!r}: hybrid adds a VLB term that trains only a learned "
             "variance (set diffusion.variance = \"learned_range\")")
        need(d.min_snr_gamma is None or d.loss in ("simple", "hybrid"), "diffusion.min_snr_gamma",
             f"absent with diffusion.loss = {d.loss!r} (Min-SNR weights the squared error of L_simple)")
        need(d.min_snr_gamma is None or d.prediction != "mu", "diffusion.min_snr_gamma",
             "absent with diffusion.prediction = \"mu\" (Min-SNR is defined for eps, x0 and v targets)")
        need(t.timestep_sampler == "uniform" or d.loss != "simple", "train.timestep_sampler",
             "uniform with diffusion.loss = \"simple\" (importance sampling targets the VLB terms; use hybrid or vlb)")
        need(s.steps <= d.num_timesteps, "sample.steps", f"in 1..{d.num_timesteps} (diffusion.num_timesteps)")
        need(s.guidance_from < s.guidance_to, "sample.guidance_from",
             f"below sample.guidance_to ({s.guidance_from:g} and {s.guidance_to:g} leave no interval to guide in)")
        need(s.eta == 0 or s.sampler == "ddim", "sample.eta", f"0 for the {s.sampler} sampler (eta is DDIM's stochasticity)")
        need(self.data.channels in (None, 1, 3), "data.channels", "1 or 3")
        m.validate()
        need(m.ARCHITECTURE != "classifier" or self.data.conditional, "data.conditional",
             "true for a classifier (it learns the dataset's labels)")
        if self.data.context is not None:
            check_context_source(self.data.context)
        need(self.data.context is None or not self.data.conditional, "data.context",
             "absent with data.conditional = true (labels or context vectors, not both; context = \"onehot\" is the labels as vectors)")
        need(self.data.context is None or m.ARCHITECTURE == "unet", "data.context",
             f"absent for the {m.ARCHITECTURE} (only the U-Net takes context vectors)")
        need(getattr(m, "context_dim", None) is None or self.data.context is not None, "model.context_dim",
             "absent: it comes from the vectors data.context names")
        need(s.guidance == 0 or self.data.conditional or self.data.context or m.num_classes, "sample.guidance",
             "0 for an unconditional model (set data.conditional = true to train one that can be guided)")


# What ``ddpm train --fast`` sets: the fastest honest way to train on CUDA (bf16 autocast keeps fp32 weights,
# optimizer state and loss; TF32; channels-last; torch.compile). bench/gpu.py measures each step of it.
FAST_CUDA = {"train.precision": "bf16", "train.tf32": True, "train.channels_last": True, "train.compile": True}

# The one rule of what a resumed run may change: how long it trains. Everything else would make the continued
# run a different run than its checkpoints (and exact resume impossible).
RESUME_CHANGEABLE = ("train.steps", "train.max_minutes", "train.log_to")


def resume_config(saved: RunConfig, requested: RunConfig | None) -> RunConfig:
    """The config a resumed run continues with: ``saved``, with the keys of ``RESUME_CHANGEABLE`` taken from
    ``requested`` (None: the saved config as it is). Any other difference is refused in one sentence."""
    if requested is None:
        return saved
    d = requested.data
    conflicts = [key for key, value, was in (("data.image_size", d.image_size, saved.data.image_size),
                                             ("data.channels", d.channels, saved.data.channels)) if value not in (None, was)]
    filled = requested.resolved(saved.data.image_size, saved.data.channels, saved.model.num_classes,
                                getattr(saved.model, "context_dim", None))
    conflicts += [key for key in filled.changed_keys(saved) if key not in RESUME_CHANGEABLE and key not in conflicts]
    if conflicts:
        raise DdpmError(f"a resumed run keeps its saved config except {' and '.join(RESUME_CHANGEABLE)}; "
                        f"this one changes {', '.join(sorted(conflicts))} (start a new run for that)")
    result = saved
    for key in RESUME_CHANGEABLE:
        section, name = key.split(".")
        value = getattr(getattr(filled, section), name)
        result = replace(result, **{section: replace(getattr(result, section), **{name: value})})
    result.check("resumed config")
    return result


# How ``ddpm train-classifier`` trains a noise-aware classifier unless told otherwise: a few CPU-minutes on MNIST
# (AdamW with weight decay, as ADM's classifiers); it draws no progress grids.
CLASSIFIER_TRAINING = {"steps": 3000, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.05, "warmup_steps": 100,
                       "checkpoint_every": 500, "sample_every": 0}


def classifier_config(run: RunConfig) -> RunConfig:
    """The config of a noise-aware classifier for the diffusion run ``run``: its data (with the labels), image size,
    channels and noise schedule (name and T: the classifier must know the x_t that run's sampler visits); a
    ``ClassifierConfig`` and ``CLASSIFIER_TRAINING``; everything else the defaults."""
    if is_classifier(run.model):
        raise DdpmError("that run is a classifier already; train a classifier for a diffusion run")
    d = run.diffusion
    return RunConfig(data=replace(run.data, conditional=True), model=ClassifierConfig(),
                     diffusion=DiffusionConfig(schedule=d.schedule, num_timesteps=d.num_timesteps),
                     train=TrainConfig(**CLASSIFIER_TRAINING, seed=run.train.seed))


def _model_keys(raw_model: dict[str, Any]) -> list[str]:
    """The keys a [model] table may hold: architecture and its network's config fields, less the derived ones."""
    architecture = raw_model.get("architecture", "unet")
    cfg_cls = ARCHITECTURES[architecture][1] if architecture in ARCHITECTURES else UNetConfig
    return ["architecture"] + [f.name for f in dataclasses.fields(cfg_cls) if f.name not in DERIVED_MODEL_KEYS]


def _build_model(raw: Any, where: str) -> NetConfig:
    """The [model] table → the chosen network's config dataclass."""
    if not isinstance(raw, dict):
        raise DdpmError(f"{where} must be a table of keys")
    raw = dict(raw)
    architecture = raw.pop("architecture", "unet")
    if architecture not in ARCHITECTURES:
        raise DdpmError(f"{where} architecture must be one of {', '.join(map(repr, ARCHITECTURES))}, got {architecture!r}")
    derived = sorted(set(raw) & set(DERIVED_MODEL_KEYS))
    if derived:
        raise DdpmError(f"{where}: {', '.join(derived)} come(s) from the data; set data.image_size or data.channels instead")
    return build(ARCHITECTURES[architecture][1], raw, where)


def migrate(raw: dict[str, Any], version: int) -> dict[str, Any]:
    """A saved config of an older format version, brought to this one (a config of version < 3 carried the
    keys of both networks flat in [model], with the U-Net's attention default in it)."""
    if version < 3 and isinstance(raw.get("model"), dict):
        model = raw["model"]
        architecture = model.get("architecture", "unet")
        cfg_cls = ARCHITECTURES.get(architecture, (None, UNetConfig))[1]
        allowed = {f.name for f in dataclasses.fields(cfg_cls)} - set(DERIVED_MODEL_KEYS)
        raw = {**raw, "model": {"architecture": architecture, **{k: v for k, v in model.items() if k in allowed}}}
    return raw
