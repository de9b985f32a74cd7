"""Where two passes are blended and a span is finished: blend, smooth along the flow, restore detail."""

import numpy as np

from .state import load_sealed, save_state

__all__ = ["blend_span", "finish_span"]


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

    def pass_image(n):
        return load_sealed(work / f"pass_{n}.npz")["image"]

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
        save_state(work / f"smooth_{n}.npz", image=previous.astype(np.float16))
        neighbour = n

    ratios = {k: refine.detail_ratio(ctx.keys[k], ctx.source.read(k)) for k in (span.key_a, span.key_b)
              if k is not None and settings.restore_detail}
    neighbour = span.key_b
    following = None if neighbour is None else ctx.keys[neighbour]
    for n in reversed(frames):
        ctx.check_cancel()
        following = smooth(n, pass_image(n), neighbour, following)
        neighbour = n
        image = (load_sealed(work / f"smooth_{n}.npz")["image"].astype(np.float32) + following) * np.float32(0.5)
        if ratios:
            if len(ratios) == 2:
                t = (n - span.key_a) / float(span.key_b - span.key_a)
                ratio = (1.0 - t) * ratios[span.key_a] + t * ratios[span.key_b]
            else:
                (ratio,) = ratios.values()
            image = refine.restore_detail(image, ctx.source.read(n), ratio)
        ctx.write_output(n, np.clip(np.rint(image), 0, 255).astype(np.uint8), fp)
        ctx.report(f"frame {n}: finished")
