"""Image pyramids for coarse-to-fine synthesis."""

import cv2
import numpy as np


def auto_levels(source_hw, target_hw, patch_size):
    """Number of pyramid levels so the coarsest level still holds a few patches.

    As in Ebsynth: the most levels for which the smaller side of the smaller image,
    halved once per extra level, stays at least ``2 * patch_size + 1``.
    """
    smallest = min(min(source_hw), min(target_hw))
    levels = 1
    while smallest / 2.0 ** levels >= 2 * patch_size + 1:
        levels += 1
    return levels


def level_shape(full_hw, levels, level):
    """(h, w) of ``level`` (0 = coarsest) in a pyramid of ``levels`` levels."""
    factor = 2.0 ** -(levels - 1 - level)
    return max(1, int(full_hw[0] * factor)), max(1, int(full_hw[1] * factor))


def resize(image, hw):
    """Area-averaged resize of an (H, W, C) float32 image, any channel count.

    Area averaging low-passes before it decimates, so coarse levels carry no
    aliasing for the matcher to lock onto.
    """
    h, w = hw
    if image.shape[:2] == (h, w):
        return image
    chunks = []
    for c0 in range(0, image.shape[2], 4):
        part = np.ascontiguousarray(image[:, :, c0:c0 + 4])
        out = cv2.resize(part, (w, h), interpolation=cv2.INTER_AREA)
        if out.ndim == 2:
            out = out[:, :, None]
        chunks.append(out)
    return np.concatenate(chunks, axis=2) if len(chunks) > 1 else chunks[0]
