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
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from engine.propagation import JobSettings, propagate

DRAFT = JobSettings(quality="draft")

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


@pytest.mark.slow
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
    fields = {"quality": "draft"}
    for keyword, name in (("weights", "weights"), ("seed", "seed"), ("quality", "quality"), ("blend_mode", "blend"),
                          ("key_fit", "key_fit")):
        if keyword in kwargs:
            fields[name] = kwargs.pop(keyword)
    before = hash_tree(c.src)

    def call():
        if "weights" in fields:
            fields["weights"] = fields["weights"]()
        return propagate(c.frames, dict(c.keys), out=c.out, settings=JobSettings(**fields), **kwargs)
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


# ---------------------------------------------------------------------------
# Issue 11: own only what you made, check every write against every read,
# fingerprint every result, refuse what cannot be read. Each test names the
# bullet of the issue it covers.

import json  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from engine.frames import open_frames  # noqa: E402
from engine.safety import MARKER, FolderLock, ParameterTypeError, own_folder, remove_owned  # noqa: E402


def run_engine(*argv, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "engine", *map(str, argv)], cwd=ROOT, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=timeout)


def assert_one_line_error(proc, *needles):
    """Exit 1, no traceback, exactly one line that says what is wrong, naming ``needles``."""
    assert proc.returncode == 1, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert str(needle) in lines[0], f"{needle!r} not in {lines[0]!r}"


def small_job(tmp_path, keys=(1,), numbers=range(1, N + 1), seed=0):
    """A clip in ``tmp_path/src/frames`` with keys; returns the Case and the frames."""
    c = Case(tmp_path)
    frames = make_clip(c.frames, numbers=numbers, seed=seed)
    for n in keys:
        c.key(n, stylized(frames[n]))
    return c, frames


def outputs(out):
    return {p.name: p.read_bytes() for p in sorted(Path(out).glob("*.png")) if p.is_file()}


# -- 1. Deleting what the job does not own


def test_issue11_cache_dir_holding_the_frames_deletes_nothing(tmp_path):
    """Frames in proj/work and --cache-dir proj: refused, every frame kept (was: all deleted, exit 0)."""
    c, _ = small_job(tmp_path)
    proj = c.src / "proj"
    make_clip(proj / "work")
    c.frames = proj / "work"
    before = hash_tree(c.src)
    proc = run_cli([*c.argv(), "--cache-dir", str(proj)])
    assert_one_line_error(proc, proj / "work")
    assert hash_tree(c.src) == before
    with pytest.raises(ValueError, match="work"):
        propagate(c.frames, dict(c.keys), out=c.out, cache_dir=proj, settings=DRAFT)
    assert hash_tree(c.src) == before and not c.out.exists()


def test_issue11_a_users_file_in_the_cache_folder_survives(tmp_path):
    """D/work/thesis.txt and D/flow/notes.txt are never deleted; D itself is never removed."""
    c, _ = small_job(tmp_path)
    cache = c.src / "D"
    (cache / "work").mkdir(parents=True)
    (cache / "work" / "thesis.txt").write_text("four years of work")
    proc = run_cli([*c.argv(), "--cache-dir", str(cache)])
    assert_one_line_error(proc, "thesis.txt")
    assert (cache / "work" / "thesis.txt").read_text() == "four years of work"
    (cache / "work" / "thesis.txt").unlink()
    (cache / "work").rmdir()
    (cache / "notes.txt").write_text("mine")
    proc = run_cli([*c.argv(), "--cache-dir", str(cache)])
    assert proc.returncode == 0, proc.stderr
    # The job's own flow and work folders are gone, the user's folder and file are not.
    assert sorted(p.name for p in cache.iterdir()) == ["notes.txt"]
    empty = c.tmp / "empty-cache"
    empty.mkdir()
    proc = run_cli([*c.argv(), "--cache-dir", str(empty)])
    assert proc.returncode == 0, proc.stderr
    assert empty.is_dir(), "a cache folder the user gave is never removed"


def test_issue11_only_marked_folders_are_emptied_and_only_of_known_names(tmp_path):
    import re

    names = re.compile(r"pass_[0-9]+\.npz")
    unmarked = tmp_path / "unmarked"
    unmarked.mkdir()
    (unmarked / "pass_1.npz").write_bytes(b"user's")
    assert not remove_owned(unmarked, names) and (unmarked / "pass_1.npz").exists()
    marked = own_folder(tmp_path / "marked", "test")
    (marked / "pass_1.npz").write_bytes(b"ours")
    (marked / "thesis.txt").write_text("user's")
    (marked / "sub").mkdir()
    (marked / "sub" / "pass_2.npz").write_bytes(b"in an unmarked subfolder")
    assert not remove_owned(marked, names)
    assert not (marked / "pass_1.npz").exists()
    assert (marked / "thesis.txt").exists() and (marked / "sub" / "pass_2.npz").exists()
    assert (marked / MARKER).exists(), "a folder that keeps a user's file stays the engine's"
    with pytest.raises(ValueError, match="not made by Kar-Wai"):
        own_folder(unmarked, "test")  # a user's folder is never taken over


