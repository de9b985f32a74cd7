"""``python -m worker``: the worker process (see :mod:`.protocol`)."""

from .protocol import main

main()
