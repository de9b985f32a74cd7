"""Finishing of propagated frames (engine.propagation.refine): temporal smoothing and detail restoration."""

import cv2
import numpy as np
import pytest

from engine.flow import compute_flow, consistency_mask, warp
from engine.frames import open_frames
from engine.propagation import JobSettings, propagate, refine
from test_propagate import CLIPS, _psnr, _read, make_clip, style


def _texture(h=48, w=64, seed=0, blur=1.0):
    rng = np.random.default_rng(seed)
    img = rng.random((h, w, 3)).astype(np.float32)
    if blur:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.float32)


def _contrast(img, gain):
    """Every detail band of the result is exactly ``gain`` times the image's (blurs are linear)."""
    mean = img.mean()
    return (img - mean) * np.float32(gain) + mean


def _reference_restore(image, gains):
    bands, base = refine.detail_bands(image)
    return base + sum(np.float32(g) * b for g, b in zip(gains, bands))


# ---------------------------------------------------------------------------
# Detail bands and restoration


def test_detail_bands_sum_back_to_the_image():
    img = _texture()
    bands, base = refine.detail_bands(img)
    assert len(bands) == len(refine.BAND_SIGMAS)
    np.testing.assert_allclose(sum(bands) + base, img, atol=1e-3)
    # the finest band holds the most pixel-to-pixel variation
    assert np.abs(np.diff(bands[0], axis=1)).mean() > np.abs(np.diff(bands[2], axis=1)).mean()


def test_detail_ratio_of_a_frame_to_itself_is_one_and_follows_a_known_contrast():
    frame = _texture(seed=1)
    np.testing.assert_allclose(refine.detail_ratio(frame, frame), 1.0, rtol=1e-6)
    np.testing.assert_allclose(refine.detail_ratio(_contrast(frame, 2.0), frame), 2.0, rtol=1e-4)


def test_restore_detail_takes_the_frame_energy_computed_beforehand():
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    image = cv2.GaussianBlur(frame.astype(np.float32), (0, 0), 1.5)
    ratio = np.array([0.7, 0.9, 1.1])
    np.testing.assert_array_equal(
        refine.restore_detail(image, frame, ratio),
        refine.restore_detail(image, None, ratio, frame_energy=refine.detail_energy(frame)))


def test_restore_detail_applies_the_predicted_gain_per_band():
    frame = _texture(seed=2)
    stylized = _contrast(frame, 1.5)  # a style with more contrast in its detail than its frame
    ratio = refine.detail_ratio(stylized, frame)
    soft = _contrast(frame, 0.5)  # the same picture with its detail faded to a third of the style's
    out = refine.restore_detail(soft, frame, ratio, targets=(1.0, 1.0, 1.0))
    np.testing.assert_allclose(out, _reference_restore(soft, (3.0, 3.0, 3.0)), atol=1e-2)
    targets = (0.8, 1.2, 1.0)
    out = refine.restore_detail(soft, frame, ratio, targets=targets)
    np.testing.assert_allclose(out, _reference_restore(soft, [3.0 * t for t in targets]), atol=1e-2)


def test_restore_detail_brings_a_blurred_style_closer_to_the_truth():
    frame = _texture(seed=3, blur=0.7)
    stylized = _contrast(frame, 1.5)
    soft = cv2.GaussianBlur(stylized, (0, 0), 0.8)  # what averaging votes does
    out = refine.restore_detail(soft, frame, refine.detail_ratio(stylized, frame), targets=(1.0, 1.0, 1.0))
    assert _psnr(out, stylized) > _psnr(soft, stylized) + 1.0
    def gradient(img):
        return np.hypot(np.diff(img, axis=0)[:, :-1], np.diff(img, axis=1)[:-1]).mean()
    assert abs(gradient(out) / gradient(stylized) - 1) < 0.5 * abs(gradient(soft) / gradient(stylized) - 1)


def test_restore_detail_never_removes_detail_and_caps_its_gain():
    frame = _texture(seed=4)
    ratio = np.ones(len(refine.BAND_SIGMAS))
    crisp = _contrast(frame, 2.0)
    np.testing.assert_allclose(refine.restore_detail(crisp, frame, ratio), crisp, atol=1e-3)
    flat = _contrast(frame, 0.01)
    out = refine.restore_detail(flat, frame, ratio * 1000, targets=(1.0, 1.0, 1.0), max_gain=4.0)
    np.testing.assert_allclose(out, _reference_restore(flat, (4.0, 4.0, 4.0)), atol=1e-3)


