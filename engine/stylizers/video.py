"""Every frame stylized by a network, made stable in time: ``engine.stylize_video``.

Two methods, besides keyframe propagation:

``"neural-video"``
    Ruder et al. [1]_: every frame is optimised with the Gatys losses
    (:mod:`.neural`) plus a temporal loss towards the previous output warped by
    the optical flow, masked by forward-backward consistency and motion
    boundaries; it starts from that warped output (where the flow is trusted),
    so later frames need far fewer iterations than the first. Optional
    long-term terms towards older outputs, and the forward-backward second
    pass of the IJCV paper [2]_.
``"fast-network"``
    Johnson et al. [3]_: a feed-forward network trained for the style on the
    shot's own frames, with the stability loss of Gupta et al. [4]_, then run
    on every frame (:mod:`.fastnet`).

A job writes one PNG per frame, atomically, named like the input frames, and
a record beside them. A re-run keeps every frame whose inputs (settings, style
image, source frames, masks and, for neural-video, every earlier frame) are
unchanged, and continues from there: a killed job resumes, and the bytes of a
resumed job equal those of an uninterrupted one.

References
----------
.. [1] M. Ruder, A. Dosovitskiy, T. Brox, "Artistic style transfer for videos", GCPR 2016.
.. [2] M. Ruder, A. Dosovitskiy, T. Brox, "Artistic style transfer for videos and spherical
   images", IJCV 126, 2018 (multi-pass algorithm).
.. [3] J. Johnson, A. Alahi, L. Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and
   Super-Resolution", ECCV 2016.
.. [4] A. Gupta, J. Johnson, A. Alahi, L. Fei-Fei, "Characterizing and Improving Stability in
   Neural Style Transfer", ICCV 2017.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import re
import time
from pathlib import Path

import numpy as np

from ._common import check_callable, check_cancel, check_choice, check_float, check_int, load_image_rgb
from .temporal import ClipFlows, open_source, temporal_target

__all__ = ["stylize_video", "VideoResult", "VIDEO_METHODS", "video_params", "parse_video_param",
           "RECORD_NAME", "WORK_NAME"]

VIDEO_METHODS = ("neural-video", "fast-network")
#: The job record beside the output frames.
RECORD_NAME = ".karwai-video.json"
#: Working folder beside the output frames (pass states, checkpoints, the trained network).
WORK_NAME = ".karwai-video"
#: Bumped whenever the same settings would give other frames.
ALGORITHM_VERSION = 1

#: Parameters of "neural-video" besides those of the Gatys stylizer.
NEURAL_VIDEO_DEFAULTS = {
    "temporal_weight": 1000.0,
    "later_iterations": None,
    "long_term": (),
    "passes": 1,
    "blend": 0.5,
}


@dataclasses.dataclass
class VideoResult:
    """What :func:`stylize_video` did.

    Attributes
    ----------
    frames : list of pathlib.Path
        Every output frame, in frame order.
    out : pathlib.Path
    computed, skipped : int
        Frames stylized in this run, and frames kept from an earlier run.
    seconds : float
        Wall time of the run.
    model : pathlib.Path or None
        ``"fast-network"``: the trained network's file.
    train_seconds : float
        ``"fast-network"``: time spent training in this run (0 when reused).
    """

    frames: list
    out: Path
    computed: int
    skipped: int
    seconds: float
    model: Path | None = None
    train_seconds: float = 0.0


# ---------------------------------------------------------------------------
# parameters


def video_params(method):
    """``{name: default}`` of the parameters of a video method."""
    check_choice("method", method, VIDEO_METHODS)
    if method == "neural-video":
        from .neural import stylize_neural

        params = {k: v.default for k, v in inspect.signature(stylize_neural).parameters.items()
                  if v.kind is inspect.Parameter.KEYWORD_ONLY
                  and k not in ("style_image", "progress", "cancel")}
        params.update(NEURAL_VIDEO_DEFAULTS)
        return params
    from .fastnet import FASTNET_DEFAULTS

    return dict(FASTNET_DEFAULTS, weights=None, device="auto", download=True)


_TYPES = {"later_iterations": "int", "long_term": "ints", "model": "path", "weights": "path",
          "max_size": "int", "learning_rate": "float", "style_layer_weights": "floats"}


def parse_video_param(method, name, text):
    """Turn the text of a ``--param name=text`` into the value ``method`` expects."""
    from . import _kind_of, _parse_as

    params = video_params(method)
    if name not in params:
        raise ValueError(f"unknown parameter '{name}' for method '{method}'; known: "
                         f"{', '.join(sorted(params))}")
    default = params[name]
    kind = _TYPES.get(name) if default is None or name in _TYPES else _kind_of(name, default)
    return _parse_as(name, kind or "str", text)


# ---------------------------------------------------------------------------
# the job


def _hash(*parts):
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def _file_identity(path):
    st = os.stat(path)
    return f"{Path(path).name}:{st.st_size}:{st.st_mtime_ns}"


class _Job:
    """Output folder, record, masks and progress of one video job."""

    def __init__(self, source, out, masks, progress, cancel, total):
        from ..files import check_output_dir, remove_stale_temp_files
        from ..guides import open_masks
        from ..propagation.record import mask_identity, source_identity
        from ..safety import own_folder

        source_path = getattr(source, "path", None)
        self.source = source
        self.out = check_output_dir(out, source_path)
        remove_stale_temp_files(self.out)
        self.record_path = self.out / RECORD_NAME
        self.record = self._load_record()  # one that cannot be read is refused before anything is made
        self.work = self.out / WORK_NAME
        if os.path.islink(self.work):
            raise ValueError(f"{self.work}: the job's working folder is a symbolic link; remove it and run again")
        remove_stale_temp_files(self.work)  # a marker write a kill interrupted, too
        # Marked as the engine's: only what the job wrote there is ever deleted (engine.safety).
        own_folder(self.work, "the video job's working files", adopt=_WORK_FILES)
        h, w = source.size
        self.masks = open_masks(masks, size=(h, w), frame_numbers=source.frame_numbers) if masks else None
        # The masks' contents, frame by frame, as propagation fingerprints them.
        self.mask_identity = (_hash(*sorted(mask_identity(self.masks, source.frame_numbers)
                                            .items())) if masks else "no masks")
        self.identity = source_identity(source)
        self._remove_stale_outputs()
        self.progress = progress
        self.cancel = cancel
        self.total = total
        self.done = 0.0

    def _load_record(self):
        if os.path.lexists(self.record_path) and not self.record_path.is_file():  # a FIFO would block
            raise ValueError(f"{self.record_path}: the job record is not a regular file; remove it and run again")
        try:
            data = json.loads(self.record_path.read_text())
            if isinstance(data, dict) and data.get("format") == 1 and isinstance(data.get("frames"), dict):
                return data
        except (OSError, ValueError):  # none yet, or damaged: every frame is made afresh
            pass
        return {"format": 1, "frames": {}}

    def save_record(self):
        from ..files import write_bytes_atomic

        write_bytes_atomic(self.record_path, json.dumps(self.record, indent=1).encode())

    def path(self, n):
        return self.out / self.source.name_for(n)

    def _intact(self, entry):
        """True when the output that ``entry`` records holds the bytes the job wrote."""
        from ..frames import FrameError
        from ..safety import file_digest

        name = entry.get("name")
        if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
            return False
        path = self.out / name
        try:
            return not os.path.islink(path) and path.is_file() and file_digest(path) == entry.get("sha256")
        except (OSError, FrameError):
            return False

    def _remove_stale_outputs(self):
        """Remove outputs of frames no longer in the clip (or renamed), when they hold the job's bytes."""
        frames = self.record["frames"]
        stale = []
        for key, entry in frames.items():
            n = key.rpartition(":")[2]
            if not isinstance(entry, dict):
                continue
            if n.lstrip("-").isdigit() and int(n) in self.source and entry.get("name") == self.path(int(n)).name:
                continue
            stale.append(key)
        for key in stale:
            entry = frames.pop(key)
            if self._intact(entry):
                try:
                    os.unlink(self.out / entry["name"])
                except OSError:
                    pass
        if stale:
            self.save_record()

    def kept(self, key, n, fingerprint):
        """Whether the output of frame ``n`` under ``key`` was made from ``fingerprint`` and is intact."""
        entry = self.record["frames"].get(f"{key}:{n}")
        if isinstance(entry, dict):
            return entry.get("fp") == fingerprint and entry.get("name") == self.path(n).name and self._intact(entry)
        return entry == fingerprint

    def write(self, key, n, image, fingerprint, *, path=None):
        """Write frame ``n`` (masked when the job has masks) and record what made it.

        The record learns the frame's digest before the file is written, so every
        output the job wrote is known to it (and a frame whose bytes differ is redone).
        """
        from ..files import write_bytes_atomic
        from ..images import encode_image
        from ..guides import apply_mask

        target = self.path(n) if path is None else path
        if path is None and self.masks is not None:
            image = apply_mask(image[:, :, :3], self.masks.read(n))
        data = encode_image(target, image)
        self.record["frames"][f"{key}:{n}"] = {"fp": fingerprint, "name": target.name,
                                               "sha256": hashlib.sha256(data).hexdigest()}
        self.save_record()
        write_bytes_atomic(target, data)

    def report(self, message, done=None):
        if done is not None:
            self.done = done
        if self.progress is not None:
            self.progress(self.done, self.total, message)

    def check_cancel(self):
        check_cancel(self.cancel)


