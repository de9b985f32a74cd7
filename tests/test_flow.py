"""Tests for engine.flow: DIS flow, consistency, warping, composition, cache."""

import os
from pathlib import Path

import threading
import time

import cv2
import numpy as np
import pytest

from engine import flow as fl
from engine.flow import (
    FlowCache,
    FlowParams,
    chain_flows,
    compose_flows,
    compute_flow,
    compute_flow_pair,
    consistency_mask,
    flow_magnitude,
    identity_grid,
    warp,
)

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "clips"


def texture(h, w, *, seed=0, sigma=2.0):
    """Smooth random RGB texture with full 0..255 contrast."""
    noise = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), sigma)
    lo, hi = blurred.min(), blurred.max()
    return np.round((blurred - lo) / (hi - lo) * 255).astype(np.uint8)


def shifted_pair(dx, dy, *, h=96, w=128, seed=0):
    """Frames a, b of one texture with a[y, x] == b[y + dy, x + dx] (sub-pixel ok)."""
    big = texture(h + 40, w + 40, seed=seed)
    a = big[20 : 20 + h, 20 : 20 + w]
    # With WARP_INVERSE_MAP, moved(x) = big(x - d); so b(x) = a(x - d), a(x) = b(x + d).
    m = np.float32([[1, 0, -dx], [0, 1, -dy]])
    moved = cv2.warpAffine(big, m, (w + 40, h + 40), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
    b = moved[20 : 20 + h, 20 : 20 + w]
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


# ------------------------------------------------------------------------------ DIS


@pytest.mark.parametrize("dx, dy", [(3.0, -2.0), (2.5, 1.25)])
def test_known_shift_gives_known_flow(dx, dy):
    a, b = shifted_pair(dx, dy)
    fwd, bwd = compute_flow_pair(a, b)
    assert fwd.dtype == np.float32 and fwd.shape == (96, 128, 2)
    inner = (slice(10, -10), slice(10, -10))
    assert np.abs(fwd[inner][..., 0] - dx).mean() < 0.1
    assert np.abs(fwd[inner][..., 1] - dy).mean() < 0.1
    assert np.abs(bwd[inner][..., 0] + dx).mean() < 0.1
    assert np.abs(bwd[inner][..., 1] + dy).mean() < 0.1
    # Warping b by the forward flow reproduces a.
    err = np.abs(warp(b, fwd).astype(float) - a)[inner].mean()
    assert err < 2.0


def test_flow_is_deterministic_and_accepts_grey():
    a, b = shifted_pair(1.0, 1.0)
    first = compute_flow(a, b)
    np.testing.assert_array_equal(first, compute_flow(a, b))
    grey = compute_flow(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY))
    np.testing.assert_array_equal(first, grey)


