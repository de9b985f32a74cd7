"""Ctrl-C on the command line: always read as an interruption, never as another error.

A library may turn the ``KeyboardInterrupt`` that Python raises for SIGINT into
another exception: numpy's C import, interrupted, raises an ``ImportError``
with the interrupt lost. So the command line installs :func:`install`'s
handler first thing, which notes every SIGINT before raising, and its error
handlers ask :func:`caused_by_interrupt`; one that C code could only report as
"ignored" is raised again. Light on purpose (``sys`` and ``_signal`` only): it
is imported before anything slow. ``_signal`` is the C module that ``signal``
wraps (CPython's Lib/signal.py: ``import _signal``, ``from _signal import *``);
``signal`` itself imports ``enum``, which takes long enough on a loaded machine
for a Ctrl-C to land before the handler is in place.
"""

import sys

try:
    import _signal as signal  # the C module, no enum import (see above)
except ImportError:  # pragma: no cover - another Python implementation
    import signal

__all__ = ["install", "caused_by_interrupt", "ignore_further", "seen"]

_seen = []


def _on_sigint(signum, frame):
    _seen.append(signum)
    raise KeyboardInterrupt


def _unraisable(hook_args, _default=sys.unraisablehook):
    """A KeyboardInterrupt that C code could only report as "ignored" is delivered again."""
    if isinstance(hook_args.exc_value, KeyboardInterrupt) or (
            hook_args.exc_type is not None and issubclass(hook_args.exc_type, KeyboardInterrupt)):
        # Cython's import-time patching, for one, swallows it this way. Delivered
        # again a moment later (from another thread, once this hook has returned), it
        # stops the next Python code, as the user asked.
        import _thread
        import threading

        timer = threading.Timer(0.05, _thread.interrupt_main)
        timer.daemon = True
        timer.start()
        return
    _default(hook_args)


def install():
    """Handle SIGINT as Python does (``KeyboardInterrupt``), noting that it came."""
    try:
        signal.signal(signal.SIGINT, _on_sigint)
    except (ValueError, OSError):  # not the main thread, or no SIGINT here
        return
    sys.unraisablehook = _unraisable


def seen():
    """True once a Ctrl-C has come (since :func:`install`)."""
    return bool(_seen)


def caused_by_interrupt(exc):
    """True when ``exc`` is, comes from, or was raised after a Ctrl-C noted by :func:`install`."""
    if _seen:
        return True
    visited = set()
    while exc is not None and id(exc) not in visited:
        if isinstance(exc, KeyboardInterrupt):
            return True
        visited.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def ignore_further():
    """Ignore further Ctrl-C (while a job says why it stopped and exits)."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):
        pass
