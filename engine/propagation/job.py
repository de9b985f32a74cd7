"""Keyframes to every frame: spans, passes, blending, resume.

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
import io
import json
import os
from pathlib import Path
import re
import time
import warnings

import numpy as np

from .. import __version__
from ..flow import FlowCache, warp
from ..errors import Cancelled, FrameError
from ..files import check_output_dir, read_regular_file, remove_stale_temp_files, write_bytes_atomic
from ..frame_source import open_frames
from ..images import encode_image, fit_to, read_image
from ..guides import (advect_positions, apply_mask, frame_guides, guide_lists, keyframe_positions, open_masks,
                      temporal_guide)
from ..safety import (FolderLock, ParameterTypeError, as_path, check_clashes, file_digest, is_owned,
                      own_folder, remove_owned, seal, unseal)
from ..settings import JobSettings

# The synthesis (numba) and the blending are imported when first used,
# so that a user's error is reported without their import time.

__all__ = ["propagate", "plan_job", "PropagateResult", "Cancelled", "plan_spans", "Span"]

RECORD_NAME = ".karwai-job.json"
CACHE_NAME = ".karwai-cache"
#: Bumped whenever the same inputs would give other output bytes (with the
#: engine version and the settings, it is in every output's fingerprint).
RESULT_FORMAT = 2
#: Files the job writes in a span's pass-state folder.
_WORK_FILES = re.compile(r"(?:fwd|bwd)_state\.npz|(?:fwd|bwd|pass|smooth)_-?[0-9]+\.npz")
#: What an unmarked pass-state folder of an earlier version may hold to be adopted.
_OWN_WORK_NAMES = re.compile(r"[0-9a-f]{24}|[0-9a-f]{12}-[0-9a-f]{24}")
_OWN_FLOW_NAMES = re.compile(r"flow-[0-9a-f]{40}\.npy|\..+\.[0-9]+\.[0-9a-f]{8}\.tmp")
_OWN_CACHE_NAMES = re.compile(r"flow|work|keys")
#: Default size cap of the flow cache, in MB.
DEFAULT_CACHE_LIMIT_MB = 1024


@dataclass(frozen=True)
class Span:
    """Frames between keys. ``kind`` is "before", "between" or "after"."""

    kind: str
    key_a: int  # the key before the frames (None for "before")
    key_b: int  # the key after the frames (None for "after")
    frames: tuple

    @property
    def name(self):
        return f"{self.kind}-{self.key_a}-{self.key_b}"


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


def plan_spans(frame_numbers, key_numbers):
    """Split a clip's frame numbers at its keys.

    Parameters
    ----------
    frame_numbers : sequence of int
        The clip's frames in order (gaps allowed).
    key_numbers : iterable of int
        Key frames, each one of ``frame_numbers``.

    Returns
    -------
    list of Span
    """
    frames = list(frame_numbers)
    keys = sorted(key_numbers)
    index = {n: i for i, n in enumerate(frames)}
    spans = []
    first, last = index[keys[0]], index[keys[-1]]
    if first > 0:
        spans.append(Span("before", None, keys[0], tuple(frames[:first])))
    for a, b in zip(keys, keys[1:]):
        inner = tuple(frames[index[a] + 1:index[b]])
        if inner:
            spans.append(Span("between", a, b, inner))
    if last < len(frames) - 1:
        spans.append(Span("after", keys[-1], None, tuple(frames[last + 1:])))
    return spans


#: The keywords that ``propagate`` took before :class:`JobSettings` carried every
#: knob: keyword -> settings field. Still accepted, with a DeprecationWarning.
_OLD_KEYWORDS = {"quality": "quality", "weights": "weights", "blend_mode": "blend", "key_fit": "key_fit",
                 "seed": "seed"}


def propagate(frames, keys, *, out, settings=None, masks=None, progress=None, cancel=None, cache_dir=None,
              keep_cache=False, cache_limit_mb=DEFAULT_CACHE_LIMIT_MB, dask=None, **old_keywords):
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
    """
    t_start = time.perf_counter()
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
                          t_start=t_start, dask=dask)
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
             cache_limit_mb=DEFAULT_CACHE_LIMIT_MB):
    """Check a job as :func:`propagate` does and write its plan, ``OUT/.karwai-plan.json``, without running it.

    The plan lists every task with its inputs, outputs, dependencies,
    fingerprint and command line (``python -m engine run-task PLAN TASK_ID``);
    see :mod:`engine.propagation.plan`. The keys are written beside it
    (``OUT/.karwai-tasks/keys``), so that any machine that sees ``out`` can run
    any task.

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
                          dask=None, plan_only=True)
    finally:
        if opened:
            source.close()


def _open_source(frames):
    """``(source, opened_here)`` for a path or a frame source."""
    if hasattr(frames, "frame_numbers") and hasattr(frames, "read") and hasattr(frames, "name_for"):
        return frames, False
    if isinstance(frames, (str, os.PathLike)):
        return open_frames(as_path("frames", frames)), True
    raise ParameterTypeError(
        f"frames must be a folder or video path, or a source from open_frames, got {type(frames).__name__}")


def _propagate(source, keys, *, out, masks, settings, progress, cancel, cache, keep_cache, max_bytes, t_start,
               dask, plan_only=False):
    source.validate()
    h, w = source.size
    key_styles, key_files = _load_keys(keys, source, settings.key_fit)
    mask_source = open_masks(masks, size=(h, w), frame_numbers=source.frame_numbers) if masks else None

    # What the job reads against what it writes, before anything is written.
    check_clashes(_reads(source, key_files, mask_source),
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
        _Record.load(out / RECORD_NAME)  # a damaged record is refused before anything is written
        for n in source.frame_numbers:
            path = out / source.name_for(n)
            if os.path.lexists(path) and not os.path.islink(path) and not path.is_file():
                raise FrameError(f"{path}: an output frame's name is taken by a folder or special file; "
                                 "move it away or choose another output folder")

    # Fingerprints of everything that determines each output frame.
    identity = _source_identity(source)
    mask_ids = _mask_identity(mask_source, source.frame_numbers)
    key_hashes = {n: hashlib.sha256(img.tobytes() + str(img.shape).encode()).hexdigest()
                  for n, img in key_styles.items()}
    job_fp = _hash("engine", __version__, RESULT_FORMAT, settings.fingerprint())

    def inputs_of(n):
        return f"{n}:{identity[n]}:{mask_ids.get(n, '')}"

    spans = plan_spans(source.frame_numbers, key_styles)
    span_fps = {span.name: _hash(span.name, job_fp, key_hashes.get(span.key_a, ""), key_hashes.get(span.key_b, ""),
                                 *(inputs_of(k) for k in (span.key_a, span.key_b) if k is not None),
                                 *(inputs_of(n) for n in span.frames))
                for span in spans}
    key_fps = {n: _hash("key", job_fp, key_hashes[n], inputs_of(n)) for n in key_styles}

    out = check_output_dir(out)
    with FolderLock(out):
        record = _Record.load(out / RECORD_NAME)
        remove_stale_temp_files(out)
        names = {n: source.name_for(n) for n in source.frame_numbers}
        _remove_stale_outputs(out, record, set(names.values()))
        if cache == out / CACHE_NAME:
            own_folder(cache, "the cache folder", adopt=_OWN_CACHE_NAMES)
        elif not cache.exists():
            own_folder(cache, "the cache folder")  # made here, so removed here once empty
        flow_cache = FlowCache(own_folder(cache / "flow", "the flow cache"), params=settings.flow_params,
                               max_bytes=max_bytes)
        work_root = own_folder(cache / "work", "the pass states", adopt=_OWN_WORK_NAMES)
        work_prefix = hashlib.sha256(str(Path(os.path.realpath(out))).encode()).hexdigest()[:12]
        from .plan import KEY_FILES, TaskEnv, make_plan, run_plan

        plan = make_plan(source, key_styles, out=out, settings=settings, masks=masks, cache_dir=cache,
                         keep_cache=keep_cache,
                         cache_limit_mb=None if max_bytes is None else max_bytes / float(1 << 20),
                         fingerprints=_Fingerprints(identity=identity, masks=mask_ids, key_hashes=key_hashes,
                                                    spans=span_fps, keys=key_fps,
                                                    work=lambda fp: work_root / f"{work_prefix}-{fp[:24]}"),
                         key_dir=None if plan_only or dask is not None else cache / "keys")
        if plan_only:
            return plan
        if dask is not None:
            from .farm import run_plan_dask

            computed, skipped = run_plan_dask(plan, dask, progress=progress, cancel=cancel)
            record = _Record.load(out / RECORD_NAME)  # the end task wrote the frames the farm made
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
            if not remove_owned(entry, _WORK_FILES) and not is_owned(entry):
                try:
                    entry.rmdir()  # empty, its marker removed by a kill just before the folder
                except OSError:
                    pass
        # Removed once no other job's pass states are in them (several jobs may share a cache).
        remove_owned(work_root, _WORK_FILES, recurse=False)
        if not keep_cache:
            flow_cache.clear()
            remove_owned(cache / "keys", KEY_FILES)
            remove_owned(cache, _WORK_FILES, recurse=False)  # only a cache folder the job made
    paths = [out / names[n] for n in source.frame_numbers]
    return PropagateResult(frames=paths, out=out, computed=computed, skipped=skipped,
                           seconds=time.perf_counter() - t_start)


def _reads(source, key_files, mask_source):
    """``(what, path, is_folder)`` of every file and folder the job reads."""
    reads = []
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


def _remove_stale_outputs(out, record, current):
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


class _Context:
    def __init__(self, *, source, flow_cache, settings, keys, masks, out, cancel, progress, total, record,
                 names):
        self.record = record
        self.names = names
        self.source = source
        self.flow_cache = flow_cache
        self.settings = settings
        self.keys = keys
        self.masks = masks
        self.out = out
        self.cancel = cancel
        self.progress = progress
        self.total = total
        self.done = 0

    def check_cancel(self):
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("propagation cancelled; complete frames are kept and a re-run resumes")

    def report(self, message):
        if self.progress is not None:
            self.progress(self.done, self.total, message)

    def write_output(self, n, image, fp):
        """Write frame ``n``'s output, recording its fingerprint and digest first (write-ahead)."""
        if self.masks is not None:
            image = apply_mask(image[:, :, :3], self.masks.read(n))
        path = self.out / self.names[n]
        data = encode_image(path, image)
        if self.record is not None:  # a farm's tasks keep their outputs' digests in their task records
            self.record.note_frame(self.names[n], fp, hashlib.sha256(data).hexdigest())
            self.record.save()
        write_bytes_atomic(path, data)

    def flows(self, n, prev):
        """Flow from frame ``n`` to ``prev`` and back (one cache entry per ordered pair)."""
        a, b = (prev, n) if prev < n else (n, prev)
        fwd, bwd = self.flow_cache.pair(self.source.read(a), self.source.read(b))
        return (bwd, fwd) if prev < n else (fwd, bwd)


