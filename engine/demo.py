"""The built-in example: a short shot made from a photograph that ships with scikit-image.

No download and no ``bpy``: :func:`demo_frames` turns NASA's astronaut portrait
(public domain, ``skimage.data.astronaut()``) into a shot with a camera move
(pan, push-in and a slight roll) and an element that moves on its own (a ball
bouncing across the frame), and :func:`demo_audio` makes its sound track (a
chord, with a knock at each bounce). ``python build.py demo`` takes the shot
through Blender; this module alone writes the input for the command line:

    python -m engine.demo --out out/demo-input      # frames/0001.png ..., shot.wav

and then, for example::

    python -m engine stylize out/demo-input/frames/0008.png --method painterly \\
        --param filter=watercolour --out out/demo-input/key0008.png
    python -m engine propagate out/demo-input/frames --key 8=out/demo-input/key0008.png \\
        --out out/demo-input/stylized
"""

import argparse
import functools
import sys
import wave
from pathlib import Path

import numpy as np

#: Frames per second of the shot (and of the demo's render).
FPS = 24
#: Audio sample rate (Hz).
SAMPLE_RATE = 48000
#: Height of the ball's floor, as a fraction of the frame's height.
FLOOR = 0.92


@functools.lru_cache(maxsize=1)
def _photo():
    from skimage import data

    return data.astronaut()  # public domain (NASA), shipped with scikit-image


def _camera(t):
    """Camera at time ``t`` in 0..1: centre (x, y) in the photo, photo pixels per
    output pixel at 640 wide, roll in degrees."""
    ease = 0.5 - 0.5 * np.cos(np.pi * t)
    cx = 205.0 + 105.0 * ease
    cy = 190.0 - 40.0 * ease
    scale = 0.66 - 0.12 * ease          # a push-in: fewer photo pixels per output pixel
    roll = -2.0 + 4.0 * ease
    return cx, cy, scale, roll


def ball_position(t, width, height):
    """Centre (x, y) and radius of the ball at time ``t`` in 0..1, in output pixels."""
    radius = 0.085 * height
    x = width * (0.88 - 0.76 * t)                       # right to left, against the pan
    floor = height * FLOOR - radius
    bounce = abs(np.sin(np.pi * (0.35 + 2.0 * t)))      # two bounces
    y = floor - bounce * height * 0.32
    return x, y, radius


def bounce_times(n):
    """The frames (1-based) at which the ball touches the floor."""
    # |sin(pi * (0.35 + 2 t))| is 0 where 0.35 + 2 t is a whole number: t = 0.325, 0.825.
    return [int(round(1 + (k - 0.35) / 2.0 * (n - 1))) for k in (1, 2)]


def _window(cx, cy, half_w, half_h, width, height):
    """Integer bounds (x0, x1, y0, y1) of a box around (cx, cy), clipped to the frame."""
    x0, x1 = max(0, int(cx - half_w)), min(width, int(np.ceil(cx + half_w)) + 1)
    y0, y1 = max(0, int(cy - half_h)), min(height, int(np.ceil(cy + half_h)) + 1)
    return x0, x1, y0, y1


def _paint_ball(out, t):
    """Paint the ball and its soft shadow onto ``out`` (float32 RGB, changed in place)."""
    height, width = out.shape[:2]
    bx, by, r = ball_position(t, width, height)
    # The shadow: a soft ellipse on the floor, smaller and lighter as the ball rises.
    floor = height * FLOOR
    lift = (floor - r - by) / (height * 0.32)
    sw, sh = r * (1.2 + 0.6 * lift), r * 0.25
    x0, x1, y0, y1 = _window(bx, floor, 3 * sw, 3 * sh, width, height)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    shadow = np.exp(-(((xx - bx) / sw) ** 2 + ((yy - floor) / sh) ** 2) * 2.0) * (0.55 - 0.3 * lift)
    out[y0:y1, x0:x1] *= 1.0 - shadow[..., None]
    # The ball: a shaded, striped sphere with a one-pixel soft edge.
    x0, x1, y0, y1 = _window(bx, by, r + 2, r + 2, width, height)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = (xx - bx) / r, (yy - by) / r
    d2 = dx * dx + dy * dy
    coverage = np.clip(r * (1.0 - np.sqrt(d2)) + 0.5, 0.0, 1.0)[..., None]
    nz = np.sqrt(np.clip(1.0 - d2, 0.0, 1.0))
    light = np.array([-0.45, -0.6, 0.66], np.float32)
    light /= np.linalg.norm(light)
    lambert = np.clip(dx * light[0] + dy * light[1] + nz * light[2], 0.0, 1.0)[..., None]
    highlight = np.clip(lambert - 0.93, 0.0, None) / 0.07
    stripe = (np.abs(np.sin(6.0 * (dx * 0.8 + dy * 0.6) + 9.0 * t)) < 0.25)[..., None]
    colour = np.where(stripe, np.float32([245, 225, 120]), np.float32([222, 70, 40]))
    rgb = colour * (0.25 + 0.75 * lambert) + 160.0 * highlight
    out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1.0 - coverage) + np.clip(rgb, 0, 255) * coverage


