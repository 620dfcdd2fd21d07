"""User-facing errors: the CLI prints their message as one sentence and exits non-zero, no traceback."""


class DdpmError(ValueError):
    """A mistake in the user's input (file, flag, config); the message names it and what was expected."""
