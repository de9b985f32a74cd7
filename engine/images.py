"""Where images are read, written, converted and fitted: the engine's one image I/O.

* :func:`read_image` reads a still image (a keyframe, a painted picture, a mask,
  a style image) of any common format and bit depth as 8-bit RGB or RGBA, with
  its EXIF orientation applied (Pillow's ``ImageOps.exif_transpose``), so the
  same JPEG is the same picture whether ``stylize --method image`` or
  ``propagate --key`` reads it. :func:`decode_image` decodes the bytes; frames
  of a clip are decoded with it too, as they are stored (no EXIF rotation: a
  clip's frames are shown as stored by Blender and video tools).
* :func:`to_8bit` is the one conversion of 16-bit (or float) samples to 8 bits.
* :func:`write_image` / :func:`encode_image` write PNG or JPEG atomically.
* :func:`resize` (area when shrinking, cubic when enlarging), :func:`fit_geometry`,
  :func:`fit_image` and :func:`fit_to` fit a picture to a frame size, keeping
  its aspect ratio.
* :func:`check_image_file` checks a file from its header without decoding it.

Every problem with a file raises :class:`~engine.errors.FrameError`, a
``ValueError`` whose message names the file.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import cv2
import numpy as np

from .errors import FileMissingError, FrameError
from .files import is_inside, read_regular_file, regular_file_problem, write_bytes_atomic

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "ASPECT_TOLERANCE",
    "read_image",
    "decode_image",
    "to_8bit",
    "encode_image",
    "write_image",
    "check_image_file",
    "check_claimed_size",
    "header_size",
    "resize",
    "aspect_differs",
    "fit_geometry",
    "fit_image",
    "fit_to",
]

#: File extensions (lower case) that an image-sequence folder may hold.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
#: Largest image, in pixels, that is decoded: Pillow's decompression-bomb limit
#: (``2 * PIL.Image.MAX_IMAGE_PIXELS``), 13x an 8K frame.
MAX_IMAGE_PIXELS = 2 * 89_478_485
#: DEFLATE packs at most 1032 bytes into one (RFC 1951: a 258-byte match costs
#: at least 2 bits), so a PNG whose pixels need more than this many times its
#: size is lying about its size.
_DEFLATE_MAX_RATIO = 1032
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_TAIL_BYTES = 65536
#: Largest aspect-ratio difference a picture is resized across without cropping
#: or padding (1 %).
ASPECT_TOLERANCE = 0.01
_EXIF_ORIENTATION = 0x0112  # the EXIF "Orientation" tag (PIL.ExifTags.Base.Orientation)


# --------------------------------------------------------------------------------------
# samples


def to_8bit(array, what="image"):
    """Samples as uint8: the one 16-to-8-bit conversion of the engine.

    uint8 is returned as it is; uint16 is rounded (``v * 255 / 65535``); signed
    integers are clipped to 0..65535 first; floating point is read as 0..1
    (NaN as 0).

    Raises
    ------
    FrameError
        For any other sample type, naming ``what``.
    """
    if array.dtype == np.uint8:
        return array
    if array.dtype in (np.int8, np.int16, np.int32):
        array = np.clip(array, 0, 65535).astype(np.uint16)
    if array.dtype == np.uint16:
        return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        values = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.rint(np.clip(values, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
    raise FrameError(f"{what}: unsupported sample type {array.dtype} (expected 8- or 16-bit integers)")


# --------------------------------------------------------------------------------------
# decoding


def _kind(data):
    return "PNG" if data.startswith(_PNG_SIGNATURE) else "JPEG" if data.startswith(_JPEG_SIGNATURE) else "image"


def _decode_with_pillow(data, path):
    """What OpenCV cannot decode (GIF, palette tricks...), by Pillow: an array, or None."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.seek(0)
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                return np.asarray(im)
            if mode == "F":
                return np.asarray(im, dtype=np.float32)
            has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info)
            return np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    except Image.DecompressionBombError as exc:
        raise FrameError(f"{path}: image too large to decode safely ({exc})") from None
    except Exception:  # noqa: BLE001 - any failure of a fallback decoder means "cannot decode"
        return None


