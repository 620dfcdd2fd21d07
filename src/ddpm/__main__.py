"""``python -m ddpm …`` and ``torchrun … -m ddpm …``: the ``ddpm`` command."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
