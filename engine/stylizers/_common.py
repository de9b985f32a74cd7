"""Shared helpers of the keyframe stylizers: input checks, image reading, cancellation.

Nothing here imports torch, so the painterly and painted-image stylizers work
without it.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

__all__ = [
    "Cancelled",
    "as_float_rgb",
    "to_uint8",
    "read_image",
    "load_image_rgb",
    "check_cancel",
    "check_int",
    "check_float",
    "check_bool",
    "check_choice",
    "check_callable",
]


class Cancelled(Exception):
    """Raised by an optimising stylizer when its ``cancel`` callback asked it to stop."""


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


# ---------------------------------------------------------------------------
# Image files
# ---------------------------------------------------------------------------

_EXIF_ORIENTATION = 0x0112


def _exif_orientation(path):
    try:
        from PIL import Image

        with Image.open(path) as im:
            return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # no EXIF, or a format Pillow does not know: nothing to undo
        return 1


def _apply_orientation(img, orientation):
    # EXIF orientation values 1..8, as Pillow's ImageOps.exif_transpose.
    if orientation == 2:
        return img[:, ::-1]
    if orientation == 3:
        return img[::-1, ::-1]
    if orientation == 4:
        return img[::-1, :]
    if orientation == 5:
        return np.swapaxes(img, 0, 1)
    if orientation == 6:
        return np.swapaxes(img, 0, 1)[:, ::-1]
    if orientation == 7:
        return np.swapaxes(img, 0, 1)[::-1, ::-1]
    if orientation == 8:
        return np.swapaxes(img, 0, 1)[::-1, :]
    return img


def _read_with_pillow(path):
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.seek(0)
        im = ImageOps.exif_transpose(im)
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            arr = np.asarray(im)
            return np.clip(arr, 0, 65535).astype(np.uint16)
        if mode == "F":
            return np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
        has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
            mode == "P" and "transparency" in im.info
        )
        return np.asarray(im.convert("RGBA" if has_alpha else "RGB"))


def read_image(path):
    """Read an image file of any common format and bit depth.

    Parameters
    ----------
    path : str or os.PathLike
        PNG (8/16-bit, grey, palette, alpha), JPEG, TIFF, WebP, BMP, ... Files
        OpenCV cannot decode are tried with Pillow. EXIF orientation is applied.

    Returns
    -------
    numpy.ndarray
        ``HxWx3`` RGB or ``HxWx4`` RGBA, ``uint8`` or ``uint16`` as stored in the
        file (floating-point files come back as float32 in 0..1).

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When the file is empty, not an image, or has no pixels.
    """
    import cv2

    from ..frames import FrameError, check_claimed_size, read_regular_file

    path = os.fspath(path)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"image file not found: '{path}'")
    raw = read_regular_file(path, what="image")  # a FIFO or device is refused, not read forever
    if not raw:
        raise ValueError(f"image file is empty: '{path}'")
    check_claimed_size(raw, len(raw), path)
    data = np.frombuffer(raw, dtype=np.uint8)
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    if img is None:
        try:
            img = _read_with_pillow(path)
        except FrameError:
            raise
        except Exception as exc:
            raise ValueError(f"cannot read image '{path}': not a supported image ({exc})") from None
    else:
        if img.ndim == 3 and img.shape[2] == 3:
            img = img[:, :, ::-1]
        elif img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, [2, 1, 0, 3]]
        elif img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
            img = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
        else:
            raise ValueError(f"cannot read image '{path}': unsupported channel layout {img.shape}")
        if img.dtype == np.uint8 or img.dtype == np.uint16:
            pass
        elif np.issubdtype(img.dtype, np.floating):
            img = np.clip(np.nan_to_num(img.astype(np.float32)), 0.0, 1.0)
        elif img.dtype == np.int8 or img.dtype == np.int16 or img.dtype == np.int32:
            img = np.clip(img, 0, 65535).astype(np.uint16)
        else:
            raise ValueError(f"cannot read image '{path}': unsupported sample type {img.dtype}")
        img = _apply_orientation(img, _exif_orientation(path))
    if img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"image '{path}' has no pixels")
    return np.ascontiguousarray(img)


def load_image_rgb(image, *, name="image"):
    """Return a path or an array as float32 RGB in 0..255 and its alpha.

    Parameters
    ----------
    image : str, os.PathLike or numpy.ndarray
        A file (read with :func:`read_image`, any bit depth) or an array as
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
        img = read_image(image)
        if np.issubdtype(img.dtype, np.floating):
            img = img * np.float32(255.0)
        return as_float_rgb(img, name=name)
    if isinstance(image, np.ndarray):
        return as_float_rgb(image, name=name)
    from ..safety import ParameterTypeError

    raise ParameterTypeError(
        f"parameter '{name}' must be an image file path or a numpy array, got {type(image).__name__}"
    )