def test_flow_input_validation():
    a = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        compute_flow(a.astype(np.float32), a)
    with pytest.raises(ValueError, match="differ in size"):
        compute_flow(a, np.zeros((16, 20, 3), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        compute_flow(np.zeros((16, 16, 2), np.uint8), a)
    with pytest.raises(ValueError, match="preset"):
        FlowParams(preset="slowest")
    with pytest.raises(ValueError, match="finest_scale"):
        FlowParams(finest_scale=-1)


def test_params_preset_only_matches_opencv():
    dis = FlowParams.preset_only("medium").create()
    ref = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    assert dis.getFinestScale() == ref.getFinestScale()
    assert dis.getPatchStride() == ref.getPatchStride()
    tuned = FlowParams().create()
    assert tuned.getFinestScale() == 0 and tuned.getPatchStride() == 5


def test_large_frames_stop_dis_a_level_earlier_per_halving():
    assert FlowParams().create((2160, 3840)).getFinestScale() == 0  # off by default
    params = FlowParams(full_scale_max_side=1280)
    assert params.create((360, 640)).getFinestScale() == 0
    assert params.create((720, 1280)).getFinestScale() == 0
    assert params.create((1080, 1920)).getFinestScale() == 1
    assert params.create((2160, 3840)).getFinestScale() == 2
    assert FlowParams(finest_scale=1, full_scale_max_side=1280).create((1080, 1920)).getFinestScale() == 2
    assert FlowParams.preset_only().create((2160, 3840)).getFinestScale() == \
        cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).getFinestScale()
    with pytest.raises(ValueError, match="full_scale_max_side"):
        FlowParams(full_scale_max_side=0)


def test_a_known_shift_is_found_on_a_frame_flowed_at_half_size():
    # 1400 px wide, past full_scale_max_side: DIS stops at 700 px and OpenCV upsamples.
    a, b = shifted_pair(3.5, -1.5, h=240, w=1400, seed=3)
    params = FlowParams(full_scale_max_side=700)
    assert params.create(a.shape[:2]).getFinestScale() == 1
    fwd, bwd = compute_flow_pair(a, b, params=params)
    assert fwd.shape == (240, 1400, 2)
    inner = (slice(16, -16), slice(16, -16))
    assert np.abs(fwd[inner][..., 0] - 3.5).mean() < 0.1
    assert np.abs(fwd[inner][..., 1] + 1.5).mean() < 0.1
    assert np.abs(bwd[inner][..., 0] + 3.5).mean() < 0.1
    assert np.abs(warp(b, fwd).astype(float) - a)[inner].mean() < 2.0


# ---------------------------------------------------------------------- consistency


def test_consistency_formula_on_constant_flows():
    h, w = 20, 30
    f = np.zeros((h, w, 2), np.float32)
    f[..., 0] = 2.0
    # A perfect inverse: consistent everywhere the target stays inside the frame.
    mask = consistency_mask(f, -f)
    assert mask[:, : w - 2].all()
    assert not mask[:, w - 1].any()  # lands at x = w + 1: outside
    # A backward flow of zero contradicts a 2-pixel motion.
    assert not consistency_mask(f, np.zeros_like(f)).any()
    # Small disagreement within beta = 0.5 px^2 is tolerated.
    assert consistency_mask(f, -f + 0.3)[:, : w - 3].all()


def test_consistency_mask_flags_occluded_region():
    h, w, side, move = 128, 192, 48, 8
    background = texture(h, w, seed=1)
    square = texture(side, side, seed=2)
    y0, x0 = (h - side) // 2, 40
    a = background.copy()
    a[y0 : y0 + side, x0 : x0 + side] = square
    b = background.copy()
    b[y0 : y0 + side, x0 + move : x0 + move + side] = square

    fwd, bwd = compute_flow_pair(a, b)
    mask_a = consistency_mask(fwd, bwd)
    mask_b = consistency_mask(bwd, fwd)
    rows = slice(y0 + 4, y0 + side - 4)
    # Background of a that the square covers in b: occluded, so inconsistent.
    occluded = mask_a[rows, x0 + side + 2 : x0 + side + move - 2]
    assert (~occluded).mean() > 0.8
    # Background of b that the square uncovered: no match in a.
    revealed = mask_b[rows, x0 + 2 : x0 + move - 2]
    assert (~revealed).mean() > 0.8
    # Far background and the square's interior are consistent, with the right flow.
    assert mask_a[4 : y0 - 6, 4:-4].mean() > 0.95
    inner = (slice(y0 + 8, y0 + side - 8), slice(x0 + 8, x0 + side - 8))
    assert mask_a[inner].mean() > 0.95
    assert np.abs(fwd[inner][..., 0] - move).mean() < 0.2


# ---------------------------------------------------------------------------- warp


def test_warp_subpixel_ramp_is_exact():
    h, w = 12, 40
    ramp = np.tile(np.arange(w, dtype=np.float32) * 2.0, (h, 1))
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = 0.5
    out = warp(ramp, flow)
    np.testing.assert_allclose(out[:, : w - 1], ramp[:, : w - 1] + 1.0, atol=1e-3)
    # Border replicate: sampling past the right edge gives the edge value.
    flow[..., 0] = 100.0
    np.testing.assert_allclose(warp(ramp, flow), np.full((h, w), ramp[0, -1]))


def test_warp_keeps_dtype_and_channels():
    img = texture(16, 16, seed=3)
    zero = np.zeros((16, 16, 2), np.float32)
    np.testing.assert_array_equal(warp(img, zero), img)
    one = warp(img[..., :1], zero)
    assert one.shape == (16, 16, 1) and one.dtype == np.uint8
    many = np.random.default_rng(0).random((16, 16, 7)).astype(np.float32)
    shift = zero.copy()
    shift[..., 1] = 1.0
    out = warp(many, shift)
    assert out.shape == (16, 16, 7)
    np.testing.assert_allclose(out[:-1], many[1:], atol=1e-5)
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        warp(img, np.zeros((16, 16, 3), np.float32))


# ----------------------------------------------------------------------- composition


def test_compose_flows_analytic():
    h, w = 10, 50
    grid = identity_grid(h, w)
    f_ab = np.zeros((h, w, 2), np.float32)
    f_ab[..., 0] = 2.0
    f_bc = np.zeros((h, w, 2), np.float32)
    f_bc[..., 0] = 0.1 * grid[..., 0]
    f_bc[..., 1] = -1.0
    f_ac = compose_flows(f_ab, f_bc)
    expected_x = 2.0 + 0.1 * (grid[..., 0] + 2.0)
    np.testing.assert_allclose(f_ac[:, : w - 3, 0], expected_x[:, : w - 3], atol=1e-4)
    np.testing.assert_allclose(f_ac[..., 1], -1.0, atol=1e-6)


def test_chain_flows_sums_constant_steps():
    steps = []
    for dx, dy in [(1.0, 0.5), (2.0, -1.0), (-0.5, 0.25)]:
        f = np.zeros((8, 8, 2), np.float32)
        f[..., 0], f[..., 1] = dx, dy
        steps.append(f)
    total = chain_flows(iter(steps))
    np.testing.assert_allclose(total[..., 0], 2.5, atol=1e-5)
    np.testing.assert_allclose(total[..., 1], -0.25, atol=1e-5)
    np.testing.assert_allclose(flow_magnitude(total), np.hypot(2.5, 0.25), atol=1e-5)
    with pytest.raises(ValueError, match="at least one"):
        chain_flows([])


# ---------------------------------------------------------------------------- cache


def test_flow_pair_split_or_not_gives_the_same_flows():
    a, b = shifted_pair(2.0, 1.0, h=48, w=64)
    split = fl.compute_flow_pair(a, b, split=True)
    alone = fl.compute_flow_pair(a, b, split=False)
    for x, y in zip(split, alone):
        np.testing.assert_array_equal(x, y)


@pytest.mark.skipif(not (CLIPS / "sam2_bedroom").is_dir(), reason="shared test clips not present")
def test_a_kept_dis_object_gives_the_flows_of_fresh_ones(monkeypatch):
    # Real frames, different pairs and sizes one after the other on one kept object: OpenCV's DIS
    # keeps its buffers between calls, and nothing of one call may reach the next.
    from engine.frames import open_frames

    source = open_frames(CLIPS / "sam2_bedroom")
    frames = [source.read(n) for n in (1, 2, 3, 4)]
    small = [cv2.resize(f, (200, 120), interpolation=cv2.INTER_AREA) for f in frames]
    pairs = [(frames[0], frames[1]), (frames[2], frames[1]), (small[0], small[3]), (frames[3], frames[2]),
             (small[2], small[1])]
    fresh = [fl.compute_flow_pair(a, b, split=False) for a, b in pairs]
    created = []
    real_create = FlowParams.create

    def counting_create(self, size=None):
        created.append(size)
        return real_create(self, size)

    monkeypatch.setattr(FlowParams, "create", counting_create)
    with fl.reusing_dis():
        kept = [fl.compute_flow_pair(a, b, split=False) for a, b in pairs]
        assert len(created) == 4  # a new object only when the size changes
        fl.compute_flow_pair(*pairs[-1], split=False)
        assert len(created) == 4
    fl.compute_flow_pair(*pairs[-1], split=False)  # outside the block: a fresh object again
    assert len(created) == 5
    for (f1, b1), (f2, b2) in zip(fresh, kept):
        np.testing.assert_array_equal(f1, f2)
        np.testing.assert_array_equal(b1, b2)


def test_kept_dis_objects_stay_on_their_thread():
    a, b = shifted_pair(2.0, 1.0, h=48, w=64)
    seen = {}

    def on_thread():
        fl.keep_dis_objects()
        fl.compute_flow_pair(a, b, split=False)
        seen["objects"] = dict(fl._KEPT.objects)

    thread = threading.Thread(target=on_thread)
    thread.start()
    thread.join()
    assert len(seen["objects"]) == 1
    assert getattr(fl._KEPT, "objects", None) is None  # not this thread's


def test_flow_cache_computes_pairs_from_several_threads_at_once(tmp_path, monkeypatch):
    # The cache's lock is not held while DIS runs: two threads' misses overlap, and every entry
    # is then a hit with the values a single thread gets.
    from concurrent.futures import ThreadPoolExecutor

    inside, most = [0], [0]
    lock = threading.Lock()
    real = fl.compute_flow_pair

    def slow(a, b, *, params=None, split=True):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.2)
        try:
            return real(a, b, params=params, split=split)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(fl, "compute_flow_pair", slow)
    pairs = [shifted_pair(2.0 + i, 1.0, h=48, w=64) for i in range(4)]
    cache = FlowCache(tmp_path / "flow")
    with ThreadPoolExecutor(max_workers=2) as pool:
        got = list(pool.map(lambda p: cache.pair(*p, split=False), pairs))
    assert most[0] == 2 and cache.misses == 4
    again = FlowCache(tmp_path / "flow", memory_bytes=0)
    for (a, b), (fwd, bwd) in zip(pairs, got):
        fwd2, bwd2 = again.pair(a, b)
        np.testing.assert_array_equal(fwd, fwd2)
        np.testing.assert_array_equal(bwd, bwd2)
    assert again.hits == 4 and again.misses == 0


