"""The exceptions the ``ddpm`` command turns into one sentence and a non-zero exit (in ``cli.main``, once).

* ``DdpmError``: a mistake in the user's input (a file, a flag, a config key); the message names it and what
  was expected. Exit status 2. It is a ``ValueError``, so library callers may catch either.
* ``TrainingDiverged``: training produced numbers that are not finite (a loss or gradient many steps in a row,
  or weights about to be saved); the input was valid, the run was not. Exit status 3.
"""


class DdpmError(ValueError):
    """A mistake in the user's input (file, flag, config); the message names it and what was expected."""


class TrainingDiverged(RuntimeError):
    """Training diverged: non-finite losses or gradients in a row; the last good checkpoint is kept."""


class NonFiniteWeights(TrainingDiverged):
    """Weights that are not finite, refused before they are written into a checkpoint."""
