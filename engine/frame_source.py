"""Where frames are read: a clip addressed by frame number, and :func:`open_frames`.

A *source* is a clip of frames addressed by frame number: an image-sequence folder
(:mod:`.image_sequence`, PNG or JPEG, 8- or 16-bit) or a video file
(:mod:`.video_source`). Frames are decoded on demand and only a small LRU cache is
kept, so memory does not grow with the length of the clip.

Frame numbers come from the trailing digits of a file's stem, as Blender writes
them: ``0001.png`` is frame 1 and ``shot_0012.jpg`` is frame 12. Video frames are
numbered from 1.
"""

from __future__ import annotations

import collections
import os
import re
import threading
from pathlib import Path

import numpy as np

from .errors import FrameError
from .images import IMAGE_EXTENSIONS

__all__ = ["open_frames", "frame_number_from_name"]

# ASCII digits only: ``\d`` would also number a name ending in other scripts' digits.
_TRAILING_DIGITS = re.compile(r"([0-9]+)$")


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
    from .image_sequence import ImageSequence
    from .video_source import VideoSource

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
