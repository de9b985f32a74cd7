"""Tests for engine.frames: sources, numbering, errors, atomic writes."""

import os
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine import files
from engine.frames import (
    FrameError,
    check_output_dir,
    frame_number_from_name,
    open_frames,
    read_image,
    write_frame_atomic,
)

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "clips"


def _rgb(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path, rgb):
    """Save RGB(A)/grey uint8/uint16 with cv2 (the test's own writer, not the engine's)."""
    img = rgb
    if rgb.ndim == 3 and rgb.shape[2] == 3:
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif rgb.ndim == 3 and rgb.shape[2] == 4:
        img = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), img)


def _clip(folder, numbers, *, ext=".png", prefix="", h=24, w=32):
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for n in numbers:
        images[n] = _rgb(h, w, seed=n)
        _save(folder / f"{prefix}{n:04d}{ext}", images[n])
    return images


# ---------------------------------------------------------------------------- numbering


@pytest.mark.parametrize(
    "name, number",
    [("0001.png", 1), ("shot_0012.png", 12), ("frame.0100.jpg", 100), ("7.png", 7), ("thumb.png", None)],
)
def test_frame_number_from_name(name, number):
    assert frame_number_from_name(name) == number


def test_numbering_with_gaps_and_ignored_files(tmp_path):
    images = _clip(tmp_path, [1, 3, 10], prefix="shot_")
    (tmp_path / "notes.txt").write_text("not a frame")
    _save(tmp_path / "thumb.png", _rgb())  # no trailing digits: ignored
    _save(tmp_path / ".shot_0002.png", _rgb())  # hidden: ignored
    (tmp_path / ".shot_0005.png.1234.tmp").write_bytes(b"partial")

    src = open_frames(tmp_path)
    assert src.kind == "images"
    assert src.frame_numbers == [1, 3, 10]
    assert len(src) == 3 and 3 in src and 2 not in src
    assert src.size == (24, 32)
    assert src.name_for(3) == "shot_0003.png"
    assert [n for n, _ in src] == [1, 3, 10]
    for n, image in src:
        np.testing.assert_array_equal(image, images[n])
    with pytest.raises(FrameError, match="frame 2 is not in the clip"):
        src.read(2)


def test_jpeg_name_maps_to_png_output(tmp_path):
    _clip(tmp_path, [12], ext=".jpg", prefix="shot_")
    src = open_frames(tmp_path)
    assert src.name_for(12) == "shot_0012.png"
    assert src.read(12).dtype == np.uint8 and src.read(12).shape == (24, 32, 3)


def test_read_returns_rgb_not_bgr(tmp_path):
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    tmp_path.mkdir(exist_ok=True)
    _save(tmp_path / "0001.png", red)
    _save(tmp_path / "0002.jpg", red)
    src = open_frames(tmp_path)
    for n in (1, 2):
        mean = src.read(n).reshape(-1, 3).mean(axis=0)
        assert mean[0] > 240 and mean[1] < 15 and mean[2] < 15


