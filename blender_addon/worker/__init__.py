"""The work of a Kar-Wai job, on plain data: no ``bpy`` here, ever.

The main thread turns the scene into a :class:`Snapshot` (plain, JSON-friendly
data: paths, frame numbers, styles) and hands it to :func:`run`, which calls
the engine. :func:`run` runs

* in a separate Python process started by :mod:`.jobs` (the default in the UI,
  so that a job's imports and Python-level work never stall Blender's main
  thread) — ``python -m worker``;
* in a worker thread (:mod:`.jobs` thread mode);
* or synchronously under ``blender -b``.

The package runs as ``python -m worker`` (:mod:`.jobs` puts the add-on's folder
on the path), so nothing in it imports from outside it; the engine is passed in
(``engine=``), which lets tests inject a small fake one. :mod:`.model` is the
job's data, :mod:`.engine_api` the engine as a job sees it, :mod:`.run` the jobs
and :mod:`.protocol` the worker process.

Protocol of the worker process: the first line of stdin is the snapshot as
JSON; a later line ``cancel`` asks the job to stop. Each line of stdout is one
JSON event: ``{"type": "step" | "progress" | "result" | "error" | "cancelled", ...}``.
Anything else the engine prints goes to stderr.
"""

from .engine_api import EngineAPI
from .model import (FARM_DIR, FRAMES_FOLDER, KEYS_FOLDER, OLD_SUFFIX, STAGING_SUFFIX, USER_ERRORS, ClipFrame, ClipPlan,
                    JobCancelled, JobError, KeyTask, Snapshot, frames_dir, keys_dir, style_signature)
from .run import JOBS, run

__all__ = ["EngineAPI", "ClipFrame", "ClipPlan", "KeyTask", "Snapshot", "JobCancelled", "JobError", "USER_ERRORS",
           "run", "JOBS", "frames_dir", "keys_dir", "style_signature", "FARM_DIR", "FRAMES_FOLDER", "KEYS_FOLDER",
           "OLD_SUFFIX", "STAGING_SUFFIX"]
