"""Training: the run directory's lifecycle (run_dir.py), the resume state (state.py), one optimiser step
(step.py), the loop with its cadence (trainer.py), the hooks a program drives it with (callbacks.py) and where
its log records go (loggers.py)."""
from .callbacks import Callback, every
from .loggers import JsonlLogger, Logger, TensorBoardLogger
from .trainer import Interrupted, Trainer

__all__ = ["Callback", "Interrupted", "JsonlLogger", "Logger", "TensorBoardLogger", "Trainer", "every"]