def test_restore_detail_keeps_alpha_and_handles_a_flat_image():
    frame = _texture(seed=4)
    rgba = np.dstack([_contrast(frame, 0.5), np.full(frame.shape[:2], 200.0, np.float32)])
    rgba[5:9, 5:9, 3] = 0.0
    out = refine.restore_detail(rgba, frame, refine.detail_ratio(frame, frame))
    assert out.shape == rgba.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :, 3], rgba[:, :, 3])
    assert refine.detail_energy(out)[0] > refine.detail_energy(rgba)[0]
    flat = np.full((16, 16, 3), 90, np.uint8)
    np.testing.assert_array_equal(refine.restore_detail(flat, frame[:16, :16], np.ones(3)), flat)


# ---------------------------------------------------------------------------
# Temporal smoothing


def test_smoothing_step_with_a_still_camera_is_a_plain_mix():
    cur, prev = _texture(seed=5), _texture(seed=6)
    zero = np.zeros(cur.shape[:2] + (2,), np.float32)
    out = refine.smoothing_step(cur, prev, zero, zero, strength=0.8)
    np.testing.assert_allclose(out, 0.2 * cur + 0.8 * prev, atol=1e-3)
    np.testing.assert_array_equal(refine.smoothing_step(cur, prev, zero, zero, strength=0.0), cur)


def test_smoothing_step_follows_a_known_shift():
    big = _texture(48, 80, seed=7)
    prev, cur = big[:, :64], big[:, 5:69]  # the camera moved 5 px to the right
    to_prev = np.zeros((48, 64, 2), np.float32)
    to_prev[..., 0] = 5.0
    from_prev = -to_prev
    noisy = cur + np.random.default_rng(0).normal(0, 20, cur.shape).astype(np.float32)
    out = refine.smoothing_step(noisy, prev, to_prev, from_prev, strength=0.8)
    inner = (slice(None), slice(0, 55))  # where the shifted previous frame covers this one
    assert np.abs(out[inner] - cur[inner]).mean() < 0.3 * np.abs(noisy[inner] - cur[inner]).mean()


def test_smoothing_step_leaves_pixels_where_the_flow_is_inconsistent():
    cur, prev = _texture(seed=8), _texture(seed=9)
    to_prev = np.zeros(cur.shape[:2] + (2,), np.float32)
    from_prev = np.zeros_like(to_prev)
    from_prev[:, 32:, 0] = 12.0  # the way back disagrees on the right half
    out = refine.smoothing_step(cur, prev, to_prev, from_prev, strength=0.8)
    np.testing.assert_array_equal(out[:, 40:], cur[:, 40:])
    np.testing.assert_allclose(out[:, :20], 0.2 * cur[:, :20] + 0.8 * prev[:, :20], atol=1e-3)


# ---------------------------------------------------------------------------
# In a job


@pytest.mark.parametrize("value", [-0.1, 1.0, float("nan"), "0.5", True])
def test_bad_temporal_smoothing_is_named(value):
    with pytest.raises(ValueError, match="temporal_smoothing"):
        JobSettings(temporal_smoothing=value)


def test_bad_restore_detail_is_named():
    with pytest.raises(ValueError, match="restore_detail"):
        JobSettings(restore_detail="yes")


def _sharpness(out, truth):
    def grad(img):
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)).mean()
    return grad(out) / grad(truth)


def test_keys_stay_exact_and_the_finishing_changes_only_the_frames_between(tmp_path):
    frames = make_clip(tmp_path / "in", n=8, dx=2)
    keys = {1: style(frames[1]), 8: style(frames[8])}
    outs = {}
    for name, smoothing, restore in (("plain", 0.0, False), ("finished", 0.8, True)):
        result = propagate(tmp_path / "in", keys, out=tmp_path / name,
                           settings=JobSettings(quality="draft", temporal_smoothing=smoothing,
                                                restore_detail=restore))
        outs[name] = [_read(p)[:, :, :3] for p in result.frames]
        np.testing.assert_array_equal(outs[name][0], keys[1])
        np.testing.assert_array_equal(outs[name][-1], keys[8])
    truths = [style(frames[t]) for t in sorted(frames)]
    changed = [not np.array_equal(a, b) for a, b in zip(outs["plain"][1:-1], outs["finished"][1:-1])]
    assert any(changed)
    psnr_plain = np.mean([_psnr(o, t) for o, t in zip(outs["plain"][1:-1], truths[1:-1])])
    psnr_finished = np.mean([_psnr(o, t) for o, t in zip(outs["finished"][1:-1], truths[1:-1])])
    # An exact pan is copied exactly by the passes; filtering can only cost a little there.
    assert psnr_finished > psnr_plain - 1.0


