"""Numba kernels of guided patch synthesis.

Every kernel here is private: :mod:`engine.synth` checks inputs and calls them.
Each has a plain-numpy twin in ``tests/test_synth_kernels.py``.

Layout conventions shared by all kernels
-----------------------------------------
* ``src``, ``tgt``: source and target features, float32 ``(H + 2r, (W + 2r) * C)``:
  the image padded by ``r = patch // 2`` pixels of edge replication on each side,
  one row per image row, the ``C`` channels of a pixel contiguous. Pixel ``(y, x)``
  has its patch's top-left corner at padded row ``y``, padded column ``x``, so no
  patch needs bounds checks and every pixel, borders included, can be matched to
  itself. Channels are pre-multiplied by the square root of their weight, so the
  weighted SSD is a plain SSD.
* ``nnf``: int32 ``(Ht, Wt, 2)`` holding the source patch centre ``(x, y)`` of
  every target pixel, always inside the source image.
* The first ``Cs`` channels of ``src``/``tgt`` are the style; the rest are guides.

Parallelism: the target is cut into horizontal tiles of a fixed height that does
not depend on the thread count. A thread owns whole tiles and writes only their
rows; a neighbour in another tile is read from a snapshot taken before the sweep.
The random numbers are a hash of pixel, sweep seed and draw index. Together this
makes the result identical for any number of threads.
"""

import numpy as np
from numba import config, njit, prange, uint64

# Flat offsets are cast to unsigned: with signed ones numba checks every index
# for wraparound, which stops LLVM from vectorizing the SSD loop (5x slower).
# Under NUMBA_DISABLE_JIT the kernels run as Python, where numpy's uint64
# would turn into float64 when mixed with signed integers, so use int there.
_uidx = int if config.DISABLE_JIT else uint64

TILE_HEIGHT = 16

#: LLVM's fast-math flags less ``nnan`` and ``ninf``: reassociation lets the SSD
#: loops vectorize, while the bounds the search compares against may be infinite
#: or huge without that being undefined behaviour (numba's ``fastmath=True`` would
#: add both). Every kernel also releases the GIL (``nogil``): none holds a Python
#: object, so a job thread does not stall the interpreter that drives it.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(cache=True, nogil=True, inline="always")
def _hash32(a):
    # Robert Jenkins' 32-bit integer mix, on int64 kept in 32 bits.
    a = (a ^ 61) ^ (a >> 16)
    a = (a + (a << 3)) & 0xFFFFFFFF
    a = a ^ (a >> 4)
    a = (a * 0x27D4EB2D) & 0xFFFFFFFF
    a = a ^ (a >> 15)
    return a


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def _patch_ssd(src, tgt, ty, tx, sx, sy, patch, channels, bound):
    """SSD between target patch at (tx, ty) and source patch centred at (sx, sy).

    ``src`` and ``tgt`` are the 2-D feature rows. Stops early, returning a
    partial sum, once the sum passes ``bound``.
    """
    return _patch_ssd_flat(src.reshape(src.size), tgt.reshape(tgt.size), _uidx(src.shape[1]),
                           _uidx(tgt.shape[1]), ty, tx, sx, sy, patch, channels, bound)


@njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def _patch_ssd_flat(src_flat, tgt_flat, s_stride, t_stride, ty, tx, sx, sy, patch, channels, bound):
    """:func:`_patch_ssd` on flat views made once by the caller, not once per candidate."""
    length = _uidx(patch * channels)
    t0 = _uidx(ty) * t_stride + _uidx(tx * channels)
    s0 = _uidx(sy) * s_stride + _uidx(sx * channels)
    err = np.float32(0.0)
    for _ in range(patch):
        acc = np.float32(0.0)
        for k in range(length):
            d = tgt_flat[t0 + k] - src_flat[s0 + k]
            acc += d * d
        err += acc
        if err > bound:
            return err
        t0 += t_stride
        s0 += s_stride
    return err


@njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def nnf_error(src, tgt, nnf, patch, channels, region, out):
    """Patch error under ``nnf`` of the target pixels where ``region`` is set.

    Writes ``out`` (Ht, Wt) there and leaves it alone elsewhere.
    """
    ht, wt = nnf.shape[0], nnf.shape[1]
    no_bound = np.float32(np.finfo(np.float32).max)
    src_flat, tgt_flat = src.reshape(src.size), tgt.reshape(tgt.size)
    s_stride, t_stride = _uidx(src.shape[1]), _uidx(tgt.shape[1])
    for y in prange(ht):
        for x in range(wt):
            if region[y, x]:
                out[y, x] = _patch_ssd_flat(src_flat, tgt_flat, s_stride, t_stride, y, x, nnf[y, x, 0],
                                            nnf[y, x, 1], patch, channels, no_bound)


@njit(cache=True, nogil=True)
def occupancy(nnf, src_h, src_w, patch, out):
    """Omega of StyLit: how many target patches cover each source pixel.

    ``out`` (Hs, Ws) int32 receives, for every source *centre*, the sum of the
    coverage counts over the patch around it: the quantity the uniformity term
    compares against its ideal value.
    """
    r = patch // 2
    centre_count = np.zeros((src_h, src_w), np.int32)
    for y in range(nnf.shape[0]):
        for x in range(nnf.shape[1]):
            centre_count[nnf[y, x, 1], nnf[y, x, 0]] += 1
    cover = np.empty((src_h, src_w), np.int32)
    _box_sum(centre_count, r, cover)
    _box_sum(cover, r, out)


@njit(cache=True, nogil=True)
def _box_sum(a, r, out):
    """``out`` = the sum over the (2r+1)^2 window around each pixel of ``a``, zero outside.

    Scalar loops only: NumPy array expressions here (``acc += rows[y]``,
    ``out[:, :] = ...``) made numba compile its broadcasting and error-message
    code, 5 of a cold compile's 25 s. Integer sums: the same values either way.
    """
    h, w = a.shape
    rows = np.empty((h, w), np.int32)
    for y in range(h):
        acc = 0
        for x in range(min(r, w)):
            acc += a[y, x]
        for x in range(w):
            if x + r < w:
                acc += a[y, x + r]
            rows[y, x] = acc
            if x - r >= 0:
                acc -= a[y, x - r]
    # The columns' running sums advance a whole row at a time: row-major reads, not a walk
    # down each column (at 1080p, 30 times slower than this for 9 times 640x360's pixels).
    col = np.zeros(w, np.int32)
    for y in range(min(r, h)):
        for x in range(w):
            col[x] += rows[y, x]
    for y in range(h):
        if y + r < h:
            for x in range(w):
                col[x] += rows[y + r, x]
        for x in range(w):
            out[y, x] = col[x]
        if y - r >= 0:
            for x in range(w):
                col[x] -= rows[y - r, x]


@njit(cache=True, nogil=True, inline="always")
def _try_candidate(src, tgt, y, x, cx, cy, patch, channels, nnf, err, cost, occ, occ_scale):
    # src, tgt: (flat view, row stride) pairs made once per sweep.
    new_occ = occ[cy, cx] * occ_scale
    bound = cost[0] - new_occ
    if bound <= 0.0:
        return False
    e = _patch_ssd_flat(src[0], tgt[0], src[1], tgt[1], y, x, cx, cy, patch, channels, bound)
    if e < bound:
        nnf[y, x, 0] = cx
        nnf[y, x, 1] = cy
        err[y, x] = e
        cost[0] = e + new_occ
        return True
    return False


@njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def patchmatch_sweep(src, tgt, patch, channels, nnf, nnf_snapshot, err, occ, occ_scale,
                     radii, sweep_seed, forward, active, changed):
    """One PatchMatch sweep: propagation from two neighbours, then random search.

    Parameters (all arrays are modified in place where noted)
    ----------
    nnf, err : current field and its patch errors, updated in place.
    nnf_snapshot : copy of ``nnf`` from before the sweep, read for neighbours
        that lie in another tile.
    occ : int32 (Hs, Ws) patch occupancy from :func:`occupancy`; ``occ_scale``
        turns it into the uniformity cost (``lambda / (patch^2 * omega_best)``).
    radii : int32 array of random-search radii, smallest first.
    forward : scan direction; sweeps alternate so information flows both ways.
    active : uint8 (Ht, Wt); pixels with 0 are frozen and skipped.
    changed : uint8 (Ht, Wt) output, 1 where the match changed in this sweep.
    """
    ht, wt = nnf.shape[0], nnf.shape[1]
    r = patch // 2
    hs = src.shape[0] - 2 * r
    ws = src.shape[1] // channels - 2 * r
    n_tiles = (ht + TILE_HEIGHT - 1) // TILE_HEIGHT
    q = 1 if forward else -1
    cost = np.empty(1, np.float32)
    src_rows = (src.reshape(src.size), _uidx(src.shape[1]))
    tgt_rows = (tgt.reshape(tgt.size), _uidx(tgt.shape[1]))
    for tile in prange(n_tiles):
        cost = np.empty(1, np.float32)
        y_lo = tile * TILE_HEIGHT
        y_hi = min(ht, y_lo + TILE_HEIGHT)
        for iy in range(y_hi - y_lo):
            y = y_lo + iy if forward else y_hi - 1 - iy
            for ix in range(wt):
                x = ix if forward else wt - 1 - ix
                changed[y, x] = 0
                if active[y, x] == 0:
                    continue
                x0 = nnf[y, x, 0]
                y0 = nnf[y, x, 1]
                cost[0] = err[y, x] + occ[y0, x0] * occ_scale
                # Propagation: the neighbour's match, shifted by one pixel.
                nx = x - q
                if 0 <= nx < wt:
                    cx = nnf[y, nx, 0] + q
                    cy = nnf[y, nx, 1]
                    if 0 <= cx < ws and (cx != nnf[y, x, 0] or cy != nnf[y, x, 1]):
                        _try_candidate(src_rows, tgt_rows, y, x, cx, cy, patch, channels, nnf, err, cost, occ, occ_scale)
                ny = y - q
                if 0 <= ny < ht:
                    if y_lo <= ny < y_hi:
                        cx = nnf[ny, x, 0]
                        cy = nnf[ny, x, 1] + q
                    else:
                        cx = nnf_snapshot[ny, x, 0]
                        cy = nnf_snapshot[ny, x, 1] + q
                    if 0 <= cy < hs and (cx != nnf[y, x, 0] or cy != nnf[y, x, 1]):
                        _try_candidate(src_rows, tgt_rows, y, x, cx, cy, patch, channels, nnf, err, cost, occ, occ_scale)
                # Random search in windows around the best match so far.
                # int64 as the hash: under NUMBA_DISABLE_JIT, numpy 2 refuses to mix a
                # 32-bit hash with int32 array values (NEP 50); compiled, it is the same.
                px = np.int64(nnf[y, x, 0])
                py = np.int64(nnf[y, x, 1])
                h = _hash32((x | (y << 16)) ^ sweep_seed)
                for i in range(radii.shape[0]):
                    rad = radii[i]
                    lo_x = max(px - rad, 0)
                    hi_x = min(px + rad, ws - 1)
                    lo_y = max(py - rad, 0)
                    hi_y = min(py + rad, hs - 1)
                    h = _hash32(h + 0x9E3779B9 & 0xFFFFFFFF)
                    cx = lo_x + h % (hi_x - lo_x + 1)
                    h = _hash32(h + 0x7F4A7C15 & 0xFFFFFFFF)
                    cy = lo_y + h % (hi_y - lo_y + 1)
                    if cx != nnf[y, x, 0] or cy != nnf[y, x, 1]:
                        _try_candidate(src_rows, tgt_rows, y, x, cx, cy, patch, channels, nnf, err, cost, occ, occ_scale)
                if nnf[y, x, 0] != x0 or nnf[y, x, 1] != y0:
                    changed[y, x] = 1


