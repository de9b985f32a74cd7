"""Where two passes are blended and a span is finished: blend, smooth along the flow, restore detail."""

from collections import deque
from concurrent.futures import ThreadPoolExecutor
import contextlib
import itertools

import numpy as np

from .state import load_sealed, save_state

__all__ = ["blend_frame", "blend_span", "finish_span"]

#: Memory the finishing of a span may keep its intermediates in (beyond it, the work folder).
FINISH_MEMORY_BYTES = 128 << 20


def _to_uint8(blended):
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _blends_alone(ctx, span):
    """Whether each frame of ``span`` blends its passes on its own (not ``"poisson"``, whose choice is chained)."""
    return span.kind == "between" and ctx.settings.blend in ("weighted", "crossfade")


def blend_frame(ctx, span, work, n):
    """Frame ``n``'s two passes blended, uint8 (``"weighted"`` and ``"crossfade"``: no frame depends on another).

    Runs on worker threads, so it does not ask ``ctx.check_cancel()``: a farm's cancel answers
    only on the task's thread, whose loop asks it for every frame.
    """
    from . import blend

    f = load_sealed(work / f"fwd_{n}.npz")
    b = load_sealed(work / f"bwd_{n}.npz")
    position = (n - span.key_a) / float(span.key_b - span.key_a)
    if ctx.settings.blend == "crossfade":
        return _to_uint8(blend.crossfade(f["image"], b["image"], position))
    return _to_uint8(blend.weighted_blend(f["image"], f["error"], b["image"], b["error"], position=position))


def blend_span(ctx, span, work):
    """Blend the passes of a ``"poisson"`` span, frame by frame in backward order, into ``pass_N.npz``.

    Each frame's choice of pass follows the next frame's along the flow, so the frames go one after another.
    """
    from . import blend

    choice = None
    previous = span.key_b
    lo, hi = span.key_a, span.key_b
    for n in reversed(span.frames):
        ctx.check_cancel()
        f = load_sealed(work / f"fwd_{n}.npz")
        b = load_sealed(work / f"bwd_{n}.npz")
        position = (n - lo) / float(hi - lo)
        to_prev = ctx.flows(n, previous)[0] if choice is not None else None
        choice = blend.choose_passes(f["error"], b["error"], position=position, previous=choice,
                                     flow_to_previous=to_prev)
        save_state(work / f"pass_{n}.npz", image=_to_uint8(blend.blend_passes(f["image"], b["image"], choice)))
        previous = n


def _ahead(call, order, workers):
    """``(n, call(n))`` for ``n`` in ``order``, computed up to ``workers + 1`` frames ahead on ``workers`` threads."""
    if workers == 0:
        for n in order:
            yield n, call(n)
        return
    order = iter(order)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="karwai-blend") as pool:
        pending = deque((n, pool.submit(call, n)) for n in itertools.islice(order, workers + 1))
        try:
            while pending:
                n, future = pending.popleft()
                following = next(order, None)
                if following is not None:
                    pending.append((following, pool.submit(call, following)))
                yield n, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def finish_span(ctx, span, work, fp):
    """Blend the passes (between keys), smooth along the flow both ways, restore detail, write the frames.

    The recursive filter starts from the key at each end of the span that has
    one, so the frames next to a key follow it. Deterministic, and cheap next to
    the passes, so a resumed job simply runs it again over the whole span.
    """
    from .side_by_side import numba_threads, tail_workers

    h, w = ctx.source.size
    workers = tail_workers(h * w)
    # This thread's own kernels (the flow cache's float16 conversions) on one numba thread: the
    # blending and tail threads keep the other cores busy.
    with numba_threads(1) if workers else contextlib.nullcontext():
        _finish_span(ctx, span, work, fp, workers)


