"""What the temporally coherent stylizers share: flow between a clip's frames, the
temporal-loss target, and the key-disagreement figure.

All flow, consistency and warping is :mod:`engine.flow`'s; this module only
decides which frames it runs between. Conventions are those of
:mod:`engine.flow`: ``to_prev`` lives on the current frame's grid and points
into the previous (or reference) frame, so ``warp(prev_output, to_prev)``
carries the previous output onto the current frame.

References
----------
.. [1] M. Ruder, A. Dosovitskiy, T. Brox, "Artistic style transfer for videos",
   GCPR 2016; and "Artistic style transfer for videos and spherical images",
   IJCV 2018.
"""

from __future__ import annotations

import collections

import numpy as np

from ..flow import FlowParams, chain_flows, compute_flow_pair, consistency_mask, motion_boundary_mask, warp

__all__ = ["ClipFlows", "temporal_target", "key_disagreement", "open_source"]


def open_source(frames):
    """A frame source from a folder, a video file or an already open source."""
    if hasattr(frames, "frame_numbers") and hasattr(frames, "read"):
        return frames
    from ..frames import open_frames

    return open_frames(frames)


class ClipFlows:
    """DIS flow between frames of a clip, frame to frame, kept for the last few pairs.

    Parameters
    ----------
    source : frame source
        From :func:`engine.frames.open_frames`.
    params : engine.flow.FlowParams, optional
        DIS settings (default ``FlowParams()``).
    keep : int
        Pairs kept in memory.
    """

    def __init__(self, source, *, params=None, keep=16):
        self.source = source
        self.params = params or FlowParams()
        self.keep = int(keep)
        self._pairs = collections.OrderedDict()
        self._index = {n: i for i, n in enumerate(source.frame_numbers)}

    def pair(self, a, b):
        """``(flow a -> b, flow b -> a)`` computed directly between the two frames."""
        key = (a, b) if a < b else (b, a)
        flows = self._pairs.get(key)
        if flows is None:
            flows = compute_flow_pair(self.source.read(key[0]), self.source.read(key[1]), params=self.params)
            self._pairs[key] = flows
            while len(self._pairs) > self.keep:
                self._pairs.popitem(last=False)
        else:
            self._pairs.move_to_end(key)
        return flows if (a, b) == key else (flows[1], flows[0])

    def chained(self, a, b):
        """``(flow a -> b, flow b -> a)`` chained through every frame between ``a`` and ``b``.

        Flow between distant frames (two keys 20 frames apart) is far more
        reliable chained frame to frame than computed in one go.
        """
        ia, ib = self._index[a], self._index[b]
        if ia == ib:
            h, w = self.source.size
            zero = np.zeros((h, w, 2), np.float32)
            return zero, zero.copy()
        step = 1 if ib > ia else -1
        numbers = self.source.frame_numbers
        path = [numbers[i] for i in range(ia, ib + step, step)]
        forward = chain_flows(self.pair(p, q)[0] for p, q in zip(path, path[1:]))
        backward = chain_flows(self.pair(p, q)[0] for p, q in zip(path[::-1], path[::-1][1:]))
        return forward, backward


def temporal_target(previous, to_prev, from_prev):
    """The previous output warped onto this frame, and where it is to be trusted.

    Parameters
    ----------
    previous : numpy.ndarray
        HxWxC output of the previous (or reference) frame, any dtype.
    to_prev, from_prev : numpy.ndarray
        Flow from this frame into the previous one, and back.

    Returns
    -------
    warped : numpy.ndarray
        float32 HxWxC, ``warp(previous, to_prev)``.
    weight : numpy.ndarray
        float32 HxW: 1 where the flow is forward-backward consistent and not on a
        motion boundary, 0 elsewhere (the ``c`` of Ruder et al. [1]_, eq. 4).
    """
    warped = warp(np.asarray(previous, np.float32), to_prev)
    valid = consistency_mask(to_prev, from_prev) & ~motion_boundary_mask(to_prev)
    return warped, valid.astype(np.float32)


def key_disagreement(keys, frames, *, flows=None):
    """How much stylized keys disagree with one another along the motion.

    For each pair of neighbouring keys (in frame order), the mean of
    ``|K_k - warp(K_{k-1})|`` over the pixels visible in both frames, with the
    flow chained frame to frame on the source frames and the visibility from
    its forward-backward consistency; then the mean over pairs.

    Parameters
    ----------
    keys : dict
        ``{frame_number: HxWx3 uint8 image}``, at least two.
    frames : str, os.PathLike or frame source
        The clip.
    flows : ClipFlows, optional
        To reuse flow already computed.

    Returns
    -------
    float
        In 0..255 units.
    """
    if len(keys) < 2:
        raise ValueError("key_disagreement needs at least two keys")
    flows = flows or ClipFlows(open_source(frames))
    numbers = sorted(keys)
    values = []
    for prev, cur in zip(numbers, numbers[1:]):
        to_prev, from_prev = flows.chained(cur, prev)
        valid = consistency_mask(to_prev, from_prev)
        warped = warp(np.asarray(keys[prev], np.float32)[:, :, :3], to_prev)
        diff = np.abs(np.asarray(keys[cur], np.float32)[:, :, :3] - warped).mean(axis=2)
        if valid.any():
            values.append(float(diff[valid].mean()))
    return float(np.mean(values)) if values else 0.0