#: Rows of the target a thread votes at a time. The scatter form (see :func:`vote`) also visits
#: the ``radius`` rows above and below a band, so taller bands waste less.
VOTE_BAND_HEIGHT = 32
#: The vote's float flags: only ``contract`` (``sum + w * value`` as one FMA). Without
#: ``reassoc`` every sum is taken in the order written, which the two forms of the vote
#: share, so a pixel gets the same bits from either; the scatter form's adds are
#: element-wise and vectorize without it.
VOTE_FASTMATH = {"contract"}


@njit(cache=True, nogil=True, parallel=True, fastmath=VOTE_FASTMATH)
def vote(style, nnf, radius, patch, err, weighted, region, out):
    """Average, for every target pixel, the source pixels that nearby matches map it to.

    Every target pixel ``q`` within ``radius`` of ``p`` votes the source pixel
    ``nnf[q] + (p - q)``, clamped into the source. With ``radius = patch // 2``
    that is the classic vote of overlapping patches. ``style`` is (Hs, Ws, Cs)
    float32, ``out`` (Ht, Wt, Cs), written only where ``region`` is set. With
    ``weighted`` a vote counts ``1 / (1 + err / (patch^2 * Cs))``, as in
    Ebsynth's weighted vote.

    A band of rows where most pixels are to be voted is voted in scatter form:
    each match adds its whole source block, row by row, to the sums of the
    pixels it covers, which reads the source in runs and computes each weight
    once. Elsewhere each pixel gathers its votes. Either way a pixel's sums take
    the votes in the same order (row by row of ``q``), so the two give the same bits.
    """
    ht, wt = nnf.shape[0], nnf.shape[1]
    cs = style.shape[2]
    style_flat = style.reshape(style.size)
    nnf_flat = nnf.reshape(nnf.size)
    # The weight multiplies by 1 / (patch^2 Cs): what the earlier kernel, compiled with arcp, did.
    inv_norm = np.float32(1.0) / np.float32(patch * patch * cs)
    n_bands = (ht + VOTE_BAND_HEIGHT - 1) // VOTE_BAND_HEIGHT
    for band in prange(n_bands):
        y0 = band * VOTE_BAND_HEIGHT
        y1 = min(ht, y0 + VOTE_BAND_HEIGHT)
        wanted = 0
        for y in range(y0, y1):
            for x in range(wt):
                if region[y, x] != 0:
                    wanted += 1
        if wanted == 0:
            continue
        # Scatter visits (rows + 2 radius) rows of matches for the band; gather costs
        # (2 radius + 1)^2 taps per wanted pixel, each about as dear as a scattered one.
        if 2 * wanted >= (y1 - y0) * wt:
            _vote_band_scatter(style_flat, style.shape, nnf, radius, err, weighted, inv_norm, region, out, y0, y1)
        else:
            for y in range(y0, y1):
                for x in range(wt):
                    if region[y, x] != 0:
                        _vote_pixel_gather(style_flat, style.shape, nnf_flat, ht, wt, radius, err, weighted,
                                           inv_norm, out, y, x)


@njit(cache=True, nogil=True, fastmath=VOTE_FASTMATH)
def _vote_weight(err, qy, qx, weighted, inv_norm):
    if weighted:
        return np.float32(1.0) / (np.float32(1.0) + err[qy, qx] * inv_norm)
    return np.float32(1.0)


