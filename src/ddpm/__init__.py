"""ddpm: denoising diffusion probabilistic models — train, sample, evaluate and visualise.

The public Python API (everything the ``ddpm`` command does is built on it)::

    import ddpm
    denoiser = ddpm.fit("mnist-demo", "runs/nb", minutes=1)            # or ddpm.Denoiser.from_pretrained("runs/demo")
    images = ddpm.generate(denoiser, denoiser.plan(sampler="ddim", steps=50), 16, seed=0)   # uint8 [16, 1, 28, 28]
    ddpm.score(images, "mnist:test", feature="domain").fid

- the forward process and schedules: ``NoiseSchedule`` (``q_sample``, ᾱ_t, posteriors), ``spaced_timesteps``;
- a model: ``RunConfig`` (typed, from TOML presets), the networks ``UNet``/``MLP`` with their configs, ``Denoiser``;
- training: ``fit`` (a run directory), or ``training_loss`` / ``Trainer`` on your own loop;
- sampling: ``SamplingPlan`` and ``generate`` (guidance, labels, contexts), or the bare samplers ``sample``,
  ``ddpm``, ``ddim``, ``dpm_solver_pp`` on any callable ``model(x_t, t)``;
- scoring: ``score`` (FID with its interval, domain shares), ``nll_bound`` (bits/dim);
- pictures: ``ddpm.viz`` (grids, the forward process, reverse trajectories, sampler comparisons, plots).
"""
from importlib import import_module
from typing import Any

from .config import RunConfig
from .denoiser import Denoiser
from .generation import generate
from .nets import MLP, UNet, MLPConfig, UNetConfig
from .objectives import training_loss
from .parameterization import PREDICTIONS, to_x0_eps
from .sampling import SAMPLERS, StepInfo, ddim, ddpm, dpm_solver_pp, sample
from .sampling.plan import DEFAULT_SAMPLER, SamplingPlan
from .schedules import SCHEDULE_NAMES, NoiseSchedule, spaced_timesteps

__version__ = "0.1.0"

# Heavier parts load on first use, so that ``import ddpm`` and the ``ddpm`` command start quickly.
_LAZY = {"fit": "ddpm.fitting", "Trainer": "ddpm.train", "score": "ddpm.scoring", "nll_bound": "ddpm.metrics.nll_bound",
         "viz": "ddpm.viz"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = import_module(_LAZY[name])
        return module if name == "viz" else getattr(module, name)
    raise AttributeError(f"module 'ddpm' has no attribute {name!r}")


__all__ = [
    "DEFAULT_SAMPLER",
    "Denoiser",
    "MLP",
    "MLPConfig",
    "NoiseSchedule",
    "PREDICTIONS",
    "RunConfig",
    "SAMPLERS",
    "SCHEDULE_NAMES",
    "SamplingPlan",
    "StepInfo",
    "Trainer",
    "UNet",
    "UNetConfig",
    "ddim",
    "ddpm",
    "dpm_solver_pp",
    "fit",
    "generate",
    "nll_bound",
    "sample",
    "score",
    "spaced_timesteps",
    "to_x0_eps",
    "training_loss",
    "viz",
]
