"""Guided patch synthesis: the operation at the heart of Ebsynth.

:func:`synthesize` carries the look of a style exemplar onto a target, steered
by guide channels, by coarse-to-fine PatchMatch search and voting.
"""

from dataclasses import dataclass
import numbers

import numpy as np

from . import kernels
from .pyramid import auto_levels, level_shape, resize

__all__ = ["synthesize", "SynthResult", "Schedule"]

#: Ebsynth's defaults, used when synthesizing from scratch.
COLD_SEARCH_VOTE_ITERS = 6
COLD_PATCHMATCH_ITERS = 4
#: The finest levels of a cold start begin from an upsampled NNF that is
#: already close, and iterate less.
FINE_LEVELS = 2
FINE_SEARCH_VOTE_ITERS = 2
FINE_PATCHMATCH_ITERS = 2
#: Warm starts begin this many levels above the finest, and iterate less.
WARM_RESTART_LEVELS = 0
WARM_SEARCH_VOTE_ITERS = 1
WARM_PATCHMATCH_ITERS = 1
#: Below the coarsest level the NNF comes from the level above, so random
#: search only has to correct it locally.
FINE_SEARCH_RADIUS = 8
#: A warm start's NNF is off by about the motion left after advection.
WARM_SEARCH_RADIUS = 4
#: A pixel whose voted colour moved less than this (0..255) is frozen.
STOP_THRESHOLD = 2.0
#: Largest weight (and uniformity) accepted: weighted SSDs stay finite in float32.
MAX_WEIGHT = 1e9


@dataclass(frozen=True)
class SynthResult:
    """Output of :func:`synthesize`.

    Attributes
    ----------
    image : ndarray (Ht, Wt, Cs)
        The synthesized target style, same dtype as the style exemplar.
    nnf : ndarray (Ht, Wt, 2) int32
        For each target pixel, the centre ``(x, y)`` of its source patch.
    error : ndarray (Ht, Wt) float32
        Weighted patch SSD (guides and style, 0..255 units) of the final NNF.
    """

    image: np.ndarray
    nnf: np.ndarray
    error: np.ndarray


@dataclass(frozen=True)
class Schedule:
    """Per-level iteration counts, coarsest level first."""

    start_level: int
    levels: int
    search_vote_iters: tuple
    patchmatch_iters: tuple


