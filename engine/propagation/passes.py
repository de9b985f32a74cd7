"""Where a patch is matched: one pass carries a key's style from frame to frame.

A pass runs forward from the key before a span or backward from the key after
it. Each step synthesizes a frame with :func:`engine.synth.synthesize`, guided by
the frame's guides (:func:`engine.guides.frame_guides`: colour, edge, advected
positions, the previous output advected by optical flow) and warm started from
the previous frame's match advected by the same flow.
"""

import hashlib
import os
import threading
import time
import warnings

import numpy as np

from ..errors import Cancelled, FrameError
from ..files import write_bytes_atomic
from ..guides import advect_positions, apply_mask, frame_guides, guide_lists, keyframe_positions, temporal_guide
from ..images import encode_image
from .side_by_side import rebalance
from .state import DamagedState, load_sealed, load_state, save_state

__all__ = ["JobContext", "Pass", "run_pass"]

#: Longest time between two saves of a pass's state (see _single_pass).
STATE_SAVE_SECONDS = 10.0


class JobContext:
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
        self._done_lock = threading.Lock()
        self._write_lock = threading.Lock()

    def advance(self, units):
        """Count ``units`` of work done (the two passes of a span may run on two threads)."""
        with self._done_lock:
            self.done += units

    def check_cancel(self):
        """Raise Cancelled once the job is cancelled. Ask it on a task's own thread (or a pass's): a
        farm's cancel, a Dask Event, answers only on the thread Dask runs the task on."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("propagation cancelled; complete frames are kept and a re-run resumes")

    def report(self, message):
        if self.progress is not None:
            self.progress(self.done, self.total, message)

    def write_output(self, n, image, fp):
        """Write frame ``n``'s output, recording its fingerprint and digest first (write-ahead)."""
        if self.masks is not None:
            with self._write_lock:
                mask = self.masks.read(n)
            image = apply_mask(image[:, :, :3], mask)
        path = self.out / self.names[n]
        data = encode_image(path, image)
        digest = hashlib.sha256(data).hexdigest()
        with self._write_lock:  # frames may be written from several threads (see finish_span)
            if self.record is not None:  # a farm's tasks keep their outputs' digests in their task records
                self.record.note_frame(self.names[n], fp, digest)
                self.record.save()
            write_bytes_atomic(path, data)

    def flows(self, n, prev, *, split=True):
        """Flow from frame ``n`` to ``prev`` and back (one cache entry per ordered pair).

        ``split``: see :meth:`engine.flow.FlowCache.pair`.
        """
        a, b = (prev, n) if prev < n else (n, prev)
        fwd, bwd = self.flow_cache.pair(self.source.read(a), self.source.read(b), split=split)
        return (bwd, fwd) if prev < n else (fwd, bwd)

class Pass:
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
        self.synth_reuse = {}  # the key's side of the synthesis, prepared once per pass

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
        del from_prev  # 16 MB at 1080p, not needed past here: two passes may run side by side
        target = frame_guides(frame, positions=positions, temporal=temporal_guide(state["image"], to_prev),
                              key_size=self.style.shape[:2])
        source_guides, target_guides, weights = guide_lists(self.source_guides, target,
                                                            weights=ctx.settings.weights)
        result = synthesize(self.style, source_guides, target_guides, guide_weights=weights,
                            style_weight=ctx.settings.weights.style, init_nnf=_advect_nnf(state["nnf"], to_prev),
                            seed=_frame_seed(ctx.settings.seed, self.key_number, n), reuse=self.synth_reuse,
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
    one_pass = Pass(ctx, key)
    for attempt in range(2):
        counted = []  # what this pass added to ctx.done, taken back on a retry
        try:
            return _single_pass(ctx, one_pass, order, work, state_path, prefix=prefix, keep_error=between,
                                counted=counted)
        except DamagedState as exc:
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
            ctx.advance(-sum(counted))

def _single_pass(ctx, one_pass, order, work, state_path, *, prefix, keep_error, counted):
    state = load_state(state_path, order) or one_pass.initial_state()
    start = 0 if state["n"] == one_pass.key_number else order.index(state["n"]) + 1
    for n in order[:start]:
        load_sealed(work / f"{prefix}_{n}.npz")  # what the resume keeps must be intact
    ctx.advance(start)
    counted.append(start)
    # The state (several MB a frame, 39 MB at 1080p) is saved after the first
    # frame, then at most every STATE_SAVE_SECONDS, and when the pass stops
    # early (a cancel): a kill loses at most that much work, and a resume
    # recomputes the frames after the saved state to the same bytes. Not after
    # the last frame: the task's record, written next, says the pass is done.
    saved_at = None
    unsaved = False
    try:
        for n in order[start:]:
            rebalance()  # the threads of a pass beside this one that has ended
            result, state, _ = one_pass.step(state, n)
            arrays = {"image": result.image, "error": result.error} if keep_error else {"image": result.image}
            save_state(work / f"{prefix}_{n}.npz", **arrays)
            unsaved = True
            if saved_at is None or time.monotonic() - saved_at >= STATE_SAVE_SECONDS:
                save_state(state_path, **state)
                saved_at, unsaved = time.monotonic(), False
            ctx.advance(1)
            counted.append(1)
            ctx.report(f"frame {n}: pass from key {one_pass.key_number}")
    except BaseException:
        if unsaved:
            try:
                save_state(state_path, **state)
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
        raise
    return len(order) - start

def _advect_nnf(nnf, flow_to_prev):
    """The previous frame's match, moved along the flow onto this frame (nearest sample)."""
    from ..synth import kernels

    out = np.empty(nnf.shape, np.int32)
    kernels.advect_nnf(np.ascontiguousarray(nnf, np.int32), np.ascontiguousarray(flow_to_prev, np.float32), out)
    return out

def _frame_seed(seed, key_number, n):
    digest = hashlib.sha256(f"{seed}:{key_number}:{n}".encode()).digest()
    return int.from_bytes(digest[:4], "little")
