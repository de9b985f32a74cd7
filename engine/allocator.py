"""How the C allocator keeps the memory of a job's large arrays (glibc only), and NumPy's huge pages.

A propagation job allocates and frees arrays of 2 to 75 MB several times a
frame, from several threads (the passes, flow, finishing and numba's). With
glibc's defaults each thread that meets contention gets an arena of its own
(up to 8 per core), and every arena keeps what it freed, so the process holds
the peak of every thread at once; and arrays above a threshold that glibc
raises and lowers as they come are fresh mappings, zeroed by the kernel page
by page on every frame. Measured on a 1080p job (10 frames, the two passes of
the span side by side, 2 cores): peak RSS 1.70 to 1.97 GB with the defaults,
1.52 GB with two arenas and fixed thresholds, and 4 to 5 s less kernel time.

One arena, not two: with two, which one a new thread gets is glibc's round
robin (``reuse_arena`` in ``malloc/arena.c``), so the flow task's freed DIS
buffers (about 600 MB at 1080p) sat in one arena while the passes' threads
could grow the other. Eight alternating 1080p jobs of ``bench speed``'s worker
on 2 cores: peak RSS 1294 to 1339 MiB with one arena against 1346 to 1829 MiB
with two (one run in four or five past 1.7 GiB), 6.0 to 6.6 s of kernel time
against 8.6 to 10.5 s, and each job 1.5 to 5 s faster (no slower at 640x360).
Small blocks come from each thread's cache (glibc's tcache) without the
arena's lock, and the large arrays are mostly allocated under the GIL anyway. ``mallopt`` sets the limit for arenas made after it, and a
thread that allocated before it has already made one (OpenCV's first parallel
call starts a pool whose threads do): so a job calls :func:`tune_for_jobs` before anything else,
and a process started only to run jobs gets the settings in its environment
(:func:`job_environment`), which glibc reads before any thread exists.

The options are glibc's ``mallopt`` parameters, from ``<malloc.h>``
(``M_TRIM_THRESHOLD`` -1, ``M_MMAP_THRESHOLD`` -3, ``M_ARENA_MAX`` -8); the
environment variables ``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` set the same (mallopt(3), its parameters'
notes), and a value the user set there is left alone. Elsewhere (macOS,
Windows, musl) nothing is done.

NumPy's huge-page advice is turned off as well (on Linux it asks the kernel,
``madvise(MADV_HUGEPAGE)``, for 2 MB pages behind every array of 4 MB or
more). Where the kernel's ``transparent_hugepage/defrag`` is ``madvise``, a
common default, the first touch of such an array makes the kernel compact
memory on the spot to find those pages: on the test machine 0.4 to 0.8 s for
each new 75 MB buffer of a 1080p pass, against 12 ms with ordinary pages. In
one hour a 1080p job took 22.5 to 25 s without the advice and 27 to 28 s with
it; an hour later, the kernel's memory compacted by then, 28 to 30 s either
way. At 640x360, where the buffers are small, no difference. NumPy reads
``NUMPY_MADVISE_HUGEPAGE`` when imported (``numpy/__init__.py``) and passes it
to ``multiarray._set_madvise_hugepage``; a value the user set there is left alone.
"""

import ctypes
import ctypes.util
import os
import sys
import threading

__all__ = ["tune_for_jobs", "job_environment"]

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

#: (parameter, value, the environment variable that sets it instead).
SETTINGS = (
    # One arena: every thread of the job reuses what any other freed (see the module's notes).
    (M_ARENA_MAX, 1, "MALLOC_ARENA_MAX"),
    # Blocks up to 32 MiB (glibc's largest, HEAP_MAX_SIZE / 2) come from the heap and are reused.
    (M_MMAP_THRESHOLD, 32 << 20, "MALLOC_MMAP_THRESHOLD_"),
    # Free memory at the top of the heap goes back to the system past 128 MiB, not at every free.
    (M_TRIM_THRESHOLD, 128 << 20, "MALLOC_TRIM_THRESHOLD_"),
)

_done = None
_lock = threading.Lock()


def tune_for_jobs():
    """Set glibc's allocator for a job's large arrays, and NumPy's huge-page advice off, once per process.

    See the module's notes for both.

    Returns
    -------
    bool
        True when glibc took the settings (now or at an earlier call), False
        where the C library is not glibc.
    """
    global _done
    with _lock:
        if _done is None:
            _numpy_huge_pages_off()
            _done = _apply()
        return _done


def job_environment(env):
    """``env`` (a dict, changed in place and returned) with these settings for a process started to run jobs.

    Where glibc is the C library, each setting the dict does not already have
    becomes its environment variable; glibc reads them when the process starts,
    before any of its threads has made an arena. Elsewhere ``env`` is unchanged.
    """
    if sys.platform.startswith("linux") and _glibc() is not None:
        for _param, value, variable in SETTINGS:
            env.setdefault(variable, str(value))
    return env


def _numpy_huge_pages_off():
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return
    import numpy as np

    # numpy._core from NumPy 2, numpy.core before: the setter numpy/__init__.py calls.
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    setter = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if setter is not None:
        setter(False)


def _glibc():
    """The C library when it is glibc, else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt
        libc.gnu_get_libc_version  # glibc's own symbol: musl's mallopt does nothing
    except (OSError, AttributeError):
        return None
    return libc


def _apply():
    libc = _glibc() if sys.platform.startswith("linux") else None
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = True
    for param, value, variable in SETTINGS:
        if variable not in os.environ:
            ok = bool(mallopt(param, value)) and ok
    return ok
