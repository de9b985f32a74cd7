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

from ._common import as_float_rgb, check_choice, load_image_rgb, to_uint8

__all__ = ["stylize_painted", "fit_geometry", "fit_image"]


def fit_geometry(src_hw, dst_hw, *, fit):
    """Where a ``src_hw`` picture goes in a ``dst_hw`` frame.

    Parameters
    ----------
    src_hw, dst_hw : tuple of int
        ``(height, width)`` of the picture and of the frame.
    fit : {"crop", "pad"}
        ``"crop"`` scales by ``max(W/w, H/h)`` and cuts the overflow equally on
        both sides; ``"pad"`` scales by ``min(W/w, H/h)`` and centres the
        picture, leaving borders.

    Returns
    -------
    scaled_hw : tuple of int
        Size of the picture after scaling (aspect ratio kept to the pixel).
    offset : tuple of int
        ``(y, x)``: for ``"crop"`` the top-left corner of the frame inside the
        scaled picture, for ``"pad"`` the top-left corner of the picture inside
        the frame.
    """
    sh, sw = src_hw
    dh, dw = dst_hw
    if fit == "crop":
        s = max(dw / sw, dh / sh)
        nh, nw = max(dh, int(round(sh * s))), max(dw, int(round(sw * s)))
        return (nh, nw), ((nh - dh) // 2, (nw - dw) // 2)
    if fit == "pad":
        s = min(dw / sw, dh / sh)
        nh, nw = min(dh, max(1, int(round(sh * s)))), min(dw, max(1, int(round(sw * s))))
        return (nh, nw), ((dh - nh) // 2, (dw - nw) // 2)
    raise ValueError(f"parameter 'fit' must be 'crop' or 'pad', got {fit!r}")


def _resize(img, h, w):
    import cv2

    if img.shape[:2] == (h, w):
        return img
    shrink = h <= img.shape[0] and w <= img.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    out = cv2.resize(img, (w, h), interpolation=interp)
    return out.reshape((h, w) + img.shape[2:])


def fit_image(rgb, alpha, dst_hw, *, fit="crop", pad_color=(0, 0, 0)):
    """Fit a picture to ``dst_hw`` (see :func:`fit_geometry`).

    Parameters
    ----------
    rgb : numpy.ndarray
        ``hxwx3`` float32 in 0..255.
    alpha : numpy.ndarray or None
        ``hxw`` float32 in 0..255.
    dst_hw : tuple of int
    fit : {"crop", "pad"}
    pad_color : sequence of 3 numbers
        Colour of the borders in ``"pad"`` mode.

    Returns
    -------
    rgb : numpy.ndarray
        ``HxWx3`` float32 in 0..255.
    coverage : numpy.ndarray
        ``HxW`` float32 in 0..1: the picture's alpha where it lies, 0 on the
        padding.
    """
    dh, dw = dst_hw
    (nh, nw), (oy, ox) = fit_geometry(rgb.shape[:2], dst_hw, fit=fit)
    a = np.ones(rgb.shape[:2], np.float32) if alpha is None else alpha / np.float32(255.0)
    if alpha is not None:
        premult = rgb * a[:, :, None]
        stack = np.dstack([premult, a])
    else:
        stack = np.dstack([rgb, a])
    scaled = _resize(np.ascontiguousarray(stack, dtype=np.float32), nh, nw)
    scaled = np.clip(scaled, 0.0, None)
    scaled[:, :, 3] = np.clip(scaled[:, :, 3], 0.0, 1.0)
    if alpha is not None:
        cov = scaled[:, :, 3:4]
        color = np.where(cov > 1e-6, scaled[:, :, :3] / np.maximum(cov, 1e-6), 0.0)
    else:
        color = scaled[:, :, :3]
    color = np.clip(color, 0.0, 255.0)
    cov = scaled[:, :, 3]
    if fit == "crop":
        return (np.ascontiguousarray(color[oy:oy + dh, ox:ox + dw]),
                np.ascontiguousarray(cov[oy:oy + dh, ox:ox + dw]))
    out = np.empty((dh, dw, 3), np.float32)
    out[:] = np.asarray(pad_color, np.float32)
    coverage = np.zeros((dh, dw), np.float32)
    out[oy:oy + nh, ox:ox + nw] = color
    coverage[oy:oy + nh, ox:ox + nw] = cov
    if alpha is not None:
        # Fully transparent picture pixels show the pad colour too.
        region = out[oy:oy + nh, ox:ox + nw]
        region[cov <= 1e-6] = np.asarray(pad_color, np.float32)
    return out, coverage


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
        :func:`fit_geometry`.
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