@njit(cache=True, nogil=True, fastmath=VOTE_FASTMATH)
def _vote_pixel_gather(style_flat, style_shape, nnf_flat, ht, wt, r, err, weighted, inv_norm, out, y, x):
    sh, sw, cs = style_shape
    ucs = _uidx(cs)
    a0 = a1 = a2 = total = np.float32(0.0)
    acc = np.zeros(cs, np.float32) if cs != 3 else np.zeros(0, np.float32)
    for qy in range(max(0, y - r), min(ht, y + r + 1)):
        dy = qy - y
        for qx in range(max(0, x - r), min(wt, x + r + 1)):
            dx = qx - x
            q = _uidx(qy * wt + qx) * _uidx(2)
            sx = min(max(nnf_flat[q] - dx, 0), sw - 1)
            sy = min(max(nnf_flat[q + _uidx(1)] - dy, 0), sh - 1)
            w = _vote_weight(err, qy, qx, weighted, inv_norm)
            base = (_uidx(sy) * _uidx(sw) + _uidx(sx)) * ucs
            # RGB is the common case: keep its sums in registers.
            if cs == 3:
                a0 += w * style_flat[base]
                a1 += w * style_flat[base + _uidx(1)]
                a2 += w * style_flat[base + _uidx(2)]
            else:
                for c in range(cs):
                    acc[c] += w * style_flat[base + _uidx(c)]
            total += w
    # One reciprocal, written out: both forms of the vote then divide alike, whatever LLVM
    # would make of a division under ``arcp``.
    inv = np.float32(1.0) / total
    if cs == 3:
        out[y, x, 0] = a0 * inv
        out[y, x, 1] = a1 * inv
        out[y, x, 2] = a2 * inv
    else:
        for c in range(cs):
            out[y, x, c] = acc[c] * inv


@njit(cache=True, nogil=True, fastmath=VOTE_FASTMATH)
def _vote_band_scatter(style_flat, style_shape, nnf, r, err, weighted, inv_norm, region, out, y0, y1):
    ht, wt = nnf.shape[0], nnf.shape[1]
    sh, sw, cs = style_shape
    ucs = _uidx(cs)
    uwt = _uidx(wt)
    sums = np.zeros((y1 - y0) * wt * cs, np.float32)
    totals = np.zeros((y1 - y0) * wt if weighted else 0, np.float32)
    for qy in range(max(0, y0 - r), min(ht, y1 + r)):
        oy_lo = max(-r, y0 - qy)
        oy_hi = min(r, y1 - 1 - qy)
        for qx in range(wt):
            w = _vote_weight(err, qy, qx, weighted, inv_norm)
            sx0 = nnf[qy, qx, 0]
            sy0 = nnf[qy, qx, 1]
            ox_lo = max(-r, -qx)
            ox_hi = min(r, wt - 1 - qx)
            run = _uidx(ox_hi - ox_lo + 1)
            unclamped = sx0 - r >= 0 and sx0 + r < sw
            for oy in range(oy_lo, oy_hi + 1):
                sy = min(max(sy0 + oy, 0), sh - 1)
                p0 = _uidx(qy + oy - y0) * uwt + _uidx(qx + ox_lo)
                if weighted:
                    for i in range(run):
                        totals[p0 + i] += w
                if unclamped:
                    # The block's row is one run of the source: contiguous reads and adds.
                    s0 = (_uidx(sy) * _uidx(sw) + _uidx(sx0 + ox_lo)) * ucs
                    d0 = p0 * ucs
                    for k in range(run * ucs):
                        sums[d0 + k] += w * style_flat[s0 + k]
                else:
                    for ox in range(ox_lo, ox_hi + 1):
                        sx = min(max(sx0 + ox, 0), sw - 1)
                        s0 = (_uidx(sy) * _uidx(sw) + _uidx(sx)) * ucs
                        d0 = (p0 + _uidx(ox - ox_lo)) * ucs
                        for c in range(cs):
                            sums[d0 + _uidx(c)] += w * style_flat[s0 + _uidx(c)]
    for y in range(y0, y1):
        for x in range(wt):
            if region[y, x] == 0:
                continue
            i = (y - y0) * wt + x
            if weighted:
                inv = np.float32(1.0) / totals[i]
            else:
                # Votes of weight 1: their sum is the count of matches in reach, exact in float32.
                count = (min(ht, y + r + 1) - max(0, y - r)) * (min(wt, x + r + 1) - max(0, x - r))
                inv = np.float32(1.0) / np.float32(count)
            for c in range(cs):
                out[y, x, c] = sums[i * cs + c] * inv


