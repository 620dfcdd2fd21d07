"""Training: the run directory's lifecycle (run_dir.py), the resume state (state.py), one optimiser step
(step.py) and the loop with its cadence (trainer.py)."""
from .trainer import Interrupted, Trainer

__all__ = ["Interrupted", "Trainer"]