class _Pass:
    """One direction of propagation from one key."""

    def __init__(self, ctx, key_number):
        self.ctx = ctx
        self.key_number = key_number
        style = ctx.keys[key_number]
        key_frame = ctx.source.read(key_number)
        h, w = key_frame.shape[:2]
        self.style = style
        # On the key's side the temporal guide is the key's own style.
        self.source_guides = frame_guides(key_frame, positions=keyframe_positions(h, w), temporal=style)

    def initial_state(self):
        h, w = self.style.shape[:2]
        ys, xs = np.mgrid[0:h, 0:w]
        return {"n": self.key_number, "image": self.style,
                "nnf": np.stack([xs, ys], axis=2).astype(np.int32),
                "positions": keyframe_positions(h, w)}

    def step(self, state, n):
        """Synthesize frame ``n`` from the state of the neighbouring frame."""
        from ..synth import synthesize

        ctx = self.ctx
        ctx.check_cancel()
        frame = ctx.source.read(n)
        to_prev, from_prev = ctx.flows(n, state["n"])
        positions = advect_positions(state["positions"], to_prev, flow_from_prev=from_prev)
        target = frame_guides(frame, positions=positions, temporal=temporal_guide(state["image"], to_prev),
                              key_size=self.style.shape[:2])
        source_guides, target_guides, weights = guide_lists(self.source_guides, target,
                                                            weights=ctx.settings.weights)
        result = synthesize(self.style, source_guides, target_guides, guide_weights=weights,
                            style_weight=ctx.settings.weights.style, init_nnf=_advect_nnf(state["nnf"], to_prev),
                            seed=_frame_seed(ctx.settings.seed, self.key_number, n),
                            **ctx.settings.synth_params)
        new_state = {"n": n, "image": result.image, "nnf": result.nnf, "positions": positions}
        return result, new_state, to_prev


