"""Bad-input corpus (issue 7, part 1): every case generated at test time.

Each case builds a small clip with one thing wrong (or unusual but valid),
runs ``python -m engine propagate`` on it in a subprocess, and checks:

* a user's error exits non-zero with a one-line message that names the file
  or parameter, and no traceback;
* a valid but unusual input (grey, alpha, 16-bit, gaps, non-ASCII paths...)
  succeeds, one complete PNG per frame, named like the input;
* no source file is modified, added or removed (every file hashed before and after);
* no partial output that looks complete: every PNG in the output decodes fully,
  no temporary file is left, and a failed job leaves fewer frames than the clip.

The same cases also go through the Python API, which must raise ``ValueError``
(``FrameError`` is one) with the same names in the message.
"""

import hashlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from engine.propagation import propagate

ROOT = Path(__file__).resolve().parents[1]
H, W = 32, 48
N = 6


# ---------------------------------------------------------------------------
# Generated material


def texture(h, w, seed):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 1.5)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


def stylized(img):
    """A stand-in for a painted key: posterized and colour-swapped."""
    return np.ascontiguousarray(((img // 64) * 64 + 32)[:, :, ::-1])


def imwrite(path, img):
    """Write with OpenCV (not the engine's writer); ``img`` is RGB/RGBA or grey."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR if img.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(path.suffix, img)
    assert ok
    path.write_bytes(buf.tobytes())


def make_clip(folder, numbers=range(1, N + 1), ext=".png", name="{:04d}", seed=0):
    """A horizontal pan over a texture; returns ``{number: rgb}``."""
    numbers = list(numbers)
    big = texture(H, W + 2 * (max(numbers) + 2), seed)
    frames = {}
    for t in numbers:
        frames[t] = np.ascontiguousarray(big[:, 2 * t:2 * t + W])
        imwrite(Path(folder) / (name.format(t) + ext), frames[t])
    return frames


def png_chunk_offset(data, kind):
    return bytes(data).index(kind)


class Case:
    """One scenario: where the sources are, the CLI arguments, what to expect."""

    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.src = self.tmp / "src"        # every input lives below here
        self.frames = self.src / "frames"
        self.out = self.tmp / "out"
        self.keys = {}                      # frame number -> key path
        self.extra = []                     # extra CLI arguments
        self.api = {}                       # extra API keyword arguments
        self.needles = []                   # strings the error must contain
        self.ok = False                     # a valid input: the job must succeed
        self.early = True                   # a user's error found before any frame is written
        self.expect_names = None            # output names on success

    def key(self, n, img=None, name=None):
        path = self.src / (name or f"key{n:04d}.png")
        if img is not None:
            imwrite(path, img)
        self.keys[n] = path
        return path

    def argv(self):
        args = [str(self.frames)]
        for n, path in self.keys.items():
            args.append(f"--key={n}={path}")
        args += ["--out", str(self.out), "--quality", "draft", "--quiet", *self.extra]
        return args


def clip_with_key(tmp, **kw):
    case = Case(tmp)
    frames = make_clip(case.frames, **kw)
    first = min(frames)
    case.key(first, stylized(frames[first]))
    return case, frames


# ---------------------------------------------------------------------------
# The corpus. Each builder returns a Case.

CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


# -- broken frame files


@case
def truncated_png_frame(tmp):
    c, _ = clip_with_key(tmp)
    bad = c.frames / "0003.png"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    c.needles = ["0003.png", "truncated"]
    return c


@case
def truncated_jpeg_frame(tmp):
    c, _ = clip_with_key(tmp, ext=".jpg")
    bad = c.frames / "0004.jpg"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    c.needles = ["0004.jpg", "truncated"]
    return c


@case
def garbage_png_frame(tmp):
    c, _ = clip_with_key(tmp)
    (c.frames / "0002.png").write_bytes(np.random.default_rng(1).bytes(3000))
    c.needles = ["0002.png"]
    return c


@case
def garbage_jpeg_frame(tmp):
    c, _ = clip_with_key(tmp, ext=".jpg")
    (c.frames / "0002.jpg").write_bytes(b"\xff\xd8\xff\xe0" + np.random.default_rng(2).bytes(3000))
    c.needles = ["0002.jpg"]
    return c


@case
def corrupt_png_data(tmp):
    """Intact structure (header, chunks, IEND) but a damaged IDAT: found when decoding."""
    c, _ = clip_with_key(tmp)
    bad = c.frames / "0005.png"
    data = bytearray(bad.read_bytes())
    data[png_chunk_offset(data, b"IDAT") + 40] ^= 0xFF
    bad.write_bytes(bytes(data))
    c.needles = ["0005.png"]
    c.early = False  # the cheap check passes; frames before it may already be written
    return c


@case
def zero_byte_frame(tmp):
    c, _ = clip_with_key(tmp)
    (c.frames / "0003.png").write_bytes(b"")
    c.needles = ["0003.png", "empty"]
    return c


@case
def zero_byte_first_frame(tmp):
    c, frames = clip_with_key(tmp)
    (c.frames / "0001.png").write_bytes(b"")
    c.needles = ["0001.png", "empty"]
    return c


@case
def mixed_resolutions(tmp):
    c, _ = clip_with_key(tmp)
    imwrite(c.frames / "0004.png", texture(H + 4, W, 9))
    c.needles = ["0004.png", "mixed resolutions"]
    return c


@case
def mixed_resolution_jpeg_among_png(tmp):
    c, _ = clip_with_key(tmp, numbers=range(1, 4))
    imwrite(c.frames / "0004.jpg", texture(H, W + 8, 9))
    c.needles = ["0004.jpg", "mixed resolutions"]
    return c


@case
def duplicate_frame_numbers(tmp):
    c, frames = clip_with_key(tmp)
    imwrite(c.frames / "0002.jpg", frames[2])
    c.needles = ["duplicate frame number 2", "0002.jpg", "0002.png"]
    return c


# -- broken key and mask files


@case
def zero_byte_key(tmp):
    c, _ = clip_with_key(tmp)
    c.keys[1].write_bytes(b"")
    c.needles = ["key0001.png", "empty"]
    return c


@case
def truncated_key(tmp):
    c, _ = clip_with_key(tmp)
    c.keys[1].write_bytes(c.keys[1].read_bytes()[:200])
    c.needles = ["key0001.png"]
    return c


@case
def key_not_an_image(tmp):
    c, _ = clip_with_key(tmp)
    c.keys[1].write_text("this is not a picture\n")
    c.needles = ["key0001.png"]
    return c


@case
def key_missing(tmp):
    c, _ = clip_with_key(tmp)
    c.key(1, name="no such key.png")
    c.needles = ["no such key.png", "not found"]
    return c


@case
def key_is_a_folder(tmp):
    c, _ = clip_with_key(tmp)
    c.key(1, name="a folder.png").mkdir()
    c.needles = ["a folder.png", "folder"]
    return c


@case
def corrupt_mask(tmp):
    c, _ = clip_with_key(tmp)
    masks = c.src / "masks"
    for t in range(1, N + 1):
        imwrite(masks / f"{t:04d}.png", np.full((H, W), 255, np.uint8))
    (masks / "0002.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    c.extra = ["--mask", str(masks)]
    c.api = {"masks": masks}
    c.needles = ["0002.png"]
    c.early = False  # masks are read frame by frame: the key's frame is written first
    return c


@case
def masks_of_another_size_are_resized(tmp):
    c, _ = clip_with_key(tmp)
    masks = c.src / "masks"
    for t in range(1, N + 1):
        imwrite(masks / f"{t:04d}.png", np.full((H // 2, W // 2), 255, np.uint8))
    c.extra = ["--mask", str(masks)]
    c.api = {"masks": masks}
    c.ok = True
    return c


# -- keys that do not fit the clip


@case
def key_of_another_aspect(tmp):
    c, frames = clip_with_key(tmp)
    c.key(1, stylized(texture(40, 40, 3)))
    c.needles = ["key0001.png", "40x40", f"{W}x{H}", "aspect"]
    return c


@case
def key_of_another_aspect_padded_on_request(tmp):
    c, frames = clip_with_key(tmp)
    c.key(1, stylized(texture(40, 40, 3)))
    c.extra = ["--key-fit", "pad"]
    c.api = {"key_fit": "pad"}
    c.needles = ["warning", "by pad"]
    return _ok_case(c)


@case
def key_of_the_same_aspect_and_another_size(tmp):
    c, frames = clip_with_key(tmp)
    c.key(1, cv2.resize(stylized(frames[1]), (W * 2, H * 2), interpolation=cv2.INTER_NEAREST))
    c.ok = True
    c.needles = ["warning", "resized"]  # the warning is on stderr
    return c


@case
def key_outside_the_clip(tmp):
    c, frames = clip_with_key(tmp)
    c.key(99, stylized(frames[1]))
    c.needles = ["frame 99", "outside the clip"]
    return c


@case
def key_on_frame_zero(tmp):
    c, frames = clip_with_key(tmp)
    c.keys = {}
    c.key(0, stylized(frames[1]))
    c.needles = ["frame 0", "outside the clip"]
    return c


@case
def key_on_a_negative_frame(tmp):
    c, frames = clip_with_key(tmp)
    c.key(-2, stylized(frames[1]), name="minus.png")
    c.needles = ["frame -2", "outside the clip"]
    return c


@case
def key_on_a_gap_in_the_numbering(tmp):
    c = Case(tmp)
    frames = make_clip(c.frames, numbers=[1, 2, 3, 7, 8, 9])
    c.key(5, stylized(frames[1]))
    c.needles = ["frame 5", "not in the clip", "gap"]
    return c


@case
def duplicate_key(tmp):
    c, frames = clip_with_key(tmp)
    other = c.src / "other.png"
    imwrite(other, stylized(frames[2]))
    c.extra = [f"--key=1={other}"]
    c.needles = ["--key", "frame 1", "given twice"]  # (a dict cannot hold a key twice)
    return c


@case
def key_without_a_frame_number(tmp):
    c, _ = clip_with_key(tmp)
    c.extra = ["--key", "first.png"]
    c.needles = ["--key", "first.png", "N=IMAGE"]
    return c


@case
def key_with_a_non_integer_frame(tmp):
    c, _ = clip_with_key(tmp)
    c.extra = ["--key", f"1.5={c.keys[1]}"]
    c.needles = ["--key", "'1.5'", "not an integer"]
    return c


# -- folders


@case
def output_is_the_input_folder(tmp):
    c, _ = clip_with_key(tmp)
    c.out = c.frames
    c.needles = [str(c.frames), "source folder"]
    return c


@case
def output_inside_the_input_folder(tmp):
    c, _ = clip_with_key(tmp)
    c.out = c.frames / "styled"
    c.needles = ["styled", "inside the source folder"]
    return c


@case
def output_below_a_file(tmp):
    """An unwritable output folder, the way that stops root too: its parent is a file."""
    c, _ = clip_with_key(tmp)
    blocker = c.tmp / "blocker"
    blocker.write_text("a file, not a folder")
    c.out = blocker / "out"
    c.needles = [str(c.out), "cannot create output folder"]
    return c


@case
def output_is_a_file(tmp):
    c, _ = clip_with_key(tmp)
    c.out = c.tmp / "out.txt"
    c.out.write_text("not a folder")
    c.needles = ["out.txt", "not a folder"]
    return c


@case
def frames_folder_missing(tmp):
    c, _ = clip_with_key(tmp)
    c.frames = c.src / "no such folder"
    c.needles = ["no such folder"]
    return c


@case
def frames_folder_without_frames(tmp):
    c, _ = clip_with_key(tmp)
    c.frames = c.src / "empty"
    c.frames.mkdir()
    (c.frames / "notes.txt").write_text("hello")
    c.needles = ["empty", "no numbered"]
    return c


@case
def frames_is_a_single_image(tmp):
    c, _ = clip_with_key(tmp)
    c.frames = c.frames / "0001.png"
    c.needles = ["0001.png", "single image"]
    return c


@case
def video_that_is_not_a_video(tmp):
    c, _ = clip_with_key(tmp)
    c.frames = c.src / "clip.mp4"
    c.frames.write_text("definitely not a video\n" * 50)
    c.needles = ["clip.mp4", "not a video"]
    return c


@case
def video_of_zero_bytes(tmp):
    c, _ = clip_with_key(tmp)
    c.frames = c.src / "clip.mov"
    c.frames.write_bytes(b"")
    c.needles = ["clip.mov", "empty"]
    return c


@case
def truncated_video(tmp):
    c, frames = clip_with_key(tmp)
    video = c.src / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 24, (W, H))
    for t in sorted(frames):
        writer.write(cv2.cvtColor(frames[t], cv2.COLOR_RGB2BGR))
    writer.release()
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 4])
    c.frames = video
    c.needles = ["clip.avi"]
    return c


# -- parameters


def _param_case(tmp, extra, needles, api=None):
    c, _ = clip_with_key(tmp)
    c.extra = extra
    c.needles = needles
    c.api = api or {}
    return c


@case
def weight_negative(tmp):
    from engine.guides import GuideWeights
    return _param_case(tmp, ["--weight-edge", "-1"], ["weight edge", "-1"],
                       api={"weights": lambda: GuideWeights(edge=-1.0)})


@case
def weight_nan(tmp):
    from engine.guides import GuideWeights
    return _param_case(tmp, ["--weight-colour", "nan"], ["weight colour", "nan"],
                       api={"weights": lambda: GuideWeights(colour=float("nan"))})


@case
def weight_infinite(tmp):
    from engine.guides import GuideWeights
    return _param_case(tmp, ["--weight-temporal", "inf"], ["weight temporal", "inf"],
                       api={"weights": lambda: GuideWeights(temporal=float("inf"))})


@case
def weight_huge(tmp):
    from engine.guides import GuideWeights
    return _param_case(tmp, ["--weight-positional", "1e38"], ["weight positional", "at most"],
                       api={"weights": lambda: GuideWeights(positional=1e38)})


@case
def weight_not_a_number(tmp):
    return _param_case(tmp, ["--weight-style", "heavy"], ["--weight-style", "heavy"])


@case
def seed_negative(tmp):
    return _param_case(tmp, ["--seed", "-5"], ["seed", "-5"], api={"seed": -5})


@case
def seed_nan(tmp):
    return _param_case(tmp, ["--seed", "nan"], ["--seed", "nan"], api={"seed": float("nan")})


@case
def seed_huge_is_fine(tmp):
    c = _param_case(tmp, ["--seed", str(10 ** 30)], [], api={"seed": 10 ** 30})
    c.ok = True
    return c


@case
def quality_unknown(tmp):
    return _param_case(tmp, ["--quality", "ultra"], ["--quality", "ultra"], api={"quality": "ultra"})


@case
def quality_nan(tmp):
    return _param_case(tmp, ["--quality", "nan"], ["--quality", "nan"], api={"quality": float("nan")})


@case
def blend_unknown(tmp):
    return _param_case(tmp, ["--blend", "median"], ["--blend", "median"], api={"blend_mode": "median"})


@case
def cache_limit_negative(tmp):
    return _param_case(tmp, ["--cache-limit-mb", "-1"], ["cache_limit_mb", "-1"], api={"cache_limit_mb": -1})


@case
def cache_limit_nan(tmp):
    return _param_case(tmp, ["--cache-limit-mb", "nan"], ["cache_limit_mb", "nan"],
                       api={"cache_limit_mb": float("nan")})


# -- valid but unusual input: must work


def _ok_case(c):
    c.ok = True
    return c


@case
def grey_frames(tmp):
    c = Case(tmp)
    for t in range(1, N + 1):
        imwrite(c.frames / f"{t:04d}.png", texture(H, W, t)[:, :, 0])
    c.key(1, stylized(texture(H, W, 1)))
    return _ok_case(c)


@case
def alpha_frames(tmp):
    c = Case(tmp)
    frames = make_clip(c.src / "rgb")
    for t, img in frames.items():
        imwrite(c.frames / f"{t:04d}.png", np.dstack([img, np.full((H, W), 200, np.uint8)]))
    c.key(1, stylized(frames[1]))
    return _ok_case(c)


@case
def sixteen_bit_frames_and_key(tmp):
    c = Case(tmp)
    frames = make_clip(c.src / "rgb")
    for t, img in frames.items():
        imwrite(c.frames / f"{t:04d}.png", img.astype(np.uint16) * 257)
    c.key(1, stylized(frames[1]).astype(np.uint16) * 257)
    return _ok_case(c)


@case
def mixed_depths_and_channels_in_one_clip(tmp):
    c = Case(tmp)
    frames = make_clip(c.src / "rgb")
    for t, img in frames.items():
        variant = [img, img[:, :, 0], img.astype(np.uint16) * 257,
                   np.dstack([img, np.full((H, W), 255, np.uint8)])][t % 4]
        imwrite(c.frames / f"{t:04d}.png", variant)
    c.key(1, stylized(frames[1])[:, :, 0])  # a grey key
    return _ok_case(c)


@case
def key_with_alpha(tmp):
    c, frames = clip_with_key(tmp)
    alpha = np.full((H, W), 255, np.uint8)
    alpha[:, : W // 3] = 0
    c.key(1, np.dstack([stylized(frames[1]), alpha]))
    return _ok_case(c)


@case
def jpeg_frames(tmp):
    c, _ = clip_with_key(tmp, ext=".jpg")
    return _ok_case(c)


@case
def gaps_in_the_numbering(tmp):
    c = Case(tmp)
    frames = make_clip(c.frames, numbers=[1, 2, 3, 7, 8, 12], name="shot_{:03d}")
    c.key(3, stylized(frames[3]))
    c.key(8, stylized(frames[8]))
    c.expect_names = [f"shot_{t:03d}.png" for t in (1, 2, 3, 7, 8, 12)]
    return _ok_case(c)


@case
def non_ascii_paths_with_spaces(tmp):
    c = Case(tmp)
    c.frames = c.src / "été 2024" / "plan ☃ n°1"
    frames = make_clip(c.frames, name="image {:04d}")
    c.key(1, stylized(frames[1]), name="clé première.png")
    c.key(N, stylized(frames[N]), name="ключ последний.png")
    c.out = c.tmp / "sortie été" / "résultat final"
    c.expect_names = [f"image {t:04d}.png" for t in range(1, N + 1)]
    return _ok_case(c)


# ---------------------------------------------------------------------------
# Checks


def hash_tree(root):
    """{relative path: sha256} of every file below ``root``."""
    root = Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def decodes_fully(path):
    data = Path(path).read_bytes()
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is None:
        return False
    try:
        with Image.open(path) as im:
            im.load()  # raises on truncated data
    except OSError:
        return False
    return True


def check_outputs(c):
    """No partial output that looks complete; returns the frame PNGs present."""
    out = c.out
    if not out.is_dir() or out == c.frames:
        return []
    leftovers = [p for p in out.rglob("*") if p.is_file() and (p.suffix == ".tmp" or ".tmp" in p.name)]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    pngs = sorted(out.rglob("*.png"))
    for p in pngs:
        assert not p.name.startswith("."), f"hidden PNG (a temp file?) left: {p}"
        assert decodes_fully(p), f"{p} does not decode fully"
    return [p for p in pngs if p.parent == out]


def run_cli(argv):
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "engine", "propagate", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=300)


def assert_success(c, stderr=""):
    frames = check_outputs(c)
    names = c.expect_names or sorted(p.stem + ".png" for p in c.frames.iterdir() if p.suffix in (".png", ".jpg"))
    assert sorted(p.name for p in frames) == sorted(names), stderr
    for p in frames:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img.shape[:2] == (H, W) and img.dtype == np.uint8
    assert not (c.out / ".karwai-cache").exists(), "the cache is removed when a job succeeds"


def assert_failed_cleanly(c, n_frames):
    frames = check_outputs(c)
    if c.early:
        assert frames == [], f"frames written before a user's error was found: {frames}"
    assert len(frames) < max(n_frames, 1), "a failed job must not leave a complete-looking output"


def clip_size(c):
    try:
        return len([p for p in c.frames.iterdir() if p.suffix in (".png", ".jpg")])
    except OSError:
        return N


# ---------------------------------------------------------------------------
# Tests


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Every case through the CLI, two subprocesses at a time (one per core)."""
    built = {}
    for name in sorted(CASES):
        c = CASES[name](tmp_path_factory.mktemp(name))
        built[name] = (c, hash_tree(c.src))
    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = {name: pool.submit(run_cli, c.argv()) for name, (c, _) in built.items()}
        return {name: (*built[name], procs[name].result()) for name in built}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli(cli_runs, name):
    c, before, proc = cli_runs[name]
    stderr = proc.stderr
    assert "Traceback" not in stderr, stderr
    if c.ok:
        assert proc.returncode == 0, stderr
        assert_success(c, stderr)
    else:
        assert proc.returncode != 0, f"{name}: exit 0 for a bad input\n{proc.stdout}\n{stderr}"
        assert proc.returncode in (1, 2)  # 1: our one-line errors, 2: argparse's usage errors
        # One line that says what is wrong (OpenCV/libpng may add their own notes).
        message = [line for line in stderr.splitlines()
                   if line.startswith(("propagate: error:", "python -m engine propagate: error:"))]
        assert len(message) == 1, stderr
        assert_failed_cleanly(c, clip_size(c))
    for needle in c.needles:
        assert needle in stderr, f"{needle!r} not in:\n{stderr}"
    assert hash_tree(c.src) == before, "a source file was modified, added or removed"


#: Command-line syntax cases, which have no API twin.
CLI_ONLY = {"duplicate_key", "key_without_a_frame_number", "key_with_a_non_integer_frame",
            "weight_not_a_number"}


@pytest.mark.parametrize("name", sorted(set(CASES) - CLI_ONLY))
def test_api(tmp_path, name):
    c = CASES[name](tmp_path)
    kwargs = dict(c.api)
    weights = kwargs.pop("weights", None)
    quality = kwargs.pop("quality", "draft")
    before = hash_tree(c.src)

    def call():
        return propagate(c.frames, dict(c.keys), out=c.out, quality=quality,
                         weights=weights() if weights else None, **kwargs)
    if c.ok:
        call()
        assert_success(c)
    else:
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        for needle in c.needles:
            needle = needle.lstrip("-").replace("-", "_") if needle.startswith("--") else needle
            assert needle in message, f"{needle!r} not in {message!r}"
        assert_failed_cleanly(c, clip_size(c))
    assert hash_tree(c.src) == before


def test_a_chmod_read_only_output_folder(tmp_path):
    """The classic read-only folder. Root ignores permission bits, hence the skip."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("running as root, which writes through read-only permissions; "
                    "the output_below_a_file case covers an unwritable output folder")
    c, _ = clip_with_key(tmp_path)
    c.out.mkdir()
    c.out.chmod(0o555)
    try:
        proc = run_cli(c.argv())
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert str(c.out) in proc.stderr and "not writable" in proc.stderr
        assert list(c.out.iterdir()) == []
    finally:
        c.out.chmod(0o755)


def test_the_corpus_covers_the_issue():
    """Every kind of bad input that issue 7 lists has at least one case."""
    kinds = {
        "truncated or corrupt PNG": ["truncated_png_frame", "garbage_png_frame", "corrupt_png_data"],
        "truncated or corrupt JPEG": ["truncated_jpeg_frame", "garbage_jpeg_frame"],
        "0-byte files": ["zero_byte_frame", "zero_byte_key", "video_of_zero_bytes"],
        "grey, alpha, 16-bit": ["grey_frames", "alpha_frames", "sixteen_bit_frames_and_key"],
        "mixed resolutions": ["mixed_resolutions"],
        "keys not matching the frame size": ["key_of_another_aspect", "key_of_the_same_aspect_and_another_size"],
        "gaps in numbering": ["gaps_in_the_numbering", "key_on_a_gap_in_the_numbering"],
        "non-ASCII paths and spaces": ["non_ascii_paths_with_spaces"],
        "output equal to or inside the input": ["output_is_the_input_folder", "output_inside_the_input_folder"],
        "read-only output": ["output_below_a_file"],
        "keys outside the clip, duplicate keys": ["key_outside_the_clip", "duplicate_key"],
        "negative, NaN or huge parameters": ["weight_negative", "weight_nan", "weight_huge", "seed_negative",
                                             "quality_nan"],
        "a video that is not a video": ["video_that_is_not_a_video", "truncated_video"],
    }
    missing = [n for names in kinds.values() for n in names if n not in CASES]
    assert not missing
