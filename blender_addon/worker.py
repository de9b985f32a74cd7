"""The work of a Kar-Wai job, on plain data: no ``bpy`` here, ever.

The main thread turns the scene into a :class:`Snapshot` (plain, JSON-friendly
data: paths, frame numbers, styles) and hands it to :func:`run`, which calls
the engine. :func:`run` runs

* in a separate Python process started by :mod:`.jobs` (the default in the UI,
  so that the engine's compiled kernels, which hold the GIL, never stall
  Blender's main thread) — this file is then the process's ``__main__``;
* in a worker thread (:mod:`.jobs` thread mode);
* or synchronously under ``blender -b``.

This module has no relative imports so that it runs as a script. The engine is
passed in (``engine=``), which lets tests inject a small fake one.

Protocol of the worker process: the first line of stdin is the snapshot as
JSON; a later line ``cancel`` asks the job to stop. Each line of stdout is one
JSON event: ``{"type": "step" | "progress" | "result" | "error" | "cancelled", ...}``.
Anything else the engine prints goes to stderr.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path

#: Sub-folders of a job's output folder.
KEYS_FOLDER = "keys"
FRAMES_FOLDER = "frames"
STAGING_SUFFIX = ".partial"
#: Beside the output, the frames a farm plan reads (see Snapshot.farm_plan).
FARM_DIR = ".karwai-farm"
OLD_SUFFIX = ".old-"


class JobCancelled(Exception):
    """The job was cancelled; only complete files were left on disk."""


class JobError(Exception):
    """A problem with the user's input or settings; the message says what to fix."""


#: Errors whose message is enough for the user (the engine's FrameError is a
#: ValueError and names the file); others also get a traceback in the log.
USER_ERRORS = (JobError, ValueError, OSError, ImportError)


# --------------------------------------------------------------------------------------
# the snapshot


@dataclasses.dataclass(frozen=True)
class ClipFrame:
    """One visible frame of a strip.

    Attributes
    ----------
    timeline : int
        The scene frame it shows at.
    number : int
        Its number in the engine's numbering of the clip: the trailing digits of
        the file name for an image sequence, the 1-based frame index for a movie.
    file : str
        The image file for an image sequence; empty for a movie.
    """

    timeline: int
    number: int
    file: str = ""


@dataclasses.dataclass(frozen=True)
class ClipPlan:
    """The source media behind a strip's visible frames.

    Attributes
    ----------
    kind : str
        ``"images"`` (a folder of numbered images), ``"movie"`` or ``"still"``
        (one image for every frame; masks only).
    path : str
        The image folder, the movie file or the still image.
    frames : tuple of ClipFrame
        The visible frames, in timeline order.
    """

    kind: str
    path: str
    frames: tuple

    def to_json(self):
        return {"kind": self.kind, "path": self.path,
                "frames": [[f.timeline, f.number, f.file] for f in self.frames]}

    @classmethod
    def from_json(cls, data):
        return cls(kind=data["kind"], path=data["path"],
                   frames=tuple(ClipFrame(int(t), int(n), f) for t, n, f in data["frames"]))

    def number_at(self, timeline):
        for f in self.frames:
            if f.timeline == timeline:
                return f.number
        return None