def run_pass(ctx, span, direction, work):
    """One pass over a span's frames, from its key before (``"fwd"``) or after (``"bwd"``).

    Between two keys each pass keeps its images and synthesis errors in
    ``work`` (``fwd_N.npz``, ``bwd_N.npz``) for :func:`finish_span` to blend,
    so the two passes are independent of each other and may run at the same
    time on different machines. A span with one key has one pass, whose images
    go straight to ``pass_N.npz``. A pass resumes from its state file; a damaged
    state or result is recomputed from the key, with a warning naming the file.
    Returns the number of frames synthesized.
    """
    key = span.key_a if direction == "fwd" else span.key_b
    order = list(span.frames) if direction == "fwd" else list(reversed(span.frames))
    between = span.kind == "between"
    prefix = direction if between else "pass"
    state_path = work / f"{direction}_state.npz"
    one_pass = _Pass(ctx, key)
    done = ctx.done
    for attempt in range(2):
        try:
            return _single_pass(ctx, one_pass, order, work, state_path, prefix=prefix, keep_error=between)
        except _DamagedState as exc:
            if attempt:
                raise FrameError(f"{exc.path}: pass state damaged again right after being written "
                                 f"({exc.why}); check the disk") from None
            warnings.warn(f"{exc.path}: damaged pass state ({exc.why}); recomputing the "
                          f"{'forward' if direction == 'fwd' else 'backward'} pass of {span.name}", stacklevel=2)
            for path in [state_path] + [work / f"{prefix}_{n}.npz" for n in order]:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            ctx.done = done


