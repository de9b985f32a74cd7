"""Deep Dream on VGG19: gradient ascent on chosen layers' activations.

References
----------
.. [1] A. Mordvintsev, C. Olah, M. Tyka, "Inceptionism: Going Deeper into Neural
   Networks", Google Research Blog, 2015, and the accompanying ``deepdream``
   notebook (octaves with detail reinjection, jitter, normalised steps).

torch is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import numpy as np

from ..images import resize
from ._common import (
    as_float_rgb,
    check_callable,
    check_cancel,
    check_float,
    check_int,
    to_uint8,
)

__all__ = ["DEFAULT_LAYERS", "stylize_deepdream", "octave_sizes", "layer_activation"]

#: Layers amplified by default: mid-level textures and motifs.
DEFAULT_LAYERS = ("conv4_2",)
_MIN_SIDE = 16


def octave_sizes(height, width, *, octaves, octave_scale):
    """Sizes ``(h, w)`` of the octaves, finest (the frame) first.

    Octaves whose shorter side would fall under 16 pixels are dropped.
    """
    sizes = []
    for k in range(octaves):
        h = int(round(height / octave_scale ** k))
        w = int(round(width / octave_scale ** k))
        if k > 0 and min(h, w) < _MIN_SIDE:
            break
        sizes.append((h, w))
    return sizes


def layer_activation(model, image, layers):
    """Sum over ``layers`` of the mean rectified activation: the quantity Deep Dream raises.

    Parameters
    ----------
    model : engine.stylizers.vgg.VGG19
    image : torch.Tensor
        ``1 x 3 x H x W`` RGB in 0..1.
    layers : sequence of str
    """
    feats = model(image, layers)
    return sum(feats[name].mean() for name in layers)


def stylize_deepdream(
    frame,
    *,
    layers=DEFAULT_LAYERS,
    octaves=3,
    octave_scale=1.4,
    iterations=5,
    step=0.02,
    jitter=32,
    seed=0,
    weights=None,
    download=True,
    device="auto",
    progress=None,
    cancel=None,
    _init=None,
    _anchor=None,
):
    """Deep Dream a frame [1]_.

    Starting at the smallest octave, the image is changed by normalised
    gradient ascent on the mean activation of ``layers``
    (``x += step * g / mean(|g|)``), with a random shift (jitter) each
    iteration. The detail gained at an octave (result minus that octave's
    input) is upscaled and added to the next, larger octave (detail
    reinjection); the last octave is the frame's own size.

    Parameters
    ----------
    frame : numpy.ndarray
        ``HxWx3`` uint8 RGB (also grey, RGBA - alpha ignored -, uint16, float 0..255).
    layers : sequence of str
        VGG19 layers to amplify, e.g. ``("conv4_2",)`` or ``("conv3_1", "conv5_1")``.
    octaves : int
        Number of scales, each ``octave_scale`` times smaller than the last.
    octave_scale : float
        Ratio between neighbouring octaves (> 1).
    iterations : int
        Gradient steps per octave.
    step : float
        Mean absolute change of a pixel per step, in 0..1 units.
    jitter : int
        Largest random shift in pixels applied before each step.
    seed : int
        Seed of the jitter; the result is deterministic on the CPU.
    weights, download, device
        As for :func:`engine.stylizers.neural.stylize_neural`. The network uses
        max pooling, as trained.
    progress : callable, optional
        ``progress(step, total, loss)`` after each iteration; ``loss`` is the
        activation being raised (it grows).
    cancel : callable or threading.Event, optional
        Checked before each iteration; :class:`Cancelled` is raised when set.

    _init, _anchor
        Private, for :mod:`.keys`: an ``HxWx3`` float32 start in 0..1 whose
        difference to the frame is the initial detail, and ``(target, weight
        map, pull)``: after every step the image moves ``pull * weight`` of the
        way to ``target`` (both at the frame's size, scaled to each octave).

    Returns
    -------
    numpy.ndarray
        ``HxWx3`` uint8 RGB of the frame's size.
    """
    from . import vgg

    import torch

    if isinstance(layers, str):
        layers = tuple(s.strip() for s in layers.split(",") if s.strip())
    try:
        layers = tuple(layers)
    except TypeError:
        raise ValueError("parameter 'layers' must be a sequence of VGG19 layer names") from None
    if not layers:
        raise ValueError("parameter 'layers' must name at least one layer")
    for name in layers:
        try:
            vgg.layer_index(name)
        except ValueError as exc:
            raise ValueError(f"parameter 'layers': {exc}") from None
    octaves = check_int("octaves", octaves, minimum=1)
    octave_scale = check_float("octave_scale", octave_scale, minimum=1.0, exclusive_minimum=True)
    iterations = check_int("iterations", iterations, minimum=0)
    step = check_float("step", step, minimum=0.0, exclusive_minimum=True)
    jitter = check_int("jitter", jitter, minimum=0)
    seed = check_int("seed", seed, minimum=0)
    check_callable("progress", progress)
    check_callable("cancel", cancel)
    if not isinstance(download, bool):
        raise ValueError(f"parameter 'download' must be True or False, got {download!r}")

    rgb, _alpha = as_float_rgb(frame, name="frame")
    H, W = rgb.shape[:2]
    if min(H, W) < _MIN_SIDE:
        raise ValueError(f"frame is {W}x{H}; Deep Dream needs at least {_MIN_SIDE} pixels per side")
    dev = vgg.resolve_device(device)
    deepest = max(vgg.layer_index(n) for n in layers)
    model = vgg.load_vgg19(weights, upto=vgg.LAYER_NAMES[deepest], pooling="max",
                           device=dev, download=download)

    base = rgb / np.float32(255.0)
    sizes = octave_sizes(H, W, octaves=octaves, octave_scale=octave_scale)[::-1]
    total = len(sizes) * iterations
    rng = np.random.default_rng(seed)
    done = 0
    detail = None
    src = None
    for h, w in sizes:
        small = np.ascontiguousarray(resize(base, h, w).transpose(2, 0, 1))
        octave_base = torch.from_numpy(small)[None].to(dev)
        if detail is None:
            detail = torch.zeros_like(octave_base)
            if _init is not None:
                start = np.ascontiguousarray(resize(np.asarray(_init, np.float32) - base, h, w).transpose(2, 0, 1))
                detail = torch.from_numpy(start)[None].to(dev)
        else:
            detail = torch.nn.functional.interpolate(detail, size=(h, w), mode="bilinear",
                                                     align_corners=False)
        src = (octave_base + detail).clamp_(0.0, 1.0)
        pull = None
        if _anchor is not None:
            target, mask, strength = _anchor
            target_t = torch.from_numpy(np.ascontiguousarray(
                resize(np.asarray(target, np.float32), h, w).transpose(2, 0, 1)))[None].to(dev)
            mask_small = resize(np.asarray(mask, np.float32), h, w).reshape(1, 1, h, w)
            pull = torch.from_numpy(np.ascontiguousarray(mask_small * float(strength))).to(dev)
        j = min(jitter, h // 4, w // 4)
        for _ in range(iterations):
            check_cancel(cancel)
            oy, ox = (int(v) for v in rng.integers(-j, j + 1, size=2)) if j > 0 else (0, 0)
            shifted = torch.roll(src, shifts=(oy, ox), dims=(2, 3)).requires_grad_(True)
            objective = layer_activation(model, shifted, layers)
            (grad,) = torch.autograd.grad(objective, shifted)
            grad = torch.roll(grad, shifts=(-oy, -ox), dims=(2, 3))
            src = (src + step / (grad.abs().mean() + 1e-12) * grad).clamp_(0.0, 1.0)
            if pull is not None:
                src = src - pull * (src - target_t)
            done += 1
            if progress is not None:
                progress(done, total, float(objective.detach()))
        detail = src - octave_base
    out = src[0].permute(1, 2, 0).contiguous().cpu().numpy()
    return to_uint8(out * 255.0)
