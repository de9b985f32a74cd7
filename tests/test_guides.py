"""Tests for engine.guides: edge, positional (advected, holes filled), temporal, masks."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.flow import compute_flow_pair, identity_grid
from engine.frames import FrameError, read_image
from engine.guides import (
    FrameGuides,
    GuideWeights,
    advect_positions,
    apply_mask,
    colour_guide,
    edge_guide,
    fill_holes,
    frame_guides,
    guide_lists,
    keyframe_positions,
    load_mask,
    open_masks,
    positional_guide,
    temporal_guide,
)

SYNTH = Path(__file__).resolve().parents[2] / "shared" / "data" / "synth_case"
CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "clips"


def texture(h, w, *, seed=0, sigma=2.0):
    noise = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), sigma)
    lo, hi = blurred.min(), blurred.max()
    return np.round((blurred - lo) / (hi - lo) * 255).astype(np.uint8)


def constant_flow(h, w, dx, dy):
    flow = np.empty((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    return flow


# ------------------------------------------------------------------------- weights


def test_default_weights_follow_the_literature():
    w = GuideWeights()
    assert (w.colour, w.edge, w.positional, w.temporal, w.style) == (6.0, 0.5, 2.0, 0.5, 1.0)
    assert GuideWeights(edge=0).edge == 0
    with pytest.raises(ValueError, match="edge"):
        GuideWeights(edge=-1)
    with pytest.raises(ValueError, match="colour"):
        GuideWeights(colour=float("nan"))


# ------------------------------------------------------------------ colour and edge


def test_colour_guide_is_the_frame():
    frame = texture(10, 12)
    np.testing.assert_array_equal(colour_guide(frame), frame)
    rgba = np.dstack([frame, np.full((10, 12), 9, np.uint8)])
    np.testing.assert_array_equal(colour_guide(rgba), frame)
    with pytest.raises(ValueError, match="uint8"):
        colour_guide(frame.astype(np.float32))


def test_edge_guide_definition():
    flat = np.full((20, 20, 3), 77, np.uint8)
    np.testing.assert_array_equal(edge_guide(flat), 128)
    # A bright dot: the Laplacian is negative at its centre and positive around it.
    dot = flat.copy()
    dot[10, 10] = 255
    edges = edge_guide(dot)
    assert edges.dtype == np.uint8 and edges.shape == (20, 20)
    assert edges[10, 10] < 128 and edges[10, 13] > 128
    with pytest.raises(ValueError, match="HxWx3"):
        edge_guide(flat[..., 0])


@pytest.mark.skipif(not SYNTH.is_dir(), reason="shared synth_case not present")
@pytest.mark.parametrize("name", "ABCD")
def test_edge_guide_matches_synth_case_exactly(name):
    frame = read_image(SYNTH / f"frame{name}.png")
    expected = read_image(SYNTH / f"edge{name}.png")[..., 0]
    np.testing.assert_array_equal(edge_guide(frame), expected)


# ----------------------------------------------------------------------- positional


def test_keyframe_ramp_scale():
    guide = positional_guide(keyframe_positions(5, 9))
    assert guide.shape == (5, 9, 2) and guide.dtype == np.float32
    np.testing.assert_allclose(guide[0, :, 0], np.linspace(0, 255, 9), atol=1e-4)
    np.testing.assert_allclose(guide[:, 0, 1], np.linspace(0, 255, 5), atol=1e-4)
    assert positional_guide(keyframe_positions(5, 9), channels=3)[..., 2].max() == 0


def test_positional_guide_is_always_a_guide_synthesize_accepts():
    """Positions advected from outside the keyframe are clamped to its border (issue 12)."""
    from engine.synth import synthesize

    positions = keyframe_positions(12, 16) * np.float32(1.5) - np.float32(4.0)
    guide = positional_guide(positions, size=(12, 16))
    assert guide.min() == 0.0 and guide.max() == 255.0
    style = np.zeros((12, 16, 3), np.uint8)
    synthesize(style, [positional_guide(keyframe_positions(12, 16))], [guide], guide_weights=[1.0])


def test_guide_lists_keep_one_guide_when_every_weight_is_zero():
    frame = texture(20, 30)
    key = frame_guides(frame, positions=keyframe_positions(20, 30), temporal=frame)
    zero = GuideWeights(colour=0, edge=0, positional=0, temporal=0)
    src, dst, weights = guide_lists(key, key, weights=zero)
    assert weights == [0.0] and src[0] is key.colour


@pytest.mark.skipif(not SYNTH.is_dir(), reason="shared synth_case not present")
def test_keyframe_ramp_matches_synth_case():
    expected = read_image(SYNTH / "posA.png")
    guide = positional_guide(keyframe_positions(*expected.shape[:2]), channels=3)
    np.testing.assert_array_equal(guide.astype(np.uint8), expected)


def test_positions_advected_by_known_shift_equal_the_shifted_ramp():
    h, w, dx, dy, steps = 40, 60, 2.0, -1.5, 4
    positions = keyframe_positions(h, w)
    # Content moves by (dx, dy) per frame, so each new frame looks back by -(dx, dy).
    to_prev = constant_flow(h, w, -dx, -dy)
    for _ in range(steps):
        positions = advect_positions(positions, to_prev)
    expected = identity_grid(h, w) - np.float32([steps * dx, steps * dy])
    # Interior: exact. Border strips the flow points out of: holes, filled by
    # continuing the displacement, which here is exact too.
    np.testing.assert_allclose(positions[10:-10, 10:-10], expected[10:-10, 10:-10], atol=1e-4)
    np.testing.assert_allclose(positions, expected, atol=1e-3)
    ramp = positional_guide(positions)
    np.testing.assert_allclose(
        ramp[10:-10, 10:-10], positional_guide(expected)[10:-10, 10:-10], atol=1e-3
    )


def test_positions_advected_by_computed_flow():
    h, w, dx, dy = 96, 128, 3.0, 2.0
    big = texture(h + 40, w + 40, seed=4)
    frames = []
    for k in range(4):
        y, x = 20 - int(k * dy), 20 - int(k * dx)
        frames.append(np.ascontiguousarray(big[y : y + h, x : x + w]))
    positions = keyframe_positions(h, w)
    for prev, cur in zip(frames, frames[1:]):
        fwd, bwd = compute_flow_pair(prev, cur)
        positions = advect_positions(positions, bwd, flow_from_prev=fwd)
    expected = identity_grid(h, w) - np.float32([3 * dx, 3 * dy])
    inner = (slice(16, -16), slice(16, -16))
    assert np.abs(positions[inner] - expected[inner]).mean() < 0.15


def test_holes_are_filled_from_neighbours():
    h, w = 40, 60
    prev = keyframe_positions(h, w) + np.float32([5.0, -3.0])
    to_prev = constant_flow(h, w, 0.0, 0.0)
    valid = np.ones((h, w), bool)
    valid[10:30, 20:40] = False
    # Garbage inside the hole must not leak through: it is replaced by the fill.
    prev[10:30, 20:40] = -1000.0
    out = advect_positions(prev, to_prev, valid=valid)
    np.testing.assert_allclose(out, keyframe_positions(h, w) + np.float32([5.0, -3.0]), atol=1e-3)


def test_disoccluded_region_takes_the_background_positions():
    h, w, side, move = 128, 192, 48, 8
    background = texture(h, w, seed=1)
    square = texture(side, side, seed=2)
    y0, x0 = (h - side) // 2, 40
    prev = background.copy()
    prev[y0 : y0 + side, x0 : x0 + side] = square
    cur = background.copy()
    cur[y0 : y0 + side, x0 + move : x0 + move + side] = square
    fwd, bwd = compute_flow_pair(prev, cur)
    positions = advect_positions(keyframe_positions(h, w), bwd, flow_from_prev=fwd)
    grid = identity_grid(h, w)
    revealed = (slice(y0 + 4, y0 + side - 4), slice(x0 + 1, x0 + move - 1))
    # The revealed strip has no source in the previous frame; its positions are
    # filled from its neighbours (background: displacement 0, square: -move), so
    # they stay between those two and do not drift vertically.
    shift = positions[revealed] - grid[revealed]
    assert shift[..., 0].min() > -move - 0.5 and shift[..., 0].max() < 0.5
    assert np.abs(shift[..., 1]).max() < 1.0 and np.abs(shift[..., 1]).mean() < 0.4
    # Far background keeps its own coordinates.
    far = (slice(4, y0 - 8), slice(4, -4))
    assert np.abs(positions[far] - grid[far]).mean() < 0.1
    # The square moved by `move`: its positions point back to where it was.
    inner = (slice(y0 + 8, y0 + side - 8), slice(x0 + move + 8, x0 + move + side - 8))
    assert np.abs(positions[inner][..., 0] - (grid[inner][..., 0] - move)).mean() < 0.3


def test_fill_holes_keeps_valid_pixels_and_is_smooth():
    h, w = 60, 80
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.dstack([0.05 * xx, -0.03 * yy]).astype(np.float32)
    valid = np.ones((h, w), bool)
    valid[20:40, 30:50] = False
    filled = fill_holes(field, valid)
    np.testing.assert_array_equal(filled[valid], field[valid])
    assert np.abs(filled - field)[~valid].max() < 0.3
    assert not fill_holes(field, np.zeros((h, w), bool)).any()
    single = fill_holes(field[..., 0].copy(), valid)
    assert single.shape == (h, w)
    with pytest.raises(ValueError, match="float32"):
        fill_holes(field.astype(np.float64), valid)


def test_positional_input_validation():
    with pytest.raises(ValueError, match="float32"):
        advect_positions(keyframe_positions(4, 4).astype(np.float64), constant_flow(4, 4, 0, 0))
    with pytest.raises(ValueError, match="flow_to_prev"):
        advect_positions(keyframe_positions(4, 4), constant_flow(5, 4, 0, 0))
    with pytest.raises(ValueError, match="channels"):
        positional_guide(keyframe_positions(4, 4), channels=4)


# ------------------------------------------------------------------------- temporal


def test_temporal_guide_advects_previous_output():
    h, w = 30, 40
    prev_out = texture(h, w, seed=7)
    prev_rgba = np.dstack([prev_out, np.full((h, w), 200, np.uint8)])
    to_prev = constant_flow(h, w, 3.0, 0.0)  # content moved 3 px left
    guide = temporal_guide(prev_rgba, to_prev)
    assert guide.shape == (h, w, 4) and guide.dtype == np.uint8
    np.testing.assert_array_equal(guide[:, : w - 3, :3], prev_out[:, 3:])
    np.testing.assert_array_equal(guide[:, w - 3 :, :3], np.repeat(prev_out[:, -1:], 3, axis=1))
    with pytest.raises(ValueError, match="flow_to_prev"):
        temporal_guide(prev_out, constant_flow(h + 1, w, 0, 0))


# ---------------------------------------------------------------------------- masks


def _write(path, image):
    if image.ndim == 3:
        code = cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
        image = cv2.cvtColor(image, code)
    assert cv2.imwrite(str(path), image)


def test_load_mask_resizes_and_uses_alpha(tmp_path):
    grey = np.zeros((50, 100), np.uint8)
    grey[:, 50:] = 255
    _write(tmp_path / "half.png", grey)
    mask = load_mask(tmp_path / "half.png", size=(25, 50))
    assert mask.shape == (25, 50) and mask.dtype == np.uint8
    assert mask[:, :20].max() == 0 and mask[:, 30:].min() == 255

    rgba = np.zeros((25, 50, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere: only the alpha carries the mask
    rgba[5:10, 5:10, 3] = 255
    _write(tmp_path / "alpha.png", rgba)
    mask = load_mask(tmp_path / "alpha.png", size=(25, 50))
    assert mask[5:10, 5:10].min() == 255 and mask.sum() == 25 * 255

    mask16 = (grey.astype(np.uint16) * 257)
    _write(tmp_path / "m16.png", mask16)
    np.testing.assert_array_equal(load_mask(tmp_path / "m16.png", size=(50, 100)), grey)

    with pytest.raises(ValueError, match=r"half.png.*aspect"):
        load_mask(tmp_path / "half.png", size=(50, 50))
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(FrameError, match="bad.png"):
        load_mask(tmp_path / "bad.png", size=(50, 100))


def test_open_masks_folder_and_single(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    for n in (1, 2, 4):
        _write(folder / f"{n:04d}.png", np.full((8, 8), n * 50, np.uint8))
    masks = open_masks(folder, size=(8, 8), frame_numbers=[1, 2, 4])
    assert masks.read(4)[0, 0] == 200
    with pytest.raises(FrameError, match="frame 3"):
        masks.read(3)
    with pytest.raises(FrameError, match=r"no mask for frame\(s\) 3"):
        open_masks(folder, size=(8, 8), frame_numbers=[1, 2, 3, 4])
    single = open_masks(folder / "0002.png", size=(16, 16))
    assert single.read(1).shape == (16, 16) and single.read(99)[0, 0] == 100
    with pytest.raises(FrameError, match="not found"):
        open_masks(tmp_path / "nothing", size=(8, 8))


def test_apply_mask_makes_outside_transparent():
    image = texture(6, 6)
    mask = np.zeros((6, 6), np.uint8)
    mask[2:4] = 255
    rgba = apply_mask(image, mask)
    assert rgba.shape == (6, 6, 4)
    np.testing.assert_array_equal(rgba[..., :3], image)
    np.testing.assert_array_equal(rgba[..., 3], mask)
    half = apply_mask(np.dstack([image, np.full((6, 6), 128, np.uint8)]), mask)
    assert half[3, 0, 3] == 128 and half[0, 0, 3] == 0


# -------------------------------------------------------------------------- bundles


def test_frame_guides_and_guide_lists():
    frame = texture(20, 30)
    key = frame_guides(frame, positions=keyframe_positions(20, 30), temporal=frame)
    tgt = frame_guides(frame, positions=keyframe_positions(20, 30))
    assert isinstance(key, FrameGuides) and key.edge.shape == (20, 30)
    src, dst, weights = guide_lists(key, tgt)
    assert weights == [6.0, 0.5, 2.0]  # no temporal guide on the target side
    tgt.temporal = frame
    src, dst, weights = guide_lists(key, tgt, weights=GuideWeights(edge=0))
    assert weights == [6.0, 2.0, 0.5]
    assert src[0] is key.colour and dst[-1] is tgt.temporal
    tgt.temporal = frame[..., :1]
    with pytest.raises(ValueError, match="temporal guide has 3"):
        guide_lists(key, tgt)
    with pytest.raises(ValueError, match="positions"):
        frame_guides(frame, positions=keyframe_positions(21, 30))


# ------------------------------------------------------------------------ real clip


@pytest.mark.skipif(not (CLIPS / "liveportrait_selfie").is_dir(), reason="shared test clips not present")
def test_real_clip_positions_map_frames_back_to_the_key():
    from engine.frames import open_frames

    src = open_frames(CLIPS / "liveportrait_selfie")
    key = src.read(1)
    h, w = src.size
    positions = keyframe_positions(h, w)
    prev = key
    for n in range(2, 7):
        cur = src.read(n)
        fwd, bwd = compute_flow_pair(prev, cur)
        positions = advect_positions(positions, bwd, flow_from_prev=fwd)
        prev = cur
    # Looking the keyframe up at the advected positions rebuilds frame 6.
    rebuilt = cv2.remap(
        key, positions[..., 0], positions[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    err = np.abs(rebuilt.astype(float) - prev).mean()
    still = np.abs(key.astype(float) - prev).mean()
    assert err < 0.7 * still
