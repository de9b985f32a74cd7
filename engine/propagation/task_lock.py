"""The OS lock a plan's task holds while it runs, so a second run of the same task waits."""

import os
from pathlib import Path
import threading
import time

__all__ = ["TaskLock"]

_THREAD_LOCKS = {}
_THREAD_LOCKS_GUARD = threading.Lock()


class TaskLock:
    """An OS lock on one task, held while it runs; a second run of the task waits for the first.

    The OS lock of :class:`engine.safety.FolderLock` (``flock``, ``msvcrt.locking``
    on Windows) on ``OUT/.karwai-tasks/TASK.lock``, waited for instead of refused:
    the OS drops it when the holder dies, so a killed worker never leaves the task
    locked. Threads of one process are kept apart by a lock of their own, since
    some file systems give one process one lock.
    """

    def __init__(self, path, *, on_wait=None):
        self.path = Path(path)
        self.on_wait = on_wait
        self._fd = None
        with _THREAD_LOCKS_GUARD:
            self._thread_lock = _THREAD_LOCKS.setdefault(str(self.path), threading.Lock())

    def __enter__(self):
        if not self._thread_lock.acquire(blocking=False):
            if self.on_wait:
                self.on_wait(self.path)
            self._thread_lock.acquire()
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            if not _try_lock(self._fd):
                if self.on_wait:
                    self.on_wait(self.path)
                _lock(self._fd)
        except BaseException:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, *exc):
        try:
            _unlock(self._fd)
            os.close(self._fd)
        finally:
            self._fd = None
            self._thread_lock.release()


def _try_lock(fd):
    from ..safety import _try_lock as try_os_lock  # the primitive under engine.safety.FolderLock

    return try_os_lock(fd)


def _lock(fd):
    while not _try_lock(fd):
        time.sleep(0.2)


def _unlock(fd):
    if os.name == "nt":  # pragma: no cover - Windows
        import msvcrt

        os.lseek(fd, 0, 0)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)