@njit(cache=True, nogil=True, parallel=True)
def write_padded(image, scales, tgt, channels, offset, patch):
    """Write ``image * scales`` (per channel) into channels ``offset..`` of padded ``tgt``.

    ``tgt`` is (Ht + 2r, (Wt + 2r) * channels) feature rows; the padding is
    edge replication. The same values as ``np.pad(image * scales, mode="edge")``
    in one pass, without the two temporary arrays.
    """
    ht, wt, cs = image.shape
    r = patch // 2
    hp = ht + 2 * r
    wp = wt + 2 * r
    for py in prange(hp):
        y = min(max(py - r, 0), ht - 1)
        for px in range(wp):
            x = min(max(px - r, 0), wt - 1)
            base = px * channels + offset
            for c in range(cs):
                tgt[py, base + c] = image[y, x, c] * scales[c]


@njit(cache=True, nogil=True, parallel=True)
def advect_nnf(nnf, flow_to_prev, out):
    """``out[y, x] = nnf[round(y + dy), round(x + dx)]`` (clamped): a match moved along the flow.

    Rounding is half to even on ``x + dx`` in float64, as ``np.rint`` of an
    int64 grid plus a float32 flow.
    """
    h, w = nnf.shape[0], nnf.shape[1]
    for y in prange(h):
        for x in range(w):
            px = min(max(np.rint(np.float64(x) + np.float64(flow_to_prev[y, x, 0])), 0.0), w - 1.0)
            py = min(max(np.rint(np.float64(y) + np.float64(flow_to_prev[y, x, 1])), 0.0), h - 1.0)
            out[y, x, 0] = nnf[int(py), int(px), 0]
            out[y, x, 1] = nnf[int(py), int(px), 1]


@njit(cache=True, nogil=True)
def upsample_nnf(nnf, out_h, out_w, src_h, src_w):
    """Coarse-to-fine NNF: each coarse match covers a 2x2 block, coordinates doubled."""
    out = np.empty((out_h, out_w, 2), np.int32)
    ch, cw = nnf.shape[0], nnf.shape[1]
    for y in range(out_h):
        yc = min(y // 2, ch - 1)
        for x in range(out_w):
            xc = min(x // 2, cw - 1)
            sx = nnf[yc, xc, 0] * 2 + (x & 1)
            sy = nnf[yc, xc, 1] * 2 + (y & 1)
            out[y, x, 0] = min(sx, src_w - 1)
            out[y, x, 1] = min(sy, src_h - 1)
    return out


@njit(cache=True, nogil=True)
def changed_mask(old, new, threshold, region, radius):
    """Pixels within ``radius`` of one whose voted style moved by more than ``threshold``.

    Only pixels in ``region`` (where the vote was redone) are compared. A pixel
    outside the result is frozen: nothing within its patch changed, so its
    match can no longer improve through the style term.
    """
    ht, wt, cs = old.shape
    moved = np.zeros((ht, wt), np.uint8)
    for y in range(ht):
        for x in range(wt):
            if region[y, x] == 0:
                continue
            for c in range(cs):
                if abs(old[y, x, c] - new[y, x, c]) > threshold:
                    moved[y, x] = 1
                    break
    return dilate(moved, radius)


@njit(cache=True, nogil=True)
def dilate(mask, radius):
    """Binary dilation of a uint8 mask by a (2 radius + 1)^2 square."""
    ht, wt = mask.shape
    rows = np.zeros((ht, wt), np.uint8)
    for y in range(ht):
        last = -(radius + 1)
        for x in range(min(radius, wt)):
            if mask[y, x]:
                last = x
        for x in range(wt):
            if x + radius < wt and mask[y, x + radius]:
                last = x + radius
            if last >= x - radius:
                rows[y, x] = 1
    out = np.zeros((ht, wt), np.uint8)
    for x in range(wt):
        last = -(radius + 1)
        for y in range(min(radius, ht)):
            if rows[y, x]:
                last = y
        for y in range(ht):
            if y + radius < ht and rows[y + radius, x]:
                last = y + radius
            if last >= y - radius:
                out[y, x] = 1
    return out


@njit(cache=True, nogil=True, parallel=True)
def threading_probe():
    """A trivial parallel kernel: running it makes numba pick its threading layer."""
    total = 0
    for i in prange(2):
        total += i
    return total