#: What the job may find in its working folder (adopted from earlier versions that did not mark it).
_WORK_FILES = re.compile(r"pass[12]|fast-network\.(ckpt|pt)|\..*\.tmp")
#: Removing the engine's (marked) working folders keeps every file: a checkpoint or trained network stays.
_NO_FILES = re.compile(r"(?!)")


def _remove_empty(folder):
    """Remove the job's working folder and its pass folders when nothing is left in them but markers."""
    from ..safety import remove_owned

    if not remove_owned(folder, _NO_FILES):
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass


def stylize_video(frames, *, method, style_image, out, masks=None, progress=None, cancel=None,
                  weights=None, device="auto", download=True, **params):
    """Stylize every frame of a clip with a stable neural method.

    Parameters
    ----------
    frames : str, os.PathLike or frame source
        An image-sequence folder, a video file, or a source from
        :func:`engine.frames.open_frames`.
    method : {"neural-video", "fast-network"}
        Per-frame optimisation with a temporal loss (Ruder et al.), or a
        feed-forward network trained for the style with a stability loss
        (Johnson et al., Gupta et al.). See the module docstring.
    style_image : str, os.PathLike or numpy.ndarray
        The artwork.
    out : str or os.PathLike
        Output folder: one PNG per frame, named like the input frames. It may
        not be the input folder nor lie inside it.
    masks : str or os.PathLike, optional
        A mask image or a folder of per-frame masks: only the masked region is
        stylized, the outside is transparent (RGBA output).
    progress : callable, optional
        ``progress(done, total, message)``; ``done`` counts frames (and, for
        "fast-network", training counts as a share of the total).
    cancel : callable or threading.Event, optional
        Polled between iterations; :class:`~engine.stylizers.Cancelled` is
        raised, complete frames (and a training checkpoint) stay on disk and a
        re-run resumes.
    weights, device, download
        VGG19 weights, torch device and download permission, as for
        :func:`engine.stylizers.neural.stylize_neural`.
    **params
        The method's parameters, :func:`video_params`. "neural-video" takes
        every parameter of the ``"neural"`` stylizer (``iterations``,
        ``style_weight``, ...; ``iterations`` is for the first frame) and

        ``temporal_weight`` (1000)
            weight of the short-term temporal loss
            ``sum(c (x - w)^2) / (3 H W)``, ``w`` the previous output warped
            onto the frame and ``c`` its consistency; 0 stylizes every frame on
            its own, from the frame itself (per-frame Gatys).
        ``later_iterations`` (``iterations // 4``)
            iterations of every frame after the first, which starts from the
            warped previous output.
        ``long_term`` (``()``)
            older frames, as offsets (e.g. ``(2, 5)``), that add long-term
            temporal terms where no nearer frame is consistent (Ruder et al.,
            eq. 7).
        ``passes`` (1)
            2 adds the backward pass of the IJCV multi-pass algorithm: every
            frame but the last is optimised again, started from a blend of its
            forward result and the warped next frame, with temporal terms
            towards both neighbours.
        ``blend`` (0.5)
            the blend of that second pass's start (``delta`` in the paper).

        "fast-network": see :func:`engine.stylizers.fastnet.FASTNET_DEFAULTS`.

    Returns
    -------
    VideoResult

    Raises
    ------
    ValueError
        For bad frames, masks, style image, output folder or parameters (the
        message names it).
    Cancelled
        When ``cancel`` fired.
    """
    t_start = time.perf_counter()
    check_choice("method", method, VIDEO_METHODS)
    check_callable("progress", progress)
    check_callable("cancel", cancel)
    known = video_params(method)
    for name in params:
        if name not in known or name in ("weights", "device", "download"):
            raise ValueError(f"unknown parameter '{name}' for method '{method}'; known: "
                             f"{', '.join(sorted(k for k in known if k not in ('weights', 'device', 'download')))}")
    if style_image is None:
        raise ValueError(f"parameter 'style_image' is required for method '{method}'")
    from ..frames import check_output_dir
    from ..safety import FolderLock, as_path, new_folders, remove_new_folders

    out = as_path("out", out)
    style_rgb, _ = load_image_rgb(style_image, name="style_image")
    source = open_source(frames)
    source.validate()
    _check_paths(source, out, style_image=style_image, masks=masks, weights=weights, model=params.get("model"))
    made = new_folders(out)  # removed again should the job be refused before it writes anything
    try:
        with FolderLock(check_output_dir(out, getattr(source, "path", None))):
            if method == "neural-video":
                result = _neural_video(source, style_rgb, out, masks, progress, cancel, weights, device,
                                       download, params)
            else:
                from .fastnet import run_fast_network

                result = run_fast_network(source, style_rgb, out=out, masks=masks, progress=progress,
                                          cancel=cancel, weights=weights, device=device, download=download,
                                          params=params, job_class=_Job)
    except BaseException:
        if made:
            _remove_empty(out / WORK_NAME)
            remove_new_folders(made)
        raise
    result.seconds = time.perf_counter() - t_start
    return result


