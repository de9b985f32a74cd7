"""Keyframes to every frame: the job that checks its inputs and runs its plan.

The steps live in their own modules: :mod:`.spans` (the clip cut at its keys),
:mod:`.keys` (keys read and fitted), :mod:`.passes` (a key's style carried from
frame to frame), :mod:`.state` (a pass's state on disk), :mod:`.finish` (two
passes blended, smoothed, detail restored), :mod:`.record` (the resume record),
:mod:`.plan` and :mod:`.tasks` (the job as tasks).

A job splits the clip at its keys into spans. Frames before the first key get a
backward pass from it, frames after the last key a forward pass; frames between
two keys get a forward pass from the earlier key and a backward pass from the
later one, blended (see :mod:`.blend`). Each pass carries the key's style from
frame to frame with :func:`engine.synth.synthesize`, guided by colour, edge,
advected positions and the previous output advected by optical flow, and warm
started from the previous frame's match advected by the same flow.

Resume: every output frame is written atomically, and each pass keeps its state
(the last frame's output, match and positions) on disk, so a job that stops
for any reason continues where it stopped. The job record beside the output
holds one fingerprint per span (settings, keys, source frames): a re-run
recomputes exactly the spans whose fingerprint changed. All randomness is
seeded per frame, so the bytes of a resumed job equal those of an
uninterrupted one.

The work is done as the tasks of a plan (:mod:`.plan`): per key, its frame;
per span, its optical flow, its forward and backward passes (independent of
each other; between keys their results wait in the span's work folder) and its
blend and finish. :func:`propagate` runs them in plan order here, or on a Dask
cluster; a farm runs them with ``python -m engine run-task``. The same task
functions, so the same bytes, everywhere.
"""

from dataclasses import dataclass
import hashlib
import os
from pathlib import Path
import re
import time
import warnings

import numpy as np

from .. import __version__
from ..allocator import tune_for_jobs
from ..errors import Cancelled, FrameError
from ..files import check_output_dir, remove_stale_temp_files
from ..flow import JOB_MEMORY_BYTES, FlowCache
from ..frame_source import open_frames
from ..guides import open_masks
from ..safety import FolderLock, ParameterTypeError, as_path, check_clashes, is_owned, own_folder, remove_owned
from ..settings import JobSettings
from .keys import load_keys
from .record import RECORD_NAME, JobRecord, fingerprint, mask_identity, remove_stale_outputs, source_identity
from .spans import Span, plan_spans
from .state import WORK_FILES

# The synthesis (numba) and the blending are imported when first used,
# so that a user's error is reported without their import time.

__all__ = ["propagate", "plan_job", "PropagateResult", "Cancelled", "plan_spans", "Span"]

CACHE_NAME = ".karwai-cache"
#: Bumped whenever the same inputs would give other output bytes (with the
#: engine version and the settings, it is in every output's fingerprint).
RESULT_FORMAT = 2
#: What an unmarked pass-state folder of an earlier version may hold to be adopted.
_OWN_WORK_NAMES = re.compile(r"[0-9a-f]{24}|[0-9a-f]{12}-[0-9a-f]{24}")
_OWN_FLOW_NAMES = re.compile(r"flow-[0-9a-f]{40}\.npy|\..+\.[0-9]+\.[0-9a-f]{8}\.tmp")
_OWN_CACHE_NAMES = re.compile(r"flow|work|keys")
#: Decoded frames a job keeps in memory: a span's passes, blending and
#: finishing read each frame several times (128 MB: 20 frames at 1080p).
FRAME_CACHE_BYTES = 128 << 20
#: Default size cap of the flow cache, in MB.
DEFAULT_CACHE_LIMIT_MB = 1024


@dataclass
class PropagateResult:
    """What :func:`propagate` did.

    Attributes
    ----------
    frames : list of pathlib.Path
        Every output frame, in frame order.
    out : pathlib.Path
        The output folder.
    computed, skipped : int
        Frames synthesized in this run, and frames kept from an earlier run.
    seconds : float
        Wall time of the run.
    """

    frames: list
    out: Path
    computed: int
    skipped: int
    seconds: float


@dataclass(frozen=True)
class _Fingerprints:
    """What :mod:`.plan` writes into a plan about a job's inputs, computed once here."""

    identity: dict  # per source frame: name and digest of its file
    masks: dict  # per frame: digest of its mask (empty without masks)
    key_hashes: dict  # per key: digest of the fitted key image
    spans: dict  # per span name: fingerprint of everything that makes its frames
    keys: dict  # per key: fingerprint of its output frame
    work: object  # span fingerprint -> the span's pass-state folder


