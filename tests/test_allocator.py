"""engine.allocator: glibc takes the job's allocator settings, and they do what they are for."""

import ctypes
import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.allocator import tune_for_jobs

ROOT = Path(__file__).resolve().parents[1]


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version
        libc.mallinfo2
    except (OSError, AttributeError):
        return None
    return libc


needs_glibc = pytest.mark.skipif(_glibc() is None, reason="glibc 2.33 or later only (mallopt, mallinfo2)")

# A fresh process allocates a 4 MiB block and reports how many blocks glibc then holds as
# separate mappings (mallinfo2's hblks): with its default threshold (128 KiB) the block is one,
# with the job's (32 MiB) it comes from the heap.
PROBE = r"""
import ctypes, ctypes.util, sys
sys.path.insert(0, sys.argv[1])
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
if sys.argv[2] == "tuned":
    from engine.allocator import tune_for_jobs
    assert tune_for_jobs()
before = libc.mallinfo2().hblks
block = libc.malloc(4 << 20)
print(libc.mallinfo2().hblks - before)
"""


def _mapped_blocks(mode, **env):
    out = subprocess.run([sys.executable, "-c", PROBE, str(ROOT), mode], capture_output=True, text=True,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **env},
                         check=True)
    return int(out.stdout.strip())


@needs_glibc
def test_glibc_takes_the_settings_once_per_process():
    assert tune_for_jobs() is True
    assert tune_for_jobs() is True


@needs_glibc
def test_large_blocks_come_from_the_heap_once_tuned():
    assert _mapped_blocks("default") == 1
    assert _mapped_blocks("tuned") == 0


@needs_glibc
def test_a_users_own_malloc_setting_is_left_alone():
    # The user asked for mappings from 1 MiB up: the job does not override it.
    assert _mapped_blocks("tuned", MALLOC_MMAP_THRESHOLD_=str(1 << 20)) == 1


HUGE_PAGES = r"""
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from engine.allocator import tune_for_jobs
tune_for_jobs()
core = getattr(np, "_core", None) or np.core
print(int(core.multiarray._get_madvise_hugepage()))
"""


def _numpy_huge_pages(**env):
    out = subprocess.run([sys.executable, "-c", HUGE_PAGES, str(ROOT)], capture_output=True, text=True,
                         env={**{k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}, **env},
                         check=True)
    return int(out.stdout.strip())


def test_a_job_turns_numpys_huge_page_advice_off_unless_the_user_set_it():
    # NumPy's own switch (numpy/__init__.py reads NUMPY_MADVISE_HUGEPAGE and calls this setter).
    assert _numpy_huge_pages() == 0
    assert _numpy_huge_pages(NUMPY_MADVISE_HUGEPAGE="1") == 1
