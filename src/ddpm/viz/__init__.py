"""Pictures of what a diffusion model does: grids, labelled strips, GIFs, plots and the HTML run report.

``images`` — grids, labelled panels and GIFs (Pillow, exact pixels);
``process`` — the forward process, a reverse trajectory and a sampler comparison from one noise;
``plots`` — schedules, training loss, loss per timestep over training, metrics against steps (matplotlib).
"""
from .images import labelled_panel, make_grid, save_gif, save_grid

__all__ = ["labelled_panel", "make_grid", "save_gif", "save_grid"]
