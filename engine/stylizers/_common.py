"""Shared helpers of the keyframe stylizers: input checks, image arrays, cancellation.

Nothing here imports torch, so the painterly and painted-image stylizers work
without it.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

from ..errors import Cancelled

__all__ = [
    "Cancelled",
    "as_float_rgb",
    "to_uint8",
    "load_image_rgb",
    "check_cancel",
    "check_int",
    "check_float",
    "check_bool",
    "check_choice",
    "check_callable",
]


# ---------------------------------------------------------------------------
# Parameter checks. Every message names the parameter.
# ---------------------------------------------------------------------------


def check_int(name, value, *, minimum=None, maximum=None):
    """Return ``value`` as ``int`` or raise ``ValueError`` naming ``name``."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"parameter '{name}' must be an integer, got {value!r}")
    if not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"parameter '{name}' must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"parameter '{name}' must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"parameter '{name}' must be <= {maximum}, got {value}")
    return value


def check_float(name, value, *, minimum=None, maximum=None, exclusive_minimum=False):
    """Return ``value`` as a finite ``float`` or raise ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"parameter '{name}' must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"parameter '{name}' must be finite, got {value!r}")
    if minimum is not None:
        if exclusive_minimum and value <= minimum:
            raise ValueError(f"parameter '{name}' must be > {minimum}, got {value}")
        if not exclusive_minimum and value < minimum:
            raise ValueError(f"parameter '{name}' must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"parameter '{name}' must be <= {maximum}, got {value}")
    return value


def check_bool(name, value):
    """Return ``value`` as ``bool``; only real booleans (and numpy booleans) pass."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"parameter '{name}' must be True or False, got {value!r}")


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError``."""
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"parameter '{name}' must be one of {options}, got {value!r}")
    return value


def check_callable(name, value):
    """Allow ``None`` or a callable (``cancel`` may also be an object with ``is_set``)."""
    if value is None or callable(value):
        return value
    if name == "cancel" and callable(getattr(value, "is_set", None)):
        return value
    raise ValueError(f"parameter '{name}' must be callable or None, got {type(value).__name__}")


def check_cancel(cancel):
    """Raise :class:`Cancelled` when ``cancel`` (a callable or an Event-like) says so."""
    if cancel is None:
        return
    is_set = getattr(cancel, "is_set", None)
    flag = is_set() if callable(is_set) else cancel()
    if flag:
        raise Cancelled("stylization cancelled")


# ---------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------


def as_float_rgb(frame, *, name="frame"):
    """Validate a frame and return it as float32 RGB in 0..255, plus its alpha.

    Parameters
    ----------
    frame : numpy.ndarray
        ``HxW`` (grey), ``HxWx1``, ``HxWx2`` (grey + alpha), ``HxWx3`` (RGB) or
        ``HxWx4`` (RGBA). ``uint8`` in 0..255, ``uint16`` in 0..65535 (scaled by
        1/257) or floating point in 0..255 (clipped). A float image whose values
        all lie in 0..1 (and are not all 0) is refused: as 0..255 it is black.
    name : str
        Used in error messages.

    Returns
    -------
    rgb : numpy.ndarray
        ``HxWx3`` float32 in 0..255, C-contiguous.
    alpha : numpy.ndarray or None
        ``HxW`` float32 in 0..255 when the input had an alpha channel.
    """
    if not isinstance(frame, np.ndarray):
        from ..safety import ParameterTypeError

        raise ParameterTypeError(f"{name} must be a numpy array, got {type(frame).__name__}")
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 2, 3, 4):
        raise ValueError(
            f"{name} must have shape HxW, HxWx1, HxWx2, HxWx3 or HxWx4, got {frame.shape}"
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {frame.shape})")
    if frame.dtype == np.uint8:
        data = frame.astype(np.float32)
    elif frame.dtype == np.uint16:
        data = frame.astype(np.float32) / np.float32(257.0)
    elif np.issubdtype(frame.dtype, np.floating):
        data = frame.astype(np.float32)
        if not np.all(np.isfinite(data)):
            raise ValueError(f"{name} contains NaN or infinite values")
        peak = float(data.max())
        if 0.0 < peak <= 1.0:
            # The common mistake: a 0..1 float image, which as 0..255 is black.
            raise ValueError(
                f"{name} is a floating-point image with values in 0..1 (max {peak:.3g}); floats are read "
                f"as 0..255, so this would be black: pass {name} * 255, or a uint8 array")
        data = np.clip(data, 0.0, 255.0)
    else:
        raise ValueError(
            f"{name} must be uint8, uint16 or floating point (0..255), got dtype {frame.dtype}"
        )
    channels = data.shape[2]
    alpha = None
    if channels in (2, 4):
        alpha = np.ascontiguousarray(data[:, :, -1])
        data = data[:, :, :-1]
    if data.shape[2] == 1:
        data = np.repeat(data, 3, axis=2)
    return np.ascontiguousarray(data), alpha


def to_uint8(image):
    """Round and clip a float image in 0..255 to ``uint8``."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def load_image_rgb(image, *, name="image"):
    """Return a path or an array as float32 RGB in 0..255 and its alpha.

    Parameters
    ----------
    image : str, os.PathLike or numpy.ndarray
        A file (read with :func:`engine.images.read_image`: any format, EXIF
        orientation applied, 16-bit precision kept) or an array as
        accepted by :func:`as_float_rgb`.
    name : str
        Used in error messages.

    Returns
    -------
    rgb : numpy.ndarray
        ``HxWx3`` float32 in 0..255.
    alpha : numpy.ndarray or None
        ``HxW`` float32 in 0..255, or ``None`` without an alpha channel.
    """
    if isinstance(image, (str, os.PathLike)):
        from ..images import read_image

        return as_float_rgb(read_image(image, bits=16), name=name)
    if isinstance(image, np.ndarray):
        return as_float_rgb(image, name=name)
    from ..safety import ParameterTypeError

    raise ParameterTypeError(
        f"parameter '{name}' must be an image file path or a numpy array, got {type(image).__name__}"
    )
