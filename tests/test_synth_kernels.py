"""The numba kernels against their plain-numpy twins, on tiny inputs.

These tests also run with NUMBA_DISABLE_JIT=1 (see test_synth.py), so that the
Python semantics of the kernels are checked as well as their compiled form.
"""

import numpy as np
import pytest

from engine.synth import kernels
import synth_reference as ref

PATCH = 3


def _problem(seed, src_hw=(9, 11), tgt_hw=(8, 10), channels=4):
    rng = np.random.default_rng(seed)
    src_img = (rng.random(src_hw + (channels,)) * 50).astype(np.float32)
    tgt_img = (rng.random(tgt_hw + (channels,)) * 50).astype(np.float32)
    nnf = np.empty(tgt_hw + (2,), np.int32)
    nnf[:, :, 0] = rng.integers(0, src_hw[1], tgt_hw)
    nnf[:, :, 1] = rng.integers(0, src_hw[0], tgt_hw)
    return src_img, tgt_img, nnf


def _rows(src_img, tgt_img, patch=PATCH):
    """The kernels' layout: edge-padded rows of features."""
    r = patch // 2
    c = src_img.shape[2]
    sp = ref.padded(src_img, r)
    tp = ref.padded(tgt_img, r)
    return (np.ascontiguousarray(sp.reshape(sp.shape[0], sp.shape[1] * c)),
            np.ascontiguousarray(tp.reshape(tp.shape[0], tp.shape[1] * c)))


@pytest.mark.parametrize("seed", [0, 1])
def test_nnf_error_matches_reference(seed):
    src_img, tgt_img, nnf = _problem(seed)
    src, tgt = _rows(src_img, tgt_img)
    out = np.full(nnf.shape[:2], -1, np.float32)
    region = np.ones(nnf.shape[:2], np.uint8)
    region[0, 0] = 0
    kernels.nnf_error(src, tgt, nnf, PATCH, src_img.shape[2], region, out)
    expected = ref.patch_error(src_img, tgt_img, nnf, PATCH)
    np.testing.assert_allclose(out[region == 1], expected[region == 1], rtol=1e-5)
    assert out[0, 0] == -1  # outside the region: untouched


def test_occupancy_matches_reference():
    src_img, _, nnf = _problem(2)
    out = np.zeros(src_img.shape[:2], np.int32)
    kernels.occupancy(nnf, src_img.shape[0], src_img.shape[1], PATCH, out)
    np.testing.assert_array_equal(out, ref.occupancy(nnf, src_img.shape[:2], PATCH))


