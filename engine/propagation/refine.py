"""Finishing of propagated frames: temporal smoothing along the flow, then detail restoration.

Patch synthesis loses detail. Every output pixel is the average of the votes of
the patches that overlap it, and those patches' matches are offset from one
another by a pixel or so. The further a frame lies from its key, the less
coherent its matches and the softer the average. Blending two passes softens it
again. A temporal filter, which removes the remaining flicker, softens it once
more, since each step resamples the previous frame.

Two steps finish a span's frames:

1. **Temporal smoothing.** A recursive filter runs along the optical flow in
   both directions, and the two results are averaged:
   ``F_t = (1 - a v) O_t + a v warp(F_t-1)``, where ``v`` is the
   forward-backward consistency of the flow. It starts from the key image
   where a span ends in a key, so the keys themselves are unchanged.
2. **Detail restoration.** The image is split into detail bands (differences of
   Gaussians at sigma 1, 2 and 4) and a base. A key tells how much detail the
   style has for the detail of the frame under it: per band, the ratio
   ``kappa`` of the key's mean absolute band value to its frame's. For frame
   ``t`` the expected detail is ``kappa * E|frame_t band|``, with ``kappa``
   interpolated between the span's keys. This predicts the detail of the
   stylized frame within about 3 % on two of the test clips. Each band of the output is
   scaled by a global gain towards that prediction (never below 1).

The per-band targets trade sharpness against fidelity. The finest band
(sigma 1) holds much detail that synthesis put in the wrong place: restoring all
of it costs PSNR. So it is restored to 80 % of the prediction, and the next
band (sigma 2, edges) to 120 %, which keeps the overall gradient energy.
Measured with ``python build.py bench propagate``; see the README.
"""

import cv2
import numpy as np

from ..flow import consistency_mask, warp
from ..settings import DEFAULT_TEMPORAL_SMOOTHING

__all__ = ["DEFAULT_SMOOTHING", "DETAIL_TARGETS", "MAX_DETAIL_GAIN", "detail_bands", "detail_energy",
           "detail_ratio", "restore_detail", "smoothing_step"]

#: Weight of the flow-warped previous result in the recursive temporal filter.
DEFAULT_SMOOTHING = DEFAULT_TEMPORAL_SMOOTHING
#: Sigma of the Gaussian that separates each detail band from the next.
BAND_SIGMAS = (1.0, 2.0, 4.0)
#: Share of the predicted detail energy restored in each band.
DETAIL_TARGETS = (0.8, 1.2, 1.0)
#: Largest gain applied to a band.
MAX_DETAIL_GAIN = 4.0


def detail_bands(image):
    """Split an image into detail bands and a base that sum back to it.

    Parameters
    ----------
    image : numpy.ndarray
        HxW or HxWxC array.

    Returns
    -------
    bands : list of numpy.ndarray
        float32 differences of successive Gaussian blurs (sigma 1, 2, 4), finest first.
    base : numpy.ndarray
        float32 what remains, so that ``sum(bands) + base == image``.
    """
    current = np.asarray(image, np.float32)
    bands = []
    for sigma in BAND_SIGMAS:
        blurred = cv2.GaussianBlur(current, (0, 0), sigma)
        bands.append(current - blurred)
        current = blurred
    return bands, current


def detail_energy(image):
    """Mean absolute value of each detail band of the first three channels."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[:, :, :3]
    bands, _ = detail_bands(image)
    return np.array([float(np.abs(b).mean()) for b in bands])


def detail_ratio(style, frame):
    """Per band, how much detail ``style`` has for the detail of its ``frame`` (``kappa``)."""
    return detail_energy(style) / np.maximum(detail_energy(frame), 1e-3)


def restore_detail(image, frame, ratio, *, targets=DETAIL_TARGETS, max_gain=MAX_DETAIL_GAIN, frame_energy=None):
    """Scale the detail bands of ``image`` towards the detail predicted from ``frame``.

    Parameters
    ----------
    image : numpy.ndarray
        HxWxC stylized frame (C >= 3; a fourth channel, alpha, is kept as is).
    frame : numpy.ndarray
        HxWx3 source frame under it.
    ratio : array_like
        Per band, :func:`detail_ratio` of a key (interpolated between keys).
    targets : sequence of float
        Share of the predicted detail to restore, per band.
    max_gain : float
        Largest gain for a band.
    frame_energy : array_like, optional
        ``detail_energy(frame)``, when the caller computed it already (``frame`` is then not read).

    Returns
    -------
    numpy.ndarray
        float32 image, not clipped.
    """
    out = np.array(image, np.float32)
    colour = out[:, :, :3]
    bands, base = detail_bands(colour)
    if frame_energy is None:
        frame_energy = detail_energy(frame)
    want = np.asarray(ratio, np.float64) * np.asarray(frame_energy, np.float64)
    result = base
    for band, target, wanted in zip(bands, targets, want):
        have = float(np.abs(band).mean())
        gain = 1.0 if have < 1e-3 else float(np.clip(target * wanted / have, 1.0, max_gain))
        result = result + np.float32(gain) * band
    out[:, :, :3] = result
    return out


def smoothing_step(current, previous, flow_to_previous, flow_from_previous, *, strength=DEFAULT_SMOOTHING):
    """One step of the recursive temporal filter.

    Parameters
    ----------
    current : numpy.ndarray
        HxWxC output of this frame.
    previous : numpy.ndarray
        HxWxC filtered result of the neighbouring frame (in filtering order).
    flow_to_previous, flow_from_previous : numpy.ndarray
        Flow from this frame's grid into the neighbour's, and back.
    strength : float
        Weight of the warped neighbour where the flow is consistent.

    Returns
    -------
    numpy.ndarray
        float32 ``(1 - a) * current + a * warp(previous)`` with
        ``a = strength`` where the flow is consistent and 0 elsewhere.
    """
    valid = consistency_mask(flow_to_previous, flow_from_previous)
    warped = warp(np.asarray(previous, np.float32), flow_to_previous)
    weight = np.float32(strength) * valid.astype(np.float32)
    current = np.asarray(current, np.float32)
    # ``current + weight * (warped - current)``, a channel at a time (as in blend.weighted_blend).
    out = np.empty(current.shape, np.float32)
    for c in range(current.shape[2]):
        step = warped[:, :, c] - current[:, :, c]
        step *= weight
        np.add(current[:, :, c], step, out=out[:, :, c])
    return out
