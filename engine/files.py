"""Files and folders the engine reads and writes, whatever they hold.

* :func:`read_regular_file` reads all of a regular file and refuses, without
  blocking, anything else (a FIFO, a device, a folder);
* :func:`write_bytes_atomic` writes through a hidden temporary name renamed over
  the final one, so a crash never leaves a truncated file behind, and
  :func:`remove_stale_temp_files` clears the temporary files that killed
  writers left;
* :func:`check_output_dir` makes sure an output folder is safe and writable;
  :func:`is_inside` says whether a path lies in a folder.

The flow cache, the job record and the image writers use these.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from pathlib import Path

from .errors import FrameError, WriteError

__all__ = ["read_regular_file", "regular_file_problem", "write_bytes_atomic", "remove_stale_temp_files",
           "check_output_dir", "is_inside"]


def regular_file_problem(path, what):
    """Why ``path`` is not a readable regular file, or ``None`` (symbolic links followed)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"{path}: broken symbolic link (its target {os.readlink(path)!r} does not exist)"
        return f"{path}: {what} not found"
    except OSError as exc:
        return f"{path}: cannot read {what} ({exc.strerror or exc})"
    if stat.S_ISDIR(st.st_mode):
        return f"{path}: is a folder, not {'an' if what[:1] in 'aeiou' else 'a'} {what}"
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        return f"{path}: is {kind}, not a regular {what} file; give a regular file"
    return None


