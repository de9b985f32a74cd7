"""The built-in demo: one guided synthesis on an embedded example, no download.

    python build.py demo            (or: python -m engine.demo [--out DIR])

A photograph that ships with scikit-image is the "frame A"; a painterly
stylization of it is the keyframe; "frame B" is the same photograph after a
small camera move (pan and zoom). The keyframe's look is carried onto B by
:func:`engine.synth.synthesize`, guided by colour and edge guides.
"""

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from .frames import write_frame_atomic
from .guides import edge_guide
from .synth import synthesize


def demo_frames(size=(640, 360)):
    """Frame A, and frame B after a 12 px pan and a 3 % zoom, from an embedded photo."""
    from skimage import data

    photo = data.astronaut()  # public domain (NASA), shipped with scikit-image
    w, h = size
    base = cv2.resize(photo, (w + 64, int((w + 64) * photo.shape[0] / photo.shape[1])),
                      interpolation=cv2.INTER_AREA)
    y0 = (base.shape[0] - h) // 3
    frame_a = base[y0:y0 + h, 32:32 + w].copy()
    zoom = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, 1.03)
    zoom[0, 2] -= 12.0
    frame_b = cv2.warpAffine(base[y0:y0 + h, 32:32 + w], zoom, (w, h), flags=cv2.INTER_CUBIC,
                             borderMode=cv2.BORDER_REFLECT)
    return frame_a, frame_b


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m engine.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    frame_a, frame_b = demo_frames()
    key = cv2.stylization(frame_a, sigma_s=60, sigma_r=0.45)
    t_setup = time.perf_counter() - t0

    t0 = time.perf_counter()
    result = synthesize(key, [frame_a, edge_guide(frame_a)], [frame_b, edge_guide(frame_b)],
                        guide_weights=[6.0, 0.5])
    t_synth = time.perf_counter() - t0

    paths = {
        "keyframe (stylized frame A)": out / "keyframe.png",
        "frame B": out / "frame_b.png",
        "frame B in the keyframe's style": out / "stylized_b.png",
        "preview (frame B | stylized)": out / "preview.png",
    }
    write_frame_atomic(paths["keyframe (stylized frame A)"], key)
    write_frame_atomic(paths["frame B"], frame_b)
    write_frame_atomic(paths["frame B in the keyframe's style"], result.image)
    write_frame_atomic(paths["preview (frame B | stylized)"], np.concatenate([frame_b, result.image], axis=1))
    print(f"set-up {t_setup:.2f} s, synthesis {t_synth:.2f} s (includes loading the numba kernels)")
    for label, path in paths.items():
        print(f"{label:34s} {path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