def synthesize(style, source_guides, target_guides, *, guide_weights, style_weight=1.0,
               patch_size=5, pyramid_levels=None, search_vote_iters=None,
               patchmatch_iters=None, uniformity=3500.0, extra_pass_3x3=False,
               init_nnf=None, vote="plain", vote_radius=None, seed=0, reuse=None):
    """Synthesize the target's style from an exemplar, guided by paired guides.

    Parameters
    ----------
    style : ndarray (Hs, Ws, Cs), uint8 or float32 in 0..255
        The style exemplar, e.g. a stylized keyframe.
    source_guides, target_guides : sequence of ndarray
        Guide ``i`` is the pair ``(source_guides[i], target_guides[i])``. Source
        guides are (Hs, Ws, C_i), target guides (Ht, Wt, C_i); uint8 or float32
        in 0..255; any channel count. Source and target may differ in size.
    guide_weights : sequence of float
        One non-negative weight per guide (at most 1e9), split evenly over its channels.
    style_weight : float
        Weight of the style term, split evenly over the style channels. It
        compares the exemplar with the current estimate of the target.
    patch_size : int
        Odd patch width, at least 3.
    pyramid_levels : int, optional
        Number of coarse-to-fine levels; by default as many as fit
        (the coarsest level's short side stays at least ``2 * patch_size + 1``).
    search_vote_iters, patchmatch_iters : int, optional
        Search/vote iterations per level, and PatchMatch sweeps per search.
        From scratch they default to the reference's 6 and 4 on the coarse
        levels and 2 and 2 on the two finest (see :func:`make_schedule`). With
        ``init_nnf`` the default is a warm schedule (see Notes). An explicit
        value applies to every level run and overrides either schedule.
    uniformity : float
        Weight of the occurrence term that spreads the use of source patches
        evenly (StyLit's Omega). On the scale of the SSD in 0..255 units;
        3500 is the reference's default; 0 disables it.
    extra_pass_3x3 : bool
        Finish with a pass of 3x3 patches and no uniformity, for finer detail.
    init_nnf : ndarray (Ht, Wt, 2) int, optional
        A starting NNF at full target resolution, e.g. the previous frame's
        match advected by optical flow. Coordinates are source patch centres
        ``(x, y)``; they are clamped into the source.
    vote : {"plain", "weighted"}
        Plain averaging of overlapping patches, or weighting each patch by
        ``1 / (1 + error / (patch_size^2 * Cs))``.
    vote_radius : int, optional
        Votes for a pixel come from the matches of all target pixels within
        this many pixels (Chebyshev); a match is extended past its own patch
        where the window is larger than the patch. Default ``patch_size // 2 + 1``:
        one ring more than the patch, so that each pixel takes the consensus of
        more matches. Use ``patch_size // 2`` for the classic vote.
    seed : int
        Seed of the explicit random state. The output is identical for the
        same seed, on any number of threads.
    reuse : dict, optional
        A dict of the caller's, empty at first, passed again with every call
        that has the same ``style`` and ``source_guides`` (the same array
        objects, unchanged), e.g. each frame of a propagation pass. The
        source side (checks, weighted and padded feature rows) is prepared
        once into it instead of on every call; the output is the same. Given
        other array objects it starts afresh.

    Returns
    -------
    SynthResult
        ``image``, ``nnf`` and the per-pixel patch ``error`` of the final NNF.

    Raises
    ------
    ValueError
        For inputs of the wrong type, dtype, shape, size or value.

    Notes
    -----
    The patch error is the weighted SSD over style and guide channels. Each
    level runs ``search_vote_iters`` times: ``patchmatch_iters`` PatchMatch
    sweeps (propagation and random search, alternating scan direction) then a
    vote that re-estimates the target style. The NNF is upsampled between
    levels. Pixels whose voted colour stopped changing are frozen, and below
    the coarsest level random search is capped to a local window: the NNF
    from the coarser level is already close.

    A warm start works on the finest level only, from ``init_nnf``: one
    search of one sweep with random search within 4 pixels, whose error
    ignores the style term (the style estimate voted from a stale NNF would
    pull the matches back towards it), then the vote. That costs about a
    quarter of a synthesis from scratch.

    References
    ----------
    .. [1] Jamriška et al., "Stylizing Video by Example", ACM TOG 38(4), 2019.
    .. [2] Fišer et al., "StyLit: Illumination-Guided Example-Based
           Stylization of 3D Renderings", ACM TOG 35(4), 2016.
    .. [3] Barnes et al., "PatchMatch: A Randomized Correspondence Algorithm
           for Structural Image Editing", ACM TOG 28(3), 2009.
    """
    if reuse is not None and not isinstance(reuse, dict):
        raise ValueError(f"reuse must be a dict, got {type(reuse).__name__}")
    sources = (style, *source_guides) if hasattr(source_guides, "__len__") else None
    known = (reuse is not None and sources is not None and len(reuse.get("sources", ())) == len(sources)
             and all(a is b for a, b in zip(reuse["sources"], sources)))
    if known:
        style = reuse["style"]
        source_guides, target_guides = _check_guides(style, reuse["source_guides"], target_guides,
                                                     check_sources=False)
    else:
        style = _check_image(style, "style")
        source_guides, target_guides = _check_guides(style, source_guides, target_guides)
        if reuse is not None:
            reuse.clear()
            reuse.update(sources=sources, style=style, source_guides=source_guides)
    prepared = reuse if reuse is not None else {}
    weights = _check_weights(guide_weights, len(source_guides))
    style_weight = _check_nonneg_float(style_weight, "style_weight")
    uniformity = _check_nonneg_float(uniformity, "uniformity")
    patch_size = _check_patch_size(patch_size)
    if vote not in ("plain", "weighted"):
        raise ValueError(f"vote must be 'plain' or 'weighted', got {vote!r}")
    vote_radius = patch_size // 2 + 1 if vote_radius is None else _check_int(vote_radius, "vote_radius", lo=0)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    source_hw = style.shape[:2]
    target_hw = target_guides[0].shape[:2]
    for name, hw in (("style", source_hw), ("target guides", target_hw)):
        if min(hw) < patch_size:
            raise ValueError(
                f"{name} is {hw[0]}x{hw[1]} pixels, smaller than a {patch_size}x{patch_size} patch")
    max_levels = auto_levels(source_hw, target_hw, patch_size)
    if pyramid_levels is None:
        levels = max_levels
    else:
        levels = _check_int(pyramid_levels, "pyramid_levels", lo=1)
        if levels > max_levels:
            raise ValueError(
                f"pyramid_levels={levels} is too many for these sizes: at most {max_levels} "
                f"keep the coarsest level larger than the patch")
    if init_nnf is not None:
        init_nnf = _check_init_nnf(init_nnf, target_hw)
    schedule = make_schedule(levels, warm=init_nnf is not None,
                             search_vote_iters=search_vote_iters,
                             patchmatch_iters=patchmatch_iters)
    rng = np.random.Generator(np.random.PCG64(seed))

    channel_weights = [style_weight / style.shape[2]] * style.shape[2]
    for w, g in zip(weights, source_guides):
        channel_weights += [w / g.shape[2]] * g.shape[2]
    sqrt_w = np.sqrt(np.asarray(channel_weights, np.float32))

    def source_parts(s_hw):
        """Style and source guides at size ``s_hw``: a list of (H, W, C_i) arrays, style first.

        At full size they go as they are (uint8 or float32) into the padded source
        rows, without first being copied into one float32 array (at 1080p that
        copy alone is 100 MB, made by both passes as they start). Below full size
        they are one float32 array, resized from the full-size one; made only
        when a level's source rows are not prepared yet.
        """
        if tuple(s_hw) == tuple(source_hw):
            return [style] + list(source_guides)
        level = prepared.get(("src", s_hw))
        if level is None:
            full = made.get("full")
            if full is None:
                full = made["full"] = np.concatenate(
                    [style.astype(np.float32)] + [g.astype(np.float32) for g in source_guides], axis=2)
            level = prepared.setdefault(("src", s_hw), resize(full, s_hw))
        return [level]

    made = {}  # the full-size source features, for this call only

    def target_guides_at(t_hw):
        # At full size the guides go as they are (uint8 or float32) into the padded rows, without
        # first being copied into one float32 array; below it they are resized one by one (INTER_AREA
        # treats every channel alone, so this is the resize of their concatenation).
        if t_hw == tuple(target_hw):
            return target_guides
        return [resize(g.astype(np.float32), t_hw) for g in target_guides]

    nnf = None
    image = None
    for level in range(schedule.start_level, levels):
        s_hw = level_shape(source_hw, levels, level)
        t_hw = level_shape(target_hw, levels, level)
        if nnf is None:
            if init_nnf is not None:
                nnf = _downsample_nnf(init_nnf, t_hw, s_hw, source_hw)
            else:
                nnf = _random_nnf(rng, t_hw, s_hw)
        else:
            nnf = kernels.upsample_nnf(nnf, t_hw[0], t_hw[1], s_hw[0], s_hw[1])
        if init_nnf is not None:
            radius_cap = WARM_SEARCH_RADIUS
        elif level == schedule.start_level:
            radius_cap = max(s_hw)
        else:
            radius_cap = FINE_SEARCH_RADIUS
        image, nnf, error = _run_level(
            lambda s_hw=s_hw: source_parts(s_hw), s_hw, target_guides_at(t_hw), style.shape[2], sqrt_w,
            nnf, patch_size, uniformity,
            schedule.search_vote_iters[level], schedule.patchmatch_iters[level],
            radius_cap, vote == "weighted", vote_radius, rng,
            guides_only_first=init_nnf is not None and level == schedule.start_level, prepared=prepared)

    if extra_pass_3x3:
        image, nnf, error = _run_level(
            lambda: source_parts(tuple(source_hw)), tuple(source_hw), target_guides, style.shape[2], sqrt_w,
            nnf, 3, 0.0,
            2, schedule.patchmatch_iters[-1], FINE_SEARCH_RADIUS, vote == "weighted",
            max(1, 1 + vote_radius - patch_size // 2), rng, prepared=prepared)

    if style.dtype == np.uint8:
        # In place: two 1080p float32 temporaries fewer, the same values.
        np.rint(image, out=image)
        image = np.clip(image, 0, 255, out=image).astype(np.uint8)
    else:
        # A float32 average of values in 0..255 can round a hair outside it
        # (255.00002), which synthesize itself would then refuse as an input.
        np.clip(image, 0.0, 255.0, out=image)
    return SynthResult(image=image, nnf=nnf, error=error)


def make_schedule(levels, *, warm, search_vote_iters=None, patchmatch_iters=None):
    """Iterations per level for a cold or warm start; explicit counts override.

    From scratch the coarse levels, which cost little, get the reference's
    6 x 4 iterations; the two finest levels, which start from an upsampled
    NNF that is already close, get 2 x 2 (more do not raise quality). A warm
    start runs only the finest level (``WARM_RESTART_LEVELS`` above it), 1 x 1.
    """
    if warm:
        start = max(0, levels - 1 - WARM_RESTART_LEVELS)
        sv = [WARM_SEARCH_VOTE_ITERS] * levels
        pm = [WARM_PATCHMATCH_ITERS] * levels
    else:
        start = 0
        sv = [COLD_SEARCH_VOTE_ITERS] * levels
        pm = [COLD_PATCHMATCH_ITERS] * levels
        for level in range(max(1, levels - FINE_LEVELS), levels):
            sv[level] = FINE_SEARCH_VOTE_ITERS
            pm[level] = FINE_PATCHMATCH_ITERS
    if search_vote_iters is not None:
        sv = [_check_int(search_vote_iters, "search_vote_iters", lo=1)] * levels
    if patchmatch_iters is not None:
        pm = [_check_int(patchmatch_iters, "patchmatch_iters", lo=0)] * levels
    return Schedule(start_level=start, levels=levels,
                    search_vote_iters=tuple(sv), patchmatch_iters=tuple(pm))


class _Features:
    """Source and padded target feature rows of one level (see ``kernels``).

    ``source`` is a callable giving the source features as a list of (Hs, Ws,
    C_i) arrays, uint8 or float32, whose channels are those of ``sqrt_w`` in
    order (only called when the source rows are not prepared yet);
    ``tgt_guides`` a list of (Ht, Wt, C_i) target guides, written one by one
    into the padded target rows after the style channels. Both sets of rows
    hold every value times its channel's ``sqrt_w``, edge-padded.
    """

    def __init__(self, source, s_hw, t_hw, tgt_guides, n_style, sqrt_w, patch, prepared, name):
        r = patch // 2
        hs, ws = s_hw
        ht, wt = t_hw
        channels = len(sqrt_w)
        self.channels = channels
        self.patch = patch
        # The source rows depend only on the source, the weights and the patch:
        # prepared once per ``reuse`` dict (see synthesize).
        key = ("features", name, (hs, ws), patch, sqrt_w.tobytes())
        self.src = prepared.get(key)
        if self.src is None:
            self.src = prepared[key] = _padded_rows(source(), sqrt_w, (hs, ws), patch)
        # Every value of the target rows is written below or by set_style before use, so a
        # ``reuse`` dict keeps the buffer for the next frame: at 1080p it is 75 MB, which
        # fresh from the system would be page faults on every frame. One buffer serves every
        # name of a level (the guides-only rows, then the full ones, or the style's): a level
        # uses them one after the other, never together, and at 1080p this keeps 50 MB a pass less.
        shape = (ht + 2 * r, (wt + 2 * r) * channels)
        rows_key = ("target rows", (ht, wt), patch)
        buffer = prepared.get(rows_key)
        if buffer is None or buffer.size < shape[0] * shape[1]:
            buffer = prepared[rows_key] = np.empty(shape[0] * shape[1], np.float32)
        self.tgt = buffer[:shape[0] * shape[1]].reshape(shape)
        _write_rows(tgt_guides, sqrt_w, self.tgt, n_style, patch)
        # Every style channel takes the style weight (sqrt_w[0]), in sqrt_w's dtype.
        self.style_scales = np.full(n_style, sqrt_w[0], sqrt_w.dtype) if n_style else None

    def set_style(self, image):
        if self.style_scales is not None:
            kernels.write_padded(_read_only(image), self.style_scales, self.tgt, self.channels, 0, self.patch)


def _write_rows(parts, sqrt_w, rows, offset, patch):
    """Write ``parts`` (H, W, C_i), times their channels' ``sqrt_w``, into padded ``rows`` from channel ``offset``."""
    channels = len(sqrt_w)
    for part in parts:
        c = part.shape[2]
        kernels.write_padded(_read_only(part), np.ascontiguousarray(sqrt_w[offset:offset + c]), rows, channels,
                             offset, patch)
        offset += c


def _read_only(array):
    """A read-only view of ``array``.

    numba compiles a kernel once per argument type, and whether an array is
    writable is part of its type: decoded frames are read-only
    (``engine.frame_source``), styles and float guides are not. Always
    read-only, ``write_padded`` compiles once per dtype, which spares a cold
    start one compile (about 1 s).
    """
    view = array.view()
    view.flags.writeable = False
    return view


def _padded_rows(parts, sqrt_w, hw, patch):
    """New padded feature rows (see ``kernels``) holding ``parts`` times ``sqrt_w``: ``np.pad(.., "edge")``'s values."""
    r = patch // 2
    rows = np.empty((hw[0] + 2 * r, (hw[1] + 2 * r) * len(sqrt_w)), np.float32)
    _write_rows(parts, sqrt_w, rows, 0, patch)
    return rows


def _run_level(source, s_hw, tgt_guides, n_style, sqrt_w, nnf, patch, uniformity,
               n_search_vote, n_patchmatch, radius_cap, weighted, vote_radius, rng,
               guides_only_first=False, prepared=None):
    """Search/vote iterations on one pyramid level. Returns (image, nnf, error).

    ``source()`` gives the level's source features (see :class:`_Features`),
    ``tgt_guides`` is the list of the level's target guides. With
    ``guides_only_first`` the first search ignores the style term: on a warm
    start the style estimate comes from a stale NNF and would pull the matches
    back towards it.
    """
    hs, ws = s_hw
    ht, wt = t_hw = tgt_guides[0].shape[:2]
    style_src = prepared.get(("style_src", hs, ws))
    if style_src is None:
        style_src = prepared[("style_src", hs, ws)] = np.ascontiguousarray(source()[0][:, :, :n_style],
                                                                           dtype=np.float32)
    full = None
    omega_best = (ht * wt) / float(hs * ws) * patch * patch
    occ_scale = np.float32(uniformity / (patch * patch * omega_best))
    radii = _search_radii(min(radius_cap, max(hs, ws)))
    err = np.empty((ht, wt), np.float32)
    occ = np.zeros((hs, ws), np.int32)
    everywhere = np.ones((ht, wt), np.uint8)
    active = everywhere
    changed = np.zeros((ht, wt), np.uint8)
    image = np.empty((ht, wt, n_style), np.float32)
    if not guides_only_first:
        kernels.vote(style_src, nnf, vote_radius, patch, err, False, everywhere, image)
    for it in range(n_search_vote):
        guides_only = it == 0 and guides_only_first
        if guides_only:
            feats = _Features(lambda: _drop_channels(source(), n_style), s_hw, t_hw, tgt_guides, 0, sqrt_w[n_style:], patch,
                              prepared, "guides")
        else:
            if full is None:
                full = _Features(source, s_hw, t_hw, tgt_guides, n_style, sqrt_w, patch, prepared, "full")
            feats = full
            feats.set_style(image)
        # Frozen pixels are skipped by the search, so their error is not needed.
        kernels.nnf_error(feats.src, feats.tgt, nnf, patch, feats.channels, active, err)
        moved = np.zeros((ht, wt), np.uint8)
        for sweep in range(n_patchmatch):
            if uniformity > 0:
                kernels.occupancy(nnf, hs, ws, patch, occ)
            snapshot = nnf.copy()
            kernels.patchmatch_sweep(feats.src, feats.tgt, patch, feats.channels, nnf, snapshot,
                                     err, occ, occ_scale, radii, int(rng.integers(0, 2 ** 31)),
                                     sweep % 2 == 0, active, changed)
            moved |= changed
        if guides_only:
            kernels.vote(style_src, nnf, vote_radius, patch, err, weighted, everywhere, image)
            active = everywhere
            continue
        # Only votes within reach of a changed match can differ.
        revote = kernels.dilate(moved, vote_radius)
        new_image = image.copy()
        kernels.vote(style_src, nnf, vote_radius, patch, err, weighted, revote, new_image)
        active = kernels.changed_mask(image, new_image, np.float32(STOP_THRESHOLD), revote, patch // 2)
        image = new_image
        if not active.any():
            break
    if full is None:
        # Only a guides-only search ran: its errors are exact for the guides,
        # so add just the style term against the final image.
        style_only = _Features(lambda: [style_src], s_hw, t_hw, [], n_style, sqrt_w[:n_style], patch, prepared, "style")
        style_only.set_style(image)
        style_err = np.empty_like(err)
        kernels.nnf_error(style_only.src, style_only.tgt, nnf, patch, n_style, everywhere, style_err)
        return image, nnf, err + style_err
    full.set_style(image)
    kernels.nnf_error(full.src, full.tgt, nnf, patch, full.channels, everywhere, err)
    return image, nnf, err


def _drop_channels(parts, count):
    """``parts`` (a list of (H, W, C_i) arrays) without their first ``count`` channels."""
    kept = []
    for part in parts:
        c = part.shape[2]
        if count >= c:
            count -= c
            continue
        kept.append(part[:, :, count:])
        count = 0
    return kept


def _search_radii(max_radius):
    radii = []
    rad = 1
    while rad < max_radius:
        radii.append(rad)
        rad *= 2
    radii.append(max(1, int(max_radius)))
    return np.asarray(radii, np.int32)


def _random_nnf(rng, t_hw, s_hw):
    nnf = np.empty(t_hw + (2,), np.int32)
    nnf[:, :, 0] = rng.integers(0, s_hw[1], size=t_hw)
    nnf[:, :, 1] = rng.integers(0, s_hw[0], size=t_hw)
    return nnf


def _downsample_nnf(init_nnf, t_hw, s_hw, source_full_hw):
    """Nearest-sample a full-resolution NNF down to one level, rescaling coordinates."""
    full_h, full_w = init_nnf.shape[:2]
    if tuple(t_hw) == (full_h, full_w) and tuple(s_hw) == tuple(source_full_hw):
        # The finest level (every warm start): sampling and scaling are the identity, and
        # floor(x * s / s) is x for these integers, so only the clamp is left. At 1080p this
        # spares four float64 copies of the field.
        nnf = np.empty(t_hw + (2,), np.int32)
        np.clip(init_nnf[:, :, 0], 0, s_hw[1] - 1, out=nnf[:, :, 0], casting="unsafe")
        np.clip(init_nnf[:, :, 1], 0, s_hw[0] - 1, out=nnf[:, :, 1], casting="unsafe")
        return nnf
    ys = np.minimum((np.arange(t_hw[0]) * full_h) // t_hw[0], full_h - 1)
    xs = np.minimum((np.arange(t_hw[1]) * full_w) // t_hw[1], full_w - 1)
    picked = init_nnf[ys][:, xs].astype(np.float64)
    nnf = np.empty(t_hw + (2,), np.int32)
    nnf[:, :, 0] = np.clip(np.floor(picked[:, :, 0] * s_hw[1] / source_full_hw[1]), 0, s_hw[1] - 1)
    nnf[:, :, 1] = np.clip(np.floor(picked[:, :, 1] * s_hw[0] / source_full_hw[0]), 0, s_hw[0] - 1)
    return nnf


# ---------------------------------------------------------------------------
# Input checks


def _check_image(image, name):
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.dtype not in (np.uint8, np.float32):
        raise ValueError(f"{name} must be uint8 or float32 in 0..255, got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"{name} must be an HxWxC array, got shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"{name} is empty (shape {image.shape})")
    if image.dtype == np.float32:
        if not np.isfinite(image).all():
            raise ValueError(f"{name} contains NaN or inf")
        lo, hi = float(image.min()), float(image.max())
        if lo < 0.0 or hi > 255.0:
            raise ValueError(f"{name} must lie in 0..255, got values in {lo:g}..{hi:g}")
    return image


def _check_guides(style, source_guides, target_guides, *, check_sources=True):
    for name, guides in (("source_guides", source_guides), ("target_guides", target_guides)):
        if isinstance(guides, np.ndarray) or not hasattr(guides, "__len__"):
            raise ValueError(f"{name} must be a list of HxWxC arrays, one per guide")
    if len(source_guides) != len(target_guides):
        raise ValueError(
            f"{len(source_guides)} source guides but {len(target_guides)} target guides: "
            f"each guide is a (source, target) pair")
    if len(source_guides) == 0:
        raise ValueError("at least one guide is needed")
    src_out, tgt_out = [], []
    target_hw = None
    for i, (s, t) in enumerate(zip(source_guides, target_guides)):
        if check_sources:
            s = _check_image(s, f"source_guides[{i}]")
        t = _check_image(t, f"target_guides[{i}]")
        if s.shape[:2] != style.shape[:2]:
            raise ValueError(
                f"source_guides[{i}] is {s.shape[0]}x{s.shape[1]} but style is "
                f"{style.shape[0]}x{style.shape[1]}: source guides must match the style's size")
        if target_hw is None:
            target_hw = t.shape[:2]
        elif t.shape[:2] != target_hw:
            raise ValueError(
                f"target_guides[{i}] is {t.shape[0]}x{t.shape[1]} but target_guides[0] is "
                f"{target_hw[0]}x{target_hw[1]}: all target guides must have one size")
        if s.shape[2] != t.shape[2]:
            raise ValueError(
                f"guide {i} has {s.shape[2]} source channels but {t.shape[2]} target channels")
        src_out.append(s)
        tgt_out.append(t)
    return src_out, tgt_out


def _check_weights(weights, n_guides):
    if isinstance(weights, (str, bytes)) or not hasattr(weights, "__len__"):
        raise ValueError("guide_weights must be a sequence of numbers, one per guide")
    if len(weights) != n_guides:
        raise ValueError(f"{len(weights)} guide_weights for {n_guides} guides: give one weight per guide")
    return [_check_nonneg_float(w, f"guide_weights[{i}]") for i, w in enumerate(weights)]


def _check_nonneg_float(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {value}")
    if value > MAX_WEIGHT:
        # Larger values overflow the float32 patch distances to inf/NaN.
        raise ValueError(f"{name} must be at most {MAX_WEIGHT:g}, got {value:g}")
    return value


def _check_int(value, name, *, lo):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < lo:
        raise ValueError(f"{name} must be at least {lo}, got {value}")
    if value > 10_000:
        raise ValueError(f"{name}={value} is unreasonably large")
    return int(value)


def _check_patch_size(patch_size):
    patch_size = _check_int(patch_size, "patch_size", lo=3)
    if patch_size % 2 == 0:
        raise ValueError(f"patch_size must be odd, got {patch_size}")
    return patch_size


def _check_init_nnf(init_nnf, target_hw):
    if not isinstance(init_nnf, np.ndarray) or init_nnf.dtype.kind not in "iu":
        raise ValueError("init_nnf must be an integer array of shape (Ht, Wt, 2)")
    if init_nnf.shape != tuple(target_hw) + (2,):
        raise ValueError(
            f"init_nnf has shape {init_nnf.shape}, expected {tuple(target_hw) + (2,)} (the target's size)")
    return init_nnf
