"""The jobs: stylize keys, propagate, stylize a whole strip, suggest keys; on plain data, no ``bpy``.

Each job asks the engine for everything that touches pixels or media: clips are
made by :mod:`engine.clips`, frames are read and written by the engine, thread
counts are set by :func:`engine.threads.set_threads`. What stays here is the
job's own bookkeeping: which keys to stylize, the result folder swapped in only
when the whole job succeeded.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
import secrets
import shutil

from .engine_api import EngineAPI
from .model import (FARM_DIR, OLD_SUFFIX, STAGING_SUFFIX, USER_ERRORS, JobCancelled, JobError, frames_dir,
                    keys_dir)


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


def _plan(clip):
    """A ClipPlan as the engine's plain clip plan (None stays None)."""
    return None if clip is None else clip.to_json()


def _file_stamp(path):
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def _check(cancel):
    if cancel is not None and cancel.is_set():
        raise JobCancelled("cancelled")


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
        clip = engine.clips.prepare_clip(_plan(snapshot.clip), snapshot.cache_dir, progress=report.progress,
                                         cancel=cancel)
        for group in groups:
            _check(cancel)
            results += _stylize_group(snapshot, group, clip, len(results), count, engine=engine,
                                      report=report, cancel=cancel)
    offset = len(results)
    reader = engine.clips.ClipReader(_plan(snapshot.clip))
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
    engine.set_threads(int(snapshot.threads))
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


def _staging(snapshot):
    """``(final, staging)``: the job's result folder (put back if a swap stopped half-way) and
    its staging folder, seeded from it."""
    final = frames_dir(snapshot.out_dir)
    staging = final + STAGING_SUFFIX
    os.makedirs(snapshot.out_dir, exist_ok=True)
    _recover_frames(final)
    _seed_staging(final, staging)
    return final, staging


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


def _finish_frames(snapshot, result, staging, final, *, report, keys):
    """Swap the engine's finished frames in for ``frames/`` and map each scene frame to its file."""
    report.step("Finishing")
    numbers = sorted(f.number for f in snapshot.clip.frames)
    written = [Path(p).name for p in result.frames]
    if len(written) != len(numbers):
        raise JobError(f"the engine wrote {len(written)} frames for {len(numbers)} source frames")
    name_of = dict(zip(numbers, written))
    _swap_in(staging, final)
    files = [[f.timeline, name_of[f.number]] for f in snapshot.clip.frames]
    report.progress(1, 1, "done")
    return {"frames_dir": final, "files": files, "keys": keys}


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
    engine.set_threads(int(snapshot.threads))

    report.step("Reading frames")
    # A farm's workers must see the frames the plan reads: they go beside the output
    # (next to the .blend file by default), not into this computer's cache.
    clip_cache = os.path.join(snapshot.out_dir, FARM_DIR) if snapshot.farm_plan else snapshot.cache_dir
    clip = engine.clips.prepare_clip(_plan(snapshot.clip), clip_cache, progress=report.progress, cancel=cancel)
    masks = engine.clips.prepare_masks(_plan(snapshot.mask), _plan(snapshot.clip), clip_cache, cancel=cancel)
    stylized = []
    if to_stylize:
        report.step("Stylizing keys")
        stylized = _stylize_keys(snapshot, to_stylize, engine=engine, report=report,
                                 cancel=cancel)
        failed = [k for k in stylized if k["error"]]
        if failed:
            raise JobError("; ".join(f"key at frame {k['timeline']}: {k['error']}" for k in failed))

    report.step("Propagating")
    final, staging = _staging(snapshot)
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

    return _finish_frames(snapshot, result, staging, final, report=report, keys=stylized)


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
    engine.set_threads(int(snapshot.threads))
    report.step("Reading frames")
    clip = engine.clips.prepare_clip(_plan(snapshot.clip), snapshot.cache_dir, progress=report.progress, cancel=cancel)
    masks = engine.clips.prepare_masks(_plan(snapshot.mask), _plan(snapshot.clip), snapshot.cache_dir, cancel=cancel)
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
        stamp = _file_stamp(snapshot.video_style_image)
        blob = json.dumps([stamp, snapshot.video_params, _plan(snapshot.clip)], sort_keys=True)
        folder = os.path.join(snapshot.out_dir, "networks")
        os.makedirs(folder, exist_ok=True)
        params["model"] = os.path.join(
            folder, f"fast-network-{hashlib.sha256(blob.encode()).hexdigest()[:16]}.pt")

    report.step("Stylizing frames")
    final, staging = _staging(snapshot)
    try:
        result = engine.stylize_video(clip, method=method, style_image=snapshot.video_style_image,
                                      out=staging, masks=masks, progress=report.progress,
                                      cancel=cancel, **params)
    except engine.cancelled_types:
        raise JobCancelled("cancelled") from None
    _check(cancel)

    return _finish_frames(snapshot, result, staging, final, report=report, keys=[])


def run_suggest(snapshot, *, engine, report, cancel):
    """Propose keyframes for the strip's visible frames."""
    report = _Reporter(report, ["Reading frames", "Analysing motion"])
    engine.set_threads(int(snapshot.threads))
    report.step("Reading frames")
    clip = engine.clips.prepare_clip(_plan(snapshot.clip), snapshot.cache_dir, progress=report.progress, cancel=cancel)
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
    engine = EngineAPI(engine)
    try:
        return job(snapshot, engine=engine, report=report, cancel=cancel)
    except engine.cancelled_types as exc:  # the engine's Cancelled (making a clip, a key...)
        if isinstance(exc, JobCancelled):
            raise
        raise JobCancelled("cancelled") from None
