"""Blending the forward and backward passes between two keyframes.

After Jamriška et al. 2019, section 3.4: a per-pixel choice of the pass with the
lower synthesis error, kept coherent over time; a histogram-preserving blend of
the two passes for the low frequencies; and a gradient-domain (screened Poisson)
reconstruction that takes each pixel's gradients from the chosen pass, so the
result has the sharpness of one pass and no seam, ghost or double contour.
"""

import cv2
import numpy as np

from ..flow import warp

__all__ = ["choose_passes", "histogram_preserving_blend", "screened_poisson", "blend_passes",
           "error_weights", "weighted_blend", "crossfade"]

#: Error ratio a pass must win by to take a pixel from the other, once chosen.
HYSTERESIS = 0.15
#: How much nearer keys are preferred: errors are scaled by 1 + DISTANCE_PRIOR * distance.
DISTANCE_PRIOR = 0.5
#: Weight of the colour term in the Poisson solve; low frequencies follow the
#: histogram-preserving blend over about 1 / sqrt(SCREENING) pixels.
SCREENING = 0.02
FEATHER_SIGMA = 2.0


def choose_passes(error_fwd, error_bwd, *, position, previous=None, flow_to_previous=None):
    """Per-pixel choice between the forward (1) and backward (0) pass.

    Parameters
    ----------
    error_fwd, error_bwd : ndarray (H, W) float32
        Synthesis error maps of the two passes.
    position : float
        Where the frame lies between the keys, 0 at the forward pass's key and
        1 at the backward pass's key; nearer keys are preferred a little.
    previous : ndarray (H, W) float32, optional
        The choice made on the neighbouring frame already blended, and
        ``flow_to_previous``, the flow from this frame to that one. A pixel
        keeps its previous choice unless the other pass is clearly better,
        which keeps the seam still over time.

    Returns
    -------
    ndarray (H, W) float32 in {0, 1}
    """
    ef = cv2.GaussianBlur(error_fwd.astype(np.float32), (0, 0), 2.0) * (1 + DISTANCE_PRIOR * position)
    eb = cv2.GaussianBlur(error_bwd.astype(np.float32), (0, 0), 2.0) * (1 + DISTANCE_PRIOR * (1 - position))
    score = np.log(eb + 1.0) - np.log(ef + 1.0)  # > 0: forward is better
    if previous is not None:
        prev = warp(previous, flow_to_previous) if flow_to_previous is not None else previous
        score += HYSTERESIS * (2.0 * prev - 1.0)
    choice = (score > 0).astype(np.uint8)
    # Drop specks: a pass owns regions, not scattered pixels.
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    choice = cv2.morphologyEx(choice, cv2.MORPH_OPEN, kernel)
    choice = cv2.morphologyEx(choice, cv2.MORPH_CLOSE, kernel)
    return choice.astype(np.float32)


def histogram_preserving_blend(a, b, weight):
    """Variance-preserving blend of two images (Heitz and Neyret 2018).

    ``mean + (w (a - mean_a) + (1 - w) (b - mean_b)) / sqrt(w^2 + (1 - w)^2)``:
    unlike a linear blend it keeps the contrast of the inputs where they mix.
    """
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    w = weight.astype(np.float32)[:, :, None]
    mean_a = a.reshape(-1, a.shape[2]).mean(axis=0)
    mean_b = b.reshape(-1, b.shape[2]).mean(axis=0)
    mean = w * mean_a + (1 - w) * mean_b
    norm = np.sqrt(w * w + (1 - w) * (1 - w))
    return mean + (w * (a - mean_a) + (1 - w) * (b - mean_b)) / norm


