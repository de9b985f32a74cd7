"""Where the resume record lives: ``OUT/.karwai-job.json``, and the fingerprints of a job's inputs.

The record holds, for every output frame, a fingerprint of everything that
made it and the digest of the bytes written; a re-run keeps a frame only when
both still match.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import FrameError
from ..files import read_regular_file, write_bytes_atomic
from ..safety import file_digest

__all__ = ["RECORD_NAME", "JobRecord", "fingerprint", "source_identity", "mask_identity", "remove_stale_outputs"]

RECORD_NAME = ".karwai-job.json"

def fingerprint(*parts):
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()

def source_identity(source, numbers=None):
    """Per-frame digest of what the source holds (of ``numbers``, default all), so a changed frame
    invalidates its spans.

    Frame files and videos are hashed byte for byte (a size and time stamp
    would miss an edit that keeps both); a source without files, by its pixels.
    """
    numbers = source.frame_numbers if numbers is None else numbers
    path_for = getattr(source, "path_for", None)
    path = getattr(source, "path", None)
    if path_for is not None:
        return {n: f"{path_for(n).name}:{file_digest(path_for(n), what='frame')}" for n in numbers}
    if path is not None and os.path.isfile(path):
        whole = file_digest(path, what="video")
        return {n: f"{whole}:{n}" for n in numbers}
    return {n: hashlib.sha256(np.ascontiguousarray(source.read(n)).tobytes()).hexdigest() for n in numbers}

def mask_identity(mask_source, frame_numbers):
    """Per-frame digest of the mask files (empty without masks)."""
    if mask_source is None:
        return {}
    files = mask_source.files() or {n: mask_source.path for n in frame_numbers}
    digests = {p: file_digest(p, what="mask") for p in set(files.values())}
    return {n: digests[files[n]] for n in frame_numbers if n in files}

def remove_stale_outputs(out, record, current):
    """Remove the outputs of frames no longer in the clip, when their bytes are the job's."""
    stale = [name for name in record.frames if name not in current]
    if not stale:
        return
    for name in stale:
        entry = record.frames.pop(name)
        path = out / name
        try:
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            if file_digest(path) in (entry["sha256"], entry.get("before")):
                os.unlink(path)
        except (OSError, FrameError):
            continue
    record.save()

class JobRecord:
    """The job record beside the output: finished spans, and every output frame's fingerprint.

    ``frames`` maps an output file name to ``{"fp", "sha256", "before"}``: the
    fingerprint of what made it, the digest of the bytes written, and the digest
    of the bytes it replaced (the job's too, should a kill land between the
    record and the file). A frame is finished when its fingerprint matches and
    the file holds those bytes; a file is the job's when its digest is one of them.
    Entries are written before their file (write-ahead), so no output the job
    wrote is ever unknown to it.
    """

    FORMAT = 2

    def __init__(self, path, spans=None, frames=None, settings=None):
        self.path = Path(path)
        self.spans = spans or {}
        self.frames = frames or {}
        self.settings = settings

    @classmethod
    def load(cls, path):
        """The record at ``path`` (empty when there is none); ``FrameError`` naming it when damaged."""
        path = Path(path)
        if not os.path.lexists(path):
            return cls(path)

        def damaged(why):
            return FrameError(f"{path}: damaged job record ({why}); remove this file to start the job afresh "
                              "(outputs are then recomputed)")
        try:
            data = json.loads(read_regular_file(path, what="job record").decode("utf-8"))
        except FrameError as exc:
            raise damaged(str(exc).split(": ", 1)[-1]) from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise damaged(f"not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise damaged(f"a JSON {type(data).__name__} where an object was expected")
        spans = data.get("spans", {})
        frames = data.get("frames", {})
        settings = data.get("settings")
        if not isinstance(spans, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in spans.items()):
            raise damaged("'spans' is not an object of fingerprints")
        if data.get("format", 1) == 1 and "frames" not in data:
            frames = {}  # an earlier version's record: no output is known to be finished
        ok = isinstance(frames, dict) and all(
            isinstance(name, str) and isinstance(e, dict) and isinstance(e.get("fp"), str)
            and isinstance(e.get("sha256"), str) and isinstance(e.get("before"), (str, type(None)))
            for name, e in frames.items())
        if not ok:
            raise damaged("'frames' is not an object of frame entries")
        if settings is not None and not isinstance(settings, dict):
            raise damaged("'settings' is not an object")
        if any(Path(name).name != name or name.startswith(".") for name in frames):
            raise damaged("a frame entry names a path, not a file in the output folder")
        return cls(path, spans=dict(spans), frames=dict(frames), settings=settings)

    def note_frame(self, name, fp, sha256):
        old = self.frames.get(name)
        before = old["sha256"] if old is not None else None
        self.frames[name] = {"fp": fp, "sha256": sha256, "before": before if before != sha256 else None}

    def finished(self, out, name, fp):
        """True when ``out/name`` holds the bytes recorded for fingerprint ``fp``."""
        entry = self.frames.get(name)
        if entry is None or entry["fp"] != fp:
            return False
        path = Path(out) / name
        try:
            if os.path.islink(path) or not os.path.isfile(path):
                return False
            return file_digest(path) == entry["sha256"]
        except (OSError, FrameError):
            return False

    def save(self):
        blob = json.dumps({"format": self.FORMAT, "engine": __version__, "settings": self.settings,
                           "spans": self.spans, "frames": self.frames}, indent=1)
        write_bytes_atomic(self.path, blob.encode())
