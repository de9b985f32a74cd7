"""engine.synth.synthesize on synthetic problems with known answers."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.synth import SynthResult, make_schedule, synthesize
import synth_reference as ref

ROOT = Path(__file__).resolve().parents[1]


def _texture(h, w, seed=0, channels=3, sigma=1.2):
    """Smoothed noise: structured enough that every patch is distinctive."""
    rng = np.random.default_rng(seed)
    noise = rng.random((h, w, channels)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), sigma)
    if blurred.ndim == 2:
        blurred = blurred[:, :, None]
    lo, hi = blurred.min(), blurred.max()
    return ((blurred - lo) / (hi - lo) * 255).astype(np.uint8)


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def _stylize(img):
    """A stand-in style: a colour remap with a blur, different from the guide."""
    return cv2.GaussianBlur(255 - img[:, :, ::-1], (3, 3), 0.8)


def test_identity_reproduces_the_style():
    guide = _texture(48, 64, seed=1)
    style = _stylize(guide)
    result = synthesize(style, [guide], [guide], guide_weights=[6.0])
    assert isinstance(result, SynthResult)
    assert result.image.shape == style.shape and result.image.dtype == np.uint8
    assert _psnr(result.image, style) > 40.0


@pytest.mark.parametrize("dx, dy", [(3, -2), (-5, 4)])
def test_known_shift_is_recovered(dx, dy):
    h, w, margin = 56, 72, 8
    big = _texture(h + 2 * margin, w + 2 * margin, seed=2)
    source = big[margin:margin + h, margin:margin + w]
    # target[y, x] = source[y - dy, x - dx]: the content moved by (dx, dy).
    target = big[margin - dy:margin - dy + h, margin - dx:margin - dx + w]
    style = _stylize(source)
    result = synthesize(style, [source], [target], guide_weights=[6.0], seed=3)
    ys, xs = np.mgrid[0:h, 0:w]
    expected_x, expected_y = xs - dx, ys - dy
    interior = ((expected_x >= 3) & (expected_x < w - 3) & (expected_y >= 3) & (expected_y < h - 3))
    hit = (result.nnf[:, :, 0] == expected_x) & (result.nnf[:, :, 1] == expected_y)
    assert hit[interior].mean() >= 0.95


def test_same_seed_gives_identical_bytes_and_other_seeds_differ():
    guide = _texture(40, 52, seed=4)
    target = np.roll(guide, 2, axis=1)
    style = _stylize(guide)
    runs = [synthesize(style, [guide], [target], guide_weights=[1.0], seed=s) for s in (7, 7, 8)]
    assert runs[0].image.tobytes() == runs[1].image.tobytes()
    assert runs[0].nnf.tobytes() == runs[1].nnf.tobytes()
    assert runs[0].error.tobytes() == runs[1].error.tobytes()
    assert runs[0].nnf.tobytes() != runs[2].nnf.tobytes()


_DIGEST_SCRIPT = """
import hashlib, sys
import numpy as np
sys.path.insert(0, {root!r})
from engine.synth import synthesize
rng = np.random.default_rng(11)
g = (rng.random((70, 90, 3)) * 255).astype(np.uint8)
t = np.roll(g, 3, axis=0)
r = synthesize(g[:, :, ::-1].copy(), [g], [t], guide_weights=[2.0], seed=5)
print(hashlib.sha256(r.image.tobytes() + r.nnf.tobytes() + r.error.tobytes()).hexdigest())
"""


def test_output_does_not_depend_on_the_thread_count():
    digests = set()
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", _DIGEST_SCRIPT.format(root=str(ROOT))],
                             env=env, capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_error_is_the_patch_error_of_the_final_nnf():
    guide = _texture(30, 40, seed=5)
    target = np.roll(guide, 1, axis=0)
    style = _stylize(guide)
    weights, style_weight, patch = [4.0], 2.0, 5
    result = synthesize(style, [guide], [target], guide_weights=weights, style_weight=style_weight,
                        patch_size=patch, seed=1)
    # Rebuild the weighted features and check the returned error against them.
    src = np.concatenate([style, guide], axis=2).astype(np.float64)
    w = np.array([style_weight / 3] * 3 + [weights[0] / 3] * 3)
    voted = result.image.astype(np.float64)  # rounding to uint8 shifts it by < 0.5
    tgt = np.concatenate([voted, target], axis=2)
    expected = ref.patch_error(src * np.sqrt(w), tgt * np.sqrt(w), result.nnf, patch)
    assert np.abs(result.error - expected).max() <= 0.02 * expected.max() + 50


def test_sizes_may_differ_and_float_input_gives_float_output():
    src_guide = _texture(40, 60, seed=6)
    tgt_guide = cv2.resize(src_guide, (75, 33))
    style = _stylize(src_guide).astype(np.float32)
    result = synthesize(style, [src_guide.astype(np.float32)], [tgt_guide.astype(np.float32)],
                        guide_weights=[1.0])
    assert result.image.shape == (33, 75, 3) and result.image.dtype == np.float32
    assert result.nnf.shape == (33, 75, 2) and result.error.shape == (33, 75)
    assert (result.nnf[:, :, 0] >= 0).all() and (result.nnf[:, :, 0] < 60).all()
    assert (result.nnf[:, :, 1] >= 0).all() and (result.nnf[:, :, 1] < 40).all()


def test_any_channel_counts_and_several_guides():
    a = _texture(36, 44, seed=7, channels=1)
    b = _texture(36, 44, seed=8, channels=5)
    style = _texture(36, 44, seed=9, channels=4)
    result = synthesize(style, [a, b], [np.roll(a, 1, 1), np.roll(b, 1, 1)], guide_weights=[1.0, 0.5],
                        extra_pass_3x3=True, vote="weighted")
    assert result.image.shape == (36, 44, 4)


def test_padded_rows_are_written_from_read_only_views(monkeypatch):
    # numba compiles a kernel per argument type, writability included: read-only views keep
    # write_padded to one compile per dtype, whatever mix of frames and styles comes in.
    from engine.synth import kernels

    seen = []
    real = kernels.write_padded

    def spy(image, *args):
        seen.append((image.dtype, image.flags.writeable))
        return real(image, *args)

    monkeypatch.setattr(kernels, "write_padded", spy)
    guide = _texture(30, 40, seed=3)
    frozen = guide.copy()
    frozen.flags.writeable = False
    style = _texture(30, 40, seed=4)
    first = synthesize(style, [frozen, guide.astype(np.float32)], [guide, frozen.astype(np.float32)],
                       guide_weights=[1.0, 1.0])
    synthesize(style, [guide], [frozen], guide_weights=[1.0], init_nnf=first.nnf)
    assert {dtype for dtype, _ in seen} == {np.dtype(np.uint8), np.dtype(np.float32)}
    assert not any(writeable for _, writeable in seen)
    assert guide.flags.writeable  # the caller's arrays keep their own flags


def test_warm_start_keeps_a_good_match_and_is_cheaper():
    h, w = 64, 80
    big = _texture(h + 10, w + 10, seed=10)
    source = big[5:5 + h, 5:5 + w]
    target = big[4:4 + h, 6:6 + w]  # moved by (-1, +1)
    style = _stylize(source)
    cold = synthesize(style, [source], [target], guide_weights=[6.0])
    warm = synthesize(style, [source], [target], guide_weights=[6.0], init_nnf=cold.nnf)
    truth = big[4:4 + h, 6:6 + w]
    assert _psnr(warm.image, _stylize(truth)) >= _psnr(cold.image, _stylize(truth)) - 0.5
    cold_schedule = make_schedule(5, warm=False)
    warm_schedule = make_schedule(5, warm=True)
    cold_work = sum(s * p for s, p in zip(cold_schedule.search_vote_iters, cold_schedule.patchmatch_iters))
    warm_work = sum(s * p for s, p in zip(warm_schedule.search_vote_iters[warm_schedule.start_level:],
                                          warm_schedule.patchmatch_iters[warm_schedule.start_level:]))
    assert warm_work < cold_work and warm_schedule.start_level > 0


def test_reuse_gives_the_same_output_and_follows_new_sources():
    h, w = 48, 64
    big = _texture(h + 10, w + 10, seed=11)
    source = big[5:5 + h, 5:5 + w]
    style = _stylize(source)
    other_style = _stylize(big[:h, :w])
    reuse = {}
    for dx in (1, 2, 3):
        target = big[5:5 + h, 5 + dx:5 + dx + w]
        for st in (style, other_style, style):  # other source arrays: prepared afresh
            kw = dict(guide_weights=[6.0, 1.0], seed=dx)
            plain = synthesize(st, [source, style], [target, target], **kw)
            again = synthesize(st, [source, style], [target, target], reuse=reuse, **kw)
            warm = synthesize(st, [source, style], [target, target], init_nnf=plain.nnf, **kw)
            warm_again = synthesize(st, [source, style], [target, target], init_nnf=plain.nnf, reuse=reuse, **kw)
            for a, b in ((plain, again), (warm, warm_again)):
                np.testing.assert_array_equal(a.image, b.image)
                np.testing.assert_array_equal(a.nnf, b.nnf)
                np.testing.assert_array_equal(a.error, b.error)
    with pytest.raises(ValueError, match="reuse must be a dict"):
        synthesize(style, [source], [source], guide_weights=[1.0], reuse=[])


def test_explicit_iterations_override_the_warm_schedule():
    schedule = make_schedule(4, warm=True, search_vote_iters=3, patchmatch_iters=5)
    assert set(schedule.search_vote_iters) == {3} and set(schedule.patchmatch_iters) == {5}


# ---------------------------------------------------------------------------
# Bad input: a ValueError that says what is wrong, never a crash.

GOOD = _texture(24, 30, seed=12)


def _call(**overrides):
    kwargs = dict(style=GOOD, source_guides=[GOOD], target_guides=[GOOD], guide_weights=[1.0])
    kwargs.update(overrides)
    style = kwargs.pop("style")
    sg = kwargs.pop("source_guides")
    tg = kwargs.pop("target_guides")
    return synthesize(style, sg, tg, **kwargs)


@pytest.mark.parametrize("overrides, message", [
    (dict(style=GOOD[:20]), "must match the style's size"),
    (dict(target_guides=[GOOD[:, :, :2]]), "source channels but 2 target channels"),
    (dict(guide_weights=[1.0, 2.0]), "2 guide_weights for 1 guides"),
    (dict(target_guides=[GOOD, GOOD]), "1 source guides but 2 target guides"),
    (dict(guide_weights=[-1.0]), "guide_weights[0] must be non-negative"),
    (dict(style_weight=-0.5), "style_weight must be non-negative"),
    (dict(uniformity=float("nan")), "uniformity must be finite"),
    (dict(style=np.full((24, 30, 3), np.nan, np.float32)), "style contains NaN or inf"),
    (dict(target_guides=[np.full((24, 30, 3), np.inf, np.float32)]), "target_guides[0] contains NaN"),
    (dict(style=np.zeros((0, 30, 3), np.uint8)), "style is empty"),
    (dict(style=GOOD[:4, :4], source_guides=[GOOD[:4, :4]]), "smaller than a 5x5 patch"),
    (dict(target_guides=[GOOD[:3, :3]]), "smaller than a 5x5 patch"),
    (dict(patch_size=4), "patch_size must be odd"),
    (dict(patch_size=1), "patch_size must be at least 3"),
    (dict(style=GOOD.astype(np.float64)), "uint8 or float32"),
    (dict(source_guides=[GOOD.astype(np.int16)]), "uint8 or float32"),
    (dict(style=np.full((24, 30, 3), 300.0, np.float32)), "must lie in 0..255"),
    (dict(style=GOOD.tolist()), "must be a numpy array"),
    (dict(source_guides=GOOD), "must be a list"),
    (dict(source_guides=[], target_guides=[], guide_weights=[]), "at least one guide"),
    (dict(vote="median"), "vote must be"),
    (dict(seed=-1), "seed must be"),
    (dict(pyramid_levels=40), "too many"),
    (dict(search_vote_iters=0), "search_vote_iters must be at least 1"),
    (dict(init_nnf=np.zeros((3, 3, 2), np.int32)), "init_nnf has shape"),
    (dict(init_nnf=np.zeros((24, 30, 2), np.float32)), "init_nnf must be an integer"),
])
def test_bad_input_is_a_clear_value_error(overrides, message):
    with pytest.raises(ValueError, match=None) as info:
        _call(**overrides)
    assert message in str(info.value)


def test_init_nnf_out_of_range_is_clamped_not_a_crash():
    nnf = np.full((24, 30, 2), 10_000, np.int32)
    result = _call(init_nnf=nnf)
    assert result.nnf[:, :, 0].max() < 30 and result.nnf[:, :, 1].max() < 24


@pytest.mark.slow
def test_kernel_tests_pass_without_jit():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(ROOT / "tests" / "test_synth_kernels.py"), str(ROOT / "tests" / "test_float16.py")],
                         env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
