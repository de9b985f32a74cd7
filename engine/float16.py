"""float16 <-> float32 conversions that match NumPy's ``astype`` bit for bit, on all cores.

NumPy converts half floats one element at a time on one thread: about 90 ms
for a 1080p flow pair each way, paid on every flow-cache store and load.
numba has no float16 type, so these kernels work on the bits: a 64 K-entry
table for half to single (exact by construction: NumPy fills it), and
NumPy's own round-half-to-even algorithm (``npy_floatbits_to_halfbits`` in
``numpy/core/src/npymath/halffloat.c``) for single to half.
"""

import numpy as np
from numba import config, njit, prange

__all__ = ["to_float16", "to_float32"]

#: float32 value of every float16 bit pattern, made by NumPy itself.
_HALF_TO_SINGLE = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


@njit(cache=True, nogil=True, parallel=True)
def _half_to_single(bits, table, out):
    for i in prange(bits.size):
        out[i] = table[bits[i]]


@njit(cache=True, nogil=True, inline="always")
def _single_to_half_bits(f):
    # numpy/core/src/npymath/halffloat.c, npy_floatbits_to_halfbits, ties to even.
    h_sgn = (f & 0x80000000) >> 16
    f_exp = f & 0x7F800000
    if f_exp >= 0x47800000:
        if f_exp == 0x7F800000:
            f_sig = f & 0x007FFFFF
            if f_sig != 0:
                ret = 0x7C00 + (f_sig >> 13)
                if ret == 0x7C00:
                    ret += 1  # a NaN stays a NaN
                return h_sgn + ret
        return h_sgn + 0x7C00  # inf, or overflow to inf
    if f_exp <= 0x38000000:
        if f_exp < 0x33000000:
            return h_sgn  # underflow to a signed zero
        e = f_exp >> 23
        f_sig = (0x00800000 + (f & 0x007FFFFF)) >> (113 - e)
        if (f_sig & 0x00003FFF) != 0x00001000 or (f & 0x000007FF) != 0:
            f_sig += 0x00001000
        return h_sgn + (f_sig >> 13)
    h_exp = (f_exp - 0x38000000) >> 13
    f_sig = f & 0x007FFFFF
    if (f_sig & 0x00003FFF) != 0x00001000:
        f_sig += 0x00001000
    return h_sgn + h_exp + (f_sig >> 13)  # a carry out of the significand bumps the exponent


@njit(cache=True, nogil=True, parallel=True)
def _single_to_half(bits, out):
    for i in prange(bits.size):
        out[i] = _single_to_half_bits(np.int64(bits[i]))


def to_float32(array):
    """``array.astype(np.float32)`` for a float16 array, the same bits, on numba's threads.

    Parameters
    ----------
    array : numpy.ndarray
        float16, any shape.

    Returns
    -------
    numpy.ndarray
        A new C-contiguous float32 array of the same shape.
    """
    if not isinstance(array, np.ndarray) or array.dtype != np.float16:
        raise ValueError(f"to_float32 takes a float16 array, got {getattr(array, 'dtype', type(array).__name__)}")
    if config.DISABLE_JIT:  # the kernel would be a Python loop over every element
        return array.astype(np.float32)
    bits = np.ascontiguousarray(array).view(np.uint16).reshape(-1)
    out = np.empty(array.shape, np.float32)
    _half_to_single(bits, _HALF_TO_SINGLE, out.reshape(-1))
    return out


def to_float16(array, *, out=None):
    """``array.astype(np.float16)`` for a float32 array, the same bits, on numba's threads.

    Parameters
    ----------
    array : numpy.ndarray
        float32, any shape.
    out : numpy.ndarray, optional
        A C-contiguous float16 array of the same shape to write into.

    Returns
    -------
    numpy.ndarray
        ``out``, or a new C-contiguous float16 array of the same shape (values
        past the half range become infinities, as in NumPy).
    """
    if not isinstance(array, np.ndarray) or array.dtype != np.float32:
        raise ValueError(f"to_float16 takes a float32 array, got {getattr(array, 'dtype', type(array).__name__)}")
    if out is None:
        out = np.empty(array.shape, np.float16)
    elif (not isinstance(out, np.ndarray) or out.dtype != np.float16 or out.shape != array.shape
          or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous float16 array of shape {array.shape}")
    if config.DISABLE_JIT:
        out[...] = array.astype(np.float16)
        return out
    bits = np.ascontiguousarray(array).view(np.uint32).reshape(-1)
    _single_to_half(bits, out.view(np.uint16).reshape(-1))
    return out
