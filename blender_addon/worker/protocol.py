"""The worker process: the snapshot on stdin, JSON events on stdout.

The first line of stdin is the snapshot as JSON; a later line ``cancel`` asks
the job to stop (so does stdin closing: the add-on has gone away). Each line of
stdout is one JSON event: ``{"type": "step" | "progress" | "result" | "error" |
"cancelled", ...}``. Anything else the engine prints goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback

from .model import USER_ERRORS, JobCancelled, Snapshot
from .run import _message, run


def _serve(stdin, emit, engine_loader):
    cancel = threading.Event()
    line = stdin.readline()
    if not line:
        return
    snapshot = Snapshot.from_json(json.loads(line))

    def watch():
        for command in stdin:
            if command.strip() == "cancel":
                cancel.set()
                return
        # stdin closed: the add-on has gone away, stop.
        cancel.set()

    threading.Thread(target=watch, name="karwai-cancel-watch", daemon=True).start()
    try:
        engine = engine_loader()
        result = run(snapshot, engine=engine, report=emit, cancel=cancel)
    except JobCancelled:
        emit({"type": "cancelled"})
    except USER_ERRORS as exc:
        traceback.print_exc(file=sys.stderr)
        emit({"type": "error", "message": _message(exc), "user": True})
    except BaseException as exc:  # noqa: BLE001 - reported to the add-on, then re-raised
        traceback.print_exc(file=sys.stderr)
        emit({"type": "error", "message": f"{type(exc).__name__}: {exc}", "user": False})
        if not isinstance(exc, Exception):
            raise
    else:
        emit({"type": "result", "result": result})


def _lower_priority():
    """Let Blender's own threads have the CPU first (its UI stays smooth)."""
    if hasattr(os, "nice"):
        try:
            os.nice(5)
        except OSError:
            pass


def main():
    """Entry point of the worker process."""
    _lower_priority()
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    sys.stdout = sys.stderr  # the engine's prints must not mix with the protocol
    lock = threading.Lock()

    def emit(event):
        event = dict(event, time=time.time())
        with lock:
            protocol.write(json.dumps(event) + "\n")
            protocol.flush()

    # This script's folder is sys.path[0], so the add-on's engine_import is
    # importable here as a top-level module; jobs.py puts the engine's folder on
    # PYTHONPATH.
    from engine_import import get_engine

    _serve(sys.stdin, emit, get_engine)
    protocol.close()