def test_flow_cache_hit_avoids_recompute(tmp_path, monkeypatch):
    calls = []
    real = fl.compute_flow_pair

    def counting(a, b, *, params=None, split=True):
        calls.append(1)
        return real(a, b, params=params, split=split)

    monkeypatch.setattr(fl, "compute_flow_pair", counting)
    a, b = shifted_pair(2.0, 1.0, h=48, w=64)
    cache = FlowCache(tmp_path / "flow")
    fwd1, bwd1 = cache.pair(a, b)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (0, 1)
    fwd2, bwd2 = cache.pair(a, b)
    assert len(calls) == 1 and cache.hits == 1
    # The miss returned exactly what the hit loads (float16 rounding on both paths).
    np.testing.assert_array_equal(fwd1, fwd2)
    np.testing.assert_array_equal(bwd1, bwd2)
    assert fwd2.dtype == np.float32

    # A re-run (new cache object, same folder) does not recompute.
    rerun = FlowCache(tmp_path / "flow")
    rerun.pair(a, b)
    assert len(calls) == 1 and rerun.hits == 1

    files = [f for f in os.listdir(tmp_path / "flow") if f != ".karwai-owned"]
    assert len(files) == 1 and files[0].endswith(".npy")
    assert np.load(tmp_path / "flow" / files[0]).dtype == np.float16

    # Other content, the reversed pair, or other parameters are misses.
    b2 = b.copy()
    b2[0, 0, 0] ^= 1
    cache.pair(a, b2)
    cache.pair(b, a)
    FlowCache(tmp_path / "flow", params=FlowParams.preset_only("fast")).pair(a, b)
    assert len(calls) == 4

    # A damaged cache file is recomputed, not trusted.
    target = cache.path_for(a, b)
    target.write_bytes(b"garbage")
    fwd3, _ = cache.pair(a, b)
    assert len(calls) == 5
    np.testing.assert_array_equal(fwd3, fwd1)
    assert not [f for f in os.listdir(tmp_path / "flow") if f.endswith(".tmp")]

    # A valid header with damaged data fails the checksum and is recomputed too (issue 11).
    data = bytearray(target.read_bytes())
    data[200:260] = bytes(60)
    target.write_bytes(bytes(data))
    assert np.load(target).shape == (2, 48, 64, 2)  # numpy itself would take it
    fwd4, _ = cache.pair(a, b)
    assert len(calls) == 6 and cache.damaged >= 1
    np.testing.assert_array_equal(fwd4, fwd1)

    # Another pair's entry, whole and valid, swapped in under this pair's name: not used either.
    target.write_bytes(cache.path_for(a, b2).read_bytes())
    fwd5, _ = cache.pair(a, b)
    assert len(calls) == 7
    np.testing.assert_array_equal(fwd5, fwd1)