# -- 2. Writing over inputs


def test_issue11_a_source_object_is_checked_like_a_path(tmp_path):
    c, _ = small_job(tmp_path)
    before = hash_tree(c.src)
    for out in (c.frames, c.frames / "styled", c.frames / ".." / "frames"):
        with open_frames(c.frames) as source, pytest.raises(ValueError, match="source folder"):
            propagate(source, dict(c.keys), out=out, settings=DRAFT)
        assert hash_tree(c.src) == before
    link = c.tmp / "link-to-frames"
    link.symlink_to(c.frames, target_is_directory=True)
    with open_frames(c.frames) as source, pytest.raises(ValueError, match="source folder"):
        propagate(source, dict(c.keys), out=link, settings=DRAFT)
    assert hash_tree(c.src) == before


def test_issue11_mask_folder_as_the_output_is_refused(tmp_path):
    c, frames = small_job(tmp_path)
    masks = c.src / "masks"
    for n in frames:
        imwrite(masks / f"{n:04d}.png", np.full((H, W), 255, np.uint8))
    before = hash_tree(c.src)
    proc = run_cli([str(c.frames), f"--key=1={c.keys[1]}", "--mask", str(masks), "--out", str(masks),
                    "--quality", "draft", "--quiet"])
    assert_one_line_error(proc, masks, "mask")
    assert hash_tree(c.src) == before
    with pytest.raises(ValueError, match="mask"):
        propagate(c.frames, dict(c.keys), out=masks / "sub", masks=masks, settings=DRAFT)
    assert hash_tree(c.src) == before


def test_issue11_a_key_inside_the_output_folder_is_refused(tmp_path):
    c, frames = small_job(tmp_path)
    out = c.src / "out"
    key5 = out / "0005.png"
    imwrite(key5, stylized(frames[5]))
    before = hash_tree(c.src)
    proc = run_cli([str(c.frames), f"--key=1={c.keys[1]}", f"--key=5={key5}", "--out", str(out),
                    "--quality", "draft", "--quiet"])
    assert_one_line_error(proc, "0005.png", "key for frame 5")
    assert hash_tree(c.src) == before
    # Reached through a symbolic link and "..", it is the same file.
    (c.tmp / "elsewhere").mkdir()
    (c.tmp / "elsewhere" / "k.png").symlink_to(key5)
    with pytest.raises(ValueError, match="key for frame 5"):
        propagate(c.frames, {1: c.keys[1], 5: c.tmp / "elsewhere" / ".." / "elsewhere" / "k.png"},
                  out=out, settings=DRAFT)
    assert hash_tree(c.src) == before


def test_issue11_a_source_frame_linked_from_the_output_is_refused(tmp_path):
    c, frames = small_job(tmp_path)
    out = c.src / "out"
    imwrite(out / "0003.png", frames[3])
    (c.frames / "0003.png").unlink()
    (c.frames / "0003.png").symlink_to(out / "0003.png")
    before = hash_tree(c.src)
    assert_one_line_error(run_cli([*c.argv()[:-5], "--out", str(out), "--quality", "draft", "--quiet"]),
                          "0003.png")
    assert hash_tree(c.src) == before


def test_issue11_cache_inside_the_source_folder_is_refused(tmp_path):
    c, _ = small_job(tmp_path)
    before = hash_tree(c.src)
    assert_one_line_error(run_cli([*c.argv(), "--cache-dir", str(c.frames / "cache")]), "source folder")
    assert hash_tree(c.src) == before and not c.out.exists()


def test_issue11_stylize_never_writes_over_its_input(tmp_path):
    frames = make_clip(tmp_path / "frames")
    frame = tmp_path / "frames" / "0001.png"
    art = tmp_path / "art.png"
    imwrite(art, stylized(frames[2]))
    before = hash_tree(tmp_path)
    cases = [
        ([frame, "--method", "painterly", "--out", frame], ["0001.png", "the frame"]),
        ([frame, "--method", "painterly", "--out", tmp_path / "frames" / ".." / "frames" / "0001.png"],
         ["0001.png"]),
        ([frame, "--method", "image", "--style-image", art, "--out", art], ["art.png", "style image"]),
    ]
    link = tmp_path / "link.png"
    link.symlink_to(frame)
    cases.append(([link, "--method", "painterly", "--out", frame], ["0001.png"]))
    weights = tmp_path / "weights.png"  # an odd name, but the weights may be called anything
    weights.write_bytes(b"not really weights")
    cases.append(([frame, "--method", "neural", "--style-image", art, "--param", f"weights={weights}",
                   "--out", weights], ["weights.png", "VGG19 weights"]))
    before = hash_tree(tmp_path)
    for argv, needles in cases:
        assert_one_line_error(run_engine("stylize", *argv, "--quiet"), *needles)
        assert hash_tree(tmp_path) == before, argv


# -- 3. Stale or foreign results


