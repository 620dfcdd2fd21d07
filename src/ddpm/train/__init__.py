"""Training: the loop (trainer.py) and checkpoints (checkpoint.py)."""
from .checkpoint import load_weights, save_weights
from .trainer import Trainer

__all__ = ["Trainer", "load_weights", "save_weights"]