def test_flow_cache_rejects_mismatched_frames(tmp_path):
    cache = FlowCache(tmp_path)
    with pytest.raises(ValueError, match="differ in size"):
        cache.pair(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8))


# ------------------------------------------------------------------------ real clip


@pytest.mark.skipif(not (CLIPS / "sam2_bedroom").is_dir(), reason="shared test clips not present")
def test_real_clip_flow_explains_motion():
    from engine.frames import open_frames

    src = open_frames(CLIPS / "sam2_bedroom")
    a, b = src.read(1), src.read(2)
    fwd, bwd = compute_flow_pair(a, b)
    mask = consistency_mask(fwd, bwd)
    # A child runs through the frame: most, not all, pixels are consistent.
    assert 0.7 < mask.mean() < 0.98
    warped_err = np.abs(warp(b, fwd).astype(float) - a)[mask].mean()
    still_err = np.abs(b.astype(float) - a)[mask].mean()
    assert warped_err < 0.6 * still_err


def test_consistency_mask_is_the_plain_float32_expression_bit_for_bit():
    # The mask is computed on split channels, in place; it must be the formula of its docstring
    # evaluated plainly in float32 (alpha and beta as float32), pixel for pixel.
    rng = np.random.default_rng(3)
    h, w = 23, 31
    for scale in (0.5, 6.0):
        f = ((rng.random((h, w, 2)) - 0.5) * scale).astype(np.float32)
        b = (-f + (rng.random((h, w, 2)) - 0.5) * 0.4).astype(np.float32)
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        mx, my = xs + f[..., 0], ys + f[..., 1]
        back = cv2.remap(b, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        fx, fy, bx, by = f[..., 0], f[..., 1], back[..., 0], back[..., 1]
        lhs = (fx + bx) ** 2 + (fy + by) ** 2
        rhs = np.float32(0.01) * (fx * fx + fy * fy + bx * bx + by * by) + np.float32(0.5)
        inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        np.testing.assert_array_equal(consistency_mask(f, b), (lhs < rhs) & inside)