@dataclasses.dataclass(frozen=True)
class KeyTask:
    """A keyframe of the job and its style.

    Attributes
    ----------
    timeline, number : int
        Where the key is (scene frame) and which source frame it is.
    path : str
        The stylized key image file.
    stylize : bool
        Stylize it in this job (``False``: use the file as it is, e.g. repainted).
    method : str
        ``engine.stylize`` method.
    params : dict
        ``{name: text}``: the method's parameters as text, parsed by the engine.
    signature : str
        Fingerprint of the style, stored with the key once it is stylized.
    """

    timeline: int
    number: int
    path: str
    stylize: bool
    method: str = "painterly"
    params: dict = dataclasses.field(default_factory=dict)
    signature: str = ""


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Everything a job needs, as plain data (see the module docstring).

    Attributes
    ----------
    kind : str
        ``"stylize"``, ``"propagate"`` or ``"suggest"``.
    strip : str
        The source strip's name (for messages).
    clip : ClipPlan
        The source frames.
    keys : tuple of KeyTask
        The keyframes (not used by ``"suggest"``).
    out_dir : str
        The output folder: ``keys/`` and ``frames/`` go inside.
    cache_dir : str
        Folder for the flow cache and the working copies of trimmed clips.
    mask : ClipPlan or None
        Masks, on the same visible frames as ``clip``.
    settings : dict
        The propagation's knobs, ``{name: value}`` as ``engine.settings.knobs``
        names them (``JobSettings.from_knobs`` reads it; missing ones take
        their defaults).
    farm_plan : bool
        Propagate writes the job's plan for a farm instead of running it.
    threads : int
        Worker threads for the engine (0: all cores).
    device, vgg_weights : str
        Torch device and VGG19 weights file for the neural methods ("" = default).
    download : bool
        Whether the neural methods may download the VGG19 weights.
    consistent_keys : bool
        Stylize neural and Deep Dream keys of one style together so that they
        agree (``engine.stylize_keys``).
    anchor : int or None
        Source frame number of the key the others follow.
    video_method, video_style_image, video_params
        ``"video"`` jobs: ``engine.stylize_video``'s method, artwork and
        parameters (as text).
    """

    kind: str
    strip: str
    clip: ClipPlan
    out_dir: str
    cache_dir: str
    keys: tuple = ()
    mask: ClipPlan | None = None
    settings: dict = dataclasses.field(default_factory=dict)
    farm_plan: bool = False
    threads: int = 0
    device: str = "auto"
    vgg_weights: str = ""
    download: bool = False
    consistent_keys: bool = True
    anchor: int | None = None
    video_method: str = ""
    video_style_image: str = ""
    video_params: dict = dataclasses.field(default_factory=dict)

    def to_json(self):
        data = dataclasses.asdict(self)
        data["clip"] = self.clip.to_json()
        data["mask"] = self.mask.to_json() if self.mask is not None else None
        data["keys"] = [dataclasses.asdict(k) for k in self.keys]
        return data

    @classmethod
    def from_json(cls, data):
        data = dict(data)
        data["clip"] = ClipPlan.from_json(data["clip"])
        data["mask"] = ClipPlan.from_json(data["mask"]) if data.get("mask") else None
        data["keys"] = tuple(KeyTask(**k) for k in data.get("keys", ()))
        return cls(**data)


def style_signature(method, params, source_id):
    """Fingerprint of a key's style and source frame (what makes a stylized key stale)."""
    blob = json.dumps({"method": method, "params": params, "source": source_id}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def frames_dir(out_dir):
    return os.path.join(out_dir, FRAMES_FOLDER)


def keys_dir(out_dir):
    return os.path.join(out_dir, KEYS_FOLDER)


# --------------------------------------------------------------------------------------
# the engine


class EngineAPI:
    """The parts of the engine a job uses, resolved once.

    ``engine`` is the engine package, or any object with the attributes
    ``frames``, ``stylizers`` (the module: ``stylize()``, ``parse_param()``),
    ``guides``, ``keyframes``, ``propagate`` (the function), ``JobSettings`` and ``Cancelled`` (tests pass
    stand-ins this way).
    """

    def __init__(self, engine):
        if isinstance(engine, EngineAPI):
            engine = engine.engine
        self.engine = engine
        # The engine package resolves each of these on first access, in a fresh
        # process too (engine/__init__.py); stand-ins are plain namespaces.
        self.propagate = engine.propagate
        self.plan_job = getattr(getattr(engine, "propagation", None), "plan_job", None)
        self.JobSettings = engine.JobSettings
        self.frames = engine.frames
        self.stylizers = engine.stylizers
        self.guides = engine.guides
        self.keyframes = engine.keyframes
        # Stand-ins in tests may lack the neural video functions.
        self.stylize_keys = getattr(engine, "stylize_keys", None)
        self.stylize_video = getattr(engine, "stylize_video", None)
        self.parse_video_param = getattr(engine, "parse_video_param", None)
        types = [JobCancelled]
        for owner in (engine, self.stylizers):
            cls = getattr(owner, "Cancelled", None)
            if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in types:
                types.append(cls)
        self.cancelled_types = tuple(types)


# --------------------------------------------------------------------------------------
# progress


class _Reporter:
    """Turns the job's progress into events for :mod:`.jobs`."""

    def __init__(self, emit, steps):
        self.emit = emit
        self.steps = list(steps)
        self.index = -1

    def step(self, name):
        self.index = self.steps.index(name)
        self.emit({"type": "step", "index": self.index, "count": len(self.steps), "name": name})

    def progress(self, done, total, message=""):
        self.emit({"type": "progress", "done": float(done), "total": float(total),
                   "message": str(message)})


def _check(cancel):
    if cancel is not None and cancel.is_set():
        raise JobCancelled("cancelled")


# --------------------------------------------------------------------------------------
# the source clip as the engine reads it


def _link_or_copy(src, dst):
    """Make ``dst`` show the file ``src``: a symbolic link, else a hard link, else a copy."""
    try:
        os.symlink(src, dst)
        return
    except (OSError, NotImplementedError, AttributeError):
        pass
    try:
        os.link(src, dst)
        return
    except OSError:
        pass
    shutil.copyfile(src, dst)


def _clip_key(plan):
    blob = json.dumps(plan.to_json(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def _movie_stamp(path):
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def prepare_clip(plan, cache_dir, *, engine, report, cancel, purpose="clip"):
    """A path the engine can read as exactly the plan's frames, with the plan's numbers.

    An image folder holding exactly the strip's frames, or a movie used whole, is
    passed as it is. Otherwise (a trimmed strip, a folder with other images in it)
    a working folder is made in ``cache_dir``: links to the strip's images, or the
    movie's frames in range decoded at the source resolution.

    Returns
    -------
    str
        The folder or movie file.
    """
    numbers = [f.number for f in plan.frames]
    if plan.kind == "still":
        return plan.path
    if plan.kind == "images":
        folder = Path(plan.path)
        try:
            existing = engine.frames.open_frames(folder).frame_numbers
        except ValueError:
            existing = None
        wanted = {f.number: Path(f.file).name for f in plan.frames}
        if (existing is not None and sorted(existing) == sorted(numbers)
                and all(Path(f.file).parent == folder for f in plan.frames)):
            return str(folder)
        work = Path(cache_dir) / "clips" / f"{purpose}-{_clip_key(plan)}"
        if work.is_dir() and sorted(os.listdir(work)) == sorted(wanted.values()):
            return str(work)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        for f in plan.frames:
            _check(cancel)
            _link_or_copy(f.file, work / Path(f.file).name)
        return str(work)
    if plan.kind != "movie":
        raise JobError(f"unknown clip kind {plan.kind!r}")
    source = engine.frames.open_frames(plan.path)
    try:
        missing = [n for n in numbers if n not in source]
        if missing:
            raise JobError(
                f"{plan.path}: the strip shows movie frame {missing[0]} but only "
                f"{len(source)} frame(s) can be decoded from the file")
        if numbers == source.frame_numbers:
            return plan.path
        stamp = _movie_stamp(plan.path).replace(":", "-")
        work = Path(cache_dir) / "clips" / f"{purpose}-{_clip_key(plan)}-{stamp}"
        work.mkdir(parents=True, exist_ok=True)
        width = max(6, len(str(max(numbers))))
        for i, n in enumerate(numbers):
            _check(cancel)
            target = work / f"{n:0{width}d}.png"
            if not target.exists():
                engine.frames.write_frame_atomic(target, source.read(n))
            report.progress(i + 1, len(numbers), f"reading movie frame {n}")
        return str(work)
    finally:
        source.close()


def prepare_masks(mask_plan, clip_plan, cache_dir, *, engine, cancel):
    """A mask file or folder numbered like the clip, for ``engine.propagate(masks=...)``."""
    if mask_plan is None:
        return None
    if mask_plan.kind == "still":
        return mask_plan.path
    by_timeline = {f.timeline: f for f in mask_plan.frames}
    work = Path(cache_dir) / "clips" / f"mask-{_clip_key(mask_plan)}-{_clip_key(clip_plan)}"
    work.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(max(f.number for f in clip_plan.frames))))
    source = engine.frames.open_frames(mask_plan.path) if mask_plan.kind == "movie" else None
    try:
        for f in clip_plan.frames:
            _check(cancel)
            m = by_timeline.get(f.timeline)
            if m is None:
                raise JobError(f"the mask strip has no frame at scene frame {f.timeline}")
            if mask_plan.kind == "images":
                suffix = Path(m.file).suffix
                target = work / f"{f.number:0{width}d}{suffix}"
                if not target.exists():
                    _link_or_copy(m.file, target)
            else:
                target = work / f"{f.number:0{width}d}.png"
                if not target.exists():
                    engine.frames.write_frame_atomic(target, source.read(m.number))
    finally:
        if source is not None:
            source.close()
    return str(work)


class FrameReader:
    """Reads single frames of a clip plan at the source resolution (a movie is opened once)."""

    def __init__(self, plan, *, engine):
        self.plan = plan
        self.engine = engine
        self._by_number = {f.number: f for f in plan.frames}
        self._movie = None

    def read(self, number):
        """Frame ``number`` as RGB uint8."""
        f = self._by_number.get(number)
        if f is None:
            raise JobError(f"frame {number} is not among the strip's visible frames")
        if self.plan.kind == "images":
            return self.engine.frames.read_image(f.file, alpha=False)
        if self.plan.kind == "still":
            return self.engine.frames.read_image(self.plan.path, alpha=False)
        if self._movie is None:
            self._movie = self.engine.frames.open_frames(self.plan.path)
        return self._movie.read(number).copy()

    def close(self):
        if self._movie is not None:
            self._movie.close()
            self._movie = None


# --------------------------------------------------------------------------------------
# the jobs


def _apply_threads(threads):
    if threads and threads > 0:
        try:
            import numba

            numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
        except (ImportError, ValueError):
            pass
        try:
            import cv2

            cv2.setNumThreads(int(threads))
        except ImportError:
            pass
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(int(threads))


def _style_params(snapshot, key, *, engine):
    """The key's parameters, typed by the engine, with the preferences added."""
    params = {}
    painterly_filter = key.params.get("filter") if key.method == "painterly" else None
    for name, text in key.params.items():
        if name == "style_image":
            params[name] = text
            continue
        try:
            params[name] = engine.stylizers.parse_param(key.method, name, str(text),
                                                     filter=painterly_filter)
        except (ValueError, ImportError) as exc:
            raise JobError(str(exc)) from None
    if key.method in ("neural", "deepdream"):
        params.setdefault("device", snapshot.device or "auto")
        if snapshot.vgg_weights:
            params.setdefault("weights", snapshot.vgg_weights)
        params.setdefault("download", bool(snapshot.download))
    return params


#: Methods whose keys are stylized together so that they agree.
CONSISTENT_METHODS = ("neural", "deepdream")


def _agreeing_groups(snapshot, tasks, engine):
    """Keys stylized together by ``engine.stylize_keys``: two or more of one neural or Deep
    Dream style. Returns ``(groups, the other tasks)``."""
    if not snapshot.consistent_keys or engine.stylize_keys is None:
        return [], list(tasks)
    by_style = {}
    for key in tasks:
        if key.method in CONSISTENT_METHODS:
            by_style.setdefault(json.dumps([key.method, key.params], sort_keys=True), []).append(key)
    groups = [g for g in by_style.values() if len(g) > 1]
    grouped = {id(k) for g in groups for k in g}
    return groups, [k for k in tasks if id(k) not in grouped]


def _stylize_group(snapshot, group, clip, done, count, *, engine, report, cancel):
    """Stylize keys of one style together (they agree); returns their result dicts."""
    numbers = [k.number for k in group]
    anchor = snapshot.anchor if snapshot.anchor in numbers else None

    def progress(step, total, message=""):
        report.progress(done + step, count, f"keys that agree: {message}")

    try:
        params = _style_params(snapshot, group[0], engine=engine)
        images = engine.stylize_keys(clip, numbers, method=group[0].method, anchor=anchor,
                                     progress=progress, cancel=cancel, **params)
        results = []
        for key in group:
            _check(cancel)
            engine.frames.write_frame_atomic(key.path, images[key.number])
            results.append({"timeline": key.timeline, "number": key.number, "path": key.path,
                            "signature": key.signature, "mtime_ns": os.stat(key.path).st_mtime_ns,
                            "error": ""})
        return results
    except engine.cancelled_types:
        raise JobCancelled("cancelled") from None
    except USER_ERRORS as exc:
        return [{"timeline": k.timeline, "number": k.number, "path": k.path, "signature": k.signature,
                 "mtime_ns": 0, "error": _message(exc)} for k in group]


def _stylize_keys(snapshot, tasks, *, engine, report, cancel):
    """Stylize ``tasks``; returns one result dict per task (errors included)."""
    os.makedirs(keys_dir(snapshot.out_dir), exist_ok=True)
    position = {key.timeline: i for i, key in enumerate(tasks)}
    groups, tasks = _agreeing_groups(snapshot, tasks, engine)
    count = len(tasks) + sum(len(g) for g in groups)
    results = []
    if groups:
        clip = prepare_clip(snapshot.clip, snapshot.cache_dir, engine=engine, report=report,
                            cancel=cancel)
        for group in groups:
            _check(cancel)
            results += _stylize_group(snapshot, group, clip, len(results), count, engine=engine,
                                      report=report, cancel=cancel)
    offset = len(results)
    reader = FrameReader(snapshot.clip, engine=engine)
    try:
        for i, key in enumerate(tasks):
            _check(cancel)
            report.progress(offset + i, count, f"stylizing the key at frame {key.timeline}")
            results.append(_stylize_one(snapshot, key, offset + i, count, reader, engine=engine,
                                        report=report, cancel=cancel))
            report.progress(offset + i + 1, count, f"stylized the key at frame {key.timeline}")
    finally:
        reader.close()
    return sorted(results, key=lambda r: position[r["timeline"]])


def _stylize_one(snapshot, key, i, count, reader, *, engine, report, cancel):
    """Stylize one key and write its file; a problem with it is returned, not raised."""
    try:
        frame = reader.read(key.number)
        params = _style_params(snapshot, key, engine=engine)
        style = params.get("style_image")
        if isinstance(style, (str, os.PathLike)) and os.path.realpath(style) == os.path.realpath(key.path):
            # The key file is written over: it may not be the picture it is made from.
            raise JobError(f"{key.path}: the style image is this key's own output file; "
                           "choose another picture")

        def iteration(step, total, loss=None):
            report.progress(i + step / max(total, 1), count,
                            f"stylizing the key at frame {key.timeline}: iteration {step}/{total}")

        image = engine.stylizers.stylize(frame, method=key.method, progress=iteration,
                                       cancel=cancel, **params)
        _check(cancel)
        engine.frames.write_frame_atomic(key.path, image)
        return {"timeline": key.timeline, "number": key.number, "path": key.path,
                "signature": key.signature, "mtime_ns": os.stat(key.path).st_mtime_ns,
                "error": ""}
    except engine.cancelled_types:
        raise JobCancelled("cancelled") from None
    except USER_ERRORS as exc:
        return {"timeline": key.timeline, "number": key.number, "path": key.path,
                "signature": key.signature, "mtime_ns": 0, "error": _message(exc)}


def _message(exc):
    """The text shown to the user for an error."""
    return str(exc) or type(exc).__name__


def run_stylize(snapshot, *, engine, report, cancel):
    """Stylize every key marked ``stylize`` and write it to its file."""
    report = _Reporter(report, ["Stylizing keys"])
    _apply_threads(snapshot.threads)
    report.step("Stylizing keys")
    tasks = [k for k in snapshot.keys if k.stylize]
    keys = _stylize_keys(snapshot, tasks, engine=engine, report=report, cancel=cancel)
    return {"keys": keys}


def _swap_in(staging, final):
    """Replace the folder ``final`` by ``staging`` (two renames; the old one is removed)."""
    old = None
    if os.path.isdir(final):
        old = f"{final}{OLD_SUFFIX}{secrets.token_hex(4)}"
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _recover_frames(final):
    """Put back a result folder left aside by a swap that stopped half-way."""
    if os.path.isdir(final):
        return
    parent, name = os.path.split(final)
    if not os.path.isdir(parent):
        return
    leftovers = sorted(e for e in os.listdir(parent) if e.startswith(name + OLD_SUFFIX))
    if leftovers:
        os.replace(os.path.join(parent, leftovers[-1]), final)


def _seed_staging(final, staging):
    """Start a staging folder from the last result (hard links), so a re-run only
    recomputes what changed; the engine replaces files atomically, which never
    touches the linked originals."""
    if os.path.isdir(staging):
        return
    tmp = f"{staging}.seed-{secrets.token_hex(4)}"
    os.makedirs(tmp)
    if os.path.isdir(final):
        for entry in os.scandir(final):
            if entry.is_file():
                try:
                    os.link(entry.path, os.path.join(tmp, entry.name))
                except OSError:
                    shutil.copy2(entry.path, os.path.join(tmp, entry.name))
    os.replace(tmp, staging)


def run_propagate(snapshot, *, engine, report, cancel):
    """Stylize the keys that need it, propagate, and put the result in ``frames/``.

    The engine writes into ``frames.partial/`` and that folder replaces
    ``frames/`` only when the whole job succeeded, so a cancelled or failed job
    never changes the frames an earlier result strip shows. A re-run resumes
    from ``frames.partial/``.
    """
    if not snapshot.keys:
        raise JobError("no keyframes")
    to_stylize = [k for k in snapshot.keys if k.stylize]
    steps = ["Reading frames"]
    if to_stylize:
        steps.append("Stylizing keys")
    steps += ["Propagating", "Finishing"]
    report = _Reporter(report, steps)
    _apply_threads(snapshot.threads)

    report.step("Reading frames")
    # A farm's workers must see the frames the plan reads: they go beside the output
    # (next to the .blend file by default), not into this computer's cache.
    clip_cache = os.path.join(snapshot.out_dir, FARM_DIR) if snapshot.farm_plan else snapshot.cache_dir
    clip = prepare_clip(snapshot.clip, clip_cache, engine=engine, report=report, cancel=cancel)
    masks = prepare_masks(snapshot.mask, snapshot.clip, clip_cache, engine=engine, cancel=cancel)
    stylized = []
    if to_stylize:
        report.step("Stylizing keys")
        stylized = _stylize_keys(snapshot, to_stylize, engine=engine, report=report,
                                 cancel=cancel)
        failed = [k for k in stylized if k["error"]]
        if failed:
            raise JobError("; ".join(f"key at frame {k['timeline']}: {k['error']}" for k in failed))

    report.step("Propagating")
    final = frames_dir(snapshot.out_dir)
    staging = final + STAGING_SUFFIX
    os.makedirs(snapshot.out_dir, exist_ok=True)
    _recover_frames(final)
    _seed_staging(final, staging)
    keys = {k.number: k.path for k in snapshot.keys}
    # The engine's one settings record of a propagation job (as the CLI builds it too).
    settings = engine.JobSettings.from_knobs(snapshot.settings)
    if snapshot.farm_plan:
        report.step("Finishing")
        if engine.plan_job is None:
            raise JobError("this engine cannot write farm plans")
        plan = engine.plan_job(clip, keys, out=final, masks=masks, settings=settings)
        report.progress(1, 1, "plan written")
        return {"plan": str(plan.path), "tasks": len(plan.tasks), "keys": stylized}
    cache = os.path.join(snapshot.cache_dir, "propagate",
                         hashlib.sha256(os.path.abspath(final).encode()).hexdigest()[:16])
    try:
        result = engine.propagate(clip, keys, out=staging, masks=masks, settings=settings,
                                  progress=report.progress, cancel=cancel, cache_dir=cache)
    except engine.cancelled_types:
        raise JobCancelled("cancelled") from None
    _check(cancel)

    report.step("Finishing")
    numbers = sorted(f.number for f in snapshot.clip.frames)
    written = [Path(p).name for p in result.frames]
    if len(written) != len(numbers):
        raise JobError(f"the engine wrote {len(written)} frames for {len(numbers)} source frames")
    name_of = dict(zip(numbers, written))
    _swap_in(staging, final)
    files = [[f.timeline, name_of[f.number]] for f in snapshot.clip.frames]
    report.progress(1, 1, "done")
    return {"frames_dir": final, "files": files, "keys": stylized}


def run_video(snapshot, *, engine, report, cancel):
    """Stylize every frame with ``engine.stylize_video`` and put the result in ``frames/``.

    As for :func:`run_propagate`, the engine writes into ``frames.partial/``,
    which replaces ``frames/`` only when the whole job succeeded; a re-run
    resumes from it (and reuses a trained fast network).
    """
    if engine.stylize_video is None:
        raise JobError("this engine has no neural video methods")
    if not snapshot.video_style_image:
        raise JobError("choose the artwork (the default style's Image) for the neural video methods")
    report = _Reporter(report, ["Reading frames", "Stylizing frames", "Finishing"])
    _apply_threads(snapshot.threads)
    report.step("Reading frames")
    clip = prepare_clip(snapshot.clip, snapshot.cache_dir, engine=engine, report=report,
                        cancel=cancel)
    masks = prepare_masks(snapshot.mask, snapshot.clip, snapshot.cache_dir, engine=engine,
                          cancel=cancel)
    method = snapshot.video_method
    params = {}
    for name, text in snapshot.video_params.items():
        try:
            params[name] = engine.parse_video_param(method, name, str(text))
        except (ValueError, ImportError) as exc:
            raise JobError(str(exc)) from None
    params.setdefault("device", snapshot.device or "auto")
    if snapshot.vgg_weights:
        params.setdefault("weights", snapshot.vgg_weights)
    params.setdefault("download", bool(snapshot.download))
    if method == "fast-network" and "model" not in params:
        # The trained network lives beside frames/ (which a successful job replaces), named by
        # what it was trained from, so that a re-run with the same style reuses it.
        stamp = _movie_stamp(snapshot.video_style_image)
        blob = json.dumps([stamp, snapshot.video_params, snapshot.clip.to_json()], sort_keys=True)
        folder = os.path.join(snapshot.out_dir, "networks")
        os.makedirs(folder, exist_ok=True)
        params["model"] = os.path.join(
            folder, f"fast-network-{hashlib.sha256(blob.encode()).hexdigest()[:16]}.pt")

    report.step("Stylizing frames")
    final = frames_dir(snapshot.out_dir)
    staging = final + STAGING_SUFFIX
    os.makedirs(snapshot.out_dir, exist_ok=True)
    _recover_frames(final)
    _seed_staging(final, staging)
    try:
        result = engine.stylize_video(clip, method=method, style_image=snapshot.video_style_image,
                                      out=staging, masks=masks, progress=report.progress,
                                      cancel=cancel, **params)
    except engine.cancelled_types:
        raise JobCancelled("cancelled") from None
    _check(cancel)

    report.step("Finishing")
    numbers = sorted(f.number for f in snapshot.clip.frames)
    written = [Path(p).name for p in result.frames]
    if len(written) != len(numbers):
        raise JobError(f"the engine wrote {len(written)} frames for {len(numbers)} source frames")
    name_of = dict(zip(numbers, written))
    _swap_in(staging, final)
    files = [[f.timeline, name_of[f.number]] for f in snapshot.clip.frames]
    report.progress(1, 1, "done")
    return {"frames_dir": final, "files": files, "keys": []}


def run_suggest(snapshot, *, engine, report, cancel):
    """Propose keyframes for the strip's visible frames."""
    report = _Reporter(report, ["Reading frames", "Analysing motion"])
    _apply_threads(snapshot.threads)
    report.step("Reading frames")
    clip = prepare_clip(snapshot.clip, snapshot.cache_dir, engine=engine, report=report,
                        cancel=cancel)
    report.step("Analysing motion")
    timeline_of = {f.number: f.timeline for f in snapshot.clip.frames}
    with engine.frames.open_frames(clip) as source:

        def progress(done, total):
            _check(cancel)
            report.progress(done, total, f"compared {done} of {total} frame pairs")

        suggestions = engine.keyframes.suggest_keyframes(source, progress=progress)
    return {"suggestions": [[timeline_of[s.frame], s.frame, s.reason]
                            for s in suggestions if s.frame in timeline_of]}


JOBS = {"stylize": run_stylize, "propagate": run_propagate, "suggest": run_suggest, "video": run_video}


def run(snapshot, *, engine, report, cancel):
    """Run the job ``snapshot.kind``.

    Parameters
    ----------
    snapshot : Snapshot
    engine : module
        The engine package (or a stand-in with the same functions).
    report : callable
        Called with each event dict (``step`` and ``progress``).
    cancel : threading.Event

    Returns
    -------
    dict
        The job's result (plain data).

    Raises
    ------
    JobCancelled
        When ``cancel`` was set.
    JobError, ValueError, OSError, ImportError
        For problems the user can fix; the message says what.
    """
    try:
        job = JOBS[snapshot.kind]
    except KeyError:
        raise JobError(f"unknown job kind {snapshot.kind!r}") from None
    return job(snapshot, engine=EngineAPI(engine), report=report, cancel=cancel)


# --------------------------------------------------------------------------------------
# the worker process


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


if __name__ == "__main__":
    main()
