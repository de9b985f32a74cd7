"""Frame sources and sinks.

A *source* is a clip of frames addressed by frame number: an image-sequence folder
(PNG or JPEG, 8- or 16-bit) or a video file. Frames are decoded on demand and only a
small LRU cache is kept, so memory does not grow with the length of the clip.

Frame numbers come from the trailing digits of a file's stem, as Blender writes
them: ``0001.png`` is frame 1 and ``shot_0012.jpg`` is frame 12. Video frames are
numbered from 1.

Outputs are written atomically (:func:`write_frame_atomic`): the bytes go to a hidden
temporary name in the destination folder and are then renamed over the final name,
so a crash never leaves a truncated frame behind.

Every user-facing problem raises :class:`FrameError`, a :class:`ValueError` whose
message names the offending file.
"""

from __future__ import annotations

import collections
import errno
import os
import re
import secrets
import stat
import threading
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "FrameError",
    "WriteError",
    "IMAGE_EXTENSIONS",
    "ImageSequence",
    "VideoSource",
    "open_frames",
    "frame_number_from_name",
    "read_image",
    "write_frame_atomic",
    "write_bytes_atomic",
    "remove_stale_temp_files",
    "check_output_dir",
    "read_regular_file",
    "check_image_file",
    "encode_image",
    "MAX_IMAGE_PIXELS",
]

#: File extensions (lower case) that an image-sequence folder may hold.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

# ASCII digits only: ``\d`` would also number a name ending in other scripts' digits.
_TRAILING_DIGITS = re.compile(r"([0-9]+)$")
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


class FrameError(ValueError):
    """A frame, folder or video cannot be used; the message names the file.

    Attributes
    ----------
    problems : list of str
        Every problem found (more than one only for :meth:`ImageSequence.validate`).
    """

    def __init__(self, message, *, problems=None):
        super().__init__(message)
        self.problems = list(problems) if problems is not None else [message]


class WriteError(FrameError, OSError):
    """Writing an output or cache file failed; the message names the file.

    Both a :class:`FrameError` (so a user-facing error) and an :class:`OSError`.
    A full disk reads ``"disk full while writing PATH ..."``.

    Attributes
    ----------
    errno : int or None
        The operating system's error number (``errno.ENOSPC`` for a full disk).
    """

    def __init__(self, message, *, errno=None):
        super().__init__(message)
        self.errno = errno


# --------------------------------------------------------------------------------------
# decoding


def frame_number_from_name(name):
    """Frame number given by the trailing digits of a file name's stem.

    Parameters
    ----------
    name : str or os.PathLike
        A file name or path, e.g. ``"0001.png"`` or ``"shot_0012.jpg"``.

    Returns
    -------
    int or None
        The number (``1`` and ``12`` above), or ``None`` when the stem does not end
        in digits.
    """
    match = _TRAILING_DIGITS.search(Path(name).stem)
    return int(match.group(1)) if match else None


def _to_uint8(array, path):
    """Convert a decoded uint8/uint16 array to uint8 (16-bit values rounded)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    raise FrameError(
        f"{path}: unsupported sample type {array.dtype} (expected 8- or 16-bit integers)"
    )


def _decode(data, path):
    """Decode image bytes to ``(rgb uint8 HxWx3, alpha uint8 HxW or None)``."""
    if len(data) == 0:
        raise FrameError(f"{path}: file is empty (0 bytes)")
    if data.startswith(_PNG_SIGNATURE):
        problem = _png_structure_problem(data)
        if problem:
            raise FrameError(f"{path}: corrupt PNG ({problem})")
    check_claimed_size(data, len(data), path)
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        kind = (
            "PNG"
            if data.startswith(_PNG_SIGNATURE)
            else "JPEG"
            if data.startswith(_JPEG_SIGNATURE)
            else "image"
        )
        raise FrameError(f"{path}: cannot decode {kind} (corrupt, truncated or not an image)")
    array = _to_uint8(array, path)
    if array.ndim == 2:
        array = array[:, :, None]
    channels = array.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2)), None
    if channels == 3:
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGB), None
    if channels == 4:
        rgba = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)
        return np.ascontiguousarray(rgba[:, :, :3]), np.ascontiguousarray(rgba[:, :, 3])
    raise FrameError(f"{path}: unsupported channel count {channels}")


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


def _regular_file_problem(path, what):
    """Why ``path`` is not a readable regular file, or ``None`` (symbolic links followed)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"{path}: broken symbolic link (its target {os.readlink(path)!r} does not exist)"
        return f"{path}: {what} not found"
    except OSError as exc:
        return f"{path}: cannot read {what} ({exc.strerror or exc})"
    if stat.S_ISDIR(st.st_mode):
        return f"{path}: is a folder, not {'an' if what[:1] in 'aeiou' else 'a'} {what}"
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        return f"{path}: is {kind}, not a regular {what} file; give a regular file"
    return None


