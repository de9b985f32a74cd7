"""Optical flow: OpenCV DIS, forward-backward consistency, warping, an on-disk cache.

Conventions
-----------
A flow field is a float32 array of shape (H, W, 2) holding ``(dx, dy)`` in pixels.
``flow_ab = compute_flow(a, b)`` maps frame ``a`` onto frame ``b``:
``a[y, x] ~ b[y + dy, x + dx]``. Warping is *backward*: ``warp(b, flow_ab)`` pulls
``b`` into ``a``'s pixel grid. So, to carry the previous frame's picture onto the
current frame ``t``, use the flow from ``t`` to ``t - 1``::

    fwd, bwd = compute_flow_pair(prev, cur)   # fwd: prev -> cur, bwd: cur -> prev
    prev_on_cur = warp(prev_output, bwd)

``consistency_mask(fwd, bwd)`` is true where ``fwd`` is trusted (the pixel of ``a``
is visible in ``b`` too); ``consistency_mask(bwd, fwd)`` is the same for ``b``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import weakref

import cv2
import numpy as np

from .errors import FrameError
from .files import read_regular_file, remove_stale_temp_files, write_bytes_atomic
from .safety import own_folder, remove_owned, seal_tail, unseal

__all__ = [
    "FlowParams",
    "FlowCache",
    "compute_flow",
    "compute_flow_pair",
    "consistency_mask",
    "motion_boundary_mask",
    "warp",
    "compose_flows",
    "chain_flows",
    "flow_magnitude",
    "identity_grid",
    "keep_dis_objects",
    "reusing_dis",
]

_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

#: Bumped whenever cached flow would change meaning.
CACHE_FORMAT = 2
#: Names of cache entries: ``flow-`` and the 40 hex digits of the pair's key.
_ENTRY_NAME = re.compile(r"flow-[0-9a-f]{40}\.npy")
#: Names an existing unmarked folder may hold to be taken as a flow cache (an
#: earlier version's entries and temporary files).
_OWN_NAMES = re.compile(r"flow-[0-9a-f]{40}\.npy|\.flow-[0-9a-f]{40}\.npy\.\d+\.[0-9a-f]{8}\.tmp")
#: Default size cap of a :class:`FlowCache` folder, in bytes (1 GiB).
DEFAULT_MAX_BYTES = 1 << 30
#: Memory a propagation job gives its :class:`FlowCache` (``memory_bytes``): a
#: 640x360 pair takes 1.8 MB, a 1080p pair 16.6 MB (five pairs: the rest of a
#: 1080p span's pairs are read back from the disk, so that two passes fit side by side).
JOB_MEMORY_BYTES = 96 << 20


@dataclasses.dataclass(frozen=True)
class FlowParams:
    """Settings of the DIS optical flow.

    The defaults are OpenCV's MEDIUM preset carried down to full resolution
    (``finest_scale=0``) with a sparser patch grid (stride 5), 12 gradient-descent
    and 2 variational iterations. At 640x360 on a loaded 2-core machine this took
    about 100 ms per forward+backward pair against 54 ms for plain MEDIUM, and
    warped the synth_case keyframe onto frames B/C/D at 49.1/39.0/48.1 dB PSNR
    against 43.9/35.9/42.7 dB for MEDIUM; on the real test clips the photometric
    warp error over consistent pixels fell from 1.79 to 1.55. Use
    :meth:`preset_only` for an unmodified OpenCV preset.

    Parameters
    ----------
    preset : {"ultrafast", "fast", "medium"}
        OpenCV preset the other fields start from.
    finest_scale, patch_size, patch_stride, gradient_descent_iterations,
    variational_iterations : int or None
        Overrides of the preset's values; ``None`` keeps the preset's.
    variational_alpha, variational_delta, variational_gamma : float or None
        Overrides of the variational refinement weights (smoothness, colour
        constancy, gradient constancy); ``None`` keeps the preset's.
    full_scale_max_side : int or None
        Frames whose long side is over this stop DIS one pyramid level
        earlier (``finest_scale`` plus one) per halving that brings the long
        side to it or below; OpenCV then upsamples the flow. ``None`` (the
        default) always runs ``finest_scale``. With 1280, a 1080p pair's flow
        takes a third of the time (0.43 s against 1.39 s); on the 1080p case
        of ``python build.py bench speed`` the job was 7 % faster, with 17 %
        less warp error but 0.59 dB less PSNR against the per-frame truth,
        which is why it is not the default.
    """

    preset: str = "medium"
    finest_scale: int | None = 0
    patch_size: int | None = None
    patch_stride: int | None = 5
    gradient_descent_iterations: int | None = 12
    variational_iterations: int | None = 2
    variational_alpha: float | None = None
    variational_delta: float | None = None
    variational_gamma: float | None = None
    full_scale_max_side: int | None = None

    def __post_init__(self):
        if self.preset not in _PRESETS:
            raise ValueError(f"preset must be one of {sorted(_PRESETS)}, got {self.preset!r}")
        for name in ("finest_scale", "variational_iterations"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative int or None, got {value!r}")
        for name in ("patch_size", "patch_stride", "gradient_descent_iterations", "full_scale_max_side"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")

    @classmethod
    def preset_only(cls, preset="medium"):
        """Parameters that are exactly an OpenCV preset, with no overrides.

        Parameters
        ----------
        preset : {"ultrafast", "fast", "medium"}
            The preset.

        Returns
        -------
        FlowParams
        """
        return cls(
            preset=preset,
            finest_scale=None,
            patch_stride=None,
            gradient_descent_iterations=None,
            variational_iterations=None,
            full_scale_max_side=None,
        )

    def create(self, size=None):
        """Build a configured ``cv2.DISOpticalFlow`` object, for frames of ``size`` ``(h, w)`` when given
        (see ``full_scale_max_side``)."""
        dis = cv2.DISOpticalFlow_create(_PRESETS[self.preset])
        setters = {
            "finest_scale": dis.setFinestScale,
            "patch_size": dis.setPatchSize,
            "patch_stride": dis.setPatchStride,
            "gradient_descent_iterations": dis.setGradientDescentIterations,
            "variational_iterations": dis.setVariationalRefinementIterations,
            "variational_alpha": dis.setVariationalRefinementAlpha,
            "variational_delta": dis.setVariationalRefinementDelta,
            "variational_gamma": dis.setVariationalRefinementGamma,
        }
        for name, setter in setters.items():
            value = getattr(self, name)
            if value is not None:
                setter(value)
        if size is not None and self.full_scale_max_side is not None:
            halvings = 0
            while max(size) > self.full_scale_max_side << halvings:
                halvings += 1
            if halvings:
                dis.setFinestScale(dis.getFinestScale() + halvings)
        return dis

    def cache_key(self):
        """str: a stable text of every field, for cache keys."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def _as_grey(image, name):
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.ascontiguousarray(image[:, :, 0])
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"{name} must be HxW, HxWx3 or HxWx4, got shape {image.shape}")