def _to_16bit(array, what):
    """Samples as uint8 or uint16, for a reader that keeps 16-bit precision."""
    if array.dtype in (np.uint8, np.uint16):
        return array
    if array.dtype in (np.int8, np.int16, np.int32):
        return np.clip(array, 0, 65535).astype(np.uint16)
    if np.issubdtype(array.dtype, np.floating):
        values = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.rint(np.clip(values, 0.0, 1.0) * np.float32(65535.0)).astype(np.uint16)
    raise FrameError(f"{what}: unsupported sample type {array.dtype} (expected 8- or 16-bit integers)")


def decode_image(data, path, *, bits=8):
    """Decode image bytes to ``(rgb HxWx3, alpha HxW or None)``, as stored.

    OpenCV decodes (PNG, JPEG, TIFF, WebP, BMP...); what it cannot is tried with
    Pillow (GIF...). Grey is replicated to RGB. With ``bits=8`` (default) the
    samples are uint8 (16-bit and float ones through :func:`to_8bit`); with
    ``bits=16`` a 16-bit (or float) file keeps its precision as uint16 and an
    8-bit one stays uint8. EXIF orientation is not applied here (see
    :func:`read_image`).
    """
    if len(data) == 0:
        raise FrameError(f"{path}: file is empty (0 bytes)")
    if data.startswith(_PNG_SIGNATURE):
        problem = _png_structure_problem(data)
        if problem:
            raise FrameError(f"{path}: corrupt PNG ({problem})")
    check_claimed_size(data, len(data), path)
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        array = None
    bgr = array is not None
    if array is None:
        array = _decode_with_pillow(data, path)
    if array is None:
        raise FrameError(f"{path}: cannot decode {_kind(data)} (corrupt, truncated or not an image)")
    array = to_8bit(array, path) if bits == 8 else _to_16bit(array, path)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise FrameError(f"{path}: image has no pixels")
    channels = array.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2)), None
    if channels == 2:  # grey + alpha
        return np.ascontiguousarray(np.repeat(array[:, :, :1], 3, axis=2)), np.ascontiguousarray(array[:, :, 1])
    if channels == 3:
        return (cv2.cvtColor(array, cv2.COLOR_BGR2RGB) if bgr else np.ascontiguousarray(array)), None
    if channels == 4:
        rgba = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA) if bgr else array
        return np.ascontiguousarray(rgba[:, :, :3]), np.ascontiguousarray(rgba[:, :, 3])
    raise FrameError(f"{path}: unsupported channel count {channels}")


