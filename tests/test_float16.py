"""engine.float16: the half-float conversions give NumPy's bits exactly."""

import warnings

import numpy as np
import pytest

from engine.float16 import _single_to_half_bits, to_float16, to_float32

ALL_HALVES = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)


def _bits(a):
    return a.view(np.uint16 if a.dtype == np.float16 else np.uint32)


def test_every_half_converts_to_numpys_single():
    assert np.array_equal(_bits(to_float32(ALL_HALVES)), _bits(ALL_HALVES.astype(np.float32)))


def _singles_around_every_half():
    """Singles at, between and a few ulps around every half value, ties included, plus random bits."""
    base = _bits(ALL_HALVES.astype(np.float32)).astype(np.int64)
    finite = base[np.isfinite(ALL_HALVES)]
    ties = (np.sort(finite)[:-1] + np.sort(finite)[1:]) // 2
    near = np.concatenate([finite + d for d in (-4097, -4096, -4095, -1, 1, 4095, 4096, 4097)])
    rng = np.random.default_rng(0)
    random = rng.integers(0, 1 << 32, size=2_000_000, dtype=np.uint64).astype(np.int64)
    special = np.array([0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0x7F801FFF, 0x477FEFFF, 0x477FF000,
                        0x47800000, 0x33000000, 0x32FFFFFF, 0x33000001, 0x38000000, 0x387FC000, 0x80000000])
    every = np.concatenate([finite, ties, near, random, special]) & 0xFFFFFFFF
    return every.astype(np.uint32).view(np.float32)


def test_singles_round_to_numpys_halves():
    singles = _singles_around_every_half()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy warns of its own overflows to inf
        expected = singles.astype(np.float16)
    assert np.array_equal(_bits(to_float16(singles)), _bits(expected))


def test_the_rounding_as_plain_python_matches_numpy():
    # The kernel's scalar function run by the interpreter: the check is not only of the compiled form.
    singles = _singles_around_every_half()[::997]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = _bits(singles.astype(np.float16))
    scalar = getattr(_single_to_half_bits, "py_func", _single_to_half_bits)  # plain already without the JIT
    got = [scalar(int(b)) for b in _bits(singles)]
    assert np.array_equal(np.array(got, np.uint16), expected)


def test_shapes_and_layouts_are_kept():
    a = (np.random.default_rng(1).random((2, 5, 7, 2)) * 50).astype(np.float32)
    strided = a[:, ::2, ::-1]
    half = to_float16(strided)
    assert half.shape == strided.shape and half.dtype == np.float16 and half.flags.c_contiguous
    assert np.array_equal(_bits(half), _bits(strided.astype(np.float16)))
    back = to_float32(half[:, :, 1:])
    assert back.shape == half[:, :, 1:].shape and np.array_equal(back, half[:, :, 1:].astype(np.float32))


@pytest.mark.parametrize("fn, bad", [(to_float16, np.zeros(3, np.float64)), (to_float32, np.zeros(3, np.float32)),
                                     (to_float16, [1.0, 2.0])])
def test_wrong_dtypes_are_refused(fn, bad):
    with pytest.raises(ValueError, match=fn.__name__):
        fn(bad)