def _check_flow(flow, name="flow"):
    if not isinstance(flow, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(flow).__name__}")
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"{name} must have shape (H, W, 2), got {flow.shape}")
    if flow.dtype != np.float32:
        if not np.issubdtype(flow.dtype, np.floating):
            raise ValueError(f"{name} must be floating point, got {flow.dtype}")
        flow = flow.astype(np.float32)
    return np.ascontiguousarray(flow)


def compute_flow(src, dst, *, params=None, dis=None):
    """DIS optical flow from ``src`` to ``dst``.

    Parameters
    ----------
    src, dst : numpy.ndarray
        uint8 frames of the same size, RGB (HxWx3), RGBA or grey (HxW).
    params : FlowParams, optional
        DIS settings (default ``FlowParams()``).
    dis : cv2.DISOpticalFlow, optional
        A ready DIS object to reuse (built from ``params`` when omitted).

    Returns
    -------
    numpy.ndarray
        float32 (H, W, 2) flow: ``src[y, x] ~ dst[y + dy, x + dx]``.
    """
    a = _as_grey(src, "src")
    b = _as_grey(dst, "dst")
    if a.shape != b.shape:
        raise ValueError(f"src and dst differ in size: {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError(f"src and dst are empty: {a.shape}")
    if dis is None:
        dis = (params or FlowParams()).create(a.shape)
    h, w = a.shape
    ph, pw = _dis_safe_size(h, w, dis.getPatchSize(), dis.getFinestScale())
    if (ph, pw) != (h, w):
        # Too small for DIS's pyramid: pad by replicating the border, and crop
        # the flow back (see _dis_safe_size).
        pad = ((0, ph - h), (0, pw - w))
        flow = dis.calc(np.pad(a, pad, mode="edge"), np.pad(b, pad, mode="edge"), None)
        return np.ascontiguousarray(flow[:h, :w])
    return dis.calc(a, b, None)


def _dis_coarsest_scale(h, w, patch):
    """The coarsest pyramid level OpenCV's DIS picks for an ``h`` x ``w`` frame.

    As in ``DISOpticalFlowImpl::calc`` (OpenCV 4.x), C's truncation and integer
    division included (a short side under one patch gives a negative level).
    """
    by_motion = int(math.log(max(w, h) / (4.0 * patch)) / math.log(2.0) + 0.5)
    if min(w, h) < patch:
        return -1
    by_patch = int(math.log(min(w, h) // patch) / math.log(2.0))
    return min(by_motion, by_patch)


def _dis_safe_size(h, w, patch, finest):
    """The smallest ``(H, W) >= (h, w)`` on which DIS takes its ordinary path.

    Below it, OpenCV's DIS either raises cv2.error (coarsest level below 0:
    frames under 12 pixels a side) or, when the coarsest level falls below the
    finest, re-picks its levels from the frame's width alone, which for a
    short, wide frame (13x40 with the "medium" preset, 31x200 with "fast")
    reads outside the image and crashes the process (SIGSEGV). Frames of the
    returned size avoid both.
    """
    h, w = max(int(h), 1), max(int(w), 1)
    finest = max(int(finest), 0)
    while _dis_coarsest_scale(h, w, patch) < finest:
        if min(w, h) < patch << finest:  # the short side limits the pyramid: grow it
            if h <= w:
                h += 1
            else:
                w += 1
        elif w >= h:  # else the long side does
            w += 1
        else:
            h += 1
    return h, w


def compute_flow_pair(a, b, *, params=None, split=True):
    """Forward (``a -> b``) and backward (``b -> a``) DIS flow.

    Parameters
    ----------
    a, b : numpy.ndarray
        uint8 frames of the same size (RGB, RGBA or grey).
    params : FlowParams, optional
        DIS settings (default ``FlowParams()``).
    split : bool
        Compute the two directions on two threads at once (when OpenCV may use
        more than one); ``False`` for one after the other, for a caller that
        already runs several pairs at once. The values are the same.

    Returns
    -------
    tuple of numpy.ndarray
        ``(forward, backward)``, each float32 (H, W, 2).
    """
    params = params or FlowParams()
    # DIS's calc() spreads its patch search and densification over OpenCV's
    # threads but not its pyramids or the rest: 18 directions of 1080p pairs one
    # at a time kept 1.7 of 2 cores busy (1.84 with two at once). It releases the
    # GIL, so the backward flow is computed on a second thread while this one
    # computes the forward flow. calc() is given no initial flow, so the values
    # are those of computing them one after the other (on one DIS object or two).
    size = a.shape[:2]
    if not split or cv2.getNumThreads() <= 1:  # OpenCV told to use one thread: so do we
        dis = _dis_for(params, size)
        return compute_flow(a, b, dis=dis), compute_flow(b, a, dis=dis)
    backward = _flow_pool().submit(compute_flow, b, a, dis=params.create(size))
    try:
        forward = compute_flow(a, b, dis=_dis_for(params, size))
    finally:
        backward_flow = backward.result()
    return forward, backward_flow


_KEPT = threading.local()


def keep_dis_objects():
    """Make the calling thread keep its DIS object between flow computations, until the thread ends.

    OpenCV's DIS allocates its pyramids, gradients and variational-refinement
    buffers on its first ``calc`` and reuses them on the next ones of the same
    size (``Mat::create``, ``DISOpticalFlowImpl::prepareBuffers`` in OpenCV's
    ``modules/video/src/dis_flow.cpp``). Each ``calc`` given no initial flow
    starts from a zero flow at its coarsest level and rewrites every buffer it
    reads, so the flow is the same as a fresh object's (tested). A fresh object
    per direction made the kernel zero about 300 MB of new pages at 1080p: 18
    directions on two threads took 5.2 s, with 1.8 s of system time, fresh and
    4.5 s, with 0.55 s, reused, and the whole 1080p job had 0.32 million page faults
    against 1.0 to 1.5 million. The object holds that memory (about 380 MB at
    1080p) for as long as the thread lives, so only threads that end with their
    work call this: the flow task's pool threads (their ``initializer``), not a
    long-lived thread beside a job's passes.
    """
    _KEPT.objects = {}


@contextlib.contextmanager
def reusing_dis():
    """:func:`keep_dis_objects` for the ``with`` block only: the objects are dropped at its end."""
    kept = getattr(_KEPT, "objects", None)
    if kept is None:
        _KEPT.objects = {}
    try:
        yield
    finally:
        if kept is None:
            del _KEPT.objects


def _dis_for(params, size):
    """The calling thread's kept DIS object for ``params`` and ``size`` (see :func:`keep_dis_objects`),
    else a fresh one."""
    objects = getattr(_KEPT, "objects", None)
    if objects is None:
        return params.create(size)
    key = (params, tuple(size))
    dis = objects.get(key)
    if dis is None:
        objects.clear()  # one at a time: a job's frames share one size
        dis = objects[key] = params.create(size)
    return dis


_POOL = None
_POOL_LOCK = threading.Lock()


def _flow_pool():
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="karwai-flow")
        return _POOL


def identity_grid(h, w):
    """Pixel coordinates as a float32 (H, W, 2) array of ``(x, y)``.

    Parameters
    ----------
    h, w : int
        Height and width.
    """
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return np.dstack([xs, ys])


def _maps(flow):
    """``cv2.remap``'s maps for ``flow``: ``x + dx`` and ``y + dy`` (float32, contiguous)."""
    h, w = flow.shape[:2]
    map_x, map_y = cv2.split(flow)  # contiguous channels: NumPy's ops on strided ones run slower
    map_x += np.arange(w, dtype=np.float32)
    map_y += np.arange(h, dtype=np.float32)[:, None]
    return map_x, map_y


_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST, "cubic": cv2.INTER_CUBIC}
_BORDER = {"replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT}


def warp(image, flow, *, interpolation="linear", border="replicate", border_value=0):
    """Backward-warp ``image`` by ``flow``: ``out[y, x] = image[y + dy, x + dx]``.

    Parameters
    ----------
    image : numpy.ndarray
        HxW or HxWxC array (uint8, uint16 or float32; any channel count). It may
        differ in size from ``flow``; the output takes the flow's size.
    flow : numpy.ndarray
        float32 (H, W, 2) flow from the output's grid into ``image``.
    interpolation : {"linear", "nearest", "cubic"}
        Sampling filter.
    border : {"replicate", "constant", "reflect"}
        What is sampled outside ``image``.
    border_value : float
        The constant for ``border="constant"``.

    Returns
    -------
    numpy.ndarray
        The warped image, same dtype and channel count as ``image``.
    """
    flow = _check_flow(flow)
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        raise ValueError("image must be an HxW or HxWxC numpy array")
    if image.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise ValueError(f"image dtype {image.dtype} is not supported")
    if interpolation not in _INTERPOLATION:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATION)}")
    if border not in _BORDER:
        raise ValueError(f"border must be one of {sorted(_BORDER)}")
    map_x, map_y = _maps(flow)
    kwargs = dict(
        interpolation=_INTERPOLATION[interpolation],
        borderMode=_BORDER[border],
        borderValue=border_value,
    )
    if image.ndim == 3 and image.shape[2] > 4:
        parts = [
            cv2.remap(np.ascontiguousarray(image[:, :, i : i + 4]), map_x, map_y, **kwargs)
            for i in range(0, image.shape[2], 4)
        ]
        parts = [p[:, :, None] if p.ndim == 2 else p for p in parts]
        return np.concatenate(parts, axis=2)
    out = cv2.remap(np.ascontiguousarray(image), map_x, map_y, **kwargs)
    if image.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return out