@pytest.mark.parametrize("radius", [1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_vote_matches_reference(radius, weighted):
    src_img, _, nnf = _problem(3, channels=3)
    rng = np.random.default_rng(4)
    err = (rng.random(nnf.shape[:2]) * 1000).astype(np.float32)
    region = (rng.random(nnf.shape[:2]) > 0.3).astype(np.uint8)
    out = np.full(nnf.shape[:2] + (3,), -7, np.float32)
    kernels.vote(src_img, nnf, radius, PATCH, err, weighted, region, out)
    expected = ref.vote(src_img, nnf, radius, PATCH, err if weighted else None, region)
    np.testing.assert_allclose(out[region == 1], expected[region == 1], rtol=1e-5)
    assert (out[region == 0] == -7).all()


def test_vote_with_other_channel_counts():
    src_img, _, nnf = _problem(5, channels=2)
    out = np.empty(nnf.shape[:2] + (2,), np.float32)
    region = np.ones(nnf.shape[:2], np.uint8)
    kernels.vote(src_img, nnf, 1, PATCH, np.zeros(nnf.shape[:2], np.float32), False, region, out)
    np.testing.assert_allclose(out, ref.vote(src_img, nnf, 1, PATCH), rtol=1e-5)


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("weighted", [False, True])
def test_vote_scatter_and_gather_give_the_same_bits(channels, weighted):
    # A band where at least half the pixels are voted is voted in scatter form, a sparser one by
    # gathering; a pixel must get the same bits either way (and match the reference). Matches near
    # the source's edges take the clamped path of the scatter form.
    band = kernels.VOTE_BAND_HEIGHT
    src_img, _, nnf = _problem(8, src_hw=(9, 11), tgt_hw=(band + 9, 12), channels=channels)
    err = (np.random.default_rng(9).random(nnf.shape[:2]) * 1000).astype(np.float32)
    dense = np.ones(nnf.shape[:2], np.uint8)
    sparse = np.zeros_like(dense)
    sparse[::4, ::3] = 1
    sparse[band:] = 0
    sparse[band + 2, 5] = 1
    out_dense = np.empty(nnf.shape[:2] + (channels,), np.float32)
    out_sparse = np.full_like(out_dense, -7)
    kernels.vote(src_img, nnf, 3, 5, err, weighted, dense, out_dense)
    kernels.vote(src_img, nnf, 3, 5, err, weighted, sparse, out_sparse)
    np.testing.assert_array_equal(out_sparse[sparse == 1], out_dense[sparse == 1])
    assert (out_sparse[sparse == 0] == -7).all()
    expected = ref.vote(src_img, nnf, 3, 5, err if weighted else None, dense)
    np.testing.assert_allclose(out_dense, expected, rtol=1e-5)


def test_upsample_nnf_matches_reference():
    _, _, nnf = _problem(6, src_hw=(9, 11), tgt_hw=(5, 6))
    out = kernels.upsample_nnf(nnf, 11, 13, 19, 23)
    np.testing.assert_array_equal(out, ref.upsample_nnf(nnf, (11, 13), (19, 23)))


@pytest.mark.parametrize("radius", [0, 1, 2])
def test_dilate_matches_reference(radius):
    mask = (np.random.default_rng(7).random((9, 12)) > 0.85).astype(np.uint8)
    np.testing.assert_array_equal(kernels.dilate(mask, radius), ref.dilate(mask, radius))


def test_changed_mask_dilates_moved_pixels_inside_region():
    old = np.zeros((7, 8, 3), np.float32)
    new = old.copy()
    new[3, 4, 1] = 10.0  # moved
    new[0, 0, 0] = 10.0  # moved, but outside the region that was re-voted
    region = np.ones((7, 8), np.uint8)
    region[0, 0] = 0
    out = kernels.changed_mask(old, new, np.float32(2.0), region, 1)
    expected = np.zeros((7, 8), np.uint8)
    expected[2:5, 3:6] = 1
    np.testing.assert_array_equal(out, expected)


def test_style_rows_at_offset_zero_replicate_edges_and_leave_the_guides():
    rng = np.random.default_rng(8)
    style = rng.random((5, 6, 3)).astype(np.float32)
    channels, patch = 5, 5
    tgt = np.zeros((5 + 4, (6 + 4) * channels), np.float32)
    kernels.write_padded(style, np.full(3, 2.0, np.float32), tgt, channels, 0, patch)
    got = tgt.reshape(9, 10, channels)
    np.testing.assert_allclose(got[:, :, :3], ref.padded(style * 2.0, 2))
    assert (got[:, :, 3:] == 0).all()


def test_write_padded_is_numpys_edge_pad_of_the_weighted_image():
    rng = np.random.default_rng(9)
    image = (rng.random((6, 7, 4)) * 255).astype(np.float32)
    scales = rng.random(4).astype(np.float32)
    channels, offset, patch = 6, 2, 5
    tgt = np.zeros((6 + 4, (7 + 4) * channels), np.float32)
    kernels.write_padded(image, scales, tgt, channels, offset, patch)
    got = tgt.reshape(10, 11, channels)
    expected = np.pad(image * scales, ((2, 2), (2, 2), (0, 0)), mode="edge")
    np.testing.assert_array_equal(got[:, :, offset:], expected)
    assert (got[:, :, :offset] == 0).all()


def test_advect_nnf_is_the_numpy_nearest_sample():
    rng = np.random.default_rng(10)
    h, w = 9, 11
    nnf = rng.integers(0, 30, (h, w, 2)).astype(np.int32)
    flow = (rng.standard_normal((h, w, 2)) * 4).astype(np.float32)
    flow[0, 0] = (0.5, -0.5)  # halves round to even, as np.rint
    flow[1, 1] = (100.0, -100.0)  # far outside: clamped
    out = np.empty_like(nnf)
    kernels.advect_nnf(nnf, flow, out)
    ys, xs = np.mgrid[0:h, 0:w]
    px = np.clip(np.rint(xs + flow[:, :, 0]), 0, w - 1).astype(np.intp)
    py = np.clip(np.rint(ys + flow[:, :, 1]), 0, h - 1).astype(np.intp)
    np.testing.assert_array_equal(out, nnf[py, px])


def _sweep_setup(seed, uniformity):
    src_img, tgt_img, nnf = _problem(seed, src_hw=(12, 14), tgt_hw=(20, 9))
    src, tgt = _rows(src_img, tgt_img)
    c = src_img.shape[2]
    err = np.empty(nnf.shape[:2], np.float32)
    everywhere = np.ones(nnf.shape[:2], np.uint8)
    kernels.nnf_error(src, tgt, nnf, PATCH, c, everywhere, err)
    occ = np.zeros(src_img.shape[:2], np.int32)
    kernels.occupancy(nnf, src_img.shape[0], src_img.shape[1], PATCH, occ)
    omega_best = nnf.shape[0] * nnf.shape[1] / (src_img.shape[0] * src_img.shape[1]) * PATCH ** 2
    occ_scale = np.float32(uniformity / (PATCH ** 2 * omega_best))
    return src_img, tgt_img, src, tgt, nnf, err, occ, occ_scale


@pytest.mark.parametrize("forward", [True, False])
@pytest.mark.parametrize("uniformity", [0.0, 3500.0])
def test_patchmatch_sweep_never_raises_a_pixels_cost(forward, uniformity):
    src_img, tgt_img, src, tgt, nnf, err, occ, occ_scale = _sweep_setup(9, uniformity)
    before_nnf = nnf.copy()
    before_cost = err + occ_scale * occ[nnf[:, :, 1], nnf[:, :, 0]]
    active = np.ones(nnf.shape[:2], np.uint8)
    active[4, 4] = 0
    changed = np.zeros(nnf.shape[:2], np.uint8)
    radii = np.array([1, 2, 4, 16], np.int32)
    kernels.patchmatch_sweep(src, tgt, PATCH, src_img.shape[2], nnf, nnf.copy(), err, occ,
                             occ_scale, radii, 12345, forward, active, changed)
    after_cost = err + occ_scale * occ[nnf[:, :, 1], nnf[:, :, 0]]
    assert (after_cost <= before_cost * (1 + 1e-6) + 1e-4).all()
    assert (after_cost < before_cost).mean() > 0.3  # the sweep does improve things
    # The error it keeps is the true error of the match it keeps.
    np.testing.assert_allclose(err, ref.patch_error(src_img, tgt_img, nnf, PATCH), rtol=1e-4)
    # Matches stay inside the source, frozen pixels stay put, `changed` tells the truth.
    assert (nnf[:, :, 0] >= 0).all() and (nnf[:, :, 0] < src_img.shape[1]).all()
    assert (nnf[:, :, 1] >= 0).all() and (nnf[:, :, 1] < src_img.shape[0]).all()
    assert (nnf[4, 4] == before_nnf[4, 4]).all()
    np.testing.assert_array_equal(changed.astype(bool), (nnf != before_nnf).any(axis=2))


def test_patchmatch_sweep_is_reproducible():
    results = []
    for _ in range(2):
        src_img, _, src, tgt, nnf, err, occ, occ_scale = _sweep_setup(10, 3500.0)
        kernels.patchmatch_sweep(src, tgt, PATCH, src_img.shape[2], nnf, nnf.copy(), err, occ,
                                 occ_scale, np.array([1, 2, 8], np.int32), 777, True,
                                 np.ones(nnf.shape[:2], np.uint8), np.zeros(nnf.shape[:2], np.uint8))
        results.append(nnf.copy())
    np.testing.assert_array_equal(results[0], results[1])


def test_kernels_release_the_gil_and_keep_infinities_defined():
    """Every kernel is nogil (a job thread never stalls the interpreter), and none uses
    the fast-math flags that make an infinite or NaN value undefined behaviour."""
    from numba import config
    from numba.core.registry import CPUDispatcher

    from engine.synth import kernels

    if config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT: the kernels are plain Python functions")

    dispatchers = {n: f for n, f in vars(kernels).items() if isinstance(f, CPUDispatcher)}
    assert len(dispatchers) >= 10
    for name, function in dispatchers.items():
        options = function.targetoptions
        assert options.get("nogil") is True, name
        fastmath = options.get("fastmath", False)
        assert fastmath is False or not ({"nnan", "ninf", "fast"} & set(fastmath)), name