def _check_paths(source, out, *, style_image, masks, weights, model):
    """Refuse, before anything is written, an output that would write over or around an input.

    Every file the job reads (frames, style image, masks, VGG weights, a given
    network file) against the output folder and the network file it may write
    (:func:`engine.safety.check_clashes`: symbolic links and ``..`` resolved).
    """
    from ..guides import open_masks
    from ..safety import as_path, check_clashes

    reads = []
    path = getattr(source, "path", None)
    if path is not None:
        reads.append(("the source folder" if os.path.isdir(path) else "the source video", path,
                      os.path.isdir(path)))
    if hasattr(source, "path_for"):
        reads += [(f"source frame {n}", source.path_for(n), False) for n in source.frame_numbers]
    if isinstance(style_image, (str, os.PathLike)):
        reads.append(("the style image", style_image, False))
    if isinstance(weights, (str, os.PathLike)):
        reads.append(("the VGG weights", weights, False))
    if masks is not None:
        mask_source = open_masks(as_path("masks", masks), size=source.size, frame_numbers=source.frame_numbers)
        folder = os.path.isdir(mask_source.path)
        reads.append(("the mask folder" if folder else "the mask", mask_source.path, folder))
        reads += [(f"the mask of frame {n}", p, False) for n, p in mask_source.files().items()]
    writes = [("the output folder", out, True)]
    if isinstance(model, (str, os.PathLike)):
        model = Path(model)
        if os.path.lexists(model) and not model.is_file():
            raise ValueError(f"parameter 'model': '{model}' is not a regular file")
        writes.append(("parameter 'model'", model, False))
    check_clashes(reads, writes)


