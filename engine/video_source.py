"""A clip stored as a video file, decoded by OpenCV (FFmpeg)."""

from __future__ import annotations


import cv2
import numpy as np

from .errors import FrameError
from .files import regular_file_problem
from .frame_source import _Source, _freeze
from .images import to_8bit

__all__ = ["VideoSource"]


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
        problem = regular_file_problem(path, "video")
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
            bgr = to_8bit(bgr, self.path)
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
