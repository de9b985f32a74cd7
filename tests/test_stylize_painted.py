"""Artist-painted keyframes (engine.stylizers.painted) and image reading."""

import cv2
import numpy as np
import pytest
from PIL import Image

from engine.stylizers import painted
from engine import images
from engine.images import read_image


def coord_art(h, w):
    """R encodes x, G encodes y (0..255 across the picture), B constant."""
    y, x = np.mgrid[0:h, 0:w]
    art = np.zeros((h, w, 3), np.uint8)
    art[..., 0] = np.round(255 * (x + 0.5) / w)
    art[..., 1] = np.round(255 * (y + 0.5) / h)
    art[..., 2] = 90
    return art


def write_rgb(path, rgb):
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return str(path)


def frame(h, w, value=50):
    return np.full((h, w, 3), value, np.uint8)


# ---------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------


def test_geometry_crop_and_pad():
    # 2:1 picture into a 4:3 frame
    assert images.fit_geometry((100, 200), (60, 80), fit="crop") == ((60, 120), (0, 20))
    assert images.fit_geometry((100, 200), (60, 80), fit="pad") == ((40, 80), (10, 0))
    # same aspect: no crop, no pad
    assert images.fit_geometry((2160, 3840), (1080, 1920), fit="crop") == ((1080, 1920), (0, 0))
    assert images.fit_geometry((2160, 3840), (1080, 1920), fit="pad") == ((1080, 1920), (0, 0))
    # portrait into landscape
    assert images.fit_geometry((300, 100), (90, 160), fit="pad") == ((90, 30), (0, 65))
    assert images.fit_geometry((300, 100), (90, 160), fit="crop") == ((480, 160), (195, 0))
    with pytest.raises(ValueError, match="fit"):
        images.fit_geometry((10, 10), (5, 5), fit="stretch")


def test_crop_keeps_the_aspect_and_the_centre(tmp_path):
    art = coord_art(100, 200)
    out = painted.stylize_painted(frame(60, 80), style_image=write_rgb(tmp_path / "a.png", art), fit="crop")
    assert out.shape == (60, 80, 3) and out.dtype == np.uint8
    # vertically the whole picture is shown ...
    assert out[0, 40, 1] < 10 and out[-1, 40, 1] > 245
    # ... horizontally only the middle 80 of 120 scaled columns: x from 1/6 to 5/6.
    s = 0.6
    for j in (0, 40, 79):
        x_art = (j + 20 + 0.5) / s - 0.5
        assert abs(int(out[30, j, 0]) - 255 * (x_art + 0.5) / 200) <= 3
    # no stretching: equal steps in x and y of the picture give equal steps in the frame
    dx = (int(out[30, 60, 0]) - int(out[30, 20, 0])) / 255 * 200  # picture pixels per 40 frame px
    dy = (int(out[50, 40, 1]) - int(out[10, 40, 1])) / 255 * 100
    assert dx == pytest.approx(dy, rel=0.05)


def test_pad_keeps_the_aspect_and_pads_evenly(tmp_path):
    art = coord_art(100, 200)
    out = painted.stylize_painted(frame(60, 80), style_image=write_rgb(tmp_path / "a.png", art),
                                  fit="pad", pad_color=(255, 0, 255))
    assert out.shape == (60, 80, 3)
    np.testing.assert_array_equal(out[:10], np.broadcast_to((255, 0, 255), (10, 80, 3)))
    np.testing.assert_array_equal(out[50:], np.broadcast_to((255, 0, 255), (10, 80, 3)))
    inner = out[10:50]
    assert inner[0, 0, 0] < 10 and inner[0, -1, 0] > 245  # full width of the picture
    assert inner[0, 40, 1] < 15 and inner[-1, 40, 1] > 240  # full height of the picture
    dx = (int(inner[20, 60, 0]) - int(inner[20, 20, 0])) / 255 * 200
    dy = (int(inner[30, 40, 1]) - int(inner[10, 40, 1])) / 255 * 100
    assert dx / 40 == pytest.approx(dy / 20, rel=0.1)  # 0.4 scale on both axes


def test_exact_size_is_used_pixel_for_pixel(tmp_path):
    rng = np.random.default_rng(0)
    art = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    path = write_rgb(tmp_path / "a.png", art)
    for fit in ("crop", "pad"):
        np.testing.assert_array_equal(painted.stylize_painted(frame(37, 53), style_image=path, fit=fit), art)


def test_same_aspect_upscale_fills_the_frame(tmp_path):
    art = coord_art(45, 80)
    out = painted.stylize_painted(frame(90, 160), style_image=write_rgb(tmp_path / "a.png", art), fit="pad",
                                  pad_color=(255, 0, 255))
    assert not np.any(np.all(out == (255, 0, 255), axis=-1))


def test_array_style_image_is_accepted():
    art = coord_art(20, 20)
    out = painted.stylize_painted(frame(10, 10), style_image=art)
    assert out.shape == (10, 10, 3)


# ---------------------------------------------------------------------------
# Alpha
# ---------------------------------------------------------------------------


def rgba_art():
    art = np.zeros((40, 40, 4), np.uint8)
    art[..., :3] = (0, 0, 0)  # colour under transparent pixels: black
    art[:, 20:, :3] = (255, 255, 255)
    art[:, 20:, 3] = 255  # right half opaque white
    return art


def write_rgba(path, rgba):
    assert cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    return str(path)


def test_alpha_keep_returns_rgba_and_transparent_padding(tmp_path):
    path = write_rgba(tmp_path / "a.png", rgba_art())
    out = painted.stylize_painted(frame(20, 40), style_image=path, fit="pad")
    assert out.shape == (20, 40, 4)
    assert (out[:, :10, 3] == 0).all() and (out[:, 30:, 3] == 0).all()  # padding
    assert (out[:, 10:19, 3] == 0).all() and (out[:, 21:30, 3] == 255).all()