# ---------------------------------------------------------------------------
# neural-video


def _neural_video_params(params, download):
    from . import neural

    p = dict(NEURAL_VIDEO_DEFAULTS)
    p.update({k: v for k, v in params.items() if k in NEURAL_VIDEO_DEFAULTS})
    gatys = {k: v for k, v in params.items() if k not in NEURAL_VIDEO_DEFAULTS}
    gatys["download"] = download
    gatys = neural.check_params(**gatys)
    p["temporal_weight"] = check_float("temporal_weight", p["temporal_weight"], minimum=0.0)
    if p["later_iterations"] is None:
        p["later_iterations"] = max(1, gatys["iterations"] // 4)
    p["later_iterations"] = check_int("later_iterations", p["later_iterations"], minimum=0)
    lt = p["long_term"]
    if isinstance(lt, str):
        lt = tuple(int(v) for v in lt.split(",") if v.strip())
    try:
        lt = tuple(sorted({check_int("long_term", v, minimum=2) for v in lt}))
    except TypeError:
        raise ValueError("parameter 'long_term' must be a sequence of frame offsets >= 2") from None
    p["long_term"] = lt
    p["passes"] = check_int("passes", p["passes"], minimum=1, maximum=2)
    p["blend"] = check_float("blend", p["blend"], minimum=0.0, maximum=1.0)
    return p, gatys


def _neural_video(source, style_rgb, out, masks, progress, cancel, weights, device, download, params):
    from ..safety import name_pattern, own_folder, remove_owned
    from . import neural

    p, gatys = _neural_video_params(params, download)
    numbers = source.frame_numbers
    total = len(numbers) * p["passes"]
    job = _Job(source, out, masks, progress, cancel, total)
    frame_files = name_pattern(*(re.escape(source.name_for(n)) for n in numbers))
    weights_id = _file_identity(weights) if weights is not None else "default weights"
    style_hash = hashlib.sha256(style_rgb.tobytes() + str(style_rgb.shape).encode()).hexdigest()
    settings_fp = _hash("neural-video", ALGORITHM_VERSION, json.dumps(
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in {**p, **gatys}.items()
         if k not in ("progress", "cancel", "download")}, sort_keys=True), style_hash, weights_id,
        job.mask_identity)
    flows = ClipFlows(source, keep=2 + 2 * len(p["long_term"]))
    # Unmasked results: the output folder itself, or the work folder when the output is masked.
    # A two-pass job keeps its first pass in the work folder.
    def store(pass_no):
        if pass_no == 1 and p["passes"] == 1 and job.masks is None:
            return None
        return own_folder(job.work / f"pass{pass_no}", f"pass {pass_no} of the video job", adopt=frame_files)

    def stored_path(pass_no, n):
        folder = store(pass_no)
        return job.path(n) if folder is None else folder / job.source.name_for(n)

    def read_stored(pass_no, n):
        from ..images import read_image

        return np.array(read_image(stored_path(pass_no, n), alpha=False)[:, :, :3])

    def optimiser_progress(index, pass_no, n):
        def report(k, steps, loss=None):
            job.report(f"pass {pass_no}, frame {n}: iteration {k}/{steps}",
                       done=(pass_no - 1) * len(numbers) + index + k / max(steps, 1))
        return report

    def run(frame, *, iterations, init=None, anchors=(), report):
        q = dict(gatys, iterations=iterations, progress=report, cancel=cancel)
        return neural.optimise(frame, style_image=style_rgb, params=q, weights=weights, device=device,
                               init=init, anchors=anchors)

    computed = skipped = 0
    # What made each frame of each pass: the settings and every frame up to it.
    fps, fp = {}, settings_fp
    for n in numbers:
        fp = _hash(fp, "pass1", n, job.identity.get(n, ""))
        fps[n] = fp
    fps2, fp = {}, _hash(fps[numbers[-1]], "pass2")
    for n in reversed(numbers):
        fp = _hash(fp, n)
        fps2[n] = fp
    final_key = "pass1" if p["passes"] == 1 else "pass2"
    final_fps = fps if p["passes"] == 1 else fps2
    if all(job.kept(final_key, n, final_fps[n]) and job.path(n).exists() for n in numbers):
        job.report("every frame kept from an earlier run", done=total)
        return VideoResult(frames=[job.path(n) for n in numbers], out=job.out, computed=0,
                           skipped=len(numbers), seconds=0.0)

    # ---- pass 1, forward in time, from the first frame not kept
    start = next((i for i, n in enumerate(numbers)
                  if not (job.kept("pass1", n, fps[n]) and stored_path(1, n).exists()
                          and (p["passes"] == 2 or job.path(n).exists()))), len(numbers))
    # Its temporal terms look back to earlier results: without them, start over.
    back = [start - j for j in (1,) + p["long_term"] if 0 <= start - j]
    if start < len(numbers) and not all(stored_path(1, numbers[k]).exists() for k in back):
        start = 0
    results = {}  # frame number -> uint8 result of pass 1 (the few still needed)
    for i, n in enumerate(numbers):
        key = "pass1"
        final_here = p["passes"] == 1
        fp = fps[n]
        if i < start:
            skipped += final_here
            job.report(f"frame {n}: kept from an earlier run", done=i + 1)
            continue
        job.check_cancel()
        frame = np.array(source.read(n))
        report = optimiser_progress(i, 1, n)
        if i == 0 or p["temporal_weight"] == 0.0:
            image = run(frame, iterations=gatys["iterations"], report=report)
        else:
            prev_n = numbers[i - 1]
            previous = results.get(prev_n)
            if previous is None:
                previous = read_stored(1, prev_n)
            if np.array_equal(frame, np.asarray(source.read(prev_n))):
                # A held frame: nothing moved, so the previous output is this one's.
                image = previous
            else:
                anchors = []
                to_prev, from_prev = flows.pair(n, prev_n)
                warped, c = temporal_target(previous, to_prev, from_prev)
                warped01 = warped / np.float32(255.0)
                anchors.append((warped01, c, p["temporal_weight"]))
                covered = c.copy()
                for j in p["long_term"]:
                    if i - j < 0:
                        break
                    old_n = numbers[i - j]
                    old = results.get(old_n)
                    if old is None:
                        old = read_stored(1, old_n)
                    to_old, from_old = flows.pair(n, old_n)
                    warped_j, c_j = temporal_target(old, to_old, from_old)
                    c_long = np.maximum(c_j - covered, 0.0)
                    covered = np.minimum(covered + c_j, 1.0)
                    if c_long.any():
                        anchors.append((warped_j / np.float32(255.0), c_long, p["temporal_weight"]))
                # Started from the warped previous output everywhere ("prevWarped", Ruder et al.).
                image = run(frame, iterations=p["later_iterations"], init=warped01,
                            anchors=anchors, report=report)
        folder = store(1)
        if folder is not None:
            from ..images import write_image

            write_image(folder / source.name_for(n), image)
        if final_here:
            job.write(key, n, image, fp)
            computed += 1
        else:
            job.record["frames"][f"{key}:{n}"] = fp
            job.save_record()
        results[n] = image
        for old_n in list(results):
            if old_n not in numbers[max(0, i - max((1,) + p["long_term"])):i + 1]:
                del results[old_n]
        job.report(f"frame {n}: done", done=i + 1)

    # ---- pass 2, backward in time (IJCV multi-pass)
    if p["passes"] == 2:
        following = None
        for i in range(len(numbers) - 1, -1, -1):
            n = numbers[i]
            fp2 = fps2[n]
            base = len(numbers)
            if job.kept("pass2", n, fp2) and job.path(n).exists() and stored_path(2, n).exists():
                skipped += 1
                following = None
                job.report(f"frame {n}: kept from an earlier run", done=base + len(numbers) - i)
                continue
            job.check_cancel()
            forward = read_stored(1, n)
            if i == len(numbers) - 1:
                image = forward
            else:
                next_n = numbers[i + 1]
                if following is None:
                    following = read_stored(2, next_n)
                frame = np.array(source.read(n))
                to_next, from_next = flows.pair(n, next_n)
                warped_next, c_next = temporal_target(following, to_next, from_next)
                anchors = [(warped_next / np.float32(255.0), c_next, p["temporal_weight"])]
                if i > 0:
                    prev_n = numbers[i - 1]
                    to_prev, from_prev = flows.pair(n, prev_n)
                    warped_prev, c_prev = temporal_target(read_stored(1, prev_n), to_prev, from_prev)
                    anchors.append((warped_prev / np.float32(255.0), c_prev, p["temporal_weight"]))
                delta = p["blend"] * c_next[:, :, None]
                init = (delta * warped_next + (1.0 - delta) * forward.astype(np.float32)) / np.float32(255.0)
                report = optimiser_progress(len(numbers) - 1 - i, 2, n)
                image = run(frame, iterations=p["later_iterations"], init=init.astype(np.float32),
                            anchors=anchors, report=report)
            from ..images import write_image

            write_image(stored_path(2, n), image)
            job.write("pass2", n, image, fp2)
            computed += 1
            following = image
            job.report(f"frame {n}: second pass done", done=base + len(numbers) - i)
    # Finished: the unmasked and first-pass copies are no longer needed.
    for pass_no in (1, 2):
        remove_owned(job.work / f"pass{pass_no}", frame_files)  # only the frames the job wrote there
    _remove_empty(job.work)
    paths = [job.path(n) for n in numbers]
    return VideoResult(frames=paths, out=job.out, computed=computed, skipped=skipped, seconds=0.0)