def _single_pass(ctx, one_pass, order, work, state_path, *, prefix, keep_error):
    state = _load_state(state_path, order) or one_pass.initial_state()
    start = 0 if state["n"] == one_pass.key_number else order.index(state["n"]) + 1
    for n in order[:start]:
        _load_sealed(work / f"{prefix}_{n}.npz")  # what the resume keeps must be intact
    ctx.done += start
    for n in order[start:]:
        result, state, _ = one_pass.step(state, n)
        arrays = {"image": result.image, "error": result.error} if keep_error else {"image": result.image}
        _save(work / f"{prefix}_{n}.npz", **arrays)
        _save(state_path, **state)
        ctx.done += 1
        ctx.report(f"frame {n}: pass from key {one_pass.key_number}")
    return len(order) - start


def _blend_span(ctx, span, work):
    """Blend the two passes between keys, frame by frame in backward order, into ``pass_N.npz``."""
    from . import blend

    choice = None
    previous = span.key_b
    lo, hi = span.key_a, span.key_b
    for n in reversed(span.frames):
        ctx.check_cancel()
        f = _load_sealed(work / f"fwd_{n}.npz")
        b = _load_sealed(work / f"bwd_{n}.npz")
        fwd_image, fwd_error, bwd_image, bwd_error = f["image"], f["error"], b["image"], b["error"]
        position = (n - lo) / float(hi - lo)
        if ctx.settings.blend == "crossfade":
            blended = blend.crossfade(fwd_image, bwd_image, position)
        elif ctx.settings.blend == "weighted":
            blended = blend.weighted_blend(fwd_image, fwd_error, bwd_image, bwd_error, position=position)
        else:
            to_prev = ctx.flows(n, previous)[0] if choice is not None else None
            choice = blend.choose_passes(fwd_error, bwd_error, position=position, previous=choice,
                                         flow_to_previous=to_prev)
            blended = blend.blend_passes(fwd_image, bwd_image, choice)
        _save(work / f"pass_{n}.npz", image=np.clip(np.rint(blended), 0, 255).astype(np.uint8))
        previous = n


