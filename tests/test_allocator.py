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


# A fresh process starts four threads that each allocate and hold 1 MiB, then counts glibc's
# arenas in malloc_info's XML (one <heap nr=...> element per arena, glibc's malloc/malloc.c).
ARENAS = r"""
import ctypes, ctypes.util, os, re, sys, tempfile, threading
sys.path.insert(0, sys.argv[1])
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.fdopen.restype = ctypes.c_void_p
if sys.argv[2] == "tuned":
    from engine.allocator import tune_for_jobs
    assert tune_for_jobs()
elif sys.argv[2] == "job":
    import cv2, numpy as np
    from pathlib import Path
    from engine import propagate
    clip = Path(sys.argv[3]) / "clip"
    clip.mkdir()
    frame = np.random.default_rng(0).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    for n in range(1, 5):
        cv2.imwrite(str(clip / f"{n:04d}.png"), np.roll(frame, n, axis=1))
    propagate(clip, {1: frame, 4: frame}, out=Path(sys.argv[3]) / "out")
held, ready = [], threading.Barrier(5)
def hold():
    held.append(libc.malloc(1 << 20))
    ready.wait()
threads = [threading.Thread(target=hold) for _ in range(4)]
for t in threads:
    t.start()
ready.wait()
with tempfile.TemporaryFile() as f:
    fp = libc.fdopen(os.dup(f.fileno()), b"w")
    libc.malloc_info(0, ctypes.c_void_p(fp))
    libc.fclose(ctypes.c_void_p(fp))
    f.seek(0)
    print(len(re.findall(rb"<heap nr=", f.read())))
"""


def _arenas(mode, *args, env=None):
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", ARENAS, str(ROOT), mode, *map(str, args)], capture_output=True,
                         text=True, env={**base, **(env or {})}, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@needs_glibc
def test_a_tuned_process_keeps_one_arena_for_all_its_threads():
    assert _arenas("default") > 1
    assert _arenas("tuned") == 1


@needs_glibc
def test_a_job_sets_the_arena_limit_before_its_first_thread(tmp_path):
    # The job itself wakes OpenCV's thread pool (at 640x360; OpenCV runs small images on the
    # calling thread), and the limit must already hold then.
    assert _arenas("job", tmp_path) == 1


@needs_glibc
def test_a_process_started_with_the_job_environment_has_one_arena_from_its_start():
    from engine.allocator import SETTINGS, job_environment

    env = job_environment({})
    assert env == {variable: str(value) for _param, value, variable in SETTINGS}
    assert _arenas("default", env=env) == 1
    # A value already there (the user's) stays.
    assert job_environment({"MALLOC_ARENA_MAX": "4"})["MALLOC_ARENA_MAX"] == "4"
