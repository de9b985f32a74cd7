"""Where two passes are blended and a span is finished: blend, smooth along the flow, restore detail."""

import numpy as np

from .state import load_sealed, save_state

__all__ = ["blend_span", "finish_span"]

#: Memory the finishing of a span may keep its intermediates in (beyond it, the work folder).
FINISH_MEMORY_BYTES = 128 << 20


def blend_span(ctx, span, work):
    """Blend the two passes between keys, frame by frame in backward order, into ``pass_N.npz``."""
    from . import blend

    choice = None
    previous = span.key_b
    lo, hi = span.key_a, span.key_b
    for n in reversed(span.frames):
        ctx.check_cancel()
        f = load_sealed(work / f"fwd_{n}.npz")
        b = load_sealed(work / f"bwd_{n}.npz")
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
        save_state(work / f"pass_{n}.npz", image=np.clip(np.rint(blended), 0, 255).astype(np.uint8))
        previous = n

def finish_span(ctx, span, work, fp):
    """Blend the passes (between keys), smooth along the flow both ways, restore detail, write the frames.

    The recursive filter starts from the key at each end of the span that has
    one, so the frames next to a key follow it. Deterministic, and cheap next to
    the passes, so a resumed job simply runs it again over the whole span.
    """
    from . import refine

    if span.kind == "between":
        blend_span(ctx, span, work)
    settings = ctx.settings
    strength = float(settings.temporal_smoothing)
    frames = list(span.frames)

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

    def pass_image(n, first):
        nonlocal kept_bytes
        name = f"pass_{n}.npz"
        if not first:
            return kept_or_load(name)["image"]
        image = load_sealed(work / name)["image"]
        if strength != 0.0 and kept_bytes + image.nbytes <= FINISH_MEMORY_BYTES:
            kept[name] = {"image": image}  # on disk already: kept in memory or not at all
            kept_bytes += image.nbytes
        return image

    def smooth(n, image, neighbour, neighbour_image):
        if neighbour is None or strength == 0.0:
            return image.astype(np.float32)
        to_neighbour, from_neighbour = ctx.flows(n, neighbour)
        return refine.smoothing_step(image, neighbour_image, to_neighbour, from_neighbour, strength=strength)

    # Forward in time; the results wait (as float16) for the backward sweep.
    # Without smoothing both sweeps give the pass image itself: none is run.
    neighbour = span.key_a
    previous = None if neighbour is None else ctx.keys[neighbour]
    for n in frames if strength != 0.0 else ():
        ctx.check_cancel()
        previous = smooth(n, pass_image(n, True), neighbour, previous)
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
            image = refine.restore_detail(image, ctx.source.read(n), ratio)
        ctx.write_output(n, np.clip(np.rint(image), 0, 255).astype(np.uint8), fp)
        ctx.report(f"frame {n}: finished")

    # The backward sweep feeds each frame's tail (detail, PNG, write) to worker threads.
    from .side_by_side import Tail, tail_workers

    neighbour = span.key_b
    following = None if neighbour is None else ctx.keys[neighbour]
    h, w = ctx.source.size
    with Tail(tail_workers(h * w)) as tail:
        for n in reversed(frames):
            ctx.check_cancel()
            following = smooth(n, pass_image(n, strength == 0.0), neighbour, following)
            neighbour = n
            forward = None if strength == 0.0 else kept_or_load(f"smooth_{n}.npz")["image"]
            tail.submit(finish_frame, n, forward, following)