def flow_magnitude(flow):
    """Per-pixel length of a flow field, float32 (H, W)."""
    flow = _check_flow(flow)
    return np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2)


def compose_flows(flow_ab, flow_bc):
    """Chain two flows: ``a -> b`` then ``b -> c`` gives ``a -> c``.

    ``flow_ac(x) = flow_ab(x) + flow_bc(x + flow_ab(x))``, with ``flow_bc`` sampled
    bilinearly and replicated at the border.

    Parameters
    ----------
    flow_ab, flow_bc : numpy.ndarray
        float32 (H, W, 2) flows of the same size.

    Returns
    -------
    numpy.ndarray
        float32 (H, W, 2) flow from ``a`` to ``c``.
    """
    flow_ab = _check_flow(flow_ab, "flow_ab")
    flow_bc = _check_flow(flow_bc, "flow_bc")
    if flow_ab.shape != flow_bc.shape:
        raise ValueError(f"flows differ in size: {flow_ab.shape} vs {flow_bc.shape}")
    return flow_ab + warp(flow_bc, flow_ab)


def chain_flows(flows):
    """Compose consecutive flows ``f_01, f_12, ...`` into ``f_0n``.

    Parameters
    ----------
    flows : iterable of numpy.ndarray
        float32 (H, W, 2) flows, each from one frame to the next. Consumed one at
        a time, so a generator keeps memory constant.

    Returns
    -------
    numpy.ndarray
        float32 (H, W, 2) flow from the first frame to the last.
    """
    total = None
    for flow in flows:
        total = _check_flow(flow).copy() if total is None else compose_flows(total, flow)
    if total is None:
        raise ValueError("chain_flows needs at least one flow")
    return total