def read_regular_file(path, *, what="file"):
    """All the bytes of a regular file; anything else is refused without blocking.

    A FIFO would block forever and ``/dev/zero`` never ends, so only regular
    files (after following symbolic links) are read, and the file is opened
    non-blocking and checked again once open, in case it was swapped meanwhile.

    Parameters
    ----------
    path : str or os.PathLike
    what : str
        What the file is, for messages ("image", "key", ...).

    Raises
    ------
    FrameError
        Naming the file, when it is missing, a broken symbolic link, a folder, a
        FIFO, device or socket, or unreadable.
    """
    problem = _regular_file_problem(path, what)
    if problem:
        raise FrameError(problem)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise FrameError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FrameError(f"{path}: is not a regular file; give a regular {what} file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()  # sized from fstat, as Path.read_bytes
    except OSError as exc:
        raise FrameError(f"{path}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _read_bytes(path):
    return read_regular_file(path, what="image")


def read_image(path, *, alpha=True):
    """Read a still image (a keyframe, a mask) as 8-bit RGB or RGBA.

    Parameters
    ----------
    path : str or os.PathLike
        Any format OpenCV decodes (PNG and JPEG at least), any size, 8- or 16-bit,
        grey, grey+alpha, RGB or RGBA. EXIF orientation is ignored, as for frames.
    alpha : bool, optional
        When true (default) an image with an alpha channel comes back as HxWx4 RGBA;
        when false the alpha channel is dropped.

    Returns
    -------
    numpy.ndarray
        uint8 array, HxWx3 (RGB) or HxWx4 (RGBA). Grey images are replicated to RGB
        and 16-bit samples are rounded to 8 bits.

    Raises
    ------
    FrameError
        When the file is missing, empty, corrupt or not an image; the message names it.
    """
    rgb, a = _decode(_read_bytes(path), path)
    if alpha and a is not None:
        return np.dstack([rgb, a])
    return rgb


def _header_size(path):
    """``(h, w)`` from an image header without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    problem = _regular_file_problem(path, "image")
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
    h, w = _header_size(path)
    try:
        complete = _tail_looks_complete(path)
    except OSError as exc:
        raise FrameError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not complete:
        raise FrameError(f"{path}: file is truncated")
    return h, w


def _tail_looks_complete(path):
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
# sources


class _FrameCache:
    """A tiny LRU of decoded frames, keyed by frame number."""

    def __init__(self, capacity, *, max_bytes=None):
        self.capacity = max(0, int(capacity))
        self.max_bytes = max_bytes
        self._items = collections.OrderedDict()

    def get(self, key):
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key, value):
        if self.capacity == 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        if self.max_bytes is not None:
            total = sum(_nbytes(v) for v in self._items.values())
            while len(self._items) > 1 and total > self.max_bytes:
                total -= _nbytes(self._items.popitem(last=False)[1])

    def clear(self):
        self._items.clear()

    def __len__(self):
        return len(self._items)


def _nbytes(item):
    return sum(getattr(a, "nbytes", 0) for a in item) if isinstance(item, tuple) else getattr(item, "nbytes", 0)


def _freeze(rgb, alpha):
    rgb.flags.writeable = False
    if alpha is not None:
        alpha.flags.writeable = False
    return rgb, alpha


class _Source:
    """Shared behaviour of frame sources (numbering, iteration, caching)."""

    kind = ""

    def __init__(self, path, *, cache_size):
        self.path = Path(path)
        self._cache = _FrameCache(cache_size)
        self._size = None
        # Reads may come from two threads at once (a span's two passes): the
        # cache and a video's decoder position are shared.
        self._lock = threading.RLock()

    @property
    def frame_numbers(self):
        """list of int: the clip's frame numbers, ascending."""
        return list(self._numbers)

    @property
    def first(self):
        """int: the first frame number."""
        return self._numbers[0]

    @property
    def last(self):
        """int: the last frame number."""
        return self._numbers[-1]

    def __len__(self):
        return len(self._numbers)

    def __contains__(self, n):
        return n in self._number_set

    def __iter__(self):
        """Yield ``(frame_number, rgb)`` in ascending frame order, streaming."""
        for n in self._numbers:
            yield n, self.read(n)

    def _check_number(self, n):
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"frame number must be an int, got {type(n).__name__}")
        n = int(n)
        if n not in self._number_set:
            raise FrameError(
                f"{self.path}: frame {n} is not in the clip "
                f"({len(self._numbers)} frames, {self._numbers[0]}..{self._numbers[-1]})"
            )
        return n

    def _get(self, n):
        n = self._check_number(n)
        with self._lock:
            item = self._cache.get(n)
            if item is None:
                item = self._decode_frame(n)
                self._cache.put(n, item)
        return item

    def read(self, n):
        """Decode frame ``n`` as RGB.

        Parameters
        ----------
        n : int
            A frame number from :attr:`frame_numbers`.

        Returns
        -------
        numpy.ndarray
            Read-only HxWx3 uint8 RGB array (copy it before changing it). 16-bit
            frames are rounded to 8 bits; an alpha channel is dropped (see
            :meth:`read_alpha`).

        Raises
        ------
        FrameError
            When the frame is not in the clip, cannot be decoded, or its size differs
            from :attr:`size`.
        """
        return self._get(n)[0]

    def read_alpha(self, n):
        """The alpha channel of frame ``n``.

        Parameters
        ----------
        n : int
            A frame number from :attr:`frame_numbers`.

        Returns
        -------
        numpy.ndarray or None
            Read-only HxW uint8 alpha, or ``None`` when the frame has no alpha.
        """
        return self._get(n)[1]

    def _check_size(self, rgb, what):
        if rgb.shape[:2] != self.size:
            h, w = rgb.shape[:2]
            H, W = self.size
            raise FrameError(
                f"{what}: mixed resolutions in the clip: this frame is {w}x{h} "
                f"but the clip is {W}x{H}"
            )

    def close(self):
        """Release decoders and cached frames."""
        self._cache.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ImageSequence(_Source):
    """A folder of numbered PNG/JPEG frames.

    Use :func:`open_frames` rather than building this directly.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder. Files whose stem ends in digits and whose extension is in
        :data:`IMAGE_EXTENSIONS` are frames; hidden files and other files are ignored.
    cache_size : int, optional
        How many decoded frames to keep (LRU).

    Attributes
    ----------
    path : pathlib.Path
        The folder.
    kind : str
        ``"images"``.
    """

    kind = "images"

    def __init__(self, folder, *, cache_size=4):
        super().__init__(folder, cache_size=cache_size)
        folder = self.path
        if not folder.exists():
            raise FrameError(f"{folder}: folder not found")
        if not folder.is_dir():
            raise FrameError(f"{folder}: not a folder")
        by_number = {}
        unnumbered = 0
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise FrameError(f"{folder}: cannot list folder ({exc.strerror or exc})") from None
        for entry in entries:
            name = entry.name
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            n = frame_number_from_name(name)
            if n is None:
                unnumbered += 1
                continue
            # A frame that cannot be read is an error, never a silent gap in the clip.
            problem = _regular_file_problem(entry.path, "frame")
            if problem:
                raise FrameError(problem)
            if n in by_number:
                raise FrameError(
                    f"{folder}: duplicate frame number {n}: "
                    f"{by_number[n].name} and {name}"
                )
            by_number[n] = Path(entry.path)
        if not by_number:
            extra = (
                f" ({unnumbered} image(s) without a trailing frame number)" if unnumbered else ""
            )
            raise FrameError(f"{folder}: no numbered PNG/JPEG frames in the folder{extra}")
        self._paths = by_number
        self._numbers = sorted(by_number)
        self._number_set = frozenset(self._numbers)

    @property
    def size(self):
        """tuple of int: ``(h, w)`` of the clip, from the first frame's header."""
        if self._size is None:
            self._size = _header_size(self._paths[self._numbers[0]])
        return self._size

    def path_for(self, n):
        """pathlib.Path: the file of frame ``n``."""
        return self._paths[self._check_number(n)]

    def name_for(self, n):
        """Output file name for frame ``n``: the input stem with a ``.png`` suffix.

        Parameters
        ----------
        n : int
            A frame number of the clip.

        Returns
        -------
        str
            E.g. ``"shot_0012.png"`` for ``shot_0012.jpg``.
        """
        return self.path_for(n).stem + ".png"

    def _decode_frame(self, n):
        path = self._paths[n]
        rgb, alpha = _decode(_read_bytes(path), path)
        self._check_size(rgb, path)
        return _freeze(rgb, alpha)

    def validate(self, *, decode=False):
        """Check every frame cheaply, and report all problems at once.

        Reads each header (no pixel decode) and the last bytes of each file, which
        finds missing, empty, unreadable and truncated files and mixed resolutions.

        Parameters
        ----------
        decode : bool, optional
            Also fully decode every frame (slow but exhaustive).

        Raises
        ------
        FrameError
            Listing every problem found (its ``problems`` attribute has them all).
        """
        problems = []
        try:
            size = self.size
        except FrameError as exc:
            size = None
            problems.append(str(exc))
        for n in self._numbers[(1 if size is None else 0):]:
            path = self._paths[n]
            try:
                h, w = _header_size(path)
                if size is not None and (h, w) != size:
                    problems.append(
                        f"{path}: mixed resolutions in the clip: this frame is {w}x{h} "
                        f"but the clip is {size[1]}x{size[0]}"
                    )
                    continue
                if not _tail_looks_complete(path):
                    problems.append(f"{path}: file is truncated")
                    continue
                if decode:
                    rgb, _ = _decode(_read_bytes(path), path)
                    if size is not None:
                        self._check_size(rgb, path)
            except FrameError as exc:
                problems.append(str(exc))
            except OSError as exc:
                problems.append(f"{path}: cannot read ({exc.strerror or exc})")
        if problems:
            shown = problems[:10]
            more = f"\n... and {len(problems) - 10} more" if len(problems) > 10 else ""
            raise FrameError(
                f"{self.path}: {len(problems)} bad frame(s):\n" + "\n".join(shown) + more,
                problems=problems,
            )


class VideoSource(_Source):
    """A video file decoded with OpenCV, frames numbered from 1.

    Use :func:`open_frames` rather than building this directly. Random access
    decodes forward from the current position for short forward jumps and seeks
    otherwise; a backward jump decodes a block of ``cache_size`` frames ending at
    the requested one, so reading a clip in reverse order costs one seek per block.

    Parameters
    ----------
    path : str or os.PathLike
        The video file.
    cache_size : int, optional
        How many decoded frames to keep (LRU), also the reverse-read block size.

    Attributes
    ----------
    path : pathlib.Path
        The video file.
    kind : str
        ``"video"``.
    fps : float
        Frames per second reported by the container (0 when unknown).
    """

    kind = "video"
    _FORWARD_DECODE_LIMIT = 48

    def __init__(self, path, *, cache_size=8):
        super().__init__(path, cache_size=max(1, cache_size))
        path = self.path
        problem = _regular_file_problem(path, "video")
        if problem:
            raise FrameError(problem)
        if path.stat().st_size == 0:
            raise FrameError(f"{path}: file is empty (0 bytes)")
        cap = self._open()
        count = 0
        try:
            ok, first = cap.read()
            if not ok or first is None:
                raise FrameError(f"{path}: not a video OpenCV can decode (no frames)")
            count = 1
            while cap.grab():
                count += 1
            self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        finally:
            cap.release()
        self._size = tuple(int(v) for v in first.shape[:2])
        self._numbers = list(range(1, count + 1))
        self._number_set = frozenset(self._numbers)
        self._pad = max(4, len(str(count)))
        self._cap = None
        self._next = 1  # frame number the open capture decodes next

    def _open(self):
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise FrameError(f"{self.path}: not a video OpenCV can open")
        return cap

    @property
    def size(self):
        """tuple of int: ``(h, w)`` of the video."""
        return self._size

    def name_for(self, n):
        """Output file name for frame ``n``: zero-padded number, e.g. ``"0001.png"``."""
        return f"{self._check_number(n):0{self._pad}d}.png"

    def _decode_one(self, n):
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            self._reset()
            raise FrameError(f"{self.path}: cannot decode frame {n}")
        self._next = n + 1
        if bgr.dtype != np.uint8:
            bgr = _to_uint8(bgr, self.path)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self._check_size(rgb, f"{self.path} frame {n}")
        return _freeze(rgb, None)

    def _reset(self):
        if self._cap is not None:
            self._cap.release()
        self._cap = None
        self._next = 1

    def _seek(self, n):
        """Position the capture so that the next decoded frame is ``n``."""
        if self._cap is None:
            self._cap = self._open()
            self._next = 1
        if n == self._next:
            return
        if self._next < n <= self._next + self._FORWARD_DECODE_LIMIT:
            while self._next < n:
                if not self._cap.grab():
                    self._reset()
                    raise FrameError(f"{self.path}: cannot decode frame {self._next}")
                self._next += 1
            return
        if self._cap.set(cv2.CAP_PROP_POS_FRAMES, n - 1) and int(
            round(self._cap.get(cv2.CAP_PROP_POS_FRAMES))
        ) == n - 1:
            self._next = n
            return
        # The container cannot seek exactly: decode from the start.
        self._reset()
        self._seek_from_start(n)

    def _seek_from_start(self, n):
        self._cap = self._open()
        self._next = 1
        while self._next < n:
            if not self._cap.grab():
                self._reset()
                raise FrameError(f"{self.path}: cannot decode frame {self._next}")
            self._next += 1

    def _decode_frame(self, n):
        if self._cap is not None and n < self._next:
            # Backward jump: decode a block ending at n so reverse reads hit the cache.
            start = max(1, n - self._cache.capacity + 1)
            self._seek(start)
            item = None
            for m in range(start, n + 1):
                item = self._decode_one(m)
                if m != n:
                    self._cache.put(m, item)
            return item
        self._seek(n)
        return self._decode_one(n)

    def validate(self, *, decode=False):
        """Nothing to check beyond what opening did (kept for a uniform interface).

        Parameters
        ----------
        decode : bool, optional
            Decode every frame, which finds corrupt frames in the middle of the file.

        Raises
        ------
        FrameError
            When a frame cannot be decoded.
        """
        if decode:
            cap = self._open()
            try:
                for n in self._numbers:
                    ok, frame = cap.read()
                    if not ok or frame is None:
                        raise FrameError(f"{self.path}: cannot decode frame {n}")
                    if frame.shape[:2] != self._size:
                        raise FrameError(f"{self.path}: frame {n} changes resolution")
            finally:
                cap.release()

    def close(self):
        """Release the decoder and cached frames."""
        super().close()
        self._reset()


def open_frames(path, *, cache_size=None, cache_bytes=None):
    """Open a clip: an image-sequence folder or a video file.

    Parameters
    ----------
    path : str or os.PathLike
        A folder of numbered PNG/JPEG frames (``0001.png``, ``shot_0012.jpg``, ...),
        or a video file OpenCV can decode.
    cache_size : int, optional
        Decoded frames kept in the LRU cache (default 4 for folders, 8 for video).
    cache_bytes : int, optional
        Instead of a count, keep as many decoded frames as fit in this many
        bytes (a job that reads each frame several times passes one).

    Returns
    -------
    ImageSequence or VideoSource
        A source with ``frame_numbers``, ``size`` (h, w), ``read(n)``,
        ``read_alpha(n)``, ``name_for(n)``, ``validate()`` and iteration over
        ``(frame_number, rgb)`` pairs.

    Raises
    ------
    FrameError
        When the path is missing, an empty folder, a folder without numbered frames,
        holds duplicate frame numbers, is a still image, or is not a video.
    """
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        from .safety import ParameterTypeError

        raise ParameterTypeError(
            f"path must be a folder or video file path (str or os.PathLike), got {type(path).__name__}")
    if not path.strip():
        raise ValueError("path must not be empty")
    path = Path(path)
    if not path.exists():
        if os.path.islink(path):
            raise FrameError(f"{path}: broken symbolic link (its target {os.readlink(path)!r} does not exist)")
        raise FrameError(f"{path}: no such folder or video file")
    if path.is_dir():
        source = ImageSequence(path, cache_size=4 if cache_size is None else cache_size)
    elif path.suffix.lower() in IMAGE_EXTENSIONS:
        raise FrameError(
            f"{path}: is a single image; give the folder that holds the numbered frames"
        )
    else:
        source = VideoSource(path, cache_size=8 if cache_size is None else cache_size)
    if cache_bytes is not None:
        # As many frames as fit (a video's backward jump decodes a block this long).
        h, w = source.size
        fit = max(source._cache.capacity, int(cache_bytes) // max(1, h * w * 4))
        source._cache = _FrameCache(fit if cache_size is None else cache_size, max_bytes=int(cache_bytes))
    return source


# --------------------------------------------------------------------------------------
# sinks


def _is_inside(path, folder):
    """True when ``path`` is ``folder`` or lies below it (symlinks/case resolved)."""
    try:
        folder_real = Path(os.path.realpath(folder))
    except OSError:
        return False
    if not folder_real.exists():
        return False
    real = Path(os.path.realpath(path))
    for candidate in (real, *real.parents):
        if candidate == folder_real:
            return True
        try:
            if candidate.exists() and os.path.samefile(candidate, folder_real):
                return True
        except OSError:
            continue
    return False


#: errno values that mean "no space left" (disk full or quota exceeded).
_DISK_FULL_ERRNOS = frozenset(
    e for e in (getattr(errno, "ENOSPC", None), getattr(errno, "EDQUOT", None)) if e is not None
)
#: Temporary names of :func:`write_bytes_atomic`: ``.NAME.PID.HEX8.tmp``.
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<host>[0-9a-f]{4})[0-9a-f]{4}\.tmp$")
#: Where the writer's pid cannot be checked (Windows, or a file that another
#: machine is writing into a shared folder), a temporary file this old (seconds)
#: is taken as left behind by a dead process.
_STALE_TEMP_AGE = 600.0


def _host_tag():
    """Four hex digits naming this machine (host name and boot), the first half of a temporary name's
    random part: farm workers share output folders, and a pid means something only on its own machine."""
    import hashlib
    import socket

    boot = ""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()
    except OSError:
        pass
    return hashlib.sha256(f"{socket.gethostname()}|{boot}".encode()).hexdigest()[:4]


_HOST_TAG = _host_tag()


def _write_all(fd, data):
    """Write ``data`` to the open file ``fd``, flush it to disk and close it."""
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_error(path, exc):
    """A :class:`WriteError` naming ``path`` for an ``OSError`` raised while writing it."""
    if exc.errno in _DISK_FULL_ERRNOS:
        return WriteError(f"disk full while writing {path} ({exc.strerror or exc}); "
                          "free some space and run again to resume", errno=exc.errno)
    return WriteError(f"{path}: cannot write ({exc.strerror or exc})", errno=exc.errno)


#: Longest file name, in bytes, that common file systems take (ext4, APFS, NTFS in UTF-16 units).
_NAME_MAX = 255


def _temp_name(name):
    """``.NAME.PID.HEX8.tmp``, with NAME cut so that the whole fits in 255 bytes; the first
    four hex digits name this machine (:data:`_HOST_TAG`), the last four are random."""
    tail = f".{os.getpid()}.{_HOST_TAG}{secrets.token_hex(2)}.tmp"
    budget = _NAME_MAX - 1 - len(tail)
    raw = os.fsencode(name)
    if len(raw) > budget:
        name = raw[:budget].decode("utf-8", errors="ignore")  # a cut character is dropped
    return f".{name}{tail}"


def write_bytes_atomic(path, data):
    """Write ``data`` to ``path`` atomically.

    The bytes go to a hidden temporary file in the same folder
    (``.NAME.PID.RANDOM.tmp``), are flushed to disk, and the temporary file is
    renamed over ``path`` with :func:`os.replace`. On any failure the temporary
    file is removed and an existing ``path`` is left untouched; a process killed
    mid-write leaves only the temporary file, which
    :func:`remove_stale_temp_files` clears later.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its folder must exist.
    data : bytes-like
        The file content.

    Raises
    ------
    FrameError
        When the folder is missing or unwritable, or the write fails; a full disk
        gives ``"disk full while writing PATH"``.
    """
    path = Path(path)
    folder = path.parent
    tmp = folder / _temp_name(path.name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except FileNotFoundError:
        raise FrameError(f"{folder}: output folder does not exist") from None
    except OSError as exc:
        if exc.errno in _DISK_FULL_ERRNOS:
            raise _write_error(path, exc) from None
        raise WriteError(f"{folder}: cannot write here ({exc.strerror or exc})", errno=exc.errno) from None
    try:
        try:
            _write_all(fd, data)
            os.replace(tmp, path)
        except OSError as exc:
            raise _write_error(path, exc) from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _pid_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: the process exists but is not ours
        return True
    return True


def remove_stale_temp_files(folder, *, name=None):
    """Remove temporary files that killed writers left in ``folder``.

    Only names made by :func:`write_bytes_atomic` (``.NAME.PID.HOST RANDOM.tmp``)
    are touched, and only those whose writing process is gone: on this machine
    by its pid, and where that cannot be checked safely (Windows, or a file
    another machine of a farm is writing into a shared folder) when it is older
    than ten minutes. Nothing else
    in the folder is looked at, and missing folders are fine.

    Parameters
    ----------
    folder : str or os.PathLike
    name : str, optional
        Only the temporary files of this destination name (in a folder that
        is not the engine's, such as the one a single stylized image goes to).

    Returns
    -------
    int
        How many files were removed.
    """
    import time

    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    now = time.time()
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None:
            continue
        if name is not None:
            stem = match.group("name")
            if stem != name and not (len(os.fsencode(entry.name)) >= _NAME_MAX - 4
                                     and name.startswith(stem)):
                continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if os.name == "nt" or match.group("host") != _HOST_TAG:
                if now - entry.stat().st_mtime < _STALE_TEMP_AGE:
                    continue
            elif _pid_alive(int(match.group("pid"))):
                continue
            os.unlink(entry.path)
            removed += 1
        except OSError:
            continue
    return removed


def encode_image(path, image):
    """The bytes :func:`write_frame_atomic` would write for ``image`` at ``path`` (PNG or JPEG by suffix)."""
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


def write_frame_atomic(path, image, *, protect=None):
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
    if protect is not None and _is_inside(path, protect):
        raise FrameError(f"{path}: refusing to write inside the source folder {protect}")
    write_bytes_atomic(path, _encode(path, image))


def check_output_dir(out_dir, source_dir=None):
    """Make sure an output folder is safe and writable, creating it if needed.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The output folder.
    source_dir : str or os.PathLike, optional
        The input frame folder (or video file). The output may not be that folder
        nor lie inside it, so that no source frame can be overwritten.

    Returns
    -------
    pathlib.Path
        ``out_dir``, which now exists.

    Raises
    ------
    FrameError
        When the output equals or lies inside the source folder, is a file, cannot
        be created, or is not writable.
    """
    out = Path(out_dir)
    if source_dir is not None:
        source = Path(source_dir)
        if source.is_dir() and _is_inside(out, source):
            same = os.path.realpath(out) == os.path.realpath(source)
            where = "is" if same else "is inside"
            raise FrameError(
                f"{out}: output folder {where} the source folder {source}; "
                "choose another folder so that no source frame can be overwritten"
            )
        if source.exists() and not source.is_dir() and out.exists():
            if os.path.samefile(out, source):
                raise FrameError(f"{out}: output folder is the source video file")
    if out.exists() and not out.is_dir():
        raise FrameError(f"{out}: output path exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FrameError(f"{out}: cannot create output folder ({exc.strerror or exc})") from None
    probe = out / f".karwai-write-test.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise FrameError(f"{out}: output folder is not writable ({exc.strerror or exc})") from None
    return out
