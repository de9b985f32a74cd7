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
"""

from dataclasses import dataclass
import hashlib
import io
import json
import os
from pathlib import Path
import shutil
import time
import warnings

import cv2
import numpy as np

from ..flow import FlowCache, warp
from ..frames import (FrameError, check_output_dir, open_frames, read_image, remove_stale_temp_files,
                      write_bytes_atomic, write_frame_atomic)
from ..guides import (GuideWeights, apply_mask, edge_guide, keyframe_positions, advect_positions,
                      open_masks, positional_guide, temporal_guide)
from ..stylizers._common import Cancelled
from .settings import JobSettings

# The synthesis (numba) and the blending are imported when first used,
# so that a user's error is reported without their import time.

__all__ = ["propagate", "PropagateResult", "Cancelled", "plan_spans", "Span"]

RECORD_NAME = ".karwai-job.json"
CACHE_NAME = ".karwai-cache"
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


def propagate(frames, keys, *, out, masks=None, quality="balanced", weights=None, blend_mode="weighted",
              key_fit="refuse", seed=0, progress=None, cancel=None, cache_dir=None, settings=None,
              keep_cache=False, cache_limit_mb=DEFAULT_CACHE_LIMIT_MB):
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
        Output folder; one PNG per frame, named like the input frames. It may
        not be the input folder nor lie inside it.
    masks : str or os.PathLike, optional
        Folder of per-frame masks (same numbering). Only the masked region takes
        the style; outside it the output is transparent (RGBA).
    quality : {"draft", "balanced", "best"}
        How much work is done per frame.
    weights : GuideWeights, optional
        Guide weights (colour 6, edge 0.5, positional 2, temporal 0.5, style 1).
    blend_mode : {"weighted", "poisson", "crossfade"}
        Blending of the two passes between keys (see :class:`JobSettings`);
        "crossfade" is the baseline.
    key_fit : {"refuse", "crop", "pad"}
    seed : int
    progress : callable, optional
        ``progress(done, total, message)``, called after every unit of work
        (a pass over one frame).
    cancel : threading.Event, optional
        Checked before every frame; when set, :class:`Cancelled` is raised and
        only complete frames are left on disk. A re-run resumes.
    cache_dir : str or os.PathLike, optional
        Flow cache and pass states (default ``OUT/.karwai-cache``).
    settings : JobSettings, optional
        All settings at once; overrides ``quality``, ``weights``, ``blend_mode``,
        ``key_fit`` and ``seed``.
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

    Returns
    -------
    PropagateResult

    Raises
    ------
    ValueError (FrameError)
        For bad frames, keys, masks, settings or output folder; the message
        names the file or parameter.
    Cancelled
        When ``cancel`` was set.
    """
    t_start = time.perf_counter()
    if settings is None:
        settings = JobSettings(quality=quality, weights=weights or GuideWeights(), blend=blend_mode,
                               key_fit=key_fit, seed=seed)
    max_bytes = _cache_limit_bytes(cache_limit_mb)
    source = frames if hasattr(frames, "frame_numbers") else open_frames(frames)
    source_path = Path(getattr(source, "path", frames)) if not hasattr(frames, "frame_numbers") else None
    source.validate()
    out = check_output_dir(out, source_path)
    if progress is not None and not callable(progress):
        raise ValueError("progress must be callable")
    if cancel is not None and not hasattr(cancel, "is_set"):
        raise ValueError("cancel must be a threading.Event (or have is_set())")
    h, w = source.size
    key_styles = _load_keys(keys, source, settings.key_fit)
    mask_source = open_masks(masks, size=(h, w), frame_numbers=source.frame_numbers) if masks else None

    cache = Path(cache_dir) if cache_dir is not None else out / CACHE_NAME
    remove_stale_temp_files(out)
    flow_cache = FlowCache(cache / "flow", params=settings.flow_params, max_bytes=max_bytes)
    record = _Record(out / RECORD_NAME)
    identity = _source_identity(source)
    key_hashes = {n: hashlib.sha256(img.tobytes() + str(img.shape).encode()).hexdigest()
                  for n, img in key_styles.items()}
    spans = plan_spans(source.frame_numbers, key_styles)
    total = sum(len(s.frames) * (2 if s.kind == "between" else 1) for s in spans)
    ctx = _Context(source=source, flow_cache=flow_cache, settings=settings, keys=key_styles,
                   masks=mask_source, out=out, cancel=cancel, progress=progress, total=total)

    job_fp = _hash(settings.fingerprint(), _path_identity(masks) if masks else "no masks")
    # Keys first: their output is the key itself.
    for n, style in key_styles.items():
        fp = _hash("key", job_fp, key_hashes[n], identity.get(n, ""))
        path = out / source.name_for(n)
        if record.spans.get(f"key-{n}") != fp or not path.exists():
            ctx.write_output(n, style)
            record.spans[f"key-{n}"] = fp
            record.save()
    computed = skipped = 0
    for span in spans:
        fp = _hash(span.name, job_fp, key_hashes.get(span.key_a, ""),
                   key_hashes.get(span.key_b, ""), *(f"{n}:{identity.get(n, '')}" for n in span.frames))
        outputs = [out / source.name_for(n) for n in span.frames]
        if record.spans.get(span.name) == fp and all(p.exists() for p in outputs):
            skipped += len(span.frames)
            ctx.done += len(span.frames) * (2 if span.kind == "between" else 1)
            ctx.report(f"kept {span.name} from an earlier run")
            continue
        work = cache / "work" / fp[:24]
        work.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(work)
        record.spans.pop(span.name, None)
        record.save()
        computed += _run_span(ctx, span, work)
        record.spans[span.name] = fp
        record.save()
        shutil.rmtree(work, ignore_errors=True)
    record.settings = settings.as_dict()
    record.save()
    shutil.rmtree(cache / "work", ignore_errors=True)
    if not keep_cache:
        flow_cache.clear()
        try:
            cache.rmdir()  # only when empty: a user's --cache-dir may hold other files
        except OSError:
            pass
    paths = [out / source.name_for(n) for n in source.frame_numbers]
    return PropagateResult(frames=paths, out=out, computed=computed, skipped=skipped,
                           seconds=time.perf_counter() - t_start)


