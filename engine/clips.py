"""Where a strip is made into a clip the engine reads: a host's frames, materialised.

A host application (the Blender add-on) describes the media behind a strip as a
plain *clip plan*, a dict::

    {"kind": "images" | "movie" | "still", "path": FOLDER_OR_FILE,
     "frames": [[timeline, number, file], ...]}

with one entry per visible frame in timeline order: the scene frame it shows
at, its number in the engine's numbering of the clip (the trailing digits of an
image's name, the 1-based index of a movie frame) and, for an image sequence, its
file. :func:`prepare_clip` and :func:`prepare_masks` turn a plan into a folder or
file that :func:`engine.frames.open_frames` reads as exactly those frames, and
:class:`ClipReader` reads single frames of a plan. All decoding and writing of
frames happens here, in the engine; the host does no image I/O.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
import shutil

from .errors import Cancelled, FrameError
from .frame_source import open_frames
from .images import read_image, write_image

__all__ = ["prepare_clip", "prepare_masks", "ClipReader"]


def _check(cancel):
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")


def _frames(plan):
    """``[(timeline, number, file)]`` of a plan, checked."""
    try:
        return [(int(t), int(n), str(f)) for t, n, f in plan["frames"]]
    except (KeyError, TypeError, ValueError):
        raise ValueError("a clip plan's frames must be [timeline, number, file] triples") from None


def _link_or_copy(src, dst):
    """Make ``dst`` show the file ``src``: a symbolic link, else a hard link, else a copy."""
    try:
        os.symlink(src, dst)
        return
    except (OSError, NotImplementedError, AttributeError):
        pass
    try:
        os.link(src, dst)
        return
    except OSError:
        pass
    shutil.copyfile(src, dst)


def _plan_key(plan):
    blob = json.dumps({"kind": plan["kind"], "path": plan["path"], "frames": _frames(plan)},
                      sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def _movie_stamp(path):
    st = os.stat(path)
    return f"{st.st_size}-{st.st_mtime_ns}"


def prepare_clip(plan, cache_dir, *, progress=None, cancel=None, purpose="clip"):
    """A path the engine reads as exactly the plan's frames, with the plan's numbers.

    An image folder holding exactly the strip's frames, or a movie used whole, is
    returned as it is. Otherwise (a trimmed strip, a folder with other images in
    it) a working folder is made in ``cache_dir/clips``: links to the strip's
    images, or the movie's frames in range decoded at the source resolution.

    Parameters
    ----------
    plan : dict
        A clip plan (see the module docstring).
    cache_dir : str or os.PathLike
        Where working folders go.
    progress : callable, optional
        ``progress(done, total, message)`` while movie frames are decoded.
    cancel : threading.Event, optional
        Checked before every frame; :class:`engine.errors.Cancelled` when set.
    purpose : str
        Names the working folder (``clip``, ``mask``...).

    Returns
    -------
    str
        The folder or movie file.

    Raises
    ------
    ValueError
        For a plan of unknown kind, or one that shows movie frames the file does
        not have.
    """
    frames = _frames(plan)
    numbers = [n for _, n, _ in frames]
    kind, path = plan["kind"], plan["path"]
    if kind == "still":
        return path
    if kind == "images":
        folder = Path(path)
        try:
            existing = open_frames(folder).frame_numbers
        except ValueError:
            existing = None
        wanted = {n: Path(f).name for _, n, f in frames}
        if (existing is not None and sorted(existing) == sorted(numbers)
                and all(Path(f).parent == folder for _, _, f in frames)):
            return str(folder)
        work = Path(cache_dir) / "clips" / f"{purpose}-{_plan_key(plan)}"
        if work.is_dir() and sorted(os.listdir(work)) == sorted(wanted.values()):
            return str(work)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        for _, _, f in frames:
            _check(cancel)
            _link_or_copy(f, work / Path(f).name)
        return str(work)
    if kind != "movie":
        raise ValueError(f"unknown clip kind {kind!r}")
    source = open_frames(path)
    try:
        missing = [n for n in numbers if n not in source]
        if missing:
            raise FrameError(f"{path}: the strip shows movie frame {missing[0]} but only "
                             f"{len(source)} frame(s) can be decoded from the file")
        if numbers == source.frame_numbers:
            return path
        work = Path(cache_dir) / "clips" / f"{purpose}-{_plan_key(plan)}-{_movie_stamp(path)}"
        work.mkdir(parents=True, exist_ok=True)
        width = max(6, len(str(max(numbers))))
        for i, n in enumerate(numbers):
            _check(cancel)
            target = work / f"{n:0{width}d}.png"
            if not target.exists():
                write_image(target, source.read(n))
            if progress is not None:
                progress(i + 1, len(numbers), f"reading movie frame {n}")
        return str(work)
    finally:
        source.close()


def prepare_masks(mask_plan, clip_plan, cache_dir, *, cancel=None):
    """A mask file or folder numbered like the clip, for ``engine.propagate(masks=...)``.

    Parameters
    ----------
    mask_plan : dict or None
        The mask strip's clip plan (``None``: no masks).
    clip_plan : dict
        The source clip's plan; each of its frames gets the mask shown at the
        same scene frame.
    cache_dir : str or os.PathLike
    cancel : threading.Event, optional

    Returns
    -------
    str or None
    """
    if mask_plan is None:
        return None
    if mask_plan["kind"] == "still":
        return mask_plan["path"]
    by_timeline = {t: (n, f) for t, n, f in _frames(mask_plan)}
    clip_frames = _frames(clip_plan)
    work = Path(cache_dir) / "clips" / f"mask-{_plan_key(mask_plan)}-{_plan_key(clip_plan)}"
    work.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(max(n for _, n, _ in clip_frames))))
    source = open_frames(mask_plan["path"]) if mask_plan["kind"] == "movie" else None
    try:
        for timeline, number, _ in clip_frames:
            _check(cancel)
            mask = by_timeline.get(timeline)
            if mask is None:
                raise ValueError(f"the mask strip has no frame at scene frame {timeline}")
            mask_number, mask_file = mask
            if mask_plan["kind"] == "images":
                target = work / f"{number:0{width}d}{Path(mask_file).suffix}"
                if not target.exists():
                    _link_or_copy(mask_file, target)
            else:
                target = work / f"{number:0{width}d}.png"
                if not target.exists():
                    write_image(target, source.read(mask_number))
    finally:
        if source is not None:
            source.close()
    return str(work)


class ClipReader:
    """Reads single frames of a clip plan at the source resolution (a movie is opened once).

    Parameters
    ----------
    plan : dict
        A clip plan (see the module docstring).
    """

    def __init__(self, plan):
        self.plan = plan
        self._files = {n: f for _, n, f in _frames(plan)}
        self._movie = None

    def read(self, number):
        """Frame ``number`` as RGB uint8 (a copy the caller may change).

        Raises
        ------
        ValueError
            When the frame is not among the plan's frames, or cannot be read.
        """
        if number not in self._files:
            raise ValueError(f"frame {number} is not among the strip's visible frames")
        if self.plan["kind"] == "images":
            return read_image(self._files[number], alpha=False)
        if self.plan["kind"] == "still":
            return read_image(self.plan["path"], alpha=False)
        if self._movie is None:
            self._movie = open_frames(self.plan["path"])
        return self._movie.read(number).copy()

    def close(self):
        if self._movie is not None:
            self._movie.close()
            self._movie = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
