"""A job as plain data: what the main thread hands the worker (no ``bpy``, JSON-friendly).

The add-on's main thread turns the scene into a :class:`Snapshot` (paths, frame
numbers, styles, settings); the worker runs it (:mod:`.run`), in a thread or in
a process of its own (:mod:`.protocol`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

#: Sub-folders of a job's output folder.
KEYS_FOLDER = "keys"
FRAMES_FOLDER = "frames"
STAGING_SUFFIX = ".partial"
#: Beside the output, the frames a farm plan reads (see Snapshot.farm_plan).
FARM_DIR = ".karwai-farm"
OLD_SUFFIX = ".old-"


class JobCancelled(Exception):
    """The job was cancelled; only complete files were left on disk."""


class JobError(Exception):
    """A problem with the user's input or settings; the message says what to fix."""


#: Errors whose message is enough for the user (the engine's FrameError is a
#: ValueError and names the file); others also get a traceback in the log.
USER_ERRORS = (JobError, ValueError, OSError, ImportError)


@dataclasses.dataclass(frozen=True)
class ClipFrame:
    """One visible frame of a strip.

    Attributes
    ----------
    timeline : int
        The scene frame it shows at.
    number : int
        Its number in the engine's numbering of the clip: the trailing digits of
        the file name for an image sequence, the 1-based frame index for a movie.
    file : str
        The image file for an image sequence; empty for a movie.
    """

    timeline: int
    number: int
    file: str = ""


@dataclasses.dataclass(frozen=True)
class ClipPlan:
    """The source media behind a strip's visible frames.

    Attributes
    ----------
    kind : str
        ``"images"`` (a folder of numbered images), ``"movie"`` or ``"still"``
        (one image for every frame; masks only).
    path : str
        The image folder, the movie file or the still image.
    frames : tuple of ClipFrame
        The visible frames, in timeline order.
    """

    kind: str
    path: str
    frames: tuple

    def to_json(self):
        return {"kind": self.kind, "path": self.path,
                "frames": [[f.timeline, f.number, f.file] for f in self.frames]}

    @classmethod
    def from_json(cls, data):
        return cls(kind=data["kind"], path=data["path"],
                   frames=tuple(ClipFrame(int(t), int(n), f) for t, n, f in data["frames"]))

    def number_at(self, timeline):
        for f in self.frames:
            if f.timeline == timeline:
                return f.number
        return None


@dataclasses.dataclass(frozen=True)
class KeyTask:
    """A keyframe of the job and its style.

    Attributes
    ----------
    timeline, number : int
        Where the key is (scene frame) and which source frame it is.
    path : str
        The stylized key image file.
    stylize : bool
        Stylize it in this job (``False``: use the file as it is, e.g. repainted).
    method : str
        ``engine.stylize`` method.
    params : dict
        ``{name: text}``: the method's parameters as text, parsed by the engine.
    signature : str
        Fingerprint of the style, stored with the key once it is stylized.
    """

    timeline: int
    number: int
    path: str
    stylize: bool
    method: str = "painterly"
    params: dict = dataclasses.field(default_factory=dict)
    signature: str = ""


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Everything a job needs, as plain data (see the module docstring).

    Attributes
    ----------
    kind : str
        ``"stylize"``, ``"propagate"`` or ``"suggest"``.
    strip : str
        The source strip's name (for messages).
    clip : ClipPlan
        The source frames.
    keys : tuple of KeyTask
        The keyframes (not used by ``"suggest"``).
    out_dir : str
        The output folder: ``keys/`` and ``frames/`` go inside.
    cache_dir : str
        Folder for the flow cache and the working copies of trimmed clips.
    mask : ClipPlan or None
        Masks, on the same visible frames as ``clip``.
    settings : dict
        The propagation's knobs, ``{name: value}`` as ``engine.settings.knobs``
        names them (``JobSettings.from_knobs`` reads it; missing ones take
        their defaults).
    farm_plan : bool
        Propagate writes the job's plan for a farm instead of running it.
    threads : int
        Worker threads for the engine (0: all cores).
    device, vgg_weights : str
        Torch device and VGG19 weights file for the neural methods ("" = default).
    download : bool
        Whether the neural methods may download the VGG19 weights.
    consistent_keys : bool
        Stylize neural and Deep Dream keys of one style together so that they
        agree (``engine.stylize_keys``).
    anchor : int or None
        Source frame number of the key the others follow.
    video_method, video_style_image, video_params
        ``"video"`` jobs: ``engine.stylize_video``'s method, artwork and
        parameters (as text).
    """

    kind: str
    strip: str
    clip: ClipPlan
    out_dir: str
    cache_dir: str
    keys: tuple = ()
    mask: ClipPlan | None = None
    settings: dict = dataclasses.field(default_factory=dict)
    farm_plan: bool = False
    threads: int = 0
    device: str = "auto"
    vgg_weights: str = ""
    download: bool = False
    consistent_keys: bool = True
    anchor: int | None = None
    video_method: str = ""
    video_style_image: str = ""
    video_params: dict = dataclasses.field(default_factory=dict)

    def to_json(self):
        data = dataclasses.asdict(self)
        data["clip"] = self.clip.to_json()
        data["mask"] = self.mask.to_json() if self.mask is not None else None
        data["keys"] = [dataclasses.asdict(k) for k in self.keys]
        return data

    @classmethod
    def from_json(cls, data):
        data = dict(data)
        data["clip"] = ClipPlan.from_json(data["clip"])
        data["mask"] = ClipPlan.from_json(data["mask"]) if data.get("mask") else None
        data["keys"] = tuple(KeyTask(**k) for k in data.get("keys", ()))
        return cls(**data)


def style_signature(method, params, source_id):
    """Fingerprint of a key's style and source frame (what makes a stylized key stale)."""
    blob = json.dumps({"method": method, "params": params, "source": source_id}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def frames_dir(out_dir):
    return os.path.join(out_dir, FRAMES_FOLDER)


def keys_dir(out_dir):
    return os.path.join(out_dir, KEYS_FOLDER)