def read_regular_file(path, *, what="file"):
    """All the bytes of a regular file; anything else is refused without blocking.

    A FIFO would block forever and ``/dev/zero`` never ends, so only regular
    files (after following symbolic links) are read, and the file is opened
    non-blocking and checked again once open, in case it was swapped meanwhile.

    Parameters
    ----------
    path : str or os.PathLike
    what : str
        What the file is, for messages ("image", "key", ...).

    Raises
    ------
    FrameError
        Naming the file, when it is missing, a broken symbolic link, a folder, a
        FIFO, device or socket, or unreadable.
    """
    problem = regular_file_problem(path, what)
    if problem:
        raise FrameError(problem)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise FrameError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FrameError(f"{path}: is not a regular file; give a regular {what} file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()  # sized from fstat, as Path.read_bytes
    except OSError as exc:
        raise FrameError(f"{path}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def is_inside(path, folder):
    """True when ``path`` is ``folder`` or lies below it (symlinks/case resolved)."""
    try:
        folder_real = Path(os.path.realpath(folder))
    except OSError:
        return False
    if not folder_real.exists():
        return False
    real = Path(os.path.realpath(path))
    for candidate in (real, *real.parents):
        if candidate == folder_real:
            return True
        try:
            if candidate.exists() and os.path.samefile(candidate, folder_real):
                return True
        except OSError:
            continue
    return False


#: errno values that mean "no space left" (disk full or quota exceeded).
_DISK_FULL_ERRNOS = frozenset(
    e for e in (getattr(errno, "ENOSPC", None), getattr(errno, "EDQUOT", None)) if e is not None
)
#: Temporary names of :func:`write_bytes_atomic`: ``.NAME.PID.HEX8.tmp``.
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<host>[0-9a-f]{4})[0-9a-f]{4}\.tmp$")
#: Where the writer's pid cannot be checked (Windows, or a file that another
#: machine is writing into a shared folder), a temporary file this old (seconds)
#: is taken as left behind by a dead process.
_STALE_TEMP_AGE = 600.0


def _host_tag():
    """Four hex digits naming this machine (host name and boot), the first half of a temporary name's
    random part: farm workers share output folders, and a pid means something only on its own machine."""
    import hashlib
    import socket

    boot = ""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()
    except OSError:
        pass
    return hashlib.sha256(f"{socket.gethostname()}|{boot}".encode()).hexdigest()[:4]


_HOST_TAG = _host_tag()


def _write_all(fd, data, durable):
    """Write ``data`` (bytes-like, or a list of them in order) to the open file ``fd`` and close it,
    flushed to disk first when ``durable``."""
    with os.fdopen(fd, "wb") as handle:
        for part in data if isinstance(data, list) else [data]:
            handle.write(part)
        handle.flush()
        if durable:
            os.fsync(handle.fileno())


def _write_error(path, exc):
    """A :class:`WriteError` naming ``path`` for an ``OSError`` raised while writing it."""
    if exc.errno in _DISK_FULL_ERRNOS:
        return WriteError(f"disk full while writing {path} ({exc.strerror or exc}); "
                          "free some space and run again to resume", errno=exc.errno)
    return WriteError(f"{path}: cannot write ({exc.strerror or exc})", errno=exc.errno)


#: Longest file name, in bytes, that common file systems take (ext4, APFS, NTFS in UTF-16 units).
_NAME_MAX = 255


def _temp_name(name):
    """``.NAME.PID.HEX8.tmp``, with NAME cut so that the whole fits in 255 bytes; the first
    four hex digits name this machine (:data:`_HOST_TAG`), the last four are random."""
    tail = f".{os.getpid()}.{_HOST_TAG}{secrets.token_hex(2)}.tmp"
    budget = _NAME_MAX - 1 - len(tail)
    raw = os.fsencode(name)
    if len(raw) > budget:
        name = raw[:budget].decode("utf-8", errors="ignore")  # a cut character is dropped
    return f".{name}{tail}"


def write_bytes_atomic(path, data, *, durable=True):
    """Write ``data`` to ``path`` atomically.

    The bytes go to a hidden temporary file in the same folder
    (``.NAME.PID.RANDOM.tmp``), are flushed to disk (with ``durable``), and the
    temporary file is renamed over ``path`` with :func:`os.replace`. On any failure the temporary
    file is removed and an existing ``path`` is left untouched; a process killed
    mid-write leaves only the temporary file, which
    :func:`remove_stale_temp_files` clears later.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its folder must exist.
    data : bytes-like or list of bytes-like
        The file content (a list is written part after part).
    durable : bool
        Flush the file to the disk before the rename (``fsync``). Only files
        whose damage is detected when read (sealed, :func:`engine.safety.seal`),
        and then recomputed, may skip it: after a power cut such a file may be
        empty or old, never silently wrong.

    Raises
    ------
    FrameError
        When the folder is missing or unwritable, or the write fails; a full disk
        gives ``"disk full while writing PATH"``.
    """
    path = Path(path)
    folder = path.parent
    tmp = folder / _temp_name(path.name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except FileNotFoundError:
        raise FrameError(f"{folder}: output folder does not exist") from None
    except OSError as exc:
        if exc.errno in _DISK_FULL_ERRNOS:
            raise _write_error(path, exc) from None
        raise WriteError(f"{folder}: cannot write here ({exc.strerror or exc})", errno=exc.errno) from None
    try:
        try:
            _write_all(fd, data, durable)
            os.replace(tmp, path)
        except OSError as exc:
            raise _write_error(path, exc) from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _pid_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: the process exists but is not ours
        return True
    return True


def remove_stale_temp_files(folder, *, name=None):
    """Remove temporary files that killed writers left in ``folder``.

    Only names made by :func:`write_bytes_atomic` (``.NAME.PID.HOST RANDOM.tmp``)
    are touched, and only those whose writing process is gone: on this machine
    by its pid, and where that cannot be checked safely (Windows, or a file
    another machine of a farm is writing into a shared folder) when it is older
    than ten minutes. Nothing else
    in the folder is looked at, and missing folders are fine.

    Parameters
    ----------
    folder : str or os.PathLike
    name : str, optional
        Only the temporary files of this destination name (in a folder that
        is not the engine's, such as the one a single stylized image goes to).

    Returns
    -------
    int
        How many files were removed.
    """
    import time

    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    now = time.time()
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None:
            continue
        if name is not None:
            stem = match.group("name")
            if stem != name and not (len(os.fsencode(entry.name)) >= _NAME_MAX - 4
                                     and name.startswith(stem)):
                continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if os.name == "nt" or match.group("host") != _HOST_TAG:
                if now - entry.stat().st_mtime < _STALE_TEMP_AGE:
                    continue
            elif _pid_alive(int(match.group("pid"))):
                continue
            os.unlink(entry.path)
            removed += 1
        except OSError:
            continue
    return removed


def check_output_dir(out_dir, source_dir=None):
    """Make sure an output folder is safe and writable, creating it if needed.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The output folder.
    source_dir : str or os.PathLike, optional
        The input frame folder (or video file). The output may not be that folder
        nor lie inside it, so that no source frame can be overwritten.

    Returns
    -------
    pathlib.Path
        ``out_dir``, which now exists.

    Raises
    ------
    FrameError
        When the output equals or lies inside the source folder, is a file, cannot
        be created, or is not writable.
    """
    out = Path(out_dir)
    if source_dir is not None:
        source = Path(source_dir)
        if source.is_dir() and is_inside(out, source):
            same = os.path.realpath(out) == os.path.realpath(source)
            where = "is" if same else "is inside"
            raise FrameError(
                f"{out}: output folder {where} the source folder {source}; "
                "choose another folder so that no source frame can be overwritten"
            )
        if source.exists() and not source.is_dir() and out.exists():
            if os.path.samefile(out, source):
                raise FrameError(f"{out}: output folder is the source video file")
    if out.exists() and not out.is_dir():
        raise FrameError(f"{out}: output path exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FrameError(f"{out}: cannot create output folder ({exc.strerror or exc})") from None
    probe = out / f".karwai-write-test.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise FrameError(f"{out}: output folder is not writable ({exc.strerror or exc})") from None
    return out


#: The name of old callers.
_is_inside = is_inside
