"""Keyframes that agree: stylize several keys of one shot so that they match along the motion.

Stylized one by one, optimised keys disagree: each optimisation lands in
another local optimum, so a propagated video "changes a lot" at every key.
Here the first key (the anchor) is stylized as usual; every further key is
started from the result of its neighbour towards the anchor, warped onto it by
the optical flow chained frame to frame, and optimised with a temporal loss
towards that warped result wherever the flow is consistent (Ruder et al.,
"Artistic style transfer for videos", GCPR 2016, applied to keys instead of
neighbouring frames).
"""

from __future__ import annotations

import numpy as np

from ._common import check_bool, check_callable, check_cancel, check_float
from .temporal import ClipFlows, key_disagreement, open_source, temporal_target

__all__ = ["stylize_keys", "stylize_key", "follows_neighbour", "key_order", "key_disagreement", "DEFAULT_KEY_TEMPORAL_WEIGHT",
           "CONSISTENT_METHODS"]

#: Methods whose keys are made to agree (the optimising ones).
CONSISTENT_METHODS = ("neural", "deepdream")
#: Weight of the temporal loss towards the warped neighbouring key (see ``temporal_weight``).
DEFAULT_KEY_TEMPORAL_WEIGHT = 1000.0
#: Deep Dream: share of the gap to the warped neighbouring key closed after every step.
_DREAM_PULL = 0.5


def key_order(numbers, anchor=None):
    """The order in which keys are stylized, and the key each one follows.

    Parameters
    ----------
    numbers : iterable of int
        The key frame numbers.
    anchor : int, optional
        The key stylized first, on its own; default the first along the timeline.

    Returns
    -------
    list of (int, int or None)
        ``(key, reference)``: the anchor first (reference ``None``), then the keys
        after it along the timeline, each following the one before it, then the
        keys before it, backwards, each following the one after it.
    """
    keys = sorted(set(numbers))
    if not keys:
        raise ValueError("numbers: at least one key is needed")
    if anchor is None:
        anchor = keys[0]
    if anchor not in keys:
        raise ValueError(f"anchor: frame {anchor} is not one of the keys {keys}")
    i = keys.index(anchor)
    order = [(anchor, None)]
    order += [(keys[j], keys[j - 1]) for j in range(i + 1, len(keys))]
    order += [(keys[j], keys[j + 1]) for j in range(i - 1, -1, -1)]
    return order


def _check_numbers(numbers, source):
    try:
        numbers = list(numbers)
    except TypeError:
        raise ValueError("numbers must be a sequence of frame numbers") from None
    if not numbers:
        raise ValueError("numbers: at least one key is needed")
    seen = set()
    for n in numbers:
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            raise ValueError(f"numbers: frame number {n!r} is not an integer")
        if int(n) in seen:
            raise ValueError(f"numbers: frame {int(n)} is given twice")
        seen.add(int(n))
        if int(n) not in source:
            raise ValueError(f"numbers: frame {int(n)} is not in the clip "
                             f"(frames {source.first}..{source.last})")
    return sorted(seen)