def demo_frame(i, n=48, size=(640, 360)):
    """Frame ``i`` (1-based) of the ``n``-frame shot, an (h, w, 3) uint8 RGB array."""
    import cv2

    width, height = size
    t = 0.0 if n == 1 else (i - 1) / (n - 1)
    cx, cy, scale, roll = _camera(t)
    scale *= 640.0 / width              # the same framing at any output size
    # Output pixel -> photo pixel: rotate and scale about the frame's centre.
    angle = np.deg2rad(roll)
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    matrix = np.array([[c, -s, cx - c * width / 2 + s * height / 2],
                       [s, c, cy - s * width / 2 - c * height / 2]], np.float64)
    frame = cv2.warpAffine(_photo(), matrix, (width, height),
                           flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REFLECT)
    out = frame.astype(np.float32)
    _paint_ball(out, t)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def demo_frames(n=48, size=(640, 360)):
    """All ``n`` frames of the shot, in order."""
    return [demo_frame(i, n, size) for i in range(1, n + 1)]


def demo_audio(n=48, fps=FPS, rate=SAMPLE_RATE):
    """The shot's sound: a soft A-major chord with a knock at each bounce; stereo int16."""
    seconds = n / fps
    t = np.arange(int(round(seconds * rate))) / rate
    chord = sum(np.sin(2 * np.pi * f * t) / (k + 1)
                for k, f in enumerate((220.0, 277.18, 329.63, 440.0)))
    envelope = np.minimum(1.0, t / 0.05) * np.minimum(1.0, (seconds - t) / 0.15).clip(0, 1)
    signal = 0.22 * chord * envelope
    for frame in bounce_times(n):
        start = (frame - 1) / fps
        dt = t - start
        knock = np.where(dt >= 0, np.sin(2 * np.pi * 90.0 * dt) * np.exp(-dt * 28.0), 0.0)
        signal = signal + 0.45 * knock
    pan = 0.5 + 0.4 * np.cos(np.pi * t / seconds)       # drifts left to right with the ball
    left, right = signal * np.sqrt(pan), signal * np.sqrt(1.0 - pan)
    stereo = np.stack([left, right], axis=1)
    return (np.clip(stereo, -1.0, 1.0) * 32000).astype("<i2")


def write_wav(path, samples, rate=SAMPLE_RATE):
    """Write int16 samples, (n,) mono or (n, channels), to a WAV file."""
    samples = np.asarray(samples, dtype="<i2")
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(np.ascontiguousarray(samples).tobytes())
    return Path(path)


def write_movie(path, frames, fps=FPS):
    """Write RGB frames to an MPEG-4 (``mp4v``) file with OpenCV; raises if it cannot."""
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write an MPEG-4 file at {path}")
    try:
        if hasattr(cv2, "VIDEOWRITER_PROP_QUALITY"):
            writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 100)
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    finally:
        writer.release()
    return Path(path)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m engine.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/demo-input",
                        help="output folder (default: out/demo-input)")
    parser.add_argument("--frames", type=int, default=48, help="number of frames (default 48)")
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT (default 640x360)")
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must be WIDTHxHEIGHT, not {args.size!r}")
    if args.frames < 1 or width < 16 or height < 16:
        parser.error("--frames must be at least 1 and the size at least 16x16")

    from .frames import write_frame_atomic

    out = Path(args.out)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    for i in range(1, args.frames + 1):
        write_frame_atomic(out / "frames" / f"{i:04d}.png", demo_frame(i, args.frames,
                                                                      (width, height)))
    wav = write_wav(out / "shot.wav", demo_audio(args.frames))
    print(f"frames {(out / 'frames').resolve()}")
    print(f"sound  {wav.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