def test_16bit_png_and_alpha(tmp_path):
    rng = np.random.default_rng(1)
    rgba16 = rng.integers(0, 65536, (10, 12, 4), dtype=np.uint16)
    _save(tmp_path / "0001.png", rgba16)
    src = open_frames(tmp_path)
    expected = np.round(rgba16.astype(np.float64) / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(src.read(1), expected[..., :3])
    np.testing.assert_array_equal(src.read_alpha(1), expected[..., 3])


def test_frames_are_read_only_and_cache_is_bounded(tmp_path):
    _clip(tmp_path, range(1, 21))
    src = open_frames(tmp_path, cache_size=3)
    image = src.read(1)
    with pytest.raises(ValueError):
        image[0, 0, 0] = 1
    for _ in src:
        pass
    assert len(src._cache) <= 3


def test_memory_does_not_grow_with_clip_length(tmp_path):
    _clip(tmp_path, range(1, 41), h=64, w=64)
    src = open_frames(tmp_path, cache_size=2)
    frame_bytes = 64 * 64 * 3
    tracemalloc.start()
    try:
        total = 0
        for _, image in src:
            total += int(image[0, 0, 0])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 40 frames were read; at most a handful may be alive at once.
    assert peak < 12 * frame_bytes


# ------------------------------------------------------------------------------- errors


def test_missing_and_empty_folder(tmp_path):
    with pytest.raises(FrameError, match="nope"):
        open_frames(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FrameError, match="no numbered"):
        open_frames(tmp_path / "empty")
    (tmp_path / "unnumbered").mkdir()
    _save(tmp_path / "unnumbered" / "a.png", _rgb())
    with pytest.raises(FrameError, match="without a trailing frame number"):
        open_frames(tmp_path / "unnumbered")


@pytest.mark.parametrize(
    "names", [("0001.png", "0001.jpg"), ("1.png", "0001.png"), ("a_0002.png", "b_0002.png")]
)
def test_duplicate_frame_numbers(tmp_path, names):
    for name in names:
        _save(tmp_path / name, _rgb())
    with pytest.raises(FrameError, match="duplicate frame number") as info:
        open_frames(tmp_path)
    for name in names:
        assert name in str(info.value)


def test_corrupt_empty_and_truncated_frames_are_named(tmp_path):
    _clip(tmp_path, [1, 2, 3, 4, 5])
    _clip(tmp_path, [6], ext=".jpg")
    (tmp_path / "0002.png").write_bytes(b"this is not a png at all")
    (tmp_path / "0003.png").write_bytes(b"")
    data = (tmp_path / "0004.png").read_bytes()
    (tmp_path / "0004.png").write_bytes(data[: len(data) // 2])
    jpg = (tmp_path / "0006.jpg").read_bytes()
    (tmp_path / "0006.jpg").write_bytes(jpg[: len(jpg) * 2 // 3])
    src = open_frames(tmp_path)
    src.read(1)
    with pytest.raises(FrameError, match="0002.png"):
        src.read(2)
    with pytest.raises(FrameError, match=r"0003.png.*0 bytes"):
        src.read(3)
    with pytest.raises(FrameError, match="0004.png"):
        src.read(4)
    with pytest.raises(FrameError, match="0006.jpg"):
        src.read(6)
    src.read(5)

    with pytest.raises(FrameError) as info:
        src.validate()
    bad = " ".join(info.value.problems)
    assert len(info.value.problems) == 4
    for name in ("0002.png", "0003.png", "0004.png", "0006.jpg"):
        assert name in bad
    assert "0001.png" not in bad and "0005.png" not in bad


def test_mixed_resolutions_lazily_and_in_validate(tmp_path):
    _clip(tmp_path, [1, 2, 4])
    _save(tmp_path / "0003.png", _rgb(30, 32))
    src = open_frames(tmp_path)
    src.read(2)
    with pytest.raises(FrameError, match=r"0003.png.*mixed resolutions.*32x30.*32x24"):
        src.read(3)
    with pytest.raises(FrameError, match="0003.png"):
        src.validate()


def test_validate_passes_on_a_good_clip(tmp_path):
    _clip(tmp_path, [1, 2, 3], ext=".jpg")
    open_frames(tmp_path).validate(decode=True)


def test_single_image_and_not_a_video(tmp_path):
    _save(tmp_path / "0001.png", _rgb())
    with pytest.raises(FrameError, match="single image"):
        open_frames(tmp_path / "0001.png")
    fake = tmp_path / "clip.mp4"
    fake.write_text("definitely not a video")
    with pytest.raises(FrameError, match="clip.mp4"):
        open_frames(fake)
    empty = tmp_path / "empty.mov"
    empty.write_bytes(b"")
    with pytest.raises(FrameError, match="empty.mov"):
        open_frames(empty)


# -------------------------------------------------------------------------------- video


@pytest.fixture()
def video(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
    if not writer.isOpened():
        pytest.skip("no MJPG encoder in this OpenCV build")
    base = _rgb(32, 48, seed=3)
    for i in range(30):
        writer.write(cv2.cvtColor(np.roll(base, 2 * i, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_video_source_numbering_and_random_access(video):
    src = open_frames(video, cache_size=1)
    assert src.kind == "video"
    assert src.frame_numbers == list(range(1, 31))
    assert src.size == (32, 48)
    assert src.name_for(1) == "0001.png" and src.name_for(30) == "0030.png"
    sequential = {n: image.copy() for n, image in src}
    assert len(sequential) == 30
    # Consecutive frames differ (the pattern moves), so equality pins the index.
    assert not np.array_equal(sequential[1], sequential[2])

    other = open_frames(video, cache_size=4)
    for n in [30, 29, 28, 27, 26, 15, 1, 2, 25, 3, 30]:
        np.testing.assert_array_equal(other.read(n), sequential[n], err_msg=f"frame {n}")
    assert len(other._cache) <= 4
    with pytest.raises(FrameError, match="frame 31"):
        other.read(31)
    other.close()


# ------------------------------------------------------------------------------- writes


@pytest.mark.parametrize(
    "image",
    [
        _rgb(),
        np.dstack([_rgb(), np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)]),
        np.random.default_rng(2).integers(0, 65536, (24, 32, 3), dtype=np.uint16),
        _rgb()[..., 0],
    ],
    ids=["rgb", "rgba", "rgb16", "grey"],
)
def test_write_frame_atomic_round_trip(tmp_path, image):
    path = tmp_path / "0001.png"
    write_frame_atomic(path, image)
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image.ndim == 3:
        code = cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
        back = cv2.cvtColor(back, code)
    assert back.dtype == image.dtype
    np.testing.assert_array_equal(back, image)
    assert os.listdir(tmp_path) == ["0001.png"]


def test_atomic_write_leaves_no_partial_file_when_writer_fails(tmp_path, monkeypatch):
    path = tmp_path / "0001.png"
    old = _rgb(seed=5)
    write_frame_atomic(path, old)
    before = path.read_bytes()

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", boom)
    with pytest.raises(OSError, match="No space"):
        write_frame_atomic(path, _rgb(seed=6))
    with pytest.raises(OSError, match="No space"):
        write_frame_atomic(tmp_path / "0002.png", _rgb(seed=6))
    # The old frame is intact, the new one was never created, no temp files remain.
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["0001.png"]


def test_write_rejects_bad_images_without_creating_files(tmp_path):
    with pytest.raises(ValueError, match="uint8 or uint16"):
        write_frame_atomic(tmp_path / "a.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="HxW"):
        write_frame_atomic(tmp_path / "a.png", np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match=".png"):
        write_frame_atomic(tmp_path / "a.tga", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FrameError, match="does not exist"):
        write_frame_atomic(tmp_path / "missing" / "a.png", np.zeros((4, 4, 3), np.uint8))
    assert os.listdir(tmp_path) == []


def test_write_refuses_protected_source(tmp_path):
    src = tmp_path / "src"
    _clip(src, [1])
    before = (src / "0001.png").read_bytes()
    with pytest.raises(FrameError, match="source folder"):
        write_frame_atomic(src / "0001.png", _rgb(seed=9), protect=src)
    with pytest.raises(FrameError, match="source folder"):
        write_frame_atomic(src / "sub" / ".." / "0001.png", _rgb(seed=9), protect=src)
    assert (src / "0001.png").read_bytes() == before


def test_check_output_dir(tmp_path):
    src = tmp_path / "src"
    _clip(src, [1])
    with pytest.raises(FrameError, match="is the source folder"):
        check_output_dir(src, src)
    with pytest.raises(FrameError, match="inside the source folder"):
        check_output_dir(src / "out", src)
    link = tmp_path / "link"
    link.symlink_to(src, target_is_directory=True)
    with pytest.raises(FrameError, match="source folder"):
        check_output_dir(link / "out", src)
    assert not (src / "out").exists()

    out = check_output_dir(tmp_path / "a" / "b", src)
    assert out.is_dir()
    assert os.listdir(out) == []  # the write probe is cleaned up
    sibling = check_output_dir(tmp_path / "src_styled", src)  # a name prefix is not "inside"
    assert sibling.is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(FrameError, match="not a folder"):
        check_output_dir(tmp_path / "file", src)
    with pytest.raises(FrameError, match="cannot create"):
        check_output_dir(tmp_path / "file" / "sub", src)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_check_output_dir_unwritable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(FrameError, match="not writable"):
            check_output_dir(locked)
        with pytest.raises(FrameError, match="cannot create"):
            check_output_dir(locked / "sub")
    finally:
        locked.chmod(0o700)


# --------------------------------------------------------------------------- read_image


def test_read_image_modes(tmp_path):
    grey16 = (np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 500)
    _save(tmp_path / "g16.png", grey16)
    image = read_image(tmp_path / "g16.png")
    assert image.shape == (12, 10, 3) and image.dtype == np.uint8
    expected = np.round(grey16 / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(image[..., 1], expected)

    rgba = np.dstack([_rgb(), np.full((24, 32), 77, np.uint8)])
    _save(tmp_path / "k.png", rgba)
    np.testing.assert_array_equal(read_image(tmp_path / "k.png"), rgba)
    np.testing.assert_array_equal(read_image(tmp_path / "k.png", alpha=False), rgba[..., :3])

    # A broken chunk header: rejected by the structure check, named in the error.
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(FrameError, match="bad.png"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(FrameError, match="gone.png"):
        read_image(tmp_path / "gone.png")


# ---------------------------------------------------------------------------- real clip


@pytest.mark.skipif(not (CLIPS / "sam2_bedroom").is_dir(), reason="shared test clips not present")
def test_real_clip_sam2_bedroom():
    folder = CLIPS / "sam2_bedroom"
    src = open_frames(folder)
    assert src.frame_numbers == list(range(1, 81))
    assert src.size == (360, 640)
    src.validate()
    expected = cv2.cvtColor(cv2.imread(str(folder / "0040.jpg")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(src.read(40), expected)
    assert src.name_for(40) == "0040.png"