def test_alpha_resize_has_no_dark_fringe(tmp_path):
    path = write_rgba(tmp_path / "a.png", rgba_art())
    out = painted.stylize_painted(frame(13, 13), style_image=path, fit="crop")
    visible = out[..., 3] > 0
    # premultiplied resampling: every visible pixel keeps the opaque colour (white)
    assert visible.any() and (out[visible][:, :3] >= 250).all()
    partial = (out[..., 3] > 0) & (out[..., 3] < 255)
    assert partial.any()


def test_alpha_composite_over_the_frame(tmp_path):
    path = write_rgba(tmp_path / "a.png", rgba_art())
    out = painted.stylize_painted(frame(40, 40, value=77), style_image=path, alpha="composite")
    assert out.shape == (40, 40, 3)
    np.testing.assert_array_equal(out[:, :19], 77)
    np.testing.assert_array_equal(out[:, 21:], 255)
    # padding of an opaque picture shows the frame too
    art = coord_art(20, 40)
    out = painted.stylize_painted(frame(40, 40, value=77), style_image=art, fit="pad", alpha="composite")
    np.testing.assert_array_equal(out[:10], 77)


def test_alpha_ignore_returns_rgb(tmp_path):
    path = write_rgba(tmp_path / "a.png", rgba_art())
    out = painted.stylize_painted(frame(40, 40), style_image=path, alpha="ignore")
    assert out.shape == (40, 40, 3)
    np.testing.assert_array_equal(out[:, :20], 0)


# ---------------------------------------------------------------------------
# Formats and bit depths
# ---------------------------------------------------------------------------


def test_16bit_png_keeps_precision(tmp_path):
    rng = np.random.default_rng(0)
    art16 = rng.integers(0, 65536, (16, 24, 3), dtype=np.uint16)
    path = tmp_path / "a16.png"
    assert cv2.imwrite(str(path), art16[..., ::-1])
    out = painted.stylize_painted(frame(16, 24), style_image=str(path))
    np.testing.assert_array_equal(out, np.round(art16 / 257.0).astype(np.uint8))
    # resampled in float from 16 bits, not from a truncated 8-bit copy
    out_small = painted.stylize_painted(frame(8, 12), style_image=str(path))
    expected = cv2.resize(art16.astype(np.float32) / 257.0, (12, 8), interpolation=cv2.INTER_AREA)
    assert np.abs(out_small.astype(float) - expected).max() <= 0.51


def test_grey_grey_alpha_palette_and_jpeg(tmp_path):
    grey = (np.arange(20 * 30).reshape(20, 30) % 256).astype(np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    la = np.dstack([grey, np.full_like(grey, 200)])
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    pal = Image.fromarray(grey, "L").convert("P")
    pal.save(tmp_path / "p.png", transparency=0)
    Image.fromarray(coord_art(20, 30)).save(tmp_path / "j.jpg", quality=95)
    g = painted.stylize_painted(frame(20, 30), style_image=str(tmp_path / "g.png"))
    np.testing.assert_array_equal(g, np.repeat(grey[..., None], 3, axis=2))
    out = painted.stylize_painted(frame(20, 30), style_image=str(tmp_path / "la.png"))
    assert out.shape == (20, 30, 4) and (out[..., 3] == 200).all()
    out = painted.stylize_painted(frame(20, 30), style_image=str(tmp_path / "p.png"))
    assert out.shape == (20, 30, 4) and set(np.unique(out[..., 3])) <= {0, 255}
    out = painted.stylize_painted(frame(20, 30), style_image=str(tmp_path / "j.jpg"))
    assert out.shape == (20, 30, 3) and np.abs(out.astype(int) - coord_art(20, 30)).mean() < 4


def test_exif_orientation_is_applied(tmp_path):
    art = coord_art(20, 40)  # landscape pixels ...
    im = Image.fromarray(art)
    exif = Image.Exif()
    exif[0x0112] = 6  # ... stored for display rotated 90 degrees clockwise
    im.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    img = read_image(tmp_path / "rot.jpg")
    assert img.shape == (40, 20, 3)
    expected = np.asarray(Image.open(tmp_path / "rot.jpg").transpose(Image.Transpose.ROTATE_270))
    assert np.abs(img.astype(int) - expected).max() <= 1


def test_gif_via_pillow(tmp_path):
    Image.fromarray(coord_art(10, 12)).convert("P").save(tmp_path / "a.gif")
    img = read_image(tmp_path / "a.gif")
    assert img.shape[:2] == (10, 12)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def test_missing_corrupt_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        painted.stylize_painted(frame(4, 4), style_image=str(tmp_path / "nothere.png"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage garbage")
    with pytest.raises(ValueError, match="bad.png"):
        painted.stylize_painted(frame(4, 4), style_image=str(bad))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        painted.stylize_painted(frame(4, 4), style_image=str(empty))


@pytest.mark.parametrize("kw,name", [
    (dict(fit="stretch"), "fit"),
    (dict(alpha="premultiplied"), "alpha"),
    (dict(pad_color=(1, 2)), "pad_color"),
    (dict(pad_color=(0, 0, 300)), "pad_color"),
    (dict(style_image=None), "style_image"),
    (dict(style_image=np.zeros((0, 3, 3), np.uint8)), "empty"),
])
def test_bad_parameters(kw, name):
    args = dict(style_image=coord_art(8, 8))
    args.update(kw)
    with pytest.raises(ValueError, match=name):
        painted.stylize_painted(frame(8, 8), **args)
