"""Where the keys of a propagation are read and fitted to the frames."""

import os

import numpy as np

from ..images import fit_to, read_image
from ..safety import ParameterTypeError, as_path

__all__ = ["load_keys"]


def load_keys(keys, source, key_fit, *, allow_none=False):
    """``(styles, files)``: the fitted key images, and the files they were read from."""
    if not isinstance(keys, dict):
        raise ParameterTypeError(f"keys must be a dict {{frame_number: image or path}}, got {type(keys).__name__}")
    if not keys and not allow_none:
        raise ValueError("keys: at least one keyframe is needed")
    h, w = source.size
    styles = {}
    files = {}
    for n, key in keys.items():
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            raise ParameterTypeError(f"keys: frame number {n!r} is not an integer")
        n = int(n)
        if n not in source:
            if source.first < n < source.last:
                raise ValueError(f"keys: frame {n} is not in the clip: no frame is numbered {n} "
                                 f"(a gap in the numbering of frames {source.first}..{source.last})")
            raise ValueError(f"keys: frame {n} is outside the clip (frames {source.first}..{source.last})")
        if isinstance(key, (str, os.PathLike)):
            what = str(key)
            files[n] = as_path(f"keys[{n}]", key)
            image = read_image(key, alpha=True)
        elif isinstance(key, np.ndarray):
            what = f"key for frame {n}"
            image = key
        else:
            raise ParameterTypeError(f"keys[{n}] must be an image array or a path, got {type(key).__name__}")
        styles[n] = fit_to(image, (h, w), fit=key_fit, what=what, stacklevel=5)
    # One channel layout for all keys: RGBA if any key carries transparency.
    if any(s.shape[2] == 4 and (s[:, :, 3] < 255).any() for s in styles.values()):
        styles = {n: s if s.shape[2] == 4 else np.dstack([s, np.full(s.shape[:2], 255, np.uint8)])
                  for n, s in styles.items()}
    else:
        styles = {n: np.ascontiguousarray(s[:, :, :3]) for n, s in styles.items()}
    return dict(sorted(styles.items())), files
