"""A clip stored as a folder of numbered PNG/JPEG frames."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import FrameError
from .files import read_regular_file, regular_file_problem
from .frame_source import _Source, _freeze, frame_number_from_name
from .images import IMAGE_EXTENSIONS, decode_image, header_size, tail_looks_complete

__all__ = ["ImageSequence"]


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
            problem = regular_file_problem(entry.path, "frame")
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
            self._size = header_size(self._paths[self._numbers[0]])
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
        rgb, alpha = decode_image(read_regular_file(path, what="image"), path)
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
                h, w = header_size(path)
                if size is not None and (h, w) != size:
                    problems.append(
                        f"{path}: mixed resolutions in the clip: this frame is {w}x{h} "
                        f"but the clip is {size[1]}x{size[0]}"
                    )
                    continue
                if not tail_looks_complete(path):
                    problems.append(f"{path}: file is truncated")
                    continue
                if decode:
                    rgb, _ = decode_image(read_regular_file(path, what="image"), path)
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
