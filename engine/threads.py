"""How many threads the engine's libraries use: numba's kernels, OpenCV and PyTorch."""

import sys

__all__ = ["set_threads"]


def set_threads(threads):
    """Use at most ``threads`` worker threads in numba, OpenCV and (when loaded) PyTorch.

    Parameters
    ----------
    threads : int
        A positive count; 0 or less leaves every library at its default (all
        cores). numba cannot go above the ``NUMBA_NUM_THREADS`` its pool was
        started with, so the count is capped there.

    Notes
    -----
    PyTorch is only set when something already imported it: importing it here
    would cost seconds for jobs that never use it.
    """
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise ValueError(f"threads must be an integer, got {threads!r}")
    if threads <= 0:
        return
    try:
        import numba

        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    except (ImportError, ValueError):
        pass
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