def screened_poisson(base, grad_x, grad_y, *, screening=SCREENING):
    """Image whose gradients best match ``(grad_x, grad_y)`` and colours ``base``.

    Minimises ``|grad O - G|^2 + screening |O - base|^2`` with Neumann borders,
    solved exactly in the DCT basis. ``grad_x[y, x] = O[y, x + 1] - O[y, x]``
    (zero in the last column), likewise ``grad_y``.
    """
    h, w = base.shape[:2]
    # OpenCV's DCT takes even sizes only: extend by one replicated row or
    # column. Across it the gradient is zero (which keeps the Neumann border);
    # along it the gradients repeat those of the row or column it copies.
    ph, pw = h % 2, w % 2
    base = np.pad(base, ((0, ph), (0, pw), (0, 0)), mode="edge").astype(np.float64)
    grad_x = np.pad(np.pad(grad_x, ((0, ph), (0, 0), (0, 0)), mode="edge"), ((0, 0), (0, pw), (0, 0)))
    grad_y = np.pad(np.pad(grad_y, ((0, 0), (0, pw), (0, 0)), mode="edge"), ((0, ph), (0, 0), (0, 0)))
    grad_x = grad_x.astype(np.float64)
    grad_y = grad_y.astype(np.float64)
    H, W = h + ph, w + pw
    div = grad_x.copy()
    div[:, 1:] -= grad_x[:, :-1]
    div += grad_y
    div[1:] -= grad_y[:-1]
    ky = 2.0 * np.cos(np.pi * np.arange(H) / H) - 2.0
    kx = 2.0 * np.cos(np.pi * np.arange(W) / W) - 2.0
    denom = screening - (ky[:, None] + kx[None, :])
    rhs = screening * base - div
    out = np.empty_like(rhs)
    for c in range(rhs.shape[2]):
        out[:, :, c] = cv2.idct(cv2.dct(np.ascontiguousarray(rhs[:, :, c])) / denom)
    return out[:h, :w]


def _gradients(img):
    gx = np.zeros_like(img)
    gy = np.zeros_like(img)
    gx[:, :-1] = img[:, 1:] - img[:, :-1]
    gy[:-1] = img[1:] - img[:-1]
    return gx, gy


def blend_passes(fwd, bwd, choice):
    """Blend two passes given the per-pixel choice (1 = forward).

    Gradients come from the chosen pass (the mean of both across the seam);
    the low frequencies from the histogram-preserving blend with a feathered
    choice. Returns float32 in the inputs' range, not rounded.
    """
    f = fwd.astype(np.float32)
    b = bwd.astype(np.float32)
    soft = cv2.GaussianBlur(choice, (0, 0), FEATHER_SIGMA)
    base = histogram_preserving_blend(f, b, soft)
    fgx, fgy = _gradients(f)
    bgx, bgy = _gradients(b)
    c = choice[:, :, None]
    cx = c.copy()
    cx[:, :-1] = 0.5 * (c[:, :-1] + c[:, 1:])
    cy = c.copy()
    cy[:-1] = 0.5 * (c[:-1] + c[1:])
    gx = cx * fgx + (1 - cx) * bgx
    gy = cy * fgy + (1 - cy) * bgy
    return screened_poisson(base, gx, gy).astype(np.float32)


def error_weights(error_fwd, error_bwd, *, position, sigma=4.0):
    """Per-pixel weight of the forward pass from both passes' errors and the distance to the keys.

    ``w_f ~ (1 - position) / (E_f + c)`` and ``w_b ~ position / (E_b + c)``, with
    the errors smoothed over ``sigma`` pixels and ``c`` a tenth of their median,
    normalised to sum to one. At the keys the weight is 0 or 1; in between a
    pass takes over where it matches better. Because the errors and the
    position change smoothly from frame to frame, so does the weight, which
    keeps the blend free of popping.
    """
    ef = cv2.GaussianBlur(error_fwd.astype(np.float32), (0, 0), sigma)
    eb = cv2.GaussianBlur(error_bwd.astype(np.float32), (0, 0), sigma)
    c = max(float(np.median(np.concatenate([ef.ravel(), eb.ravel()]))) * 0.1, 1e-3)
    wf = (1.0 - position) / (ef + c)
    wb = position / (eb + c)
    return (wf / np.maximum(wf + wb, 1e-12)).astype(np.float32)


def weighted_blend(fwd, error_fwd, bwd, error_bwd, *, position):
    """Blend the passes by :func:`error_weights`. Returns float32, not rounded."""
    w = error_weights(error_fwd, error_bwd, position=position)
    w_bwd = 1.0 - w
    out = np.empty(fwd.shape, np.float32)
    # ``w * fwd + (1 - w) * bwd``, a channel at a time: NumPy's broadcast of w over a last axis
    # of 3 runs several times slower, for the same values.
    for c in range(fwd.shape[2]):
        part = w * fwd[:, :, c].astype(np.float32)
        part += w_bwd * bwd[:, :, c].astype(np.float32)
        out[:, :, c] = part
    return out


def crossfade(fwd, bwd, position):
    """The baseline: a linear crossfade, ``(1 - position) fwd + position bwd``."""
    return (1.0 - position) * fwd.astype(np.float32) + position * bwd.astype(np.float32)
