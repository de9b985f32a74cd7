"""Cases shared by ``bench speed`` and ``bench profile``.

A case is a clip (frames written to a temporary folder as PNG), its keys and
the truths to score against. Two styles: ``watercolor``, a per-frame filter
(the truth for frame t is the filter of frame t), and ``strokes``, a pattern
of brush strokes painted once on the first frame and carried with the scene
(the truth is that painting moved along the chained optical flow of the raw
frames): a texture that does not come from the frame itself.
"""

from pathlib import Path
import sys

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ROOT.parent / "shared" / "data" / "clips"

#: name -> (clip, frames, size (w, h) or None for the clip's own)
CASES = {
    "640x360": ("sam2_bedroom", 40, None),
    "1080p": ("sam2_bedroom", 10, (1920, 1080)),
}


def watercolor(img):
    return cv2.stylization(img, sigma_s=40, sigma_r=0.35)


def stroke_layer(h, w, seed=7):
    """RGBA layer of random short strokes, painted once (deterministic)."""
    rng = np.random.default_rng(seed)
    layer = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    scale = max(1, round(min(h, w) / 360))
    for _ in range(int(h * w / 900)):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(6, 18) * scale
        dx, dy = int(np.cos(angle) * length), int(np.sin(angle) * length)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.line(layer, (x - dx, y - dy), (x + dx, y + dy), colour, 2 * scale, cv2.LINE_AA)
        cv2.line(alpha, (x - dx, y - dy), (x + dx, y + dy), 200, 2 * scale, cv2.LINE_AA)
    return layer, alpha


def _raw_flow(a, b):
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), None)


def _warp(image, flow):
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, xs + flow[:, :, 0], ys + flow[:, :, 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def load_frames(case):
    """``{n: RGB uint8}`` of the case's frames, resized to its size."""
    clip, count, size = CASES[case]
    folder = CLIPS / clip
    if not folder.is_dir():
        sys.exit(f"bench: {folder} not found (the shared clips)")
    files = sorted(folder.glob("*.jpg"))[:count]
    frames = {}
    for i, path in enumerate(files, start=1):
        img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        if size is not None:
            img = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
        frames[i] = img
    return frames


def truths(frames, style):
    """``{n: the right answer}`` for a style."""
    numbers = sorted(frames)
    if style == "watercolor":
        return {n: watercolor(frames[n]) for n in numbers}
    if style == "strokes":
        h, w = frames[numbers[0]].shape[:2]
        layer, alpha = stroke_layer(h, w)
        out = {}
        cur_layer, cur_alpha = layer.astype(np.float32), alpha.astype(np.float32)
        for i, n in enumerate(numbers):
            if i:
                to_prev = _raw_flow(frames[n], frames[numbers[i - 1]])
                cur_layer, cur_alpha = _warp(cur_layer, to_prev), _warp(cur_alpha, to_prev)
            a = (cur_alpha / 255.0)[:, :, None]
            out[n] = np.clip(np.rint(frames[n] * (1 - a) + cur_layer * a), 0, 255).astype(np.uint8)
        return out
    raise ValueError(f"unknown style {style!r}")


def write_clip(frames, folder):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for n, img in frames.items():
        cv2.imwrite(str(folder / f"{n:04d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return folder


def keys_of(truth):
    numbers = sorted(truth)
    return {numbers[0]: truth[numbers[0]], numbers[-1]: truth[numbers[-1]]}


def score(outputs, truth, frames):
    """PSNR against the truth and warp error, over the non-key frames."""
    numbers = sorted(frames)
    scored = numbers[1:-1]
    ps, warps = [], []
    for t in scored:
        diff = (outputs[t].astype(np.float64) - truth[t].astype(np.float64)) ** 2
        ps.append(10 * np.log10(255.0 ** 2 / max(diff.mean(), 1e-12)))
        prev = numbers[numbers.index(t) - 1]
        to_prev, to_next = _raw_flow(frames[t], frames[prev]), _raw_flow(frames[prev], frames[t])
        back = _warp(to_next, to_prev)
        fb = to_prev + back
        valid = (fb ** 2).sum(2) < 0.01 * ((to_prev ** 2).sum(2) + (back ** 2).sum(2)) + 0.5
        warped = _warp(outputs[prev].astype(np.float32), to_prev)
        warps.append(np.abs(outputs[t].astype(np.float32) - warped).mean(axis=2)[valid].mean())
    return float(np.mean(ps)), float(np.mean(warps))
