"""Painterly filters that need no network: watercolour, oil, pencil, ink, cartoon.

numpy and OpenCV only. Each filter is deterministic (noise textures come from a
seeded generator) and runs in well under a second at 1920x1080 on two cores.

References
----------
.. [1] A. Bousseau, M. Kaplan, J. Thollot, F. X. Sillion, "Interactive
   watercolor rendering with temporal coherence and abstraction", NPAR 2006
   (pigment density model, edge darkening, paper and turbulence textures).
.. [2] M. Kuwahara, K. Hachimura, S. Eiho, M. Kinoshita, "Processing of
   RI-angiocardiographic images", Digital Processing of Biomedical Images, 1976;
   G. Papari, N. Petkov, P. Campisi, "Artistic edge and corner enhancing
   smoothing", IEEE TIP 2007 (smooth sector weighting).
.. [3] H. Winnemoeller, J. E. Kyprianidis, S. C. Olsen, "XDoG: An eXtended
   difference-of-Gaussians compendium including advanced image stylization",
   Computers & Graphics 2012.
.. [4] C. Tomasi, R. Manduchi, "Bilateral filtering for gray and color images",
   ICCV 1998; H. Winnemoeller, S. C. Olsen, B. Gooch, "Real-time video
   abstraction", SIGGRAPH 2006 (cartoon abstraction).
"""

from __future__ import annotations

import inspect

import numpy as np

from ._common import as_float_rgb, check_float, check_int, to_uint8

__all__ = ["FILTERS", "painterly", "watercolour", "oil", "pencil", "ink", "cartoon", "filter_params"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _cv2():
    import cv2

    return cv2


def _prepare(frame):
    rgb, _alpha = as_float_rgb(frame, name="frame")
    return rgb / np.float32(255.0)


def _luma(img01):
    return np.ascontiguousarray(img01 @ _LUMA)


def _noise(shape, *, scale, seed):
    """Smooth value noise in 0..1 with features about ``scale`` pixels across."""
    cv2 = _cv2()
    h, w = shape
    gh, gw = max(2, int(np.ceil(h / scale)) + 1), max(2, int(np.ceil(w / scale)) + 1)
    grid = np.random.default_rng(seed).random((gh, gw), dtype=np.float32)
    out = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, 0.0, 1.0)


def _fractal_noise(shape, *, scales, seed):
    total = np.zeros(shape, dtype=np.float32)
    amp_sum = 0.0
    for k, s in enumerate(scales):
        amp = 1.0 / (k + 1)
        total += amp * _noise(shape, scale=s, seed=seed * 131 + k)
        amp_sum += amp
    return total / np.float32(amp_sum)


def _downscaled(img, factor):
    cv2 = _cv2()
    if factor <= 1:
        return img
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)


def _upscaled(img, shape):
    cv2 = _cv2()
    h, w = shape
    if img.shape[:2] == (h, w):
        return img
    out = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    return out.reshape((h, w) + img.shape[2:])


def _pigment(color, density):
    """Bousseau et al. colour modification: ``C' = C - (C - C^2)(d - 1)``."""
    d = density[:, :, None] - np.float32(1.0)
    return color - (color - color * color) * d


# ---------------------------------------------------------------------------
# Filters. Each takes an HxWx3 image and returns HxWx3 uint8.
# ---------------------------------------------------------------------------


