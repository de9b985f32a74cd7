"""An artist-painted keyframe from a file, fitted to the frame exactly.

Any size, format and bit depth is read (8/16-bit PNG, JPEG, TIFF, grey,
palette, alpha). The picture is scaled with its aspect ratio kept, then either
cropped to fill the frame (``fit="crop"``) or padded to fit inside it
(``fit="pad"``); it is never stretched. Resampling is done once, in floating
point (area filter when shrinking, bicubic when enlarging), on premultiplied
colour when there is an alpha channel, so no dark fringes appear at the edges
of transparent areas. A picture of the frame's exact size is used pixel for
pixel.
"""

from __future__ import annotations

import numpy as np

from ..images import fit_image
from ._common import as_float_rgb, check_choice, load_image_rgb, to_uint8

__all__ = ["stylize_painted"]


def _check_pad_color(value):
    try:
        vals = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"parameter 'pad_color' must be three numbers 0..255, got {value!r}") from None
    if len(vals) != 3 or not all(0.0 <= v <= 255.0 for v in vals):
        raise ValueError(f"parameter 'pad_color' must be three numbers 0..255, got {value!r}")
    return tuple(vals)


def stylize_painted(frame, *, style_image, fit="crop", pad_color=(0, 0, 0), alpha="keep"):
    """Use a picture the artist painted as the keyframe, fitted to ``frame``.

    Parameters
    ----------
    frame : numpy.ndarray
        The frame the key belongs to; gives the output size (and the background
        for ``alpha="composite"``).
    style_image : str, os.PathLike or numpy.ndarray
        The painted picture: a file of any common format and bit depth, or an
        array (``uint8``/``uint16``/float 0..255, grey, RGB or RGBA).
    fit : {"crop", "pad"}
        Aspect-preserving fit: fill the frame and cut the overflow
        (``"crop"``), or fit inside and pad (``"pad"``). See
        :func:`engine.images.fit_geometry`.
    pad_color : sequence of 3 numbers
        Border colour for ``fit="pad"`` (0..255).
    alpha : {"keep", "composite", "ignore"}
        With a picture that has an alpha channel: ``"keep"`` returns RGBA (the
        padding is transparent); ``"composite"`` lays the picture over the
        frame and returns RGB (the padding shows the frame); ``"ignore"`` drops
        the alpha. A picture without alpha always gives RGB; with
        ``"composite"`` its padding shows the frame.

    Returns
    -------
    numpy.ndarray
        ``HxWx3`` uint8 RGB, or ``HxWx4`` uint8 RGBA for ``alpha="keep"`` with a
        picture that has alpha.
    """
    fit = check_choice("fit", fit, ("crop", "pad"))
    alpha_mode = check_choice("alpha", alpha, ("keep", "composite", "ignore"))
    pad = _check_pad_color(pad_color)
    if style_image is None:
        raise ValueError("parameter 'style_image' is required for method 'image' (the painted keyframe)")
    frame_rgb, _ = as_float_rgb(frame, name="frame")
    dh, dw = frame_rgb.shape[:2]
    art_rgb, art_alpha = load_image_rgb(style_image, name="style_image")
    if alpha_mode == "ignore":
        art_alpha = None
    rgb, coverage = fit_image(art_rgb, art_alpha, (dh, dw), fit=fit, pad_color=pad)
    if alpha_mode == "composite":
        c = coverage[:, :, None]
        return to_uint8(rgb * c + frame_rgb * (np.float32(1.0) - c))
    if alpha_mode == "keep" and art_alpha is not None:
        return np.dstack([to_uint8(rgb), to_uint8(coverage * np.float32(255.0))])
    return to_uint8(rgb)