def consistency_mask(flow, flow_back, *, alpha=0.01, beta=0.5):
    """Forward-backward consistency of ``flow`` (Sundaram et al. 2010).

    A pixel ``x`` of the first frame is consistent when it lands inside the second
    frame and ``|f(x) + b(x + f(x))|^2 < alpha * (|f(x)|^2 + |b(x + f(x))|^2) + beta``.
    Inconsistent pixels are occluded in the second frame, or badly matched.

    Parameters
    ----------
    flow : numpy.ndarray
        float32 (H, W, 2) flow from frame 1 to frame 2.
    flow_back : numpy.ndarray
        float32 (H, W, 2) flow from frame 2 to frame 1.
    alpha, beta : float
        Relative and absolute (squared pixels) tolerance.

    Returns
    -------
    numpy.ndarray
        bool (H, W), true where ``flow`` is trusted.
    """
    flow = _check_flow(flow)
    flow_back = _check_flow(flow_back, "flow_back")
    if flow.shape != flow_back.shape:
        raise ValueError(f"flows differ in size: {flow.shape} vs {flow_back.shape}")
    h, w = flow.shape[:2]
    map_x, map_y = _maps(flow)
    back = cv2.remap(flow_back, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # |f + b|^2 < alpha (|f|^2 + |b|^2) + beta, in float32 (alpha and beta as float32), on
    # contiguous channels and in place: the values of the plain expression, in a fraction of the time.
    fx, fy = cv2.split(flow)
    bx, by = cv2.split(back)
    lhs = fx + bx
    lhs *= lhs
    sum_y = fy + by
    sum_y *= sum_y
    lhs += sum_y
    rhs = fx * fx
    for part in (fy, bx, by):
        part *= part
        rhs += part
    rhs *= np.float32(alpha)
    rhs += np.float32(beta)
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    inside &= lhs < rhs
    return inside


def motion_boundary_mask(flow, *, alpha=0.01, beta=0.002):
    """Motion boundaries of a flow field (Sundaram et al. 2010, as used by Ruder et al. 2016).

    A pixel lies on a motion boundary when
    ``|grad u|^2 + |grad v|^2 > alpha * |f|^2 + beta``, with central differences
    (one-sided at the border). Flow there is unreliable even when it is
    forward-backward consistent.

    Parameters
    ----------
    flow : numpy.ndarray
        float32 (H, W, 2) flow.
    alpha, beta : float
        Relative and absolute tolerance.

    Returns
    -------
    numpy.ndarray
        bool (H, W), true on motion boundaries.
    """
    flow = _check_flow(flow)
    gy_u, gx_u = np.gradient(flow[..., 0]) if min(flow.shape[:2]) > 1 else (0.0, 0.0)
    gy_v, gx_v = np.gradient(flow[..., 1]) if min(flow.shape[:2]) > 1 else (0.0, 0.0)
    grad = gx_u ** 2 + gy_u ** 2 + gx_v ** 2 + gy_v ** 2
    return np.asarray(grad > alpha * (flow[..., 0] ** 2 + flow[..., 1] ** 2) + beta)


# --------------------------------------------------------------------------------------
# cache


#: Content hashes of read-only frames, by id, while the frame lives (see _content_hash).
_HASHES = {}
_HASHES_LOCK = threading.Lock()


def _content_hash(image):
    # A frame that owns its pixels and is read-only (as every frame source's
    # frames are, frames._freeze) is hashed once: each flow request names two
    # frames, and hashing a 1080p frame takes milliseconds. The entry goes when
    # the frame is collected, so a new array at the same id is hashed afresh.
    frozen = image.base is None and not image.flags.writeable
    if frozen:
        with _HASHES_LOCK:
            entry = _HASHES.get(id(image))
        if entry is not None and entry[0]() is image:
            return entry[1]
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((image.shape, str(image.dtype))).encode())
    digest.update(np.ascontiguousarray(image).data)
    value = digest.hexdigest()
    if frozen:
        key = id(image)

        def forget(_, key=key):
            with _HASHES_LOCK:
                entry = _HASHES.get(key)
                if entry is not None and entry[0]() is None:
                    del _HASHES[key]
        with _HASHES_LOCK:
            _HASHES[key] = (weakref.ref(image, forget), value)
    return value