def _exif_orientation(data):
    """The EXIF orientation (1..8) the file declares; 1 when it has none."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - no EXIF, or a format Pillow does not know: nothing to undo
        return 1


def _apply_orientation(image, orientation):
    """``image`` (HxWxC, uint8 or uint16) as displayed, by Pillow's ``ImageOps.exif_transpose``.

    ``exif_transpose`` reads the orientation from ``Image.getexif()``, which
    returns the image's own cached ``Exif`` (PIL/Image.py ``getexif``), so the
    tag is set on that object and Pillow picks the transposition. Each channel
    goes through on its own (mode L or I;16), so 16-bit samples keep their
    precision.
    """
    from PIL import Image, ImageOps

    planes = []
    for c in range(image.shape[2]):
        im = Image.fromarray(np.ascontiguousarray(image[:, :, c]))
        im.getexif()[_EXIF_ORIENTATION] = orientation
        planes.append(np.asarray(ImageOps.exif_transpose(im)))
    return np.ascontiguousarray(np.dstack(planes).astype(image.dtype, copy=False))


def read_image(path, *, alpha=True, bits=8):
    """Read a still image (a keyframe, a painted picture, a mask) as 8-bit RGB or RGBA.

    Parameters
    ----------
    path : str or os.PathLike
        Any format OpenCV or Pillow decodes (PNG, JPEG, TIFF, WebP, BMP, GIF...),
        any size, 8- or 16-bit, grey, grey+alpha, palette, RGB or RGBA. Its EXIF
        orientation is applied, as image viewers show it.
    alpha : bool, optional
        When true (default) an image with an alpha channel comes back as HxWx4 RGBA;
        when false the alpha channel is dropped.
    bits : {8, 16}, optional
        8 (default): 16-bit samples are rounded to 8 bits (:func:`to_8bit`).
        16: a 16-bit file comes back as uint16 (an 8-bit one as uint8), for
        readers that resample in floating point (a painted picture).

    Returns
    -------
    numpy.ndarray
        uint8 (or, with ``bits=16``, uint16) array, HxWx3 (RGB) or HxWx4 (RGBA).
        Grey images are replicated to RGB.

    Raises
    ------
    FrameError
        When the file is missing (then also a ``FileNotFoundError``), empty,
        corrupt or not an image; the message names it.
    """
    if not os.path.lexists(path):
        raise FileMissingError(f"{path}: image not found")
    data = read_regular_file(path, what="image")
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits!r}")
    rgb, a = decode_image(data, path, bits=bits)
    image = np.dstack([rgb, a]) if alpha and a is not None else rgb
    orientation = _exif_orientation(data)
    if orientation != 1:
        image = _apply_orientation(image, orientation)
    return image


def _png_structure_problem(data):
    """Walk a PNG's chunk headers; return what is wrong, or ``None``.

    OpenCV's decoder trusts chunk lengths and can spend seconds allocating for a
    corrupt one, so the structure is checked first (this costs microseconds).
    """
    pos = len(_PNG_SIGNATURE)
    size = len(data)
    first = True
    while True:
        if pos + 8 > size:
            return "truncated: no IEND chunk"
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if first and kind != b"IHDR":
            return "no IHDR chunk"
        first = False
        if length > 0x7FFFFFFF or not kind.isalpha():
            return f"bad chunk header at byte {pos}"
        end = pos + 12 + length
        if end > size:
            return f"truncated inside a {kind.decode('ascii')} chunk"
        if kind == b"IEND":
            return None
        pos = end


def _claimed_size(data):
    """``(w, h, raw_bytes or None)`` that a PNG or JPEG header claims, or ``None``.

    ``raw_bytes`` is the size of a PNG's filtered pixel data (what DEFLATE packs).
    """
    if data.startswith(_PNG_SIGNATURE) and len(data) >= 26 and data[12:16] == b"IHDR":
        w = int.from_bytes(data[16:20], "big")
        h = int.from_bytes(data[20:24], "big")
        depth, colour = data[24], data[25]
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 4)
        return w, h, h * (1 + (w * channels * max(depth, 1) + 7) // 8)
    if data.startswith(_JPEG_SIGNATURE):
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker == 0xFF:
                pos += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                pos += 2
                continue
            length = int.from_bytes(data[pos + 2:pos + 4], "big")
            # Start of frame (baseline, progressive, lossless...): height, width follow the precision.
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                if pos + 9 > len(data):
                    return None
                h = int.from_bytes(data[pos + 5:pos + 7], "big")
                w = int.from_bytes(data[pos + 7:pos + 9], "big")
                return w, h, None
            if marker == 0xDA:
                return None
            pos += 2 + length
    return None


def check_claimed_size(head, file_size, path):
    """Refuse an image whose header claims more pixels than can be decoded safely.

    Parameters
    ----------
    head : bytes
        The file's first bytes (all of them for a JPEG, whose size may come late).
    file_size : int
        The file's size in bytes.
    path : str or os.PathLike
        For the message.

    Raises
    ------
    FrameError
        When the claimed size is over :data:`MAX_IMAGE_PIXELS`, or a PNG's pixel
        data could not fit in the file (a decompression bomb or a damaged header).
    """
    claim = _claimed_size(head)
    if claim is None:
        return
    w, h, raw = claim
    if w * h > MAX_IMAGE_PIXELS:
        raise FrameError(f"{path}: the header claims {w}x{h} pixels, more than the "
                         f"{MAX_IMAGE_PIXELS:,} an image may have (a decompression bomb or a damaged file)")
    if raw is not None and raw > file_size * _DEFLATE_MAX_RATIO:
        raise FrameError(f"{path}: the header claims {w}x{h} pixels but the file holds only {file_size} "
                         "bytes, too few for them (a decompression bomb or a damaged file)")


def header_size(path):
    """``(h, w)`` from an image header without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    problem = regular_file_problem(path, "image")
    if problem:
        raise FrameError(problem)
    try:
        size = os.path.getsize(path)
        if size == 0:
            raise FrameError(f"{path}: file is empty (0 bytes)")
        with open(path, "rb") as handle:
            check_claimed_size(handle.read(1 << 16), size, path)
        with Image.open(path) as image:
            w, h = image.size
    except FrameError:
        raise
    except FileNotFoundError:
        raise FrameError(f"{path}: file not found") from None
    except Image.DecompressionBombError as exc:
        raise FrameError(f"{path}: image too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise FrameError(f"{path}: unreadable image header ({exc})") from None
    if w * h > MAX_IMAGE_PIXELS:
        raise FrameError(f"{path}: {w}x{h} pixels, more than the {MAX_IMAGE_PIXELS:,} an image may have")
    return int(h), int(w)


def check_image_file(path):
    """Check an image file cheaply without decoding it: ``(h, w)`` from its header.

    Finds what would otherwise surface half-way through a job: a file that is
    missing, not a regular file, empty, truncated, unreadable, or whose header
    claims too many pixels.

    Raises
    ------
    FrameError
        Naming the file.
    """
    h, w = header_size(path)
    try:
        complete = tail_looks_complete(path)
    except OSError as exc:
        raise FrameError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not complete:
        raise FrameError(f"{path}: file is truncated")
    return h, w


def tail_looks_complete(path):
    """Cheap truncation check from the last bytes of a PNG or JPEG file."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
        if head.startswith(_PNG_SIGNATURE):
            handle.seek(max(0, size - len(_PNG_IEND)))
            return handle.read() == _PNG_IEND
        if head.startswith(_JPEG_SIGNATURE):
            start = max(0, size - _JPEG_TAIL_BYTES)
            handle.seek(start)
            tail = handle.read()
            # Entropy-coded data never holds 0xFFD9 (0xFF bytes are stuffed), so a
            # complete file has an EOI marker after its last scan.
            eoi = tail.rfind(b"\xff\xd9")
            if eoi < 0:
                return False
            return start > 0 or eoi > tail.rfind(b"\xff\xda")
    return True


# --------------------------------------------------------------------------------------
# writing


def encode_image(path, image):
    """The bytes :func:`write_image` would write for ``image`` at ``path`` (PNG or JPEG by suffix)."""
    return _encode(Path(path), image)


def _encode(path, image):
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"image must be uint8 or uint16, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(f"image must be HxW, HxWx3 (RGB) or HxWx4 (RGBA), got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: {image.shape}")
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        if image.dtype != np.uint8 or (image.ndim == 3 and image.shape[2] == 4):
            raise ValueError(f"{path}: JPEG output takes 8-bit grey or RGB only")
        params = [cv2.IMWRITE_JPEG_QUALITY, 95]
    elif suffix == ".png":
        # zlib level 1, what Blender writes by default: its PNG "compression" is
        # 15 % by default (bpy ImageFormatSettings.compression), which
        # imb_save_png (source/blender/imbuf/intern/format_png.cc) turns into
        # int(15 / 11.1111) = 1. It is also OpenCV's own default (imgcodecs.hpp,
        # IMWRITE_PNG_COMPRESSION: "Default value is 1 (best speed setting)").
        # Lossless at any level; level 3 took 1.5 times as long (0.23 s against
        # 0.15 s for a 1080p frame on the 2-core test machine).
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    else:
        raise ValueError(f"{path}: output must be .png (or .jpg), got {suffix or 'no suffix'!r}")
    if image.ndim == 3:
        code = cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
        image = cv2.cvtColor(np.ascontiguousarray(image), code)
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(image), params)
    if not ok:
        raise FrameError(f"{path}: encoding failed")
    return buf.tobytes()


def write_image(path, image, *, protect=None):
    """Write an image file atomically (no truncated file on a crash).

    Parameters
    ----------
    path : str or os.PathLike
        Destination ``.png`` (or ``.jpg`` for 8-bit RGB/grey); its folder must exist.
    image : numpy.ndarray
        uint8 or uint16, HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA). uint16 gives a
        16-bit PNG.
    protect : str or os.PathLike, optional
        A source folder that must never be written: a ``path`` inside it is refused.

    Raises
    ------
    FrameError
        When ``path`` lies inside ``protect``, or the folder is missing/unwritable.
    ValueError, TypeError
        For an image of the wrong type, dtype or shape.
    """
    path = Path(path)
    if protect is not None and is_inside(path, protect):
        raise FrameError(f"{path}: refusing to write inside the source folder {protect}")
    write_bytes_atomic(path, _encode(path, image))


# --------------------------------------------------------------------------------------
# resizing and fitting


def resize(image, h, w, *, enlarge="cubic"):
    """``image`` resized to ``h x w``: area filter when the pixel count shrinks,
    bicubic (or ``enlarge="linear"``: bilinear, for masks) when it grows.

    Any dtype OpenCV resizes (uint8, float32...); channels are kept, a single
    channel included.
    """
    if image.shape[:2] == (h, w):
        return image
    if h * w < image.shape[0] * image.shape[1]:
        interpolation = cv2.INTER_AREA
    else:
        interpolation = {"cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR}[enlarge]
    out = cv2.resize(image, (w, h), interpolation=interpolation)
    return out.reshape((h, w) + image.shape[2:])


def aspect_differs(src_hw, dst_hw):
    """Whether two sizes' aspect ratios differ by more than :data:`ASPECT_TOLERANCE`."""
    (sh, sw), (dh, dw) = src_hw, dst_hw
    return abs((sw / sh) / (dw / dh) - 1.0) > ASPECT_TOLERANCE


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
    scaled = resize(np.ascontiguousarray(stack, dtype=np.float32), nh, nw)
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


