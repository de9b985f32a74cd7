"""engine.images: the one image reader (issue 12)."""

import numpy as np
import pytest
from PIL import Image

from engine.__main__ import main
from engine.frames import open_frames, write_frame_atomic
from engine.images import decode_image, fit_to, read_image, resize, to_8bit


def _rotated_jpeg(path, h=24, w=40):
    """A JPEG stored landscape (h x w) whose EXIF says: show it turned 90 degrees clockwise."""
    yy, xx = np.mgrid[0:h, 0:w]
    stored = np.dstack([xx * 6, yy * 10, (xx + yy) * 3]).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    return stored


def test_exif_orientation_is_applied_once_for_every_reader(tmp_path):
    _rotated_jpeg(tmp_path / "key.jpg")
    image = read_image(tmp_path / "key.jpg")
    assert image.shape == (40, 24, 3)
    expected = np.asarray(Image.open(tmp_path / "key.jpg").transpose(Image.Transpose.ROTATE_270))
    assert np.abs(image.astype(int) - expected).max() <= 1
    # decoding the bytes alone gives the pixels as stored
    rgb, alpha = decode_image((tmp_path / "key.jpg").read_bytes(), "key.jpg")
    assert rgb.shape == (24, 40, 3) and alpha is None


def test_the_same_rotated_jpeg_is_the_same_key_for_stylize_and_propagate(tmp_path, capsys):
    """``stylize --method image`` and ``propagate --key`` read an EXIF-rotated JPEG identically."""
    from engine.propagation.keys import load_keys

    _rotated_jpeg(tmp_path / "key.jpg")
    clip = tmp_path / "clip"
    clip.mkdir()
    rng = np.random.default_rng(0)
    for n in (1, 2, 3):
        write_frame_atomic(clip / f"{n:04d}.png", rng.integers(0, 256, (40, 24, 3), dtype=np.uint8))
    stylized = tmp_path / "stylized.png"
    assert main(["stylize", str(clip / "0001.png"), "--method", "image", "--style-image",
                 str(tmp_path / "key.jpg"), "--out", str(stylized)]) == 0
    with open_frames(clip) as source:
        styles, _ = load_keys({1: tmp_path / "key.jpg"}, source, "refuse")
    np.testing.assert_array_equal(styles[1], read_image(stylized))
    # the stored pixels are 24x40, the frames 40x24: only the rotated key fits them
    code = main(["propagate", str(clip), "--key", f"1={tmp_path / 'key.jpg'}", "--out", str(tmp_path / "out"),
                 "--quality", "draft", "--quiet"])
    assert code == 0, capsys.readouterr().err


def test_16_bit_samples_are_rounded_once():
    values = np.array([[0, 128, 257, 32767, 65535]], np.uint16)
    np.testing.assert_array_equal(to_8bit(values), [[0, 0, 1, 127, 255]])
    assert to_8bit(np.array([[0.5]], np.float32))[0, 0] == 128


def test_sixteen_bit_files_keep_precision_on_request(tmp_path):
    import cv2

    art = np.random.default_rng(0).integers(0, 65536, (8, 10, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), art[..., ::-1])
    np.testing.assert_array_equal(read_image(tmp_path / "a.png", bits=16), art)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), to_8bit(art))
    with pytest.raises(ValueError, match="bits"):
        read_image(tmp_path / "a.png", bits=12)


def test_resize_keeps_channels_and_fit_to_refuses_another_aspect():
    grey = np.zeros((20, 30), np.uint8)
    assert resize(grey, 10, 15).shape == (10, 15)
    assert resize(np.zeros((20, 30, 1), np.float32), 40, 60).shape == (40, 60, 1)
    with pytest.warns(UserWarning, match="resized"):
        assert fit_to(np.zeros((20, 30, 3), np.uint8), (10, 15)).shape == (10, 15, 3)
    with pytest.raises(ValueError, match="different aspect ratio"):
        fit_to(np.zeros((20, 20, 3), np.uint8), (10, 15))
    with pytest.warns(UserWarning, match="by pad"):
        assert fit_to(np.zeros((20, 20, 3), np.uint8), (10, 15), fit="pad").shape == (10, 15, 4)


def test_a_missing_image_is_both_a_frame_error_and_file_not_found(tmp_path):
    from engine.errors import FrameError

    with pytest.raises(FileNotFoundError, match="gone.png") as info:
        read_image(tmp_path / "gone.png")
    assert isinstance(info.value, FrameError)
