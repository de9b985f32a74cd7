"""Guide images per frame, after "Stylizing Video by Example" (Jamriska et al. 2019).

Each frame gets:

* **colour**: the frame itself;
* **edge**: a grey high-pass, ``128 + 2 * Laplacian(3x3)`` of the Gaussian-blurred
  (sigma 1) grey frame, clipped to 0..255;
* **positional**: where each pixel was in the keyframe, as a coordinate ramp
  (R = x, G = y, scaled to 0..255 over the frame). On the keyframe it is the plain
  ramp; each later frame advects the previous frame's positions by optical flow,
  one step at a time, and fills the holes the flow cannot explain;
* **temporal**: the previous stylized frame advected by flow;
* **mask** (optional): a per-frame mask image, resized and validated.

:class:`FrameGuides` bundles one frame's guides (:func:`frame_guides` builds them)
and :func:`guide_lists` pairs a source and a target bundle into the lists that
``engine.synth.synthesize`` takes. The propagation builds its guides this way and
no other.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from .flow import consistency_mask, identity_grid, warp
from .errors import FrameError
from .images import aspect_differs, read_image, resize
from .settings import GuideWeights

__all__ = [
    "GuideWeights",
    "FrameGuides",
    "colour_guide",
    "edge_guide",
    "keyframe_positions",
    "advect_positions",
    "fill_holes",
    "positional_guide",
    "temporal_guide",
    "load_mask",
    "MaskSequence",
    "open_masks",
    "apply_mask",
    "frame_guides",
    "guide_lists",
]



# ------------------------------------------------------------------------- checks


def _check_frame(frame, name="frame"):
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"{name} must be HxWx3 (RGB) or HxWx4 (RGBA), got shape {frame.shape}")
    return frame


def _check_positions(positions, name="positions"):
    if not isinstance(positions, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(positions).__name__}")
    if positions.ndim != 3 or positions.shape[2] != 2:
        raise ValueError(f"{name} must have shape (H, W, 2), got {positions.shape}")
    if positions.dtype != np.float32:
        raise ValueError(f"{name} must be float32, got {positions.dtype}")
    return positions


def _check_flow(flow, shape, name):
    if not isinstance(flow, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(flow).__name__}")
    if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[:2] != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape) + (2,)}, got {flow.shape}")
    if not np.issubdtype(flow.dtype, np.floating):
        raise ValueError(f"{name} must be floating point, got {flow.dtype}")
    return flow.astype(np.float32, copy=False)


# ------------------------------------------------------------------ colour and edge


def colour_guide(frame):
    """The colour guide: the RGB frame itself.

    Parameters
    ----------
    frame : numpy.ndarray
        uint8 HxWx3 RGB (or HxWx4 RGBA, whose alpha is dropped).

    Returns
    -------
    numpy.ndarray
        uint8 HxWx3.
    """
    frame = _check_frame(frame)
    return frame[:, :, :3]


def edge_guide(frame):
    """The edge guide: a grey high-pass of the frame.

    Defined as ``128 + 2 * Laplacian(3x3)`` of the grey frame blurred by a Gaussian
    of sigma 1, clipped to 0..255 and truncated to uint8 (the definition of
    ``shared/data/synth_case``).

    Parameters
    ----------
    frame : numpy.ndarray
        uint8 HxWx3 RGB (or RGBA, alpha ignored).

    Returns
    -------
    numpy.ndarray
        uint8 HxW.
    """
    frame = _check_frame(frame)
    grey = cv2.cvtColor(np.ascontiguousarray(frame[:, :, :3]), cv2.COLOR_RGB2GRAY)
    blurred = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 1.0)
    laplacian = cv2.Laplacian(blurred, cv2.CV_32F, ksize=3)
    return np.clip(128.0 + 2.0 * laplacian, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------- positional


def keyframe_positions(h, w):
    """Positions on the keyframe itself: each pixel at its own coordinate.

    Parameters
    ----------
    h, w : int
        Frame height and width.

    Returns
    -------
    numpy.ndarray
        float32 (H, W, 2) of keyframe pixel coordinates ``(x, y)``.
    """
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"size must be positive, got {h}x{w}")
    return identity_grid(int(h), int(w))


def fill_holes(field, valid):
    """Fill the invalid pixels of a smooth field from its valid neighbours.

    A push-pull (normalised-convolution pyramid) fill: each coarser level averages
    the valid values, and holes take the bilinearly upsampled coarser value. Valid
    pixels are returned unchanged. Cost is linear in the image size.

    Parameters
    ----------
    field : numpy.ndarray
        float32 (H, W) or (H, W, C).
    valid : numpy.ndarray
        bool (H, W), true where ``field`` is known.

    Returns
    -------
    numpy.ndarray
        float32 array like ``field`` with the holes filled; zeros if nothing is valid.
    """
    if not isinstance(field, np.ndarray) or field.dtype != np.float32 or field.ndim not in (2, 3):
        raise ValueError("field must be a float32 (H, W) or (H, W, C) array")
    if not isinstance(valid, np.ndarray) or valid.shape != field.shape[:2]:
        raise ValueError(f"valid must be a bool array of shape {field.shape[:2]}")
    valid = valid.astype(bool, copy=False)
    squeeze = field.ndim == 2
    values = field[:, :, None] if squeeze else field
    if valid.all():
        return field.copy()
    if not valid.any():
        return np.zeros_like(field)

    weight = valid.astype(np.float32)
    # Channel by channel: NumPy's broadcast over a last axis of 2 runs ten times slower.
    numer = np.empty(values.shape, np.float32)
    for c in range(values.shape[2]):
        np.multiply(values[:, :, c], weight, out=numer[:, :, c])
    levels = []
    while True:
        levels.append((numer, weight))
        h, w = weight.shape
        if (weight > 0).all() or (h == 1 and w == 1):
            break
        size = (max(1, (w + 1) // 2), max(1, (h + 1) // 2))
        numer = _resize(numer, size, cv2.INTER_AREA)
        weight = _resize(weight, size, cv2.INTER_AREA)

    numer, weight = levels[-1]
    filled = numer / np.maximum(weight, 1e-12)[:, :, None]
    # Masked division and copies (``where=``), not boolean indexing: the same
    # values, without gathering and scattering half a 1080p frame each level.
    for numer, weight in reversed(levels[1:-1]):
        h, w = weight.shape
        filled = _resize(filled, (w, h), cv2.INTER_LINEAR)
        known = weight > 0
        for c in range(filled.shape[2]):
            np.divide(numer[:, :, c], weight, out=filled[:, :, c], where=known)
    h, w = valid.shape
    # The valid pixels copied over the filled field: OpenCV's masked copy takes one mask for
    # every channel (cv::Mat::copyTo), where NumPy's would broadcast it, slowly.
    out = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR).reshape(field.shape)
    return cv2.copyTo(np.ascontiguousarray(field), valid.astype(np.uint8), out)


def _resize(array, size, interpolation):
    out = cv2.resize(array, size, interpolation=interpolation)
    if array.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return out


def advect_positions(prev_positions, flow_to_prev, *, flow_from_prev=None, valid=None):
    """Carry keyframe positions one frame on, by optical flow.

    ``new[x] = prev_positions[x + flow_to_prev[x]]`` (bilinear). Pixels of the new
    frame that the flow cannot explain are holes: those that land outside the
    previous frame, and those marked invalid (``valid``, or else the
    forward-backward consistency of ``flow_to_prev`` against ``flow_from_prev``,
    which finds disocclusions). Holes are filled by extrapolating the neighbours'
    displacement from the identity (:func:`fill_holes`), so a revealed region
    continues the surrounding coordinate gradient.

    Parameters
    ----------
    prev_positions : numpy.ndarray
        float32 (H, W, 2) keyframe coordinates ``(x, y)`` of the previous frame
        (start from :func:`keyframe_positions`).
    flow_to_prev : numpy.ndarray
        float32 (H, W, 2) flow from the new frame to the previous one (for a pair
        computed as ``compute_flow_pair(prev, new)``, the backward flow).
    flow_from_prev : numpy.ndarray, optional
        Flow from the previous frame to the new one, used for the consistency test.
    valid : numpy.ndarray, optional
        bool (H, W): pixels of the new frame whose flow is trusted. Overrides the
        consistency test.

    Returns
    -------
    numpy.ndarray
        float32 (H, W, 2) keyframe coordinates of the new frame.
    """
    prev_positions = _check_positions(prev_positions, "prev_positions")
    h, w = prev_positions.shape[:2]
    flow = _check_flow(flow_to_prev, (h, w), "flow_to_prev")
    if valid is None:
        if flow_from_prev is not None:
            back = _check_flow(flow_from_prev, (h, w), "flow_from_prev")
            valid = consistency_mask(flow, back)
        else:
            valid = np.ones((h, w), bool)
    elif not isinstance(valid, np.ndarray) or valid.shape != (h, w):
        raise ValueError(f"valid must be a bool array of shape {(h, w)}")
    grid = identity_grid(h, w)
    target = grid + flow
    inside = (
        (target[..., 0] >= 0) & (target[..., 0] <= w - 1)
        & (target[..., 1] >= 0) & (target[..., 1] <= h - 1)
    )
    known = valid.astype(bool) & inside
    sampled = warp(prev_positions, flow, border="replicate")
    displacement = fill_holes(sampled - grid, known)
    return grid + displacement


def positional_guide(positions, *, size=None, channels=2):
    """Positional guide image from keyframe coordinates.

    Channel 0 (R) is ``x * 255 / (W - 1)`` and channel 1 (G) ``y * 255 / (H - 1)``,
    where ``(H, W)`` is the keyframe's size, clipped to 0..255: a position advected
    from outside the keyframe takes the value of the nearest border, so the guide
    is always one that :func:`engine.synth.synthesize` accepts (it refuses guide
    values outside 0..255).

    Parameters
    ----------
    positions : numpy.ndarray
        float32 (H, W, 2) keyframe coordinates (from :func:`keyframe_positions` or
        :func:`advect_positions`).
    size : tuple of int, optional
        ``(H, W)`` of the keyframe; defaults to the positions' own size.
    channels : {2, 3}
        3 appends a zero B channel, like Ebsynth's RGB positional guide files.

    Returns
    -------
    numpy.ndarray
        float32 (H, W, channels) in 0..255.
    """
    positions = _check_positions(positions)
    if channels not in (2, 3):
        raise ValueError(f"channels must be 2 or 3, got {channels}")
    h, w = positions.shape[:2] if size is None else (int(size[0]), int(size[1]))
    scale = np.array([255.0 / max(w - 1, 1), 255.0 / max(h - 1, 1)], np.float32)
    guide = np.clip(positions * scale, 0.0, 255.0)
    if channels == 3:
        guide = np.dstack([guide, np.zeros(positions.shape[:2], np.float32)])
    return guide


# ------------------------------------------------------------------------- temporal


def temporal_guide(prev_output, flow_to_prev):
    """The previous stylized frame advected onto the current frame.

    ``out[x] = prev_output[x + flow_to_prev[x]]`` (bilinear, border replicated).

    Parameters
    ----------
    prev_output : numpy.ndarray
        The previous frame's stylized output, HxWxC (uint8 or float32; RGB or RGBA).
    flow_to_prev : numpy.ndarray
        float32 (H, W, 2) flow from the current frame to the previous one.

    Returns
    -------
    numpy.ndarray
        Same dtype and channels as ``prev_output``.
    """
    if not isinstance(prev_output, np.ndarray) or prev_output.ndim != 3:
        raise ValueError("prev_output must be an HxWxC numpy array")
    if prev_output.dtype not in (np.uint8, np.float32):
        raise ValueError(f"prev_output must be uint8 or float32, got {prev_output.dtype}")
    flow = _check_flow(flow_to_prev, prev_output.shape[:2], "flow_to_prev")
    return warp(prev_output, flow)


# ----------------------------------------------------------------------------- masks


def _fit_mask(mask, size, what):
    h, w = int(size[0]), int(size[1])
    mh, mw = mask.shape[:2]
    if (mh, mw) == (h, w):
        return mask
    if aspect_differs((mh, mw), (h, w)):
        raise ValueError(
            f"{what}: mask is {mw}x{mh} but frames are {w}x{h}; the aspect ratios "
            "differ by more than 1 %"
        )
    return resize(mask, h, w, enlarge="linear")


def load_mask(path, *, size):
    """Load a mask image as grey uint8, resized to the frame size.

    A mask with a varying alpha channel uses its alpha; otherwise its luminance.
    White (255) is inside the mask.

    Parameters
    ----------
    path : str or os.PathLike
        The mask image (8- or 16-bit; grey, RGB or RGBA).
    size : tuple of int
        ``(H, W)`` of the frames.

    Returns
    -------
    numpy.ndarray
        uint8 (H, W).

    Raises
    ------
    ValueError
        When the file is unreadable (a :class:`~engine.frames.FrameError` naming it)
        or its aspect ratio differs from the frames' by more than 1 %.
    """
    image = read_image(path)
    if image.shape[2] == 4 and image[:, :, 3].min() != image[:, :, 3].max():
        mask = np.ascontiguousarray(image[:, :, 3])
    else:
        mask = cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)
    return _fit_mask(mask, size, path)


class MaskSequence:
    """Masks for the frames of a clip: one image for all, or one per frame.

    Use :func:`open_masks` to build it.

    Attributes
    ----------
    path : pathlib.Path
        The mask file or folder.
    size : tuple of int
        ``(H, W)`` masks are resized to.
    """

    def __init__(self, path, *, size, frame_numbers=None):
        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        self._single = None
        self._paths = {}
        if not self.path.exists():
            raise FrameError(f"{self.path}: mask file or folder not found")
        if self.path.is_file():
            self._single = load_mask(self.path, size=self.size)
            self._single.flags.writeable = False
            return
        from .frames import open_frames

        from .frames import check_image_file

        source = open_frames(self.path)
        self._paths = {n: source.path_for(n) for n in source.frame_numbers}
        if frame_numbers is not None:
            missing = [n for n in frame_numbers if n not in self._paths]
            if missing:
                shown = ", ".join(str(n) for n in missing[:10])
                more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                raise FrameError(f"{self.path}: no mask for frame(s) {shown}{more}")
        # A bad mask is found now, not when its frame is written half-way through a job.
        for n in (self._paths if frame_numbers is None else frame_numbers):
            check_image_file(self._paths[n])

    def files(self):
        """dict: ``{frame number: mask file}`` of a folder of masks; empty for a single mask."""
        return dict(self._paths)

    def read(self, n):
        """The mask of frame ``n``.

        Parameters
        ----------
        n : int
            Frame number.

        Returns
        -------
        numpy.ndarray
            uint8 (H, W), 255 inside the mask.
        """
        if self._single is not None:
            return self._single
        if n not in self._paths:
            raise FrameError(f"{self.path}: no mask for frame {n}")
        return load_mask(self._paths[n], size=self.size)


def open_masks(path, *, size, frame_numbers=None):
    """Open masks: a single image used for every frame, or a folder of numbered masks.

    Parameters
    ----------
    path : str or os.PathLike
        A mask image, or a folder of numbered mask images (numbered like frames).
    size : tuple of int
        ``(H, W)`` of the frames.
    frame_numbers : sequence of int, optional
        The clip's frame numbers; a folder lacking any of them is refused.

    Returns
    -------
    MaskSequence
    """
    return MaskSequence(path, size=size, frame_numbers=frame_numbers)


def apply_mask(image, mask):
    """Make the outside of a mask transparent: RGB + mask as alpha.

    Parameters
    ----------
    image : numpy.ndarray
        uint8 HxWx3 RGB (or RGBA, whose alpha is multiplied by the mask).
    mask : numpy.ndarray
        uint8 HxW, 255 inside.

    Returns
    -------
    numpy.ndarray
        uint8 HxWx4 RGBA.
    """
    image = _check_frame(image, "image")
    if not isinstance(mask, np.ndarray) or mask.dtype != np.uint8 or mask.shape != image.shape[:2]:
        raise ValueError(f"mask must be uint8 of shape {image.shape[:2]}")
    alpha = mask
    if image.shape[2] == 4:
        alpha = ((image[:, :, 3].astype(np.uint16) * mask + 127) // 255).astype(np.uint8)
    return np.dstack([image[:, :, :3], alpha])


# --------------------------------------------------------------------------- bundles


@dataclasses.dataclass
class FrameGuides:
    """One frame's guides.

    Attributes
    ----------
    colour : numpy.ndarray
        uint8 (H, W, 3).
    edge : numpy.ndarray
        uint8 (H, W).
    positional : numpy.ndarray
        float32 (H, W, 2 or 3), 0..255 over the keyframe.
    temporal : numpy.ndarray or None
        Stylized image: on the source side the keyframe's style, on the target side
        the previous output advected; ``None`` leaves the temporal guide out.
    """

    colour: np.ndarray
    edge: np.ndarray
    positional: np.ndarray
    temporal: np.ndarray | None = None


def frame_guides(frame, *, positions, temporal=None, key_size=None, positional_channels=2):
    """Build a frame's guides.

    Parameters
    ----------
    frame : numpy.ndarray
        uint8 HxWx3 RGB.
    positions : numpy.ndarray
        float32 (H, W, 2) keyframe coordinates of this frame.
    temporal : numpy.ndarray, optional
        The temporal guide image (see :class:`FrameGuides`).
    key_size : tuple of int, optional
        ``(H, W)`` of the keyframe (default: the frame's size).
    positional_channels : {2, 3}
        Channels of the positional guide.

    Returns
    -------
    FrameGuides
    """
    frame = _check_frame(frame)
    positions = _check_positions(positions)
    if positions.shape[:2] != frame.shape[:2]:
        raise ValueError(f"positions {positions.shape[:2]} do not match the frame {frame.shape[:2]}")
    if temporal is not None and (
        not isinstance(temporal, np.ndarray) or temporal.shape[:2] != frame.shape[:2]
    ):
        raise ValueError("temporal must be an array of the frame's size")
    return FrameGuides(
        colour=colour_guide(frame),
        edge=edge_guide(frame),
        positional=positional_guide(positions, size=key_size, channels=positional_channels),
        temporal=temporal,
    )


def guide_lists(source, target, *, weights=None):
    """Pair a source and a target :class:`FrameGuides` for ``synthesize``.

    Guides with weight 0 are left out (they would not change the match), and so
    is the temporal guide unless both sides have one. When every guide weighs 0
    the colour guide is kept with weight 0, as ``synthesize`` needs one guide:
    the style term alone then decides.

    Parameters
    ----------
    source, target : FrameGuides
        Keyframe side and frame side.
    weights : GuideWeights, optional
        Default ``GuideWeights()``.

    Returns
    -------
    tuple
        ``(source_guides, target_guides, guide_weights)``: two lists of arrays and
        a list of floats, in the order colour, edge, positional, temporal.
    """
    weights = weights or GuideWeights()
    src_list, tgt_list, w_list = [], [], []
    for name in ("colour", "edge", "positional", "temporal"):
        weight = float(getattr(weights, name))
        s, t = getattr(source, name), getattr(target, name)
        if weight == 0 or s is None or t is None:
            continue
        s_ch = 1 if s.ndim == 2 else s.shape[2]
        t_ch = 1 if t.ndim == 2 else t.shape[2]
        if s_ch != t_ch:
            raise ValueError(f"{name} guide has {s_ch} channel(s) on the source, {t_ch} on the target")
        src_list.append(s)
        tgt_list.append(t)
        w_list.append(weight)
    if not src_list:
        src_list, tgt_list, w_list = [source.colour], [target.colour], [0.0]
    return src_list, tgt_list, w_list