class FlowCache:
    """Forward and backward flow of frame pairs, cached on disk, with a size cap.

    Each pair is stored as one ``.npy`` file of float16 ``(2, H, W, 2)`` (forward,
    backward), named by a hash of both frames' pixels, the flow parameters and the
    OpenCV version, and written atomically. The array is followed by a checksum
    (:func:`engine.safety.seal`): an entry whose data does not match it (damaged
    on disk, or written by another program) is recomputed and replaced, never
    used. The folder is created and marked as the engine's
    (:func:`engine.safety.own_folder`); an existing folder that holds anything
    but cache files is refused, and only cache files are ever deleted. Nothing is kept in memory, so memory
    does not grow with the clip. Flow returned on a miss is rounded through float16
    too, so a cached re-run gives bit-identical results, and an evicted pair is
    recomputed to the same values.

    The folder is capped at ``max_bytes``: when a write takes it over the cap, the
    least recently used entries (by modification time, which a hit refreshes) are
    removed until it is back under 90 % of the cap. At 640x360 a pair takes
    1.8 MB, so the default 1 GiB holds about 580 pairs.

    Parameters
    ----------
    cache_dir : str or os.PathLike
        Folder for the cache files (created when missing), one per clip or shared.
    params : FlowParams, optional
        DIS settings (default ``FlowParams()``).
    max_bytes : int, optional
        Size cap of the folder's cache files (default :data:`DEFAULT_MAX_BYTES`);
        ``0`` keeps nothing on disk, ``None`` means no cap.

    memory_bytes : int, optional
        Also keep up to this many bytes of pairs in memory (float16, as on
        disk; least recently used dropped first), so that the passes, blending
        and smoothing of a span, which ask for each pair several times, read
        and check it once. Default 0: nothing is kept in memory, every request
        reads the folder. An entry in memory is one that was computed here or
        passed its checksum when loaded.

    Attributes
    ----------
    hits, misses, evictions : int
        Counts of pairs found (in memory or on disk), computed, and removed from
        the folder to honour the cap.
    """

    def __init__(self, cache_dir, *, params=None, max_bytes=DEFAULT_MAX_BYTES, memory_bytes=0):
        if max_bytes is not None:
            if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 0:
                raise ValueError(f"max_bytes must be a non-negative integer or None, got {max_bytes!r}")
            max_bytes = int(max_bytes)
        self.cache_dir = Path(cache_dir)
        self.params = params or FlowParams()
        self.max_bytes = max_bytes
        own_folder(self.cache_dir, "the flow cache", adopt=_OWN_NAMES)
        remove_stale_temp_files(self.cache_dir)
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.damaged = 0
        self._salt = f"{CACHE_FORMAT}|{cv2.__version__}|{self.params.cache_key()}"
        self._bytes = sum(size for _, size, _ in self._entries())
        if isinstance(memory_bytes, bool) or not isinstance(memory_bytes, (int, np.integer)) or memory_bytes < 0:
            raise ValueError(f"memory_bytes must be a non-negative integer, got {memory_bytes!r}")
        self.memory_bytes = int(memory_bytes)
        self._memory = {}  # key -> float16 (2, H, W, 2), least recently used first
        # The two passes of a span may ask for pairs from two threads at once.
        self._lock = threading.RLock()

    def _remember(self, key, data):
        if data.nbytes > self.memory_bytes:
            return
        self._memory.pop(key, None)
        self._memory[key] = data
        total = sum(d.nbytes for d in self._memory.values())
        while total > self.memory_bytes:
            oldest = next(iter(self._memory))
            total -= self._memory.pop(oldest).nbytes

    def key(self, a, b):
        """str: the cache key of the ordered pair ``(a, b)``."""
        digest = hashlib.blake2b(digest_size=20)
        digest.update(self._salt.encode())
        digest.update(_content_hash(a).encode())
        digest.update(_content_hash(b).encode())
        return digest.hexdigest()

    def path_for(self, a, b):
        """pathlib.Path: the cache file of the pair ``(a, b)``."""
        return self.cache_dir / f"flow-{self.key(a, b)}.npy"

    @property
    def size_bytes(self):
        """int: bytes of cache files in the folder (as this object last counted them)."""
        return self._bytes

    def _entries(self):
        """``(path, size, mtime_ns)`` of every cache file in the folder."""
        entries = []
        try:
            scan = list(os.scandir(self.cache_dir))
        except OSError:
            return entries
        for entry in scan:
            if _ENTRY_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                entries.append((Path(entry.path), st.st_size, st.st_mtime_ns))
        return entries

    def _trim(self, keep=None):
        """Evict least recently used entries until the folder is under the cap."""
        if self.max_bytes is None or self._bytes <= self.max_bytes:
            return
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        target = self.max_bytes * 9 // 10
        for path, size, _ in sorted(entries, key=lambda e: (e[2], e[0].name)):
            if total <= target:
                break
            if path == keep and size <= self.max_bytes:
                continue  # the entry just written stays, unless it alone breaks the cap
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError:
                continue  # e.g. open elsewhere on Windows: try the next one
            total -= size
            self.evictions += 1
        self._bytes = total

    def clear(self):
        """Remove every cache file, and the folder when that leaves it empty.

        Only in a folder the engine marked as its own, and only files named like
        cache entries; anything else in it stays, and so does the folder.
        """
        remove_owned(self.cache_dir, _ENTRY_NAME)
        self._memory.clear()
        self._bytes = sum(size for _, size, _ in self._entries())

    def _load(self, path, shape):
        try:
            raw = read_regular_file(path, what="flow cache")
        except FrameError:
            return None
        payload = unseal(raw, context=path.name)
        if payload is None:
            return self._found_damaged()
        try:
            data = np.load(io.BytesIO(payload), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return self._found_damaged()
        if data.dtype != np.float16 or data.shape != (2, shape[0], shape[1], 2):
            return self._found_damaged()
        return data

    def _found_damaged(self):
        """Count one damaged entry (loads run on several threads at once); None, for the caller to return."""
        with self._lock:
            self.damaged += 1
        return None

    def pair(self, a, b, *, split=True):
        """Forward and backward flow between frames ``a`` and ``b``.

        Parameters
        ----------
        a, b : numpy.ndarray
            uint8 frames of the same size.
        split : bool
            On a miss, compute the two directions on two threads at once (see
            :func:`compute_flow_pair`); ``False`` where the caller asks for
            several pairs at once from its own threads.

        Returns
        -------
        tuple of numpy.ndarray
            ``(forward, backward)`` float32 (H, W, 2) flows (``a -> b``, ``b -> a``).
        """
        # Imported here: numba is a job's dependency, and flow without the cache (the stylizers'
        # temporal guides, the add-on's key suggestions) must work where it is missing.
        from .float16 import to_float16, to_float32

        if a.shape[:2] != b.shape[:2]:
            raise ValueError(f"frames differ in size: {a.shape} vs {b.shape}")
        key = self.key(a, b)
        path = self.cache_dir / f"flow-{key}.npy"
        with self._lock:
            data = self._memory.pop(key, None)
            if data is not None:
                self.hits += 1
                self._memory[key] = data  # the most recently used
        if data is None:
            data = self._load_entry(path, a.shape[:2])
        computed = data is None
        if computed:
            # Computed outside the lock, so that threads asking for different pairs (the flow
            # task's, two passes side by side) compute them at once. Two threads missing the
            # same pair compute the same values; the second one's entry replaces the first's.
            fwd, bwd = compute_flow_pair(a, b, params=self.params, split=split)
            data = np.empty((2,) + fwd.shape, np.float16)
            to_float16(fwd, out=data[0])
            to_float16(bwd, out=data[1])
            del fwd, bwd
            self._store(path, data)
        with self._lock:
            if computed:
                self.misses += 1
            if self.memory_bytes:
                self._remember(key, data)
        # Two arrays, not one of both: a 1080p pair in float32 (33 MB) is past glibc's
        # largest reuse size, so one array would be fresh pages (page faults) on every call.
        return to_float32(data[0]), to_float32(data[1])

    def _load_entry(self, path, shape):
        """The float16 pair in the cache file ``path`` (a hit), or None."""
        data = self._load(path, shape) if os.path.lexists(path) else None
        if data is not None:
            with self._lock:
                self.hits += 1
            try:
                os.utime(path)  # most recently used
            except OSError:
                pass
        return data

    def _store(self, path, data):
        """Write a computed pair's cache file (unless the cache keeps no files)."""
        if self.max_bytes == 0:
            return
        buffer = io.BytesIO()
        np.save(buffer, data, allow_pickle=False)
        payload = buffer.getbuffer()
        blob = [payload, seal_tail(payload, path.name)]
        try:
            old = path.stat().st_size  # an unreadable entry being replaced
        except OSError:
            old = 0
        # A cache entry a power cut leaves damaged fails its seal and is recomputed: no fsync.
        write_bytes_atomic(path, blob, durable=False)
        with self._lock:
            self._bytes += len(payload) + len(blob[1]) - old
            self._trim(keep=path)