def fit_to(image, size, *, fit="refuse", what="image", stacklevel=2):
    """An 8-bit picture (a keyframe) fitted to the frames' ``size``.

    A picture of the same aspect ratio (within :data:`ASPECT_TOLERANCE`) is
    resized (:func:`resize`), with a warning. One of another aspect is refused
    with ``fit="refuse"``, else cropped or padded (:func:`fit_image`), with a
    warning; padding is transparent, so the result is RGBA.

    Parameters
    ----------
    image : numpy.ndarray
        HxW, HxWx3 or HxWx4, uint8 or uint16 (rounded to 8 bits).
    size : tuple of int
        ``(H, W)``.
    fit : {"refuse", "crop", "pad"}
    what : str
        Names the picture in messages.
    stacklevel : int
        Of the warnings (2: the caller of this function).

    Returns
    -------
    numpy.ndarray
        uint8, ``H x W x 3`` or ``H x W x 4``.
    """
    if image.dtype != np.uint8 and image.dtype != np.uint16:
        raise ValueError(f"{what}: keyframe must be 8- or 16-bit, got {image.dtype}")
    image = to_8bit(image, what)
    if image.ndim == 2:
        image = np.dstack([image] * 3)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"{what}: keyframe must be RGB or RGBA, got shape {image.shape}")
    h, w = size
    kh, kw = image.shape[:2]
    if kh == 0 or kw == 0:
        raise ValueError(f"{what}: keyframe is empty ({kw}x{kh} pixels)")
    if (kh, kw) == (h, w):
        return image
    if not aspect_differs((kh, kw), (h, w)):
        warnings.warn(f"{what}: keyframe is {kw}x{kh}, resized to the frames' {w}x{h}", stacklevel=stacklevel)
        return resize(image, h, w)
    if fit == "refuse":
        raise ValueError(
            f"{what}: keyframe is {kw}x{kh} but the frames are {w}x{h}, a different aspect ratio; "
            f"set key_fit to 'crop' or 'pad' to fit it anyway")
    warnings.warn(f"{what}: keyframe is {kw}x{kh}, fitted to {w}x{h} by {fit}", stacklevel=stacklevel)
    rgb = image[:, :, :3].astype(np.float32)
    alpha = image[:, :, 3].astype(np.float32) if image.shape[2] == 4 else None
    fitted, coverage = fit_image(rgb, alpha, (h, w), fit=fit)
    fitted = np.clip(np.rint(fitted), 0, 255).astype(np.uint8)
    if alpha is None and fit == "crop":
        return fitted
    return np.dstack([fitted, np.clip(np.rint(coverage * 255.0), 0, 255).astype(np.uint8)])
