"""ddpm: denoising diffusion probabilistic models — train, sample, evaluate and visualise."""
from .objectives import training_loss
from .parameterization import PREDICTIONS, to_x0_eps
from .sampling import SAMPLERS, StepInfo, ddim, ddpm, dpm_solver_pp, sample
from .schedules import SCHEDULE_NAMES, NoiseSchedule, spaced_timesteps

__version__ = "0.1.0"

__all__ = [
    "NoiseSchedule",
    "PREDICTIONS",
    "SAMPLERS",
    "SCHEDULE_NAMES",
    "StepInfo",
    "ddim",
    "ddpm",
    "dpm_solver_pp",
    "sample",
    "spaced_timesteps",
    "to_x0_eps",
    "training_loss",
]