def watercolour(frame, *, abstraction=60.0, edge_darkening=1.0, granulation=0.35,
                turbulence=0.3, wash=0.1, seed=0):
    """Watercolour: abstracted washes, darkened wet edges, paper and pigment texture.

    Follows the pigment-density model of Bousseau et al. [1]_: colours are
    simplified by an edge-preserving filter, then their density is modulated by
    edge darkening, a turbulent low-frequency texture and a high-frequency
    granulation texture.

    Parameters
    ----------
    frame : numpy.ndarray
        ``HxWx3`` uint8 RGB (grey, RGBA, uint16 and float 0..255 accepted).
    abstraction : float
        Spatial extent of the colour simplification (pixels at 1080p scale, >= 1).
    edge_darkening : float
        Pigment pooling at the borders of washes (0 turns it off).
    granulation : float
        Strength of fine pigment grain and paper texture.
    turbulence : float
        Strength of uneven, low-frequency pigment density.
    wash : float
        Lightening towards the white paper, 0..1.
    seed : int
        Seed of the textures.
    """
    cv2 = _cv2()
    abstraction = check_float("abstraction", abstraction, minimum=1.0, maximum=200.0)
    edge_darkening = check_float("edge_darkening", edge_darkening, minimum=0.0, maximum=5.0)
    granulation = check_float("granulation", granulation, minimum=0.0, maximum=2.0)
    turbulence = check_float("turbulence", turbulence, minimum=0.0, maximum=2.0)
    wash = check_float("wash", wash, minimum=0.0, maximum=1.0)
    seed = check_int("seed", seed, minimum=0)
    img = _prepare(frame)
    h, w = img.shape[:2]
    scale = max(h, w) / 1920.0
    factor = 2 if min(h, w) >= 64 else 1
    small = _downscaled(img, factor)
    small8 = to_uint8(small * 255.0)
    smooth = cv2.edgePreservingFilter(
        small8, flags=cv2.RECURS_FILTER, sigma_s=float(max(1.0, abstraction * scale / factor)),
        sigma_r=0.35,
    ).astype(np.float32) / np.float32(255.0)
    # Soften the wash a little more (wet-in-wet) without crossing strong edges.
    smooth = cv2.bilateralFilter(smooth, 5, 0.08, 3)
    color = _upscaled(smooth, (h, w))
    lum = _luma(color)
    # Edge darkening: pigment accumulates where the wash changes.
    blur = cv2.GaussianBlur(lum, (0, 0), max(0.8, 1.5 * scale))
    gx = cv2.Sobel(blur, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(blur, cv2.CV_32F, 0, 1, ksize=3)
    edges = np.sqrt(gx * gx + gy * gy)
    edges = np.clip(edges * np.float32(6.0), 0.0, 1.0)
    density = np.float32(1.0) + np.float32(edge_darkening) * edges
    if turbulence > 0:
        turb = _fractal_noise((h, w), scales=(200 * scale + 8, 80 * scale + 4), seed=seed)
        density += np.float32(turbulence) * (turb - np.float32(0.5))
    if granulation > 0:
        grain = _fractal_noise((h, w), scales=(6 * scale + 1, 2.5 * scale + 1), seed=seed + 7)
        density += np.float32(granulation) * (grain - np.float32(0.5))
    out = _pigment(np.clip(color, 0.0, 1.0), density)
    out = np.float32(1.0) - (np.float32(1.0) - out) * np.float32(1.0 - wash)
    return to_uint8(out * 255.0)


def oil(frame, *, radius=5, sharpness=8.0, saturation=1.15):
    """Oil paint: generalised Kuwahara filter with smooth quadrant weighting.

    Every pixel takes the mean colour of the four ``(radius+1)^2`` quadrants
    around it, weighted by ``(var_min / var_k)^(sharpness/2)`` of their
    luminance variance (Kuwahara et al.; smooth weighting of Papari et al. [2]_):
    flat areas become brush-like patches and edges stay crisp.

    Parameters
    ----------
    radius : int
        Quadrant size in pixels (1..40); larger is coarser paint.
    sharpness : float
        Exponent of the weighting; large values approach the classic Kuwahara
        choice of the least-varying quadrant.
    saturation : float
        Colour saturation multiplier applied afterwards (1 keeps it).
    """
    cv2 = _cv2()
    radius = check_int("radius", radius, minimum=1, maximum=40)
    sharpness = check_float("sharpness", sharpness, minimum=0.0, maximum=64.0)
    saturation = check_float("saturation", saturation, minimum=0.0, maximum=4.0)
    img = _prepare(frame)
    h, w = img.shape[:2]
    r = radius
    border = cv2.BORDER_REFLECT_101 if min(h, w) > r else cv2.BORDER_REPLICATE
    padded = cv2.copyMakeBorder(img, r, r, r, r, border)
    lum = cv2.transform(padded, _LUMA[None])
    k = (r + 1, r + 1)
    # Box means anchored at the top-left corner: quadrant (dy, dx) of pixel
    # (y, x) is the box starting at padded (y + dy, x + dx).
    planes = cv2.split(cv2.boxFilter(padded, -1, k, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE))
    m1 = cv2.boxFilter(lum, -1, k, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    m2 = cv2.boxFilter(lum * lum, -1, k, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    offsets = ((0, 0), (0, r), (r, 0), (r, r))
    variances = []
    for dy, dx in offsets:
        a = m1[dy:dy + h, dx:dx + w]
        v = m2[dy:dy + h, dx:dx + w] - a * a
        np.maximum(v, 0.0, out=v)
        v += np.float32(1e-6)
        variances.append(v)
    vmin = np.minimum(np.minimum(variances[0], variances[1]), np.minimum(variances[2], variances[3]))
    weights = [cv2.pow(vmin / v, sharpness / 2.0) for v in variances]
    norm = weights[0] + weights[1] + weights[2] + weights[3]
    channels = []
    for plane in planes:
        acc = None
        for (dy, dx), wt in zip(offsets, weights):
            term = wt * plane[dy:dy + h, dx:dx + w]
            acc = term if acc is None else acc + term
        channels.append(acc / norm)
    out = cv2.merge(channels)
    if saturation != 1.0:
        grey = _luma(out)[:, :, None]
        out = grey + (out - grey) * np.float32(saturation)
    return to_uint8(out * 255.0)


def pencil(frame, *, line_width=2.0, darkness=1.6, texture=0.3, color=0.0, seed=0):
    """Pencil sketch: colour-dodge of the grey image by its blurred negative, plus hatching.

    Parameters
    ----------
    line_width : float
        Blur of the negative in pixels (at 1080p scale); wider gives broader strokes.
    darkness : float
        Gamma applied to the sketch (> 1 darkens lines and shading).
    texture : float
        Strength of the diagonal graphite hatching in dark areas, 0..1.
    color : float
        0 gives graphite; 1 keeps the frame's colours (coloured pencil).
    seed : int
        Seed of the hatching texture.
    """
    cv2 = _cv2()
    line_width = check_float("line_width", line_width, minimum=0.3, maximum=50.0)
    darkness = check_float("darkness", darkness, minimum=0.1, maximum=10.0)
    texture = check_float("texture", texture, minimum=0.0, maximum=1.0)
    color = check_float("color", color, minimum=0.0, maximum=1.0)
    seed = check_int("seed", seed, minimum=0)
    img = _prepare(frame)
    h, w = img.shape[:2]
    scale = max(h, w) / 1920.0
    grey = _luma(img)
    neg_blur = cv2.GaussianBlur(np.float32(1.0) - grey, (0, 0), max(0.3, line_width * scale * 2.0))
    sketch = np.minimum(np.float32(1.0), grey / np.maximum(np.float32(1.0) - neg_blur, np.float32(1e-3)))
    sketch = np.power(sketch, np.float32(darkness))
    if texture > 0:
        n = np.random.default_rng(seed).random((h, w), dtype=np.float32)
        length = max(3, int(round(9 * scale)) | 1)
        kernel = np.eye(length, dtype=np.float32)[::-1] / np.float32(length)
        hatch = cv2.filter2D(n, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
        hatch = np.clip((hatch - np.float32(0.5)) * np.float32(3.0) + np.float32(0.5), 0.0, 1.0)
        shade = np.float32(1.0) - sketch
        sketch = sketch - np.float32(texture) * shade * (np.float32(1.0) - hatch) * np.float32(0.8)
    sketch = np.clip(sketch, 0.0, 1.0)
    out = np.repeat(sketch[:, :, None], 3, axis=2)
    if color > 0:
        tint = img / np.maximum(grey[:, :, None], np.float32(1e-3))
        colored = np.clip(sketch[:, :, None] * tint, 0.0, 1.0)
        out = out + np.float32(color) * (colored - out)
    return to_uint8(out * 255.0)


def _dog_lines(grey, *, sigma, threshold, softness, k=1.6):
    """Dark lines on the dark side of edges: ``1 + tanh(phi (D + t))`` where ``D < -t``.

    ``D = G_sigma * I - G_{k sigma} * I`` is the difference of Gaussians; the
    soft ramp is the thresholding of XDoG [3]_.
    """
    cv2 = _cv2()
    g1 = cv2.GaussianBlur(grey, (0, 0), sigma)
    g2 = cv2.GaussianBlur(grey, (0, 0), sigma * k)
    d = g1 - g2
    t = np.float32(threshold)
    out = np.where(d >= -t, np.float32(1.0), np.float32(1.0) + np.tanh(np.float32(softness) * (d + t)))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _tone_fill(grey, *, level, softness):
    """Black fill of the tones below ``level`` with a soft XDoG-style ramp."""
    if level <= 0:
        return np.ones_like(grey)
    lv = np.float32(level)
    out = np.where(grey >= lv, np.float32(1.0), np.float32(1.0) + np.tanh(np.float32(softness) * (grey - lv)))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def ink(frame, *, line_width=1.5, threshold=0.01, softness=150.0, fill=0.18, color=0.0):
    """Ink drawing: difference-of-Gaussians outlines with XDoG thresholding [3]_, dark areas filled.

    Parameters
    ----------
    line_width : float
        Gaussian scale of the lines in pixels (at 1080p scale).
    threshold : float
        Edge contrast (difference of Gaussians, 0..1 units) below which no
        line is drawn; smaller draws more lines.
    softness : float
        ``phi`` of XDoG: steepness of the ink ramp (large is pure black and white).
    fill : float
        Tones darker than this (0..1) are filled with ink; 0 draws lines only.
    color : float
        0 gives black ink on white; 1 lays the ink over the frame's colours.
    """
    cv2 = _cv2()
    line_width = check_float("line_width", line_width, minimum=0.3, maximum=50.0)
    threshold = check_float("threshold", threshold, minimum=0.0, maximum=1.0)
    softness = check_float("softness", softness, minimum=0.1, maximum=10000.0)
    fill = check_float("fill", fill, minimum=0.0, maximum=1.0)
    color = check_float("color", color, minimum=0.0, maximum=1.0)
    img = _prepare(frame)
    h, w = img.shape[:2]
    scale = max(h, w) / 1920.0
    grey = _luma(img)
    sigma = max(0.3, line_width * scale)
    lines = _dog_lines(grey, sigma=sigma, threshold=threshold, softness=softness)
    tone = _tone_fill(cv2.GaussianBlur(grey, (0, 0), 2.0 * sigma), level=fill, softness=softness / 10.0)
    ink_ = lines * tone
    paper = np.float32(1.0 - color) + np.float32(color) * img
    out = paper * ink_[:, :, None]
    return to_uint8(out * 255.0)


def _kmeans_palette(samples, k, *, iterations=10):
    """Deterministic k-means of ``N x 3`` samples, initialised at luminance quantiles."""
    order = np.argsort(samples @ _LUMA, kind="stable")
    idx = order[np.linspace(0, len(order) - 1, k).round().astype(int)]
    centers = samples[idx].astype(np.float32)
    for _ in range(iterations):
        d = (samples * samples).sum(1)[:, None] - 2.0 * samples @ centers.T + (centers * centers).sum(1)[None]
        labels = d.argmin(1)
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, samples)
        counts = np.bincount(labels, minlength=k).astype(np.float32)
        nonempty = counts > 0
        centers[nonempty] = sums[nonempty] / counts[nonempty, None]
    return centers


def cartoon(frame, *, colors=12, smoothing=2, line_width=1.0, line_threshold=0.5, seed=0):
    """Cartoon: bilateral abstraction, a quantised palette and dark outlines.

    After Winnemoeller et al. [4]_: repeated bilateral filtering flattens
    shading, k-means picks ``colors`` flat colours, XDoG lines outline shapes.

    Parameters
    ----------
    colors : int
        Size of the palette (2..32).
    smoothing : int
        Bilateral passes (0..6).
    line_width : float
        Outline scale in pixels (at 1080p scale); 0 removes the outlines.
    line_threshold : float
        0..1; higher draws more outlines.
    seed : int
        Seed of the sample used to fit the palette.
    """
    cv2 = _cv2()
    colors = check_int("colors", colors, minimum=2, maximum=32)
    smoothing = check_int("smoothing", smoothing, minimum=0, maximum=6)
    line_width = check_float("line_width", line_width, minimum=0.0, maximum=20.0)
    line_threshold = check_float("line_threshold", line_threshold, minimum=0.0, maximum=1.0)
    seed = check_int("seed", seed, minimum=0)
    img = _prepare(frame)
    h, w = img.shape[:2]
    scale = max(h, w) / 1920.0
    factor = 2 if min(h, w) >= 64 else 1
    small = np.ascontiguousarray(_downscaled(img, factor), dtype=np.float32)
    for _ in range(smoothing):
        small = cv2.bilateralFilter(small, 7, 0.12, 4)
    pix = small.reshape(-1, 3)
    n = min(len(pix), 20000)
    sample = pix[np.random.default_rng(seed).choice(len(pix), size=n, replace=False)]
    centers = _kmeans_palette(sample, colors)
    d = -2.0 * pix @ centers.T + (centers * centers).sum(1)[None]
    flat_small = centers[d.argmin(1)].reshape(small.shape)
    # Quantised at the working size, upsampled linearly: anti-aliased colour borders.
    out = np.ascontiguousarray(_upscaled(flat_small, (h, w)), dtype=np.float32)
    if line_width > 0:
        grey = _luma(_upscaled(small, (h, w)))
        lines = _dog_lines(grey, sigma=max(0.5, line_width * scale * 1.5),
                           threshold=0.02 * (1.0 - line_threshold) + 0.001, softness=400.0)
        out = out * lines[:, :, None]
    return to_uint8(out * 255.0)


#: The painterly filters by name ("watercolor" is accepted for "watercolour").
FILTERS = {
    "watercolour": watercolour,
    "oil": oil,
    "pencil": pencil,
    "ink": ink,
    "cartoon": cartoon,
}
_ALIASES = {"watercolor": "watercolour"}


def _resolve(name):
    if not isinstance(name, str):
        raise ValueError(f"parameter 'filter' must be a string, got {name!r}")
    key = _ALIASES.get(name, name)
    if key not in FILTERS:
        raise ValueError(
            f"parameter 'filter' must be one of {', '.join(repr(k) for k in FILTERS)}, got {name!r}"
        )
    return key


def filter_params(name):
    """``{parameter: default}`` of the painterly filter ``name``."""
    fn = FILTERS[_resolve(name)]
    return {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def painterly(frame, *, filter="watercolour", **params):  # noqa: A002 - the natural name
    """Apply the painterly filter ``filter`` with its named parameters.

    Parameters
    ----------
    frame : numpy.ndarray
        ``HxWx3`` uint8 RGB (grey, RGBA - alpha ignored -, uint16 and float 0..255 accepted).
    filter : {"watercolour", "oil", "pencil", "ink", "cartoon"}
    **params
        The parameters of that filter (see :func:`watercolour`, :func:`oil`,
        :func:`pencil`, :func:`ink`, :func:`cartoon`). Unknown names raise
        ``ValueError``.

    Returns
    -------
    numpy.ndarray
        ``HxWx3`` uint8 RGB.
    """
    key = _resolve(filter)
    known = filter_params(key)
    for name in params:
        if name not in known:
            raise ValueError(
                f"unknown parameter '{name}' for painterly filter '{key}'; "
                f"known: {', '.join(sorted(known))}"
            )
    return FILTERS[key](frame, **params)