def finish_span(ctx, span, work, fp):
    """Blend the passes (between keys), smooth along the flow both ways, restore detail, write the frames.

    The recursive filter starts from the key at each end of the span that has
    one, so the frames next to a key follow it. Deterministic, and cheap next to
    the passes, so a resumed job simply runs it again over the whole span.
    """
    from . import refine

    if span.kind == "between":
        _blend_span(ctx, span, work)
    settings = ctx.settings
    strength = float(settings.temporal_smoothing)
    frames = list(span.frames)

    def pass_image(n):
        return _load_sealed(work / f"pass_{n}.npz")["image"]

    def smooth(n, image, neighbour, neighbour_image):
        if neighbour is None or strength == 0.0:
            return image.astype(np.float32)
        to_neighbour, from_neighbour = ctx.flows(n, neighbour)
        return refine.smoothing_step(image, neighbour_image, to_neighbour, from_neighbour, strength=strength)

    # Forward in time; the results wait on disk for the backward sweep.
    neighbour = span.key_a
    previous = None if neighbour is None else ctx.keys[neighbour]
    for n in frames:
        ctx.check_cancel()
        previous = smooth(n, pass_image(n), neighbour, previous)
        _save(work / f"smooth_{n}.npz", image=previous.astype(np.float16))
        neighbour = n

    ratios = {k: refine.detail_ratio(ctx.keys[k], ctx.source.read(k)) for k in (span.key_a, span.key_b)
              if k is not None and settings.restore_detail}
    neighbour = span.key_b
    following = None if neighbour is None else ctx.keys[neighbour]
    for n in reversed(frames):
        ctx.check_cancel()
        following = smooth(n, pass_image(n), neighbour, following)
        neighbour = n
        image = (_load_sealed(work / f"smooth_{n}.npz")["image"].astype(np.float32) + following) * np.float32(0.5)
        if ratios:
            if len(ratios) == 2:
                t = (n - span.key_a) / float(span.key_b - span.key_a)
                ratio = (1.0 - t) * ratios[span.key_a] + t * ratios[span.key_b]
            else:
                (ratio,) = ratios.values()
            image = refine.restore_detail(image, ctx.source.read(n), ratio)
        ctx.write_output(n, np.clip(np.rint(image), 0, 255).astype(np.uint8), fp)
        ctx.report(f"frame {n}: finished")


# ---------------------------------------------------------------------------
# Helpers


def _advect_nnf(nnf, flow_to_prev):
    """The previous frame's match, moved along the flow onto this frame (nearest sample)."""
    h, w = nnf.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    px = np.clip(np.rint(xs + flow_to_prev[:, :, 0]), 0, w - 1).astype(np.intp)
    py = np.clip(np.rint(ys + flow_to_prev[:, :, 1]), 0, h - 1).astype(np.intp)
    return nnf[py, px]


def _cache_limit_bytes(cache_limit_mb):
    if cache_limit_mb is None:
        return None
    if isinstance(cache_limit_mb, bool) or not isinstance(cache_limit_mb, (int, float, np.integer, np.floating)):
        raise ValueError(f"cache_limit_mb must be a number of MB or None, got {cache_limit_mb!r}")
    if not np.isfinite(cache_limit_mb) or cache_limit_mb < 0:
        raise ValueError(f"cache_limit_mb must be finite and >= 0, got {cache_limit_mb!r}")
    return int(float(cache_limit_mb) * (1 << 20))