#: The keywords that ``propagate`` took before :class:`JobSettings` carried every
#: knob: keyword -> settings field. Still accepted, with a DeprecationWarning.
_OLD_KEYWORDS = {"quality": "quality", "weights": "weights", "blend_mode": "blend", "key_fit": "key_fit",
                 "seed": "seed"}


def propagate(frames, keys, *, out, settings=None, masks=None, progress=None, cancel=None, cache_dir=None,
              keep_cache=False, cache_limit_mb=DEFAULT_CACHE_LIMIT_MB, dask=None, stylize=None, **old_keywords):
    """Carry the look of stylized keyframes over every frame of a clip.

    Parameters
    ----------
    frames : str or os.PathLike or frame source
        An image-sequence folder (``0001.png`` is frame 1), a video file, or a
        source from :func:`engine.frames.open_frames`.
    keys : dict
        ``{frame_number: image}``: the stylized keyframes, as HxWx3 (or HxWx4)
        uint8 arrays or image paths, in the clip's frame numbering. A key of
        another size is fitted, keeping its aspect, with a warning; one whose
        aspect differs by over 1 % is refused unless ``key_fit`` says to crop
        or pad.
    out : str or os.PathLike
        Output folder; one PNG per frame, named like the input frames. Nothing
        the job reads (frames, keys, masks) may be in it, and it may not be,
        nor lie inside, a folder the job reads.
    masks : str or os.PathLike, optional
        Folder of per-frame masks (same numbering). Only the masked region takes
        the style; outside it the output is transparent (RGBA).
    settings : JobSettings, optional
        Every knob of the job: quality, guide weights, blend mode, key fit,
        seed, temporal smoothing, detail restoration (default
        ``JobSettings()``).
    progress : callable, optional
        ``progress(done, total, message)``, called after every unit of work
        (a pass over one frame).
    cancel : threading.Event, optional
        Checked before every frame; when set, :class:`Cancelled` is raised and
        only complete frames are left on disk. A re-run resumes.
    cache_dir : str or os.PathLike, optional
        Flow cache and pass states (default ``OUT/.karwai-cache``). The job
        keeps them in the ``flow`` and ``work`` folders in it, which it creates
        and marks as its own; it never uses, nor deletes, such a folder that it
        did not make.
    quality, weights, blend_mode, key_fit, seed
        Deprecated: the keywords of the first API, read into a
        :class:`JobSettings` with a ``DeprecationWarning``. Passing one together
        with ``settings`` is an error.
    keep_cache : bool
        Keep the flow cache after a successful job, so that a re-run with a
        changed key does not recompute the flow. By default the cache (flow
        and pass states) is removed when the job finishes. A cancelled or
        failed job always keeps its pass states, so that a re-run resumes.
    cache_limit_mb : float or None
        Size cap of the flow cache in MB (least recently used pairs are
        evicted; an evicted pair is recomputed to the same values). ``None``:
        no cap. Pass states are not capped: they take about ``H * W * (C + 4)``
        bytes per frame of the longest span between two keys, and each span's
        are removed as soon as it is finished.
    dask : str or distributed.Client, optional
        Run the job's tasks on an existing Dask cluster: its scheduler's
        address (``"tcp://HOST:PORT"``) or a connected client. The workers must
        see ``out`` (and the frames, masks and cache folder) at the same paths,
        or at the same paths relative to ``out``, and have the engine
        installed. Progress and cancel work as for a local run. Needs
        ``dask[distributed]``; without it, a clear error.
    stylize : KeyStylization, optional
        Keys the job stylizes itself from their frames, each as one task (on
        a farm, spread over the workers like the propagation), besides the
        painted ``keys`` (which may then be empty). See
        :class:`engine.propagation.stylized_keys.KeyStylization`.

    Returns
    -------
    PropagateResult

    Raises
    ------
    TypeError (ParameterTypeError)
        For an argument of the wrong type (``out=None``, ``frames`` a list...);
        :class:`engine.safety.ParameterTypeError` is also a ``ValueError``.
    ValueError (FrameError)
        For bad frames, keys, masks, settings or output folder, a path the job
        writes that clashes with one it reads, or another job already running
        in ``out``; the message names the file or parameter. A refused call
        creates nothing on disk.
    Cancelled
        When ``cancel`` was set.

    Notes
    -----
    Resume and ownership: the job record ``OUT/.karwai-job.json`` holds, for
    every output frame, a fingerprint of everything that made it (its span's
    source frames including the keys' own frames, the keys, the masks, the
    settings and the engine version) and the digest of the bytes written. A
    re-run keeps a frame only when both still match, and removes the outputs of
    frames no longer in the clip only when their bytes are those it wrote. One
    job at a time may run in an output folder (an OS-level lock).

    Memory: on Linux with glibc the first job in a process sets the C
    allocator to one arena and fixed thresholds for the rest of the process,
    and the first job anywhere turns off NumPy's huge-page advice for the rest
    of the process (:mod:`engine.allocator`); a ``MALLOC_*`` or
    ``NUMPY_MADVISE_HUGEPAGE`` environment variable set by the caller is left
    as it is.
    """
    t_start = time.perf_counter()
    # First of all: glibc's arena limit holds only for threads that allocate after it, and the
    # plan below already wakes OpenCV's thread pool (each of its threads makes an arena).
    tune_for_jobs()
    # Every argument is checked before anything is created or written.
    settings = _settings_from(settings, old_keywords)
    out = as_path("out", out)
    cache = as_path("cache_dir", cache_dir) if cache_dir is not None else out / CACHE_NAME
    masks = as_path("masks", masks) if masks is not None else None
    if not isinstance(keep_cache, (bool, np.bool_)):
        raise ParameterTypeError(f"keep_cache must be True or False, got {type(keep_cache).__name__}")
    if progress is not None and not callable(progress):
        raise ParameterTypeError(f"progress must be callable, got {type(progress).__name__}")
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise ParameterTypeError(f"cancel must be a threading.Event (or have is_set()), got {type(cancel).__name__}")
    max_bytes = _cache_limit_bytes(cache_limit_mb)
    if dask is not None:
        from .farm import check_dask

        check_dask(dask)
    source, opened = _open_source(frames)
    try:
        return _propagate(source, keys, out=out, masks=masks, settings=settings, progress=progress,
                          cancel=cancel, cache=cache, keep_cache=bool(keep_cache), max_bytes=max_bytes,
                          t_start=t_start, dask=dask, stylize=stylize)
    finally:
        if opened:
            source.close()