class _Context:
    def __init__(self, *, source, flow_cache, settings, keys, masks, out, cancel, progress, total):
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

    def write_output(self, n, image):
        if self.masks is not None:
            image = apply_mask(image[:, :, :3], self.masks.read(n))
        write_frame_atomic(self.out / self.source.name_for(n), image)

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
        weights = ctx.settings.weights
        self.style = style
        self.source_guides = [key_frame, edge_guide(key_frame),
                              _positional(keyframe_positions(h, w), (h, w)), style]
        self.weights = [weights.colour, weights.edge, weights.positional, weights.temporal]

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
        temporal = temporal_guide(state["image"], to_prev)
        target_guides = [frame, edge_guide(frame), _positional(positions, self.style.shape[:2]), temporal]
        result = synthesize(self.style, self.source_guides, target_guides, guide_weights=self.weights,
                            style_weight=ctx.settings.weights.style, init_nnf=_advect_nnf(state["nnf"], to_prev),
                            seed=_frame_seed(ctx.settings.seed, self.key_number, n),
                            **ctx.settings.synth_params)
        new_state = {"n": n, "image": result.image, "nnf": result.nnf, "positions": positions}
        return result, new_state, to_prev


def _run_span(ctx, span, work):
    """Compute and write one span's frames, resuming from ``work`` states."""
    if span.kind == "before":
        computed = _single_pass(ctx, _Pass(ctx, span.key_b), list(reversed(span.frames)), work,
                                work / "bwd_state.npz")
    elif span.kind == "after":
        computed = _single_pass(ctx, _Pass(ctx, span.key_a), list(span.frames), work, work / "fwd_state.npz")
    else:
        computed = _between_keys(ctx, span, work)
    _finish_span(ctx, span, work)
    return computed


