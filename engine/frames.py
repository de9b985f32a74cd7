"""Frames in and out: the public face of the modules that read and write them.

* :mod:`.frame_source`: :func:`open_frames` and the clip interface (frame
  numbers, ``read``, ``read_alpha``, iteration, caching);
  :mod:`.image_sequence` (a folder of numbered PNG/JPEG frames) and
  :mod:`.video_source` (a video file) are the two kinds of clip;
* :mod:`.images`: reading, decoding, writing and fitting single images;
* :mod:`.files`: atomic writing, regular-file reading and folder checks;
* :mod:`.errors`: :class:`FrameError` and :class:`WriteError`.

Frame numbers come from the trailing digits of a file's stem, as Blender writes
them: ``0001.png`` is frame 1 and ``shot_0012.jpg`` is frame 12. Video frames are
numbered from 1. Outputs are written atomically (:func:`write_frame_atomic`), so a
crash never leaves a truncated frame behind. Every user-facing problem raises
:class:`FrameError`, a :class:`ValueError` whose message names the offending file.
"""

from .errors import FrameError, WriteError
from .files import check_output_dir, read_regular_file, remove_stale_temp_files, write_bytes_atomic
from .frame_source import frame_number_from_name, open_frames
from .image_sequence import ImageSequence
from .images import (IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, check_claimed_size, check_image_file, encode_image,
                     read_image)
from .images import write_image as write_frame_atomic
from .video_source import VideoSource

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
    "check_claimed_size",
    "encode_image",
    "MAX_IMAGE_PIXELS",
]