def test_issue11_a_keys_own_source_frame_edited_between_runs(tmp_path):
    c, frames = small_job(tmp_path, keys=(1, N))
    propagate(c.frames, dict(c.keys), out=c.out, settings=DRAFT)
    # Edit key frame N's source, keeping its size and time stamp: only the content tells.
    path = c.frames / f"{N:04d}.png"
    st = path.stat()
    edited = frames[N].copy()
    edited[H // 2:, :] = 255 - edited[H // 2:, :]
    imwrite(path, edited)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    rerun = propagate(c.frames, dict(c.keys), out=c.out, settings=DRAFT)
    assert rerun.computed == N - 2 and rerun.skipped == 0
    fresh = propagate(c.frames, dict(c.keys), out=c.tmp / "fresh", settings=DRAFT)
    assert outputs(c.out) == outputs(fresh.out)


@pytest.mark.slow
def test_issue11_outputs_of_removed_frames_are_removed_but_only_the_jobs(tmp_path):
    c, _ = small_job(tmp_path, keys=(1,), numbers=range(1, 9))
    assert run_cli(c.argv()).returncode == 0
    (c.frames / "0008.png").unlink()
    (c.frames / "0007.png").unlink()
    (c.out / "0007.png").write_bytes(b"the user's own file now")  # no longer the job's bytes
    (c.out / "0100.png").write_bytes(b"never the job's")
    proc = run_cli(c.argv())
    assert proc.returncode == 0, proc.stderr
    assert sorted(outputs(c.out)) == [f"{n:04d}.png" for n in range(1, 7)] + ["0007.png", "0100.png"]
    assert (c.out / "0007.png").read_bytes() == b"the user's own file now"
    record = json.loads((c.out / ".karwai-job.json").read_text())
    assert sorted(record["frames"]) == [f"{n:04d}.png" for n in range(1, 7)]


def test_issue11_two_jobs_with_different_keys_in_one_output_folder(tmp_path):
    c, frames = small_job(tmp_path, keys=(1,))
    other = {1: stylized(frames[1])[:, :, ::-1].copy()}
    propagate(c.frames, dict(c.keys), out=c.out, settings=DRAFT)
    second = propagate(c.frames, other, out=c.out, settings=DRAFT)
    assert second.skipped == 0
    fresh = propagate(c.frames, other, out=c.tmp / "fresh", settings=DRAFT)
    assert outputs(c.out) == outputs(fresh.out)
    # A finished frame replaced by other bytes is not taken as finished.
    (c.out / "0004.png").write_bytes((c.out / "0001.png").read_bytes())
    again = propagate(c.frames, other, out=c.out, settings=DRAFT)
    assert again.computed > 0 and outputs(c.out) == outputs(fresh.out)


def test_issue11_one_job_per_output_folder(tmp_path):
    c, _ = small_job(tmp_path)
    c.out.mkdir()
    with FolderLock(c.out):
        proc = run_cli(c.argv())
        assert_one_line_error(proc, "already running in", c.out)
        with pytest.raises(ValueError, match="already running in"):
            propagate(c.frames, dict(c.keys), out=c.out, settings=DRAFT)
    assert outputs(c.out) == {}
    assert run_cli(c.argv()).returncode == 0  # the lock dies with its holder
    assert not (c.out / ".karwai-lock").exists()


def test_issue11_damaged_flow_cache_data_is_recomputed(tmp_path):
    c, frames = small_job(tmp_path, keys=(1,))
    propagate(c.frames, dict(c.keys), out=c.out, settings=DRAFT, keep_cache=True)
    entries = sorted((c.out / ".karwai-cache" / "flow").glob("flow-*.npy"))
    assert entries
    for path in entries:  # keep the .npy header, damage the data
        data = bytearray(path.read_bytes())
        data[-200:-100] = bytes(100)
        path.write_bytes(bytes(data))
    new_key = {1: stylized(frames[1])[:, ::-1].copy()}  # a changed key: every span recomputed from the flow
    propagate(c.frames, new_key, out=c.out, settings=DRAFT, keep_cache=True)
    fresh = propagate(c.frames, new_key, out=c.tmp / "fresh", settings=DRAFT)
    assert outputs(c.out) == outputs(fresh.out)


# -- 4. One clear line, never a traceback or a hang


@pytest.mark.parametrize("content", ["[]", "null", '"text"', "42", '{"spans": []}',
                                     '{"frames": {"0001.png": 5}}', '{"frames": {"../x.png": {"fp": "a", '
                                     '"sha256": "b", "before": null}}}', "{not json", ""])
def test_issue11_a_damaged_job_record_is_one_line(tmp_path, content):
    c, _ = small_job(tmp_path)
    c.out.mkdir()
    record = c.out / ".karwai-job.json"
    record.write_text(content)
    proc = run_cli(c.argv())
    assert_one_line_error(proc, ".karwai-job.json", "damaged job record")
    assert record.read_text() == content and outputs(c.out) == {}


def _bomb_png(path, w=20000, h=20000):
    """A tiny, well-formed PNG whose header claims w x h pixels."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = zlib.compress(b"\x00" * 64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    return path


def test_issue11_decompression_bombs_are_refused(tmp_path):
    c, _ = small_job(tmp_path)
    bomb = _bomb_png(c.src / "bomb.png")
    assert_one_line_error(run_cli([str(c.frames), f"--key=1={bomb}", "--out", str(c.out), "--quiet"]),
                          "bomb.png", "20000x20000")
    frame_bomb = _bomb_png(c.frames / "0003.png")
    assert_one_line_error(run_cli(c.argv()), "0003.png")
    assert_one_line_error(run_engine("stylize", frame_bomb, "--method", "painterly", "--out",
                                     c.tmp / "s.png", "--quiet"), "0003.png")
    assert_one_line_error(run_engine("suggest", c.frames), "0003.png")
    assert not c.out.exists() and not (c.tmp / "s.png").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_issue11_a_fifo_or_device_is_refused_not_read(tmp_path):
    c, _ = small_job(tmp_path)
    fifo = c.tmp / "key.png"
    os.mkfifo(fifo)
    for key in (fifo, "/dev/zero"):
        assert_one_line_error(run_cli([str(c.frames), f"--key=1={key}", "--out", str(c.out), "--quiet"],),
                              key)
        with pytest.raises(ValueError, match="regular"):
            propagate(c.frames, {1: key}, out=c.out)
    assert_one_line_error(run_engine("stylize", fifo, "--method", "painterly", "--out", c.tmp / "s.png"),
                          "FIFO")
    assert_one_line_error(run_engine("stylize", c.frames / "0001.png", "--method", "image", "--style-image",
                                     "/dev/zero", "--out", c.tmp / "s.png"), "/dev/zero")
    os.mkfifo(c.frames / "0009.png")
    assert_one_line_error(run_cli(c.argv()), "0009.png", "FIFO")
    assert not c.out.exists()


def test_issue11_a_broken_symlink_in_the_frame_folder_is_named(tmp_path):
    c, _ = small_job(tmp_path)
    (c.frames / "0004.png").unlink()
    (c.frames / "0004.png").symlink_to(c.tmp / "gone.png")
    assert_one_line_error(run_cli(c.argv()), "0004.png", "broken symbolic link")
    assert_one_line_error(run_engine("suggest", c.frames), "0004.png")
    assert not c.out.exists()


@pytest.mark.parametrize("number", ["1_0", "+1", " 1", "١", "0x1", "1e0", "1.0"])
def test_issue11_key_frame_numbers_are_plain_decimal_digits(tmp_path, number):
    c, _ = small_job(tmp_path)
    proc = run_cli([str(c.frames), f"--key={number}={c.keys[1]}", "--out", str(c.out), "--quiet"])
    assert_one_line_error(proc, "--key", repr(number))
    assert not c.out.exists()


def test_issue11_frame_names_of_240_characters(tmp_path):
    c = Case(tmp_path)
    stem = "s" * 236
    frames = make_clip(c.frames, name=stem + "{:04d}")
    c.key(1, stylized(frames[1]))
    proc = run_cli(c.argv())
    assert proc.returncode == 0, proc.stderr
    assert sorted(outputs(c.out)) == [f"{stem}{n:04d}.png" for n in range(1, N + 1)]
    out = c.tmp / ("o" * 240 + ".png")
    proc = run_engine("stylize", c.frames / f"{stem}0001.png", "--method", "painterly", "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in c.tmp.iterdir() if p.name.startswith(".")] == []


def _interrupt_at(argv, delay, rng_seed):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "engine", *map(str, argv)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def _python_starting(code, err):
    """True when a SIGINT reached the interpreter before it ran any of the engine (a loaded machine)."""
    return ("init_import_site" in err or "Could not import runpy module" in err
            or "Python runtime state: core initialized" in err or (code == -signal.SIGINT and not err.strip()))


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name == "nt", reason="POSIX signals")
@pytest.mark.parametrize("command", ["propagate", "suggest", "stylize"])
def test_issue11_ctrl_c_at_any_moment_is_one_line(tmp_path, command):
    import random

    c, _ = small_job(tmp_path)
    argv = {"propagate": ["propagate", *c.argv()],
            "suggest": ["suggest", c.frames],
            "stylize": ["stylize", c.frames / "0001.png", "--method", "painterly", "--out", c.tmp / "s.png",
                        "--quiet"]}[command]
    rng = random.Random(11)
    # Early moments (the imports) and later ones; a run that finished first is fine too.
    for delay in [0.05, 0.15, 0.3, *(rng.uniform(0.3, 2.5) for _ in range(2))]:
        code, _, err = _interrupt_at(argv, delay, rng)
        while ("Traceback" in err and str(ROOT / "engine") not in err) or (code == -signal.SIGINT and not err):
            # Python itself was still starting up (before its SIGINT handler, its site module,
            # streams, runpy finding the module for -m): no frame of the engine's code is in the
            # traceback, none of it ran, nothing the engine can do; try a later moment.
            delay += 0.05
            code, _, err = _interrupt_at(argv, delay, rng)
        assert "Traceback" not in err, err
        assert code in (0, 130), (delay, code, err)
        if code == 130:
            assert "interrupted" in err or "cancelled" in err, err
    assert_only_complete(c.out)
    assert [p.name for p in c.tmp.iterdir() if p.name.endswith(".tmp")] == []


def assert_only_complete(out):
    if Path(out).is_dir():
        for p in Path(out).glob("*.png"):
            assert decodes_fully(p), p


# -- 5. The API's contract


@pytest.mark.parametrize("kwargs, name", [
    ({"out": None}, "out"), ({"out": 123}, "out"), ({"out": b"bytes"}, "out"),
    ({"frames": None}, "frames"), ({"frames": "ARRAYS"}, "frames"), ({"frames": 7}, "frames"),
    ({"keys": [("1", "k.png")]}, "keys"), ({"keys": {1: 5}}, "keys[1]"), ({"masks": 5}, "masks"),
    ({"cache_dir": 3.5}, "cache_dir"), ({"settings": {"quality": "draft"}}, "settings"),
    ({"progress": "yes"}, "progress"), ({"cancel": True}, "cancel"), ({"keep_cache": "no"}, "keep_cache"),
])
def test_issue11_wrong_argument_types_name_the_parameter_and_create_nothing(tmp_path, kwargs, name):
    c, frames = small_job(tmp_path)
    args = {"frames": c.frames, "keys": dict(c.keys), "out": c.tmp / "new" / "out", **kwargs}
    if args["frames"] == "ARRAYS":
        args["frames"] = [frames[n] for n in sorted(frames)]
    before = sorted(p for p in c.tmp.rglob("*"))
    cwd = os.getcwd()
    os.chdir(c.tmp)  # a path made from a wrong value would land here
    try:
        with pytest.raises(TypeError) as info:
            propagate(args.pop("frames"), args.pop("keys"), **args)
    finally:
        os.chdir(cwd)
    assert isinstance(info.value, ValueError), "documented: a ParameterTypeError is both"
    assert isinstance(info.value, ParameterTypeError)
    assert name in str(info.value)
    assert sorted(p for p in c.tmp.rglob("*")) == before, "a refused call created something"


def test_issue11_a_refused_call_creates_no_output_folder(tmp_path):
    c, _ = small_job(tmp_path)
    out = c.tmp / "a" / "b" / "out"
    for bad in ({1: c.src / "missing.png"}, {99: c.keys[1]}, {}):
        with pytest.raises(ValueError):
            propagate(c.frames, bad, out=out, settings=DRAFT)
    with pytest.raises(ValueError):
        propagate(c.frames, dict(c.keys), out=out, masks=c.src / "no masks", settings=DRAFT)
    with pytest.raises(ValueError):
        propagate(c.frames, dict(c.keys), out="", settings=DRAFT)
    assert not (c.tmp / "a").exists()


def test_issue11_stylize_refuses_a_float_image_in_0_to_1():
    from engine import stylize

    rng = np.random.default_rng(0)
    image = rng.random((24, 32, 3))
    with pytest.raises(ValueError, match="0..1"):
        stylize(image, method="painterly")
    with pytest.raises(TypeError, match="frame"):
        stylize([[0, 1]], method="painterly")
    assert stylize(image * 255, method="painterly").mean() > 20  # 0..255 floats are fine


def test_issue11_a_bad_mask_is_found_before_anything_is_written(tmp_path):
    c, frames = small_job(tmp_path)
    masks = c.src / "masks"
    for n in frames:
        imwrite(masks / f"{n:04d}.png", np.full((H, W), 255, np.uint8))
    _bomb_png(masks / "0005.png")
    fifo_masks = c.src / "fifo-masks"
    assert_one_line_error(run_cli([*c.argv(), "--mask", str(masks)]), "0005.png")
    assert not c.out.exists()
    if hasattr(os, "mkfifo"):
        fifo_masks.mkdir()
        for n in frames:
            imwrite(fifo_masks / f"{n:04d}.png", np.full((H, W), 255, np.uint8))
        (fifo_masks / "0002.png").unlink()
        os.mkfifo(fifo_masks / "0002.png")
        assert_one_line_error(run_cli([*c.argv(), "--mask", str(fifo_masks)]), "0002.png", "FIFO")
        assert_one_line_error(run_cli([*c.argv(), "--mask", "/dev/zero"]), "/dev/zero")
        assert not c.out.exists()


def test_issue11_an_output_name_taken_by_a_folder_is_refused_before_writing(tmp_path):
    c, _ = small_job(tmp_path)
    (c.out / "0004.png").mkdir(parents=True)
    (c.out / "0004.png" / "keep.txt").write_text("mine")
    assert_one_line_error(run_cli(c.argv()), "0004.png")
    assert outputs(c.out) == {} and (c.out / "0004.png" / "keep.txt").read_text() == "mine"


def test_issue11_suggest_names_a_wrong_argument():
    from engine import suggest_keyframes

    for bad in (None, 5, "frames/", Path("frames")):
        with pytest.raises(TypeError, match="frames"):
            suggest_keyframes(bad)


def test_the_corpus_covers_issue_11():
    """Every bullet of issue 11 has at least one case here or in test_crash_safety.py."""
    import re

    crash = (Path(__file__).parent / "test_crash_safety.py").read_text(encoding="utf-8")
    here, there = set(globals()), set(re.findall(r"^def (\w+)\(", crash, re.M))
    bullets = {
        "1. deleting what the job does not own": ["test_issue11_cache_dir_holding_the_frames_deletes_nothing",
                                                  "test_issue11_a_users_file_in_the_cache_folder_survives",
                                                  "test_issue11_only_marked_folders_are_emptied_and_only_of_known_names"],
        "2. a source object instead of a path": ["test_issue11_a_source_object_is_checked_like_a_path"],
        "2. --mask M --out M": ["test_issue11_mask_folder_as_the_output_is_refused"],
        "2. stylize in == out (and style image, weights)": ["test_issue11_stylize_never_writes_over_its_input"],
        "2. a key file inside --out": ["test_issue11_a_key_inside_the_output_folder_is_refused",
                                      "test_issue11_a_source_frame_linked_from_the_output_is_refused",
                                      "test_issue11_cache_inside_the_source_folder_is_refused"],
        "3. a key's own source frame edited": ["test_issue11_a_keys_own_source_frame_edited_between_runs"],
        "3. a source frame removed": ["test_issue11_outputs_of_removed_frames_are_removed_but_only_the_jobs"],
        "3. two jobs in one --out, the lock": ["test_issue11_two_jobs_with_different_keys_in_one_output_folder",
                                              "test_issue11_one_job_per_output_folder"],
        "3. damaged flow-cache data": ["test_issue11_damaged_flow_cache_data_is_recomputed"],
        "4. wrong-typed job records": ["test_issue11_a_damaged_job_record_is_one_line"],
        "4. decompression bombs": ["test_issue11_decompression_bombs_are_refused",
                                   "test_issue11_a_bad_mask_is_found_before_anything_is_written"],
        "4. FIFO and /dev/zero": ["test_issue11_a_fifo_or_device_is_refused_not_read"],
        "4. Ctrl-C early in propagate, during suggest": ["test_issue11_ctrl_c_at_any_moment_is_one_line"],
        "4. 240-character names": ["test_issue11_frame_names_of_240_characters"],
        "4. a dangling symlink among the frames": ["test_issue11_a_broken_symlink_in_the_frame_folder_is_named"],
        "4. --key 1_0=k.png": ["test_issue11_key_frame_numbers_are_plain_decimal_digits"],
        "5. wrong argument types, nothing created": [
            "test_issue11_wrong_argument_types_name_the_parameter_and_create_nothing",
            "test_issue11_a_refused_call_creates_no_output_folder", "test_issue11_suggest_names_a_wrong_argument"],
        "5. stylize() and 0..1 floats": ["test_issue11_stylize_refuses_a_float_image_in_0_to_1"],
    }
    crash_bullets = {
        "4. truncated or empty pass-state files": ["test_damaged_pass_states_are_recomputed_not_trusted"],
        "kill stylize and suggest at random moments": ["test_stylize_killed_at_random_moments_then_rerun",
                                                       "test_suggest_killed_at_random_moments_then_rerun"],
    }
    missing = [n for names in bullets.values() for n in names if n not in here]
    missing += [n for names in crash_bullets.values() for n in names if n not in there]
    assert not missing, missing


# ---------------------------------------------------------------------------
# The commands added after issue 11 (stylize-video, stylize-keys, plan, run-task):
# the same rules, found broken by an adversarial run. Each case failed before its fix.


def run_engine_in(cwd, *argv, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "engine", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, encoding="utf-8", timeout=timeout)


@pytest.fixture
def video_job(tmp_path):
    """``tmp_path`` holding frames/ (5 frames), masks/, style.png, key1.png and tiny VGG weights vgg.pth."""
    torch = pytest.importorskip("torch")
    del torch
    from test_stylize_neural import write_weights

    frames = make_clip(tmp_path / "frames", numbers=range(1, 6))
    for n in range(1, 6):
        mask = np.zeros((H, W), np.uint8)
        mask[8:24, 10:40] = 255
        imwrite(tmp_path / "masks" / f"{n:04d}.png", mask)
    imwrite(tmp_path / "style.png", texture(24, 24, seed=5))
    imwrite(tmp_path / "key1.png", stylized(frames[1]))
    write_weights(tmp_path / "vgg.pth")
    return tmp_path


_NEURAL_VIDEO = ("stylize-video", "frames", "--method", "neural-video", "--style-image", "style.png",
                 "--param", "iterations=2", "--param", "weights=vgg.pth", "--quiet")
_FAST_NETWORK = ("stylize-video", "frames", "--method", "fast-network", "--style-image", "style.png",
                 "--param", "steps=2", "--param", "width=4", "--param", "train_size=16", "--param",
                 "train_frames=2", "--param", "weights=vgg.pth", "--quiet")


def test_issue11_video_jobs_never_write_over_their_inputs(video_job):
    """--mask M --out M overwrote the masks, and a style image or weights in --out were overwritten (exit 0)."""
    d = video_job
    before = hash_tree(d)
    assert_one_line_error(run_engine_in(d, *_NEURAL_VIDEO, "--mask", "masks", "--out", "masks"), "mask folder")
    assert_one_line_error(run_engine_in(d, *_NEURAL_VIDEO, "--mask", "masks", "--out", "masks/sub"), "masks")
    assert hash_tree(d) == before and not (d / "masks" / "sub").exists()
    (d / "out").mkdir()
    (d / "out" / "0001.png").write_bytes((d / "style.png").read_bytes())
    before = hash_tree(d)
    argv = [a if a != "style.png" else "out/0001.png" for a in _NEURAL_VIDEO]
    assert_one_line_error(run_engine_in(d, *argv, "--out", "out"), "0001.png")
    assert_one_line_error(run_engine_in(d, *_FAST_NETWORK, "--out", "out2", "--param", "model=masks/0002.png"),
                          "model")
    assert hash_tree(d) == before and not (d / "out2").exists()


def test_issue11_video_job_refusals_create_nothing_and_never_block(video_job):
    """A bad mask left an empty output folder; a FIFO as the network file hung."""
    d = video_job
    os.mkfifo(d / "fifo")
    before = sorted(p.name for p in d.iterdir())
    assert_one_line_error(run_engine_in(d, *_NEURAL_VIDEO, "--mask", "style.png", "--out", "a/b"), "style.png")
    assert_one_line_error(run_engine_in(d, *_FAST_NETWORK, "--out", "c", "--param", "model=fifo", timeout=60),
                          "fifo")
    assert_one_line_error(run_engine_in(d, *_NEURAL_VIDEO[:5], "fifo", *_NEURAL_VIDEO[6:], "--out", "e",
                                     timeout=60), "fifo")
    assert sorted(p.name for p in d.iterdir()) == before


def test_issue11_video_job_resume_trusts_only_intact_outputs_of_the_clip(video_job):
    """A record of the wrong JSON type was an internal error; a damaged output and the output of a
    removed frame were kept on resume."""
    d = video_job
    (d / "out").mkdir()
    (d / "out" / ".karwai-video.json").write_text("[]")
    proc = run_engine_in(d, *_NEURAL_VIDEO, "--out", "out")
    assert proc.returncode == 0, proc.stderr
    reference = outputs(d / "out")
    (d / "out" / "0003.png").write_bytes(b"damaged")
    assert run_engine_in(d, *_NEURAL_VIDEO, "--out", "out").returncode == 0
    assert outputs(d / "out") == reference
    (d / "frames" / "0005.png").unlink()
    (d / "out" / "mine.png").write_bytes(b"a user's file")
    assert run_engine_in(d, *_NEURAL_VIDEO, "--out", "out").returncode == 0
    assert sorted(outputs(d / "out")) == ["0001.png", "0002.png", "0003.png", "0004.png", "mine.png"]


def test_issue11_video_working_folder_deletes_only_what_the_job_wrote(video_job):
    """The end of a two-pass job ran shutil.rmtree on OUT/.karwai-video/pass1, through a symlink too."""
    d = video_job
    argv = (*_NEURAL_VIDEO, "--param", "passes=2", "--out", "out")
    (d / "out" / ".karwai-video" / "pass1").mkdir(parents=True)
    (d / "out" / ".karwai-video" / "pass1" / "thesis.txt").write_text("mine")
    assert_one_line_error(run_engine_in(d, *argv), "thesis.txt")
    assert (d / "out" / ".karwai-video" / "pass1" / "thesis.txt").read_text() == "mine"
    shutil.rmtree(d / "out")
    (d / "user" / "pass1").mkdir(parents=True)
    (d / "user" / "pass1" / "thesis.txt").write_text("mine")
    (d / "out").mkdir()
    os.symlink(d / "user", d / "out" / ".karwai-video")
    assert_one_line_error(run_engine_in(d, *argv), ".karwai-video")
    assert (d / "user" / "pass1" / "thesis.txt").read_text() == "mine"
    os.unlink(d / "out" / ".karwai-video")
    assert run_engine_in(d, *argv).returncode == 0
    assert sorted(outputs(d / "out")) == [f"{n:04d}.png" for n in range(1, 6)]
    assert not (d / "out" / ".karwai-video").exists()


def test_issue11_stylize_keys_checks_numbers_and_paths_first(video_job):
    """--keys 1_0 was frame 10; a style image or weights inside --out were overwritten; a bad key left --out."""
    d = video_job
    base = ("stylize-keys", "frames", "--method", "neural", "--param", "iterations=2", "--param",
            "weights=vgg.pth", "--quiet")
    assert_one_line_error(run_engine_in(d, *base, "--keys", "1_0", "--style-image", "style.png", "--out", "k"),
                          "1_0")
    assert_one_line_error(run_engine_in(d, *base, "--keys", "1,99", "--style-image", "style.png", "--out", "k"),
                          "99")
    proc = run_engine_in(d, *base, "--keys", "1,10", "--anchor", "1_0", "--style-image", "style.png", "--out", "k")
    assert proc.returncode == 2 and "--anchor: '1_0' is not a frame number" in proc.stderr, proc.stderr
    assert not (d / "k").exists()
    (d / "k").mkdir()
    (d / "k" / "0001.png").write_bytes((d / "style.png").read_bytes())
    before = hash_tree(d)
    assert_one_line_error(run_engine_in(d, *base, "--keys", "1,5", "--style-image", "k/0001.png", "--out", "k"),
                          "0001.png")
    assert hash_tree(d) == before


def _plan_clip(tmp_path):
    frames = make_clip(tmp_path / "frames", numbers=range(1, 6))
    imwrite(tmp_path / "key1.png", stylized(frames[1]))
    return ("plan", "frames", "--key", "1=key1.png", "--out", "out", "--quality", "draft")


def test_issue11_plan_writes_its_extra_files_over_no_input(tmp_path):
    """--flamenco-job and --save-costs were written over a source frame, a key or the plan (exit 0)."""
    argv = _plan_clip(tmp_path)
    assert run_engine_in(tmp_path, *argv).returncode == 0
    before = hash_tree(tmp_path)
    for target, needle in (("frames/0002.png", "source folder"), ("key1.png", "key for frame 1"),
                           ("out/.karwai-plan.json", "the plan")):
        assert_one_line_error(run_engine_in(tmp_path, *argv, "--flamenco-job", target), needle)
    assert_one_line_error(run_engine_in(tmp_path, *argv, "--simulate", "2", "--save-costs", "frames/0003.png"),
                          "--save-costs")
    assert hash_tree(tmp_path) == before


def test_issue11_plan_options_and_costs_are_checked_before_anything_is_written(tmp_path):
    """--costs FIFO hung; NaN costs and a string overhead gave stray messages; --simulate 0 and --fps nan
    were found after the plan was written, or not at all."""
    argv = _plan_clip(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "nan.json").write_text('{"flow": NaN, "pass": 1, "finish": 1, "key": 1}')
    (tmp_path / "over.json").write_text('{"flow": 1, "pass": 1, "finish": 1, "key": 1, "overhead": "x"}')
    assert_one_line_error(run_engine_in(tmp_path, *argv, "--simulate", "2", "--costs", "fifo", timeout=60), "fifo")
    for name in ("nan.json", "over.json"):
        assert_one_line_error(run_engine_in(tmp_path, "plan", "--film", "50", "--simulate", "2", "--costs", name),
                              name)
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
    assert_one_line_error(run_engine_in(tmp_path, *argv, "--simulate", "0", "--costs", "over.json"), "--simulate")
    assert_one_line_error(run_engine_in(tmp_path, *argv, "--flamenco-job", "job.json", "--fps", "nan"), "--fps")
    assert not (tmp_path / "out").exists() and not (tmp_path / "job.json").exists()


def test_issue11_run_task_refuses_special_files_and_damaged_task_records(tmp_path):
    """A FIFO as the plan hung; a task record listing no outputs made a task 'done' without its frame."""
    argv = _plan_clip(tmp_path)
    assert run_engine_in(tmp_path, *argv).returncode == 0
    os.mkfifo(tmp_path / "fifo")
    assert_one_line_error(run_engine_in(tmp_path, "run-task", "fifo", "key-1", timeout=60), "fifo")
    import json

    plan = json.loads((tmp_path / "out" / ".karwai-plan.json").read_text())
    fp = next(t["fingerprint"] for t in plan["tasks"] if t["id"] == "key-1")
    (tmp_path / "out" / ".karwai-tasks").mkdir(exist_ok=True)
    (tmp_path / "out" / ".karwai-tasks" / "key-1.json").write_text(
        json.dumps({"task": "key-1", "fingerprint": fp, "outputs": {}}))
    proc = run_engine_in(tmp_path, "run-task", "out/.karwai-plan.json", "key-1")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "0001.png").is_file()


def test_issue11_video_record_fifo_dask_and_task_folder_refusals_leave_nothing(video_job):
    """A FIFO as the video job record hung; an unreachable --dask scheduler was found after OUT, the plan
    and the cache were written; a file named .karwai-tasks was found after the cache was made."""
    d = video_job
    (d / "out").mkdir()
    os.mkfifo(d / "out" / ".karwai-video.json")
    assert_one_line_error(run_engine_in(d, *_NEURAL_VIDEO, "--out", "out", timeout=60), ".karwai-video.json")
    assert sorted(os.listdir(d / "out")) == [".karwai-video.json"]
    pytest.importorskip("distributed")
    for address in ("", "tcp://127.0.0.1:1"):
        assert_one_line_error(run_engine_in(d, "propagate", "frames", "--key", "1=key1.png", "--out", "p",
                                         "--dask", address, "--quiet", timeout=90), "dask")
        assert not (d / "p").exists()
    (d / "q").mkdir()
    (d / "q" / ".karwai-tasks").write_text("mine")
    assert_one_line_error(run_engine_in(d, "plan", "frames", "--key", "1=key1.png", "--out", "q"), ".karwai-tasks")
    assert sorted(os.listdir(d / "q")) == [".karwai-tasks"]


def test_issue11_run_task_names_a_wrong_plan_argument():
    """run_task(123, ...) raised Path's TypeError without the parameter's name."""
    from engine.propagation.tasks import run_task

    for bad in (None, 123, ["plan.json"]):
        with pytest.raises(TypeError, match="plan"):
            run_task(bad, "key-1")