def _between_keys(ctx, span, work):
    """Both passes between two keys, blended; the results go to ``work``."""

    from . import blend

    # Between two keys: forward pass first, its results kept on disk ...
    fwd = _Pass(ctx, span.key_a)
    fwd_state_path = work / "fwd_state.npz"
    state = _load_state(fwd_state_path, span.frames) or fwd.initial_state()
    done_fwd = 0 if state["n"] == span.key_a else span.frames.index(state["n"]) + 1
    ctx.done += done_fwd
    for n in span.frames[done_fwd:]:
        result, state, _ = fwd.step(state, n)
        _save(work / f"fwd_{n}.npz", image=result.image, error=result.error)
        _save(fwd_state_path, **state)
        ctx.done += 1
        ctx.report(f"frame {n}: forward pass from key {span.key_a}")

    # ... then the backward pass, blending each frame as it comes.
    bwd = _Pass(ctx, span.key_b)
    order = list(reversed(span.frames))
    bwd_state_path = work / "bwd_state.npz"
    state = _load_state(bwd_state_path, span.frames) or bwd.initial_state()
    start = 0 if state["n"] == span.key_b else order.index(state["n"]) + 1
    choice = state.get("choice")
    ctx.done += start
    computed = 0
    lo, hi = span.key_a, span.key_b
    for n in order[start:]:
        result, state, to_prev = bwd.step(state, n)
        with np.load(work / f"fwd_{n}.npz") as f:
            fwd_image, fwd_error = f["image"], f["error"]
        position = (n - lo) / float(hi - lo)
        if ctx.settings.blend == "crossfade":
            blended = blend.crossfade(fwd_image, result.image, position)
        elif ctx.settings.blend == "weighted":
            blended = blend.weighted_blend(fwd_image, fwd_error, result.image, result.error, position=position)
        else:
            choice = blend.choose_passes(fwd_error, result.error, position=position, previous=choice,
                                         flow_to_previous=to_prev if choice is not None else None)
            blended = blend.blend_passes(fwd_image, result.image, choice)
        image = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        _save(work / f"pass_{n}.npz", image=image)
        if choice is not None:
            state["choice"] = choice
        _save(bwd_state_path, **state)
        computed += 1
        ctx.done += 1
        ctx.report(f"frame {n}: backward pass from key {span.key_b}, blended")
    return computed


def _single_pass(ctx, one_pass, order, work, state_path):
    state = _load_state(state_path, order) or one_pass.initial_state()
    start = 0 if state["n"] == one_pass.key_number else order.index(state["n"]) + 1
    ctx.done += start
    for n in order[start:]:
        result, state, _ = one_pass.step(state, n)
        _save(work / f"pass_{n}.npz", image=result.image)
        _save(state_path, **state)
        ctx.done += 1
        ctx.report(f"frame {n}: from key {one_pass.key_number}")
    return len(order) - start


def _finish_span(ctx, span, work):
    """Smooth a span's pass results along the flow both ways, restore their detail, write them.

    The recursive filter starts from the key at each end of the span that has
    one, so the frames next to a key follow it. Deterministic, and cheap next to
    the passes, so a resumed job simply runs it again over the whole span.
    """
    from . import refine

    settings = ctx.settings
    strength = float(settings.temporal_smoothing)
    frames = list(span.frames)

    def pass_image(n):
        with np.load(work / f"pass_{n}.npz") as data:
            return data["image"]

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
        with np.load(work / f"smooth_{n}.npz") as data:
            image = (data["image"].astype(np.float32) + following) * np.float32(0.5)
        if ratios:
            if len(ratios) == 2:
                t = (n - span.key_a) / float(span.key_b - span.key_a)
                ratio = (1.0 - t) * ratios[span.key_a] + t * ratios[span.key_b]
            else:
                (ratio,) = ratios.values()
            image = refine.restore_detail(image, ctx.source.read(n), ratio)
        ctx.write_output(n, np.clip(np.rint(image), 0, 255).astype(np.uint8))
        ctx.report(f"frame {n}: finished")


# ---------------------------------------------------------------------------
# Helpers


def _positional(positions, key_hw):
    # Positions advected from outside the keyframe would leave 0..255.
    return np.clip(positional_guide(positions, size=key_hw), 0.0, 255.0)


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


def _save(path, **arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    write_bytes_atomic(path, buffer.getbuffer())


def _load_state(path, frames):
    """A pass's saved state, or None when there is none usable."""
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            state = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError):
        return None
    state["n"] = int(state["n"])
    if state["n"] not in frames:
        return None
    return state