def stylize_keys(frames, numbers, *, method, style_image=None, consistent=True, anchor=None,
                 temporal_weight=DEFAULT_KEY_TEMPORAL_WEIGHT, progress=None, cancel=None, **params):
    """Stylize several keyframes of a shot so that they agree with one another.

    Parameters
    ----------
    frames : str, os.PathLike or frame source
        The clip: an image-sequence folder, a video file, or a source from
        :func:`engine.frames.open_frames`. The frames between the keys are read
        for the optical flow.
    numbers : iterable of int
        The keys' frame numbers.
    method : str
        A method of :func:`engine.stylize`. Only ``"neural"`` and
        ``"deepdream"`` optimise, and only they are made consistent; the others
        give the same image for a frame whatever its neighbours, and each key is
        stylized on its own.
    style_image : str, os.PathLike or numpy.ndarray, optional
        The artwork (``"neural"``) or painted picture (``"image"``).
    consistent : bool
        Make the keys agree (the default). ``False`` stylizes each key on its
        own, as :func:`engine.stylize` does.
    anchor : int, optional
        The key stylized first; the others follow it outwards along the
        timeline. Default: the first key.
    temporal_weight : float
        ``"neural"``: weight of the temporal loss ``sum(c (x - w)^2) / (3 H W)``
        towards the warped neighbouring key (``w``), where the flow is
        consistent (``c``). The other losses are relative errors near 1, so the
        default 1000 holds a pixel within a few levels of the warped key where
        the motion is known, and leaves occluded and newly visible areas to
        the style. ``"deepdream"``: any value above 0 pulls each step halfway
        back towards the warped key where the flow is consistent.
    progress : callable, optional
        ``progress(done, total, message)``; ``done`` counts keys (fractions
        within an optimising key).
    cancel : callable or threading.Event, optional
        Polled before every iteration; :class:`~engine.stylizers.Cancelled` is raised.
    **params
        The method's parameters (:func:`engine.stylizers.method_params`).

    Returns
    -------
    dict
        ``{number: HxWx3 uint8 image}`` (``HxWx4`` for ``"image"`` with alpha).

    Raises
    ------
    ValueError
        For bad numbers, anchor or parameters (the message names it).
    """
    from . import _check_method

    _check_method(method)
    consistent = check_bool("consistent", consistent)
    temporal_weight = check_float("temporal_weight", temporal_weight, minimum=0.0)
    check_callable("progress", progress)
    check_callable("cancel", cancel)
    source = open_source(frames)
    keys = _check_numbers(numbers, source)
    order = key_order(keys, anchor)
    if style_image is not None:
        params["style_image"] = style_image
    total = len(order)
    results = {}
    follows = follows_neighbour(method, consistent=consistent, temporal_weight=temporal_weight, keys=len(order))
    flows = ClipFlows(source) if follows else None
    for i, (n, ref) in enumerate(order):
        check_cancel(cancel)
        message = f"key {n}" + ("" if ref is None or not follows else f", following key {ref}")

        def step(k, steps, loss=None, i=i, message=message):
            if progress is not None:
                progress(i + k / max(steps, 1), total, f"{message}: iteration {k}/{steps}")

        results[n] = stylize_key(source, n, method=method, reference=None if ref is None or not follows else (ref, results[ref]),
                                 flows=flows, temporal_weight=temporal_weight, progress=step, cancel=cancel,
                                 params=params)
        if progress is not None:
            progress(i + 1, total, f"stylized key {n}")
    return {n: results[n] for n in keys}


def follows_neighbour(method, *, consistent, temporal_weight, keys):
    """Whether keys of ``method`` follow their neighbour towards the anchor (else each is stylized alone)."""
    return bool(consistent) and method in CONSISTENT_METHODS and keys > 1 and temporal_weight > 0


def stylize_key(source, n, *, method, reference=None, flows=None, temporal_weight=DEFAULT_KEY_TEMPORAL_WEIGHT,
                progress=None, cancel=None, params):
    """Stylize key ``n`` alone, or following ``reference = (number, stylized image)``.

    One step of :func:`stylize_keys`, also run as one task of a farm plan
    (:mod:`engine.propagation.stylized_keys`). ``flows`` is the clip's
    :class:`~engine.stylizers.temporal.ClipFlows` (made here when needed);
    ``params`` the method's checked parameters, ``style_image`` among them.
    """
    from . import stylize

    frame = np.array(source.read(n))
    if reference is None:
        return stylize(frame, method=method, progress=progress, cancel=cancel, **params)
    ref, ref_image = reference
    flows = flows if flows is not None else ClipFlows(source)
    to_ref, from_ref = flows.chained(n, ref)
    warped, weight = temporal_target(ref_image[:, :, :3], to_ref, from_ref)
    return _follow(frame, warped, weight, method=method, temporal_weight=temporal_weight, progress=progress,
                   cancel=cancel, params=params)


def _follow(frame, warped, valid, *, method, temporal_weight, progress, cancel, params):
    """Stylize ``frame`` started from, and held towards, the warped neighbouring key."""
    p = dict(params)
    style_image = p.pop("style_image", None)
    weights = p.pop("weights", None)
    device = p.pop("device", "auto")
    warped01 = warped / np.float32(255.0)
    # Started from the warped neighbour everywhere (Ruder et al.'s "prevWarped"): starting from
    # the frame where the flow is not trusted leaves scattered raw pixels that never agree.
    init = warped01
    if method == "neural":
        from . import neural

        checked = neural.check_params(progress=progress, cancel=cancel, **p)
        if style_image is None:
            raise ValueError("parameter 'style_image' is required for method 'neural'")
        return neural.optimise(frame, style_image=style_image, params=checked, weights=weights,
                               device=device, init=init, anchors=[(warped01, valid, temporal_weight)])
    from . import deepdream

    return deepdream.stylize_deepdream(frame, weights=weights, device=device, progress=progress,
                                       cancel=cancel, _init=init, _anchor=(warped01, valid, _DREAM_PULL),
                                       **p)
