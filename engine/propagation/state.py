"""Where a pass keeps its state on disk: sealed ``.npz`` files, so a stopped job resumes.

Each file is written atomically and sealed with a checksum over its bytes, its
span folder and its name (:func:`engine.safety.seal`); one that is missing,
truncated, changed or another span's raises :class:`DamagedState`, and the pass
is recomputed.
"""

import io
import os
from pathlib import Path
import re

import numpy as np

from ..errors import FrameError
from ..files import read_regular_file, write_bytes_atomic
from ..safety import seal_tail, unseal

__all__ = ["WORK_FILES", "DamagedState", "save_state", "load_sealed", "load_state", "state_context"]

#: Files the job writes in a span's pass-state folder.
WORK_FILES = re.compile(r"(?:fwd|bwd)_state\.npz|(?:fwd|bwd|pass|smooth)_-?[0-9]+\.npz")

class DamagedState(Exception):
    """A pass-state file whose checksum or content is wrong: the span is recomputed."""

    def __init__(self, path, why):
        super().__init__(f"{path}: {why}")
        self.path = path
        self.why = why

def save_state(path, **arrays):
    """Write arrays as an ``.npz`` followed by a checksum (:func:`engine.safety.seal`)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    payload = buffer.getbuffer()
    # Not flushed to disk (durable=False): a file a power cut leaves damaged fails its seal and is recomputed.
    write_bytes_atomic(path, [payload, seal_tail(payload, state_context(path))], durable=False)

def state_context(path):
    """A pass-state file's checksum covers its span folder and name: another span's file does not pass."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}"

def load_sealed(path):
    """The arrays :func:`save_state` wrote, or :class:`DamagedState` when they are missing or damaged."""
    try:
        raw = read_regular_file(path, what="pass state")
    except FrameError as exc:
        raise DamagedState(path, str(exc).split(": ", 1)[-1]) from None
    payload = unseal(raw, context=state_context(path))
    if payload is None:
        raise DamagedState(path, "checksum mismatch: truncated, empty, changed or another span's")
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - a sealed file that numpy cannot read is damaged too
        raise DamagedState(path, f"unreadable ({type(exc).__name__})") from None

def load_state(path, frames):
    """A pass's saved state, None when there is none; :class:`DamagedState` when it is damaged."""
    if not os.path.lexists(path):
        return None
    state = load_sealed(path)
    try:
        state["n"] = int(state["n"])
    except (KeyError, TypeError, ValueError):
        raise DamagedState(path, "no frame number in it") from None
    if state["n"] not in frames:
        return None
    return state