def _path_identity(path):
    """One string that changes when the file, or any file in the folder, does (for the masks)."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    entries = []
    for file in files:
        st = file.stat()
        entries.append(f"{file.name}:{st.st_size}:{st.st_mtime_ns}")
    return _hash(*entries)


def _source_identity(source):
    """Per-frame identity of the source files, so a changed frame invalidates its span."""
    identity = {}
    path_for = getattr(source, "path_for", None)
    if path_for is not None:
        for n in source.frame_numbers:
            st = os.stat(path_for(n))
            identity[n] = f"{path_for(n).name}:{st.st_size}:{st.st_mtime_ns}"
    else:
        st = os.stat(source.path)
        for n in source.frame_numbers:
            identity[n] = f"{Path(source.path).name}:{st.st_size}:{st.st_mtime_ns}:{n}"
    return identity


def _load_keys(keys, source, key_fit):
    if not isinstance(keys, dict):
        raise ValueError("keys must be a dict {frame_number: image or path}")
    if not keys:
        raise ValueError("keys: at least one keyframe is needed")
    h, w = source.size
    styles = {}
    for n, key in keys.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise ValueError(f"keys: frame number {n!r} is not an integer")
        n = int(n)
        if n not in source:
            if source.first < n < source.last:
                raise ValueError(f"keys: frame {n} is not in the clip: no frame is numbered {n} "
                                 f"(a gap in the numbering of frames {source.first}..{source.last})")
            raise ValueError(f"keys: frame {n} is outside the clip (frames {source.first}..{source.last})")
        if isinstance(key, (str, os.PathLike)):
            what = str(key)
            image = read_image(key, alpha=True)
        elif isinstance(key, np.ndarray):
            what = f"key for frame {n}"
            image = key
        else:
            raise ValueError(f"keys[{n}] must be an image array or a path, got {type(key).__name__}")
        styles[n] = _fit_key(image, (h, w), key_fit, what)
    # One channel layout for all keys: RGBA if any key carries transparency.
    if any(s.shape[2] == 4 and (s[:, :, 3] < 255).any() for s in styles.values()):
        styles = {n: s if s.shape[2] == 4 else np.dstack([s, np.full(s.shape[:2], 255, np.uint8)])
                  for n, s in styles.items()}
    else:
        styles = {n: np.ascontiguousarray(s[:, :, :3]) for n, s in styles.items()}
    return dict(sorted(styles.items()))


def _fit_key(image, hw, key_fit, what):
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.dtype != np.uint8:
        raise ValueError(f"{what}: keyframe must be 8- or 16-bit, got {image.dtype}")
    if image.ndim == 2:
        image = np.dstack([image] * 3)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"{what}: keyframe must be RGB or RGBA, got shape {image.shape}")
    h, w = hw
    kh, kw = image.shape[:2]
    if kh == 0 or kw == 0:
        raise ValueError(f"{what}: keyframe is empty ({kw}x{kh} pixels)")
    if (kh, kw) == (h, w):
        return image
    aspect_error = abs((kw / kh) / (w / h) - 1.0)
    if aspect_error > 0.01 and key_fit == "refuse":
        raise ValueError(
            f"{what}: keyframe is {kw}x{kh} but the frames are {w}x{h}, a different aspect ratio; "
            f"set key_fit to 'crop' or 'pad' to fit it anyway")
    if aspect_error <= 0.01:
        warnings.warn(f"{what}: keyframe is {kw}x{kh}, resized to the frames' {w}x{h}", stacklevel=3)
        interp = cv2.INTER_AREA if kw > w else cv2.INTER_CUBIC
        return cv2.resize(image, (w, h), interpolation=interp)
    from ..stylizers.painted import fit_image

    warnings.warn(f"{what}: keyframe is {kw}x{kh}, fitted to {w}x{h} by {key_fit}", stacklevel=3)
    rgb = image[:, :, :3].astype(np.float32)
    alpha = image[:, :, 3].astype(np.float32) if image.shape[2] == 4 else None
    fitted, coverage = fit_image(rgb, alpha, (h, w), fit=key_fit)[:2]
    fitted = np.clip(np.rint(fitted), 0, 255).astype(np.uint8)
    if alpha is None and key_fit == "crop":
        return fitted
    return np.dstack([fitted, np.clip(np.rint(coverage * 255.0), 0, 255).astype(np.uint8)])


class _Record:
    """The job record beside the output: settings and finished-span fingerprints."""

    def __init__(self, path):
        self.path = path
        self.spans = {}
        self.settings = None
        if path.exists():
            try:
                data = json.loads(path.read_text())
                self.spans = dict(data.get("spans", {}))
                self.settings = data.get("settings")
            except (OSError, ValueError):
                self.spans = {}

    def save(self):
        blob = json.dumps({"format": 1, "settings": self.settings, "spans": self.spans}, indent=1)
        write_bytes_atomic(self.path, blob.encode())