@pytest.mark.skipif(not (CLIPS / "sam2_bedroom").is_dir(), reason="the shared test clips are absent")
def test_on_a_real_clip_smoothing_removes_flicker_and_restoration_sharpens(tmp_path):
    clip = tmp_path / "in"
    clip.mkdir()
    n = 8
    for t in range(1, n + 1):
        img = cv2.imread(str(CLIPS / "sam2_bedroom" / f"{t:04d}.jpg"))
        cv2.imwrite(str(clip / f"{t:04d}.png"), cv2.resize(img, (320, 180), interpolation=cv2.INTER_AREA))
    source = open_frames(clip)
    frames = {t: source.read(t) for t in range(1, n + 1)}
    truths = {t: cv2.stylization(frames[t], sigma_s=40, sigma_r=0.35) for t in frames}
    keys = {1: truths[1], n: truths[n]}
    runs = {}
    for name, smoothing, restore in (("plain", 0.0, False), ("smooth", 0.8, False), ("finished", 0.8, True)):
        result = propagate(clip, keys, out=tmp_path / name,
                           settings=JobSettings(quality="balanced", temporal_smoothing=smoothing,
                                                restore_detail=restore))
        runs[name] = {t: _read(p)[:, :, :3] for t, p in zip(frames, result.frames)}

    def warp_error(outputs):
        errs = []
        for t in range(2, n):
            to_prev, from_prev = compute_flow(frames[t], frames[t - 1]), compute_flow(frames[t - 1], frames[t])
            valid = consistency_mask(to_prev, from_prev)
            diff = np.abs(outputs[t].astype(np.float32) - warp(outputs[t - 1], to_prev).astype(np.float32))
            errs.append(diff.mean(axis=2)[valid].mean())
        return np.mean(errs)

    def mean_over_frames(metric, outputs):
        return np.mean([metric(outputs[t], truths[t]) for t in range(2, n)])

    assert warp_error(runs["smooth"]) < 0.9 * warp_error(runs["plain"])
    assert mean_over_frames(_sharpness, runs["finished"]) > mean_over_frames(_sharpness, runs["smooth"]) + 0.03
    assert mean_over_frames(_sharpness, runs["finished"]) > 0.9
    # Less flicker and more detail for a small loss of fidelity (-0.4 dB here at 320x180;
    # -0.4 to +0.6 dB on the full-size clips of the benchmark).
    for name in ("smooth", "finished"):
        assert mean_over_frames(_psnr, runs[name]) > mean_over_frames(_psnr, runs["plain"]) - 0.7


@pytest.mark.parametrize("blend_mode", ["weighted", "crossfade", "poisson"])
@pytest.mark.parametrize("smoothing", [0.0, 0.8])
def test_finishing_gives_the_same_frames_whatever_memory_and_threads_it_has(tmp_path, monkeypatch, blend_mode,
                                                                             smoothing):
    # The finishing blends on worker threads ahead of its first sweep and keeps what the second
    # needs in memory up to FINISH_MEMORY_BYTES (in the work folder beyond): neither may change a byte.
    from engine.propagation import finish, side_by_side

    make_clip(tmp_path / "in", n=7, dx=2)
    frames = open_frames(tmp_path / "in")
    keys = {1: style(frames.read(1)), 7: style(frames.read(7))}
    settings = JobSettings(quality="draft", blend=blend_mode, temporal_smoothing=smoothing)
    outs = {}
    for name, memory, workers in (("threads", finish.FINISH_MEMORY_BYTES, 2), ("none", 0, 0), ("one", 0, 1)):
        monkeypatch.setattr(finish, "FINISH_MEMORY_BYTES", memory)
        monkeypatch.setattr(side_by_side, "tail_workers", lambda pixels, workers=workers: workers)
        result = propagate(tmp_path / "in", keys, out=tmp_path / name, settings=settings)
        outs[name] = [p.read_bytes() for p in result.frames]
    assert outs["threads"] == outs["none"] == outs["one"]


def test_smoothing_step_and_weighted_blend_are_their_plain_expressions_bit_for_bit():
    # Both run a channel at a time; the values must be those of the broadcast expressions.
    from engine.flow import consistency_mask, warp
    from engine.propagation import blend

    rng = np.random.default_rng(4)
    h, w = 21, 34
    cur = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    prev = (rng.random((h, w, 3)) * 255).astype(np.float32)
    f = ((rng.random((h, w, 2)) - 0.5) * 3).astype(np.float32)
    b = (-f + (rng.random((h, w, 2)) - 0.5)).astype(np.float32)
    weight = (np.float32(0.8) * consistency_mask(f, b).astype(np.float32))[:, :, None]
    expected = cur.astype(np.float32) + weight * (warp(prev, f) - cur.astype(np.float32))
    got = refine.smoothing_step(cur, prev, f, b, strength=0.8)
    assert got.dtype == np.float32 and got.tobytes() == expected.tobytes()

    err_f = (rng.random((h, w)) * 900).astype(np.float32)
    err_b = (rng.random((h, w)) * 900).astype(np.float32)
    wf = blend.error_weights(err_f, err_b, position=0.4)[:, :, None]
    expected = wf * cur.astype(np.float32) + (1.0 - wf) * prev
    got = blend.weighted_blend(cur, err_f, prev, err_b, position=0.4)
    assert got.dtype == np.float32 and got.tobytes() == expected.tobytes()