def _settings_from(settings, old_keywords):
    """The job's JobSettings: ``settings``, or one made from the deprecated keywords."""
    unknown = set(old_keywords) - set(_OLD_KEYWORDS)
    if unknown:
        raise TypeError(f"propagate() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    if settings is not None and not isinstance(settings, JobSettings):
        raise ParameterTypeError(f"settings must be a JobSettings, got {type(settings).__name__}")
    if not old_keywords:
        return settings if settings is not None else JobSettings()
    names = ", ".join(sorted(old_keywords))
    if settings is not None:
        raise ParameterTypeError(f"propagate: pass either settings or {names}, not both "
                                 f"(put {names} into the JobSettings)")
    warnings.warn(f"propagate: the keyword(s) {names} are deprecated; pass settings=JobSettings(...)",
                  DeprecationWarning, stacklevel=3)
    fields = {_OLD_KEYWORDS[k]: v for k, v in old_keywords.items()}
    if fields.get("weights", 0) is None:
        del fields["weights"]
    return JobSettings(**fields)


def plan_job(frames, keys, *, out, masks=None, settings=None, cache_dir=None, keep_cache=False,
             cache_limit_mb=DEFAULT_CACHE_LIMIT_MB, stylize=None):
    """Check a job as :func:`propagate` does and write its plan, ``OUT/.karwai-plan.json``, without running it.

    The plan lists every task with its inputs, outputs, dependencies,
    fingerprint and command line (``python -m engine run-task PLAN TASK_ID``);
    see :mod:`engine.propagation.plan`. The keys are written beside it
    (``OUT/.karwai-tasks/keys``), so that any machine that sees ``out`` can run
    any task. ``stylize`` (a :class:`~engine.propagation.stylized_keys.KeyStylization`)
    adds keys that the plan's ``key-N`` tasks stylize from their frames.

    Returns
    -------
    engine.propagation.plan.Plan
    """
    if settings is None:
        settings = JobSettings()
    elif not isinstance(settings, JobSettings):
        raise ParameterTypeError(f"settings must be a JobSettings, got {type(settings).__name__}")
    out = as_path("out", out)
    cache = as_path("cache_dir", cache_dir) if cache_dir is not None else out / CACHE_NAME
    masks = as_path("masks", masks) if masks is not None else None
    if not isinstance(keep_cache, (bool, np.bool_)):
        raise ParameterTypeError(f"keep_cache must be True or False, got {type(keep_cache).__name__}")
    max_bytes = _cache_limit_bytes(cache_limit_mb)
    source, opened = _open_source(frames)
    try:
        return _propagate(source, keys, out=out, masks=masks, settings=settings, progress=None, cancel=None,
                          cache=cache, keep_cache=bool(keep_cache), max_bytes=max_bytes, t_start=None,
                          dask=None, plan_only=True, stylize=stylize)
    finally:
        if opened:
            source.close()


def _open_source(frames):
    """``(source, opened_here)`` for a path or a frame source."""
    if hasattr(frames, "frame_numbers") and hasattr(frames, "read") and hasattr(frames, "name_for"):
        return frames, False
    if isinstance(frames, (str, os.PathLike)):
        return open_frames(as_path("frames", frames), cache_bytes=FRAME_CACHE_BYTES), True
    raise ParameterTypeError(
        f"frames must be a folder or video path, or a source from open_frames, got {type(frames).__name__}")


def _propagate(source, keys, *, out, masks, settings, progress, cancel, cache, keep_cache, max_bytes, t_start,
               dask, plan_only=False, stylize=None):
    source.validate()
    h, w = source.size
    if stylize is not None:
        from .stylized_keys import KeyStylization

        if not isinstance(stylize, KeyStylization):
            raise ParameterTypeError(f"stylize must be a KeyStylization, got {type(stylize).__name__}")
        stylize = stylize.checked(source)
        both = sorted(set(stylize.numbers) & {int(n) for n in keys if isinstance(n, (int, np.integer))})
        if both:
            raise ValueError(f"keys: frame {both[0]} has a painted key and is also to be stylized (stylize.numbers)")
    key_styles, key_files = load_keys(keys, source, settings.key_fit, allow_none=stylize is not None)
    key_numbers = sorted(set(key_styles) | set(stylize.numbers if stylize is not None else ()))
    mask_source = open_masks(masks, size=(h, w), frame_numbers=source.frame_numbers) if masks else None

    # What the job reads against what it writes, before anything is written.
    check_clashes(_reads(source, key_files, mask_source, stylize),
                  [("the output folder", out, True), ("the cache folder", cache, not cache.exists()),
                   ("the flow cache", cache / "flow", True), ("the pass states", cache / "work", True)])
    for folder in (cache / "flow", cache / "work"):
        real_out, real_folder = Path(os.path.realpath(out)), Path(os.path.realpath(folder))
        if real_out == real_folder or real_folder in real_out.parents:
            raise FrameError(f"{out}: the output folder may not be in the cache folder {folder}; "
                             "choose another output or cache folder")
    if cache == out / CACHE_NAME:
        own_folder(cache, "the cache folder", adopt=_OWN_CACHE_NAMES, check_only=True)
    elif os.path.lexists(cache) and not cache.is_dir():
        raise FrameError(f"{cache}: the cache folder must be a folder, and this path exists and is not one")
    own_folder(cache / "flow", "the flow cache", adopt=_OWN_FLOW_NAMES, check_only=True)
    own_folder(cache / "work", "the pass states", adopt=_OWN_WORK_NAMES, check_only=True)
    if out.exists():
        JobRecord.load(out / RECORD_NAME)  # a damaged record is refused before anything is written
        for n in source.frame_numbers:
            path = out / source.name_for(n)
            if os.path.lexists(path) and not os.path.islink(path) and not path.is_file():
                raise FrameError(f"{path}: an output frame's name is taken by a folder or special file; "
                                 "move it away or choose another output folder")

    # Fingerprints of everything that determines each output frame.
    identity = source_identity(source)
    mask_ids = mask_identity(mask_source, source.frame_numbers)
    key_hashes = {n: hashlib.sha256(img.tobytes() + str(img.shape).encode()).hexdigest()
                  for n, img in key_styles.items()}
    if stylize is not None:
        key_hashes.update(stylize.recipes(source, identity))  # stand in for the images, not yet made
    job_fp = fingerprint("engine", __version__, RESULT_FORMAT, settings.fingerprint())

    def inputs_of(n):
        return f"{n}:{identity[n]}:{mask_ids.get(n, '')}"

    spans = plan_spans(source.frame_numbers, key_numbers)
    span_fps = {span.name: fingerprint(span.name, job_fp, key_hashes.get(span.key_a, ""),
                                       key_hashes.get(span.key_b, ""),
                                       *(inputs_of(k) for k in (span.key_a, span.key_b) if k is not None),
                                       *(inputs_of(n) for n in span.frames))
                for span in spans}
    key_fps = {n: fingerprint("key", job_fp, key_hashes[n], inputs_of(n)) for n in key_numbers}

    out = check_output_dir(out)
    with FolderLock(out):
        record = JobRecord.load(out / RECORD_NAME)
        remove_stale_temp_files(out)
        names = {n: source.name_for(n) for n in source.frame_numbers}
        remove_stale_outputs(out, record, set(names.values()))
        if cache == out / CACHE_NAME:
            own_folder(cache, "the cache folder", adopt=_OWN_CACHE_NAMES)
        elif not cache.exists():
            own_folder(cache, "the cache folder")  # made here, so removed here once empty
        flow_cache = FlowCache(own_folder(cache / "flow", "the flow cache"), params=settings.flow_params,
                               max_bytes=max_bytes, memory_bytes=JOB_MEMORY_BYTES)
        work_root = own_folder(cache / "work", "the pass states", adopt=_OWN_WORK_NAMES)
        work_prefix = hashlib.sha256(str(Path(os.path.realpath(out))).encode()).hexdigest()[:12]
        from .plan import KEY_FILES, make_plan
        from .tasks import TaskEnv, run_plan

        plan = make_plan(source, key_styles, out=out, settings=settings, masks=masks, cache_dir=cache,
                         keep_cache=keep_cache,
                         cache_limit_mb=None if max_bytes is None else max_bytes / float(1 << 20),
                         fingerprints=_Fingerprints(identity=identity, masks=mask_ids, key_hashes=key_hashes,
                                                    spans=span_fps, keys=key_fps,
                                                    work=lambda fp: work_root / f"{work_prefix}-{fp[:24]}"),
                         key_dir=None if plan_only or dask is not None else cache / "keys", stylize=stylize)
        if plan_only:
            return plan
        if dask is not None:
            from .farm import run_plan_dask

            computed, skipped = run_plan_dask(plan, dask, progress=progress, cancel=cancel)
            record = JobRecord.load(out / RECORD_NAME)  # the end task wrote the frames the farm made
        else:
            env = TaskEnv(plan, source=source, progress=progress, cancel=cancel, record=record, names=names,
                          masks=mask_source, flow_cache=flow_cache)

            def after_task(task):
                if task["kind"] == "finish":
                    record.spans[task["span"]] = task["fingerprint"]
                    record.save()

            computed, skipped = run_plan(plan, env=env, skip_flow=max_bytes == 0, after_task=after_task)
        record.settings = settings.as_dict()
        record.save()
        # This job's pass states of earlier runs (other keys or frames), never another job's.
        for entry in sorted(work_root.glob(f"{work_prefix}-*")):
            if not remove_owned(entry, WORK_FILES) and not is_owned(entry):
                try:
                    entry.rmdir()  # empty, its marker removed by a kill just before the folder
                except OSError:
                    pass
        # Removed once no other job's pass states are in them (several jobs may share a cache).
        remove_owned(work_root, WORK_FILES, recurse=False)
        if not keep_cache:
            flow_cache.clear()
            remove_owned(cache / "keys", KEY_FILES)
            remove_owned(cache, WORK_FILES, recurse=False)  # only a cache folder the job made
    paths = [out / names[n] for n in source.frame_numbers]
    return PropagateResult(frames=paths, out=out, computed=computed, skipped=skipped,
                           seconds=time.perf_counter() - t_start)


def _reads(source, key_files, mask_source, stylize=None):
    """``(what, path, is_folder)`` of every file and folder the job reads."""
    reads = []
    if stylize is not None:
        reads += [(f"the keys' {name.replace('_', ' ')}", path, False) for name, path in stylize.params.items()
                  if isinstance(path, Path)]
    path = getattr(source, "path", None)
    path_for = getattr(source, "path_for", None)
    if path is not None:
        folder = os.path.isdir(path)
        reads.append(("the source folder" if folder else "the source video", path, folder))
    if path_for is not None:
        reads += [(f"source frame {n}", path_for(n), False) for n in source.frame_numbers]
    reads += [(f"the key for frame {n}", p, False) for n, p in key_files.items()]
    if mask_source is not None:
        folder = os.path.isdir(mask_source.path)
        reads.append(("the mask folder" if folder else "the mask", mask_source.path, folder))
        reads += [(f"the mask of frame {n}", p, False) for n, p in mask_source.files().items()]
    return reads


def _cache_limit_bytes(cache_limit_mb):
    if cache_limit_mb is None:
        return None
    if isinstance(cache_limit_mb, bool) or not isinstance(cache_limit_mb, (int, float, np.integer, np.floating)):
        raise ValueError(f"cache_limit_mb must be a number of MB or None, got {cache_limit_mb!r}")
    if not np.isfinite(cache_limit_mb) or cache_limit_mb < 0:
        raise ValueError(f"cache_limit_mb must be finite and >= 0, got {cache_limit_mb!r}")
    return int(float(cache_limit_mb) * (1 << 20))