def _frame_seed(seed, key_number, n):
    digest = hashlib.sha256(f"{seed}:{key_number}:{n}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _hash(*parts):
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


class _DamagedState(Exception):
    """A pass-state file whose checksum or content is wrong: the span is recomputed."""

    def __init__(self, path, why):
        super().__init__(f"{path}: {why}")
        self.path = path
        self.why = why


def _save(path, **arrays):
    """Write arrays as an ``.npz`` followed by a checksum (:func:`engine.safety.seal`)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    write_bytes_atomic(path, seal(buffer.getbuffer(), context=_state_context(path)))


def _state_context(path):
    """A pass-state file's checksum covers its span folder and name: another span's file does not pass."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}"


def _load_sealed(path):
    """The arrays :func:`_save` wrote, or :class:`_DamagedState` when they are missing or damaged."""
    try:
        raw = read_regular_file(path, what="pass state")
    except FrameError as exc:
        raise _DamagedState(path, str(exc).split(": ", 1)[-1]) from None
    payload = unseal(raw, context=_state_context(path))
    if payload is None:
        raise _DamagedState(path, "checksum mismatch: truncated, empty, changed or another span's")
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - a sealed file that numpy cannot read is damaged too
        raise _DamagedState(path, f"unreadable ({type(exc).__name__})") from None


def _load_state(path, frames):
    """A pass's saved state, None when there is none; :class:`_DamagedState` when it is damaged."""
    if not os.path.lexists(path):
        return None
    state = _load_sealed(path)
    try:
        state["n"] = int(state["n"])
    except (KeyError, TypeError, ValueError):
        raise _DamagedState(path, "no frame number in it") from None
    if state["n"] not in frames:
        return None
    return state


def _source_identity(source, numbers=None):
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


def _mask_identity(mask_source, frame_numbers):
    """Per-frame digest of the mask files (empty without masks)."""
    if mask_source is None:
        return {}
    files = mask_source.files() or {n: mask_source.path for n in frame_numbers}
    digests = {p: file_digest(p, what="mask") for p in set(files.values())}
    return {n: digests[files[n]] for n in frame_numbers if n in files}


def _load_keys(keys, source, key_fit):
    """``(styles, files)``: the fitted key images, and the files they were read from."""
    if not isinstance(keys, dict):
        raise ParameterTypeError(f"keys must be a dict {{frame_number: image or path}}, got {type(keys).__name__}")
    if not keys:
        raise ValueError("keys: at least one keyframe is needed")
    h, w = source.size
    styles = {}
    files = {}
    for n, key in keys.items():
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            raise ParameterTypeError(f"keys: frame number {n!r} is not an integer")
        n = int(n)
        if n not in source:
            if source.first < n < source.last:
                raise ValueError(f"keys: frame {n} is not in the clip: no frame is numbered {n} "
                                 f"(a gap in the numbering of frames {source.first}..{source.last})")
            raise ValueError(f"keys: frame {n} is outside the clip (frames {source.first}..{source.last})")
        if isinstance(key, (str, os.PathLike)):
            what = str(key)
            files[n] = as_path(f"keys[{n}]", key)
            image = read_image(key, alpha=True)
        elif isinstance(key, np.ndarray):
            what = f"key for frame {n}"
            image = key
        else:
            raise ParameterTypeError(f"keys[{n}] must be an image array or a path, got {type(key).__name__}")
        styles[n] = fit_to(image, (h, w), fit=key_fit, what=what, stacklevel=5)
    # One channel layout for all keys: RGBA if any key carries transparency.
    if any(s.shape[2] == 4 and (s[:, :, 3] < 255).any() for s in styles.values()):
        styles = {n: s if s.shape[2] == 4 else np.dstack([s, np.full(s.shape[:2], 255, np.uint8)])
                  for n, s in styles.items()}
    else:
        styles = {n: np.ascontiguousarray(s[:, :, :3]) for n, s in styles.items()}
    return dict(sorted(styles.items())), files


class _Record:
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
