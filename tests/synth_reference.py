"""Plain-numpy twins of the numba kernels in engine.synth.kernels.

Slow and obvious on purpose: the kernels are checked against these.
"""

import numpy as np


def padded(img, r):
    return np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")


def patch_error(src_img, tgt_img, nnf, patch):
    """Weighted-SSD of every target patch against its source patch (images pre-weighted)."""
    r = patch // 2
    tp = padded(tgt_img.astype(np.float64), r)
    sp = padded(src_img.astype(np.float64), r)
    out = np.empty(nnf.shape[:2])
    for y in range(nnf.shape[0]):
        for x in range(nnf.shape[1]):
            sx, sy = nnf[y, x]
            d = tp[y:y + patch, x:x + patch] - sp[sy:sy + patch, sx:sx + patch]
            out[y, x] = (d * d).sum()
    return out


def occupancy(nnf, src_hw, patch):
    r = patch // 2
    omega = np.zeros((src_hw[0] + 2 * r, src_hw[1] + 2 * r), np.int64)
    for sx, sy in nnf.reshape(-1, 2):
        omega[sy:sy + patch, sx:sx + patch] += 1
    omega = omega[r:-r, r:-r]
    pad = np.pad(omega, r)
    out = np.zeros(src_hw, np.int64)
    for y in range(src_hw[0]):
        for x in range(src_hw[1]):
            out[y, x] = pad[y:y + patch, x:x + patch].sum()
    return out


def vote(style, nnf, radius, patch, err=None, region=None):
    ht, wt = nnf.shape[:2]
    sh, sw, cs = style.shape
    out = np.zeros((ht, wt, cs))
    for y in range(ht):
        for x in range(wt):
            if region is not None and not region[y, x]:
                continue
            acc = np.zeros(cs)
            total = 0.0
            for qy in range(max(0, y - radius), min(ht, y + radius + 1)):
                for qx in range(max(0, x - radius), min(wt, x + radius + 1)):
                    sx = np.clip(nnf[qy, qx, 0] - (qx - x), 0, sw - 1)
                    sy = np.clip(nnf[qy, qx, 1] - (qy - y), 0, sh - 1)
                    w = 1.0 if err is None else 1.0 / (1.0 + err[qy, qx] / (patch * patch * cs))
                    acc += w * style[sy, sx]
                    total += w
            out[y, x] = acc / total
    return out


def upsample_nnf(nnf, out_hw, src_hw):
    out = np.empty(out_hw + (2,), np.int64)
    for y in range(out_hw[0]):
        for x in range(out_hw[1]):
            c = nnf[min(y // 2, nnf.shape[0] - 1), min(x // 2, nnf.shape[1] - 1)]
            out[y, x, 0] = min(c[0] * 2 + x % 2, src_hw[1] - 1)
            out[y, x, 1] = min(c[1] * 2 + y % 2, src_hw[0] - 1)
    return out


def dilate(mask, radius):
    h, w = mask.shape
    out = np.zeros_like(mask)
    for y in range(h):
        for x in range(w):
            out[y, x] = mask[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1].any()
    return out