def _finish_span(ctx, span, work, fp, workers):
    from . import refine
    from .side_by_side import Tail

    settings = ctx.settings
    strength = float(settings.temporal_smoothing)
    frames = list(span.frames)
    # Each frame's detail energy (its half of detail restoration, 0.14 s of CPU a 1080p frame)
    # is computed by the blending threads, which the forward sweep leaves half idle, instead
    # of by the tail threads of the backward one.
    energies = {}
    if span.kind == "between" and not _blends_alone(ctx, span):
        blend_span(ctx, span, work)

    # What the forward sweep leaves for the backward one (the pass images and
    # the forward results) stays in memory while it fits in FINISH_MEMORY_BYTES,
    # and goes to the work folder beyond that: each is then read once, not twice.
    kept = {}
    kept_bytes = 0

    def keep(name, **arrays):
        nonlocal kept_bytes
        size = sum(a.nbytes for a in arrays.values())
        if kept_bytes + size <= FINISH_MEMORY_BYTES:
            kept[name] = arrays
            kept_bytes += size
        else:
            save_state(work / name, **arrays)

    def kept_or_load(name):
        return kept.pop(name, None) or load_sealed(work / name)

    def first_pass_images(order):
        """The pass images in the order of the first sweep; kept for the second when there is one.

        Blended here, on worker threads ahead of the sweep, where each frame blends alone
        (kept in memory, or in the work folder beyond FINISH_MEMORY_BYTES); read from the
        work folder otherwise (kept in memory, or read again).
        """
        nonlocal kept_bytes
        blended = _blends_alone(ctx, span)
        if blended:
            def blend_and_energy(n):
                if settings.restore_detail:
                    energies[n] = refine.detail_energy(ctx.source.read(n))
                return blend_frame(ctx, span, work, n)

            images = _ahead(blend_and_energy, order, workers)
        else:
            images = ((n, load_sealed(work / f"pass_{n}.npz")["image"]) for n in order)
        for n, image in images:
            name = f"pass_{n}.npz"
            if strength != 0.0:
                if kept_bytes + image.nbytes <= FINISH_MEMORY_BYTES:
                    kept[name] = {"image": image}
                    kept_bytes += image.nbytes
                elif blended:
                    save_state(work / name, image=image)
            yield n, image

    def smooth(n, image, neighbour, neighbour_image):
        if neighbour is None or strength == 0.0:
            return image.astype(np.float32)
        to_neighbour, from_neighbour = ctx.flows(n, neighbour)
        return refine.smoothing_step(image, neighbour_image, to_neighbour, from_neighbour, strength=strength)

    # Forward in time; the results wait (as float16) for the backward sweep.
    # Without smoothing both sweeps give the pass image itself: none is run.
    neighbour = span.key_a
    previous = None if neighbour is None else ctx.keys[neighbour]
    # closing(): a cancel or an error stops the blending threads at once.
    with contextlib.closing(first_pass_images(frames if strength != 0.0 else [])) as images:
        for n, image in images:
            ctx.check_cancel()
            previous = smooth(n, image, neighbour, previous)
            keep(f"smooth_{n}.npz", image=previous.astype(np.float16))
            neighbour = n

    ratios = {k: refine.detail_ratio(ctx.keys[k], ctx.source.read(k)) for k in (span.key_a, span.key_b)
              if k is not None and settings.restore_detail}

    def finish_frame(n, forward, following):
        if forward is None:
            image = following  # (x + x) / 2 in float32: the forward sweep's result, the pass image, exactly
        else:
            image = (forward.astype(np.float32) + following) * np.float32(0.5)
        if ratios:
            if len(ratios) == 2:
                t = (n - span.key_a) / float(span.key_b - span.key_a)
                ratio = (1.0 - t) * ratios[span.key_a] + t * ratios[span.key_b]
            else:
                (ratio,) = ratios.values()
            image = refine.restore_detail(image, ctx.source.read(n), ratio, frame_energy=energies.pop(n, None))
        ctx.write_output(n, np.clip(np.rint(image), 0, 255).astype(np.uint8), fp)
        ctx.report(f"frame {n}: finished")

    # The backward sweep feeds each frame's tail (detail, PNG, write) to worker threads.
    neighbour = span.key_b
    following = None if neighbour is None else ctx.keys[neighbour]
    if strength == 0.0:
        images = first_pass_images(list(reversed(frames)))
    else:
        images = ((n, kept_or_load(f"pass_{n}.npz")["image"]) for n in reversed(frames))
    with contextlib.closing(images), Tail(workers) as tail:
        for n, image in images:
            ctx.check_cancel()
            following = smooth(n, image, neighbour, following)
            neighbour = n
            forward = None if strength == 0.0 else kept_or_load(f"smooth_{n}.npz")["image"]
            tail.submit(finish_frame, n, forward, following)
