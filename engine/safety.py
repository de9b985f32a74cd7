"""Safety of users' files: what a job reads, writes, deletes and trusts.

One home for the rules that keep a job from losing or silently corrupting
anything:

* **Arguments.** :func:`as_path` turns a path argument into a ``Path`` or
  raises :class:`ParameterTypeError` (a ``TypeError`` and a ``ValueError``)
  naming the parameter.
* **Path clashes.** :func:`check_clashes` compares every path a job writes with
  every path it reads, with symbolic links and ``..`` resolved, before anything
  is written.
* **Ownership.** The engine deletes only what it can prove it made: files in a
  folder it created and marked with :data:`MARKER` (:func:`own_folder`,
  :func:`remove_owned`), and only names it knows; never a tree that a user named.
* **Lock.** :class:`FolderLock`: one job per output folder, an OS-level lock
  that dies with its process.
* **Checksums.** :func:`seal` and :func:`unseal`: cached intermediate data
  carries a digest, and data that does not match it is recomputed, never used.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from pathlib import Path

from .errors import FrameError, ParameterTypeError
from .files import read_regular_file, remove_stale_temp_files

__all__ = [
    "ParameterTypeError",
    "as_path",
    "check_clashes",
    "MARKER",
    "own_folder",
    "is_owned",
    "remove_owned",
    "FolderLock",
    "seal",
    "unseal",
    "file_digest",
    "new_folders",
    "remove_new_folders",
]


def as_path(name, value):
    """``value`` as a :class:`pathlib.Path`, or a clear error naming ``name``.

    Parameters
    ----------
    name : str
        The parameter's name, for the message.
    value : str or os.PathLike
        A non-empty path. ``bytes``, numbers, ``None``, arrays and lists are refused.

    Raises
    ------
    ParameterTypeError
        For a value that is not a ``str`` or ``os.PathLike`` of a ``str``.
    ValueError
        For an empty path (which would mean the current folder).
    """
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise ParameterTypeError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be an empty path")
    if "\x00" in value:
        raise ValueError(f"{name} must not contain a NUL character: {value!r}")
    return Path(value)


# --------------------------------------------------------------------------------------
# path clashes


def _resolved(path):
    """The absolute path with every symbolic link and ``..`` resolved (as far as it exists)."""
    return Path(os.path.normcase(os.path.realpath(os.path.abspath(os.fspath(path)))))


def _same(a, b, real_a, real_b):
    if real_a == real_b:
        return True
    try:
        # Another name of the same folder (a bind mount, a case-insensitive disk).
        # Files are compared by path only: an atomic write replaces a name and
        # never writes through a hard link.
        return os.path.isdir(a) and os.path.isdir(b) and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(real, real_folder, folder):
    """True when ``real`` lies strictly below ``real_folder`` (or another name of it)."""
    if real_folder in real.parents:
        return True
    try:
        if not os.path.isdir(folder):
            return False
        for parent in real.parents:
            if parent.exists() and os.path.samefile(parent, folder):
                return True
    except OSError:
        return False
    return False


def check_clashes(reads, writes):
    """Refuse a job that would write over, into or around what it reads.

    Parameters
    ----------
    reads : iterable of (str, path-like, bool)
        ``(what, path, is_folder)`` of everything the job reads: frame files and
        their folder or the video, keys, masks, style images, weights.
    writes : iterable of (str, path-like, bool)
        ``(what, path, is_folder)`` of everything it writes or may delete: the
        output file or folder, cache folders. A written folder is taken as
        written whole: nothing read may lie inside it.

    Raises
    ------
    FrameError
        Naming both paths, when a written path is a read path, lies inside a
        read folder, or a written folder holds a read path.
    """
    reads = [(what, path, folder, _resolved(path)) for what, path, folder in reads if path is not None]
    for w_what, w_path, w_folder in writes:
        w_real = _resolved(w_path)
        for r_what, r_path, r_folder, r_real in reads:
            if _same(w_path, r_path, w_real, r_real):
                relation = "is"
            elif r_folder and _inside(w_real, r_real, r_path):
                relation = "is inside"
            elif w_folder and _inside(r_real, w_real, w_path):
                relation = "holds"
            else:
                continue
            resolved = "" if str(w_real) == os.path.normcase(os.path.abspath(w_path)) else f" ({w_real})"
            raise FrameError(
                f"{w_path}{resolved}: {w_what} {relation} {r_what} {r_path}; refusing to write where "
                f"an input would be overwritten or deleted, choose another path")


def new_folders(path):
    """The folders that making ``path`` would create: itself and its missing parents, outermost first.

    Taken before a job creates its output folder, so that a job refused after
    that (a bad mask, a bad model file) removes what it made, and a refused
    call leaves nothing on disk (:func:`remove_new_folders`).
    """
    path = Path(os.path.abspath(os.fspath(path)))
    missing = []
    while not os.path.lexists(path) and path.parent != path:
        missing.append(path)
        path = path.parent
    return missing[::-1]


def remove_new_folders(folders, *, inner=()):
    """Remove the folders of :func:`new_folders` that are still empty, innermost first.

    ``inner`` names subfolders the job made in the innermost one (its working
    folder), removed first when empty. Only empty folders go (``os.rmdir``),
    so nothing that anybody wrote into them meanwhile is lost.
    """
    if not folders:
        return
    for name in inner:
        try:
            os.rmdir(Path(folders[-1]) / name)
        except OSError:
            pass
    for folder in reversed(folders):
        try:
            os.rmdir(folder)
        except OSError:
            return


# --------------------------------------------------------------------------------------
# ownership

#: Name of the file that marks a folder as made by the engine.
MARKER = ".karwai-owned"
_MARKER_TEXT = "Kar-Wai engine: this folder and the files in it that Kar-Wai named are Kar-Wai's"


def is_owned(folder):
    """True when ``folder`` holds the engine's marker (a regular file with the engine's text)."""
    path = Path(folder) / MARKER
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > 4096:
            return False
        return json.loads(path.read_text(encoding="utf-8")).get("owner") == _MARKER_TEXT
    except (OSError, ValueError, AttributeError):
        return False


#: The temporary file of an interrupted marker write (``files._temp_name`` of MARKER):
#: a job killed while marking its new folder leaves it, and the folder is still its own.
_MARKER_TEMP = re.compile(r"\." + re.escape(MARKER) + r"\.\d+\.[0-9a-f]{8}\.tmp")


def _mark(folder, what):
    from .files import write_bytes_atomic

    write_bytes_atomic(Path(folder) / MARKER,
                       json.dumps({"owner": _MARKER_TEXT, "what": what}).encode())


def own_folder(folder, what, *, adopt=None, check_only=False):
    """Make ``folder`` (and mark it as the engine's), or check that it is the engine's.

    Parameters
    ----------
    folder : path-like
    what : str
        What the folder holds, for messages and the marker.
    adopt : re.Pattern, optional
        An existing unmarked folder whose entries all match this pattern (files an
        earlier version of the engine wrote there) is adopted. An empty one always is.
    check_only : bool
        Only check that the folder could be owned; create and mark nothing.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FrameError
        When the path is a file, or an existing folder that the engine did not
        make holds something else: the engine never writes into, nor later
        deletes from, a folder it cannot prove is its own.
    """
    folder = Path(folder)
    if os.path.lexists(folder) and not folder.is_dir():
        raise FrameError(f"{folder}: {what} must be a folder, and this path exists and is not one")
    if folder.is_dir() and not is_owned(folder):
        try:
            names = [e for e in os.listdir(folder) if e != MARKER and not _MARKER_TEMP.fullmatch(e)]
        except OSError as exc:
            raise FrameError(f"{folder}: cannot list {what} ({exc.strerror or exc})") from None
        foreign = [n for n in names if adopt is None or not adopt.fullmatch(n)]
        if foreign:
            raise FrameError(
                f"{folder}: this folder exists and was not made by Kar-Wai (it holds {foreign[0]!r}), "
                f"so it cannot be used for {what}; choose another cache folder")
    if check_only:
        return folder
    if not folder.is_dir():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FrameError(f"{folder}: cannot create {what} ({exc.strerror or exc})") from None
    if not is_owned(folder):
        _mark(folder, what)
        remove_stale_temp_files(folder, name=MARKER)
    return folder


def remove_owned(folder, names, *, recurse=True):
    """Delete the engine's files from a folder it made, then the folder if that empties it.

    Nothing happens unless ``folder`` carries the engine's marker. In it, only
    regular files whose names match ``names`` are deleted, marked subfolders
    are emptied the same way, and empty subfolders are removed; anything else
    (a user's file dropped there) stays, and so do the folder and its marker.

    Parameters
    ----------
    folder : path-like
    names : re.Pattern
        Names of the files the engine writes in this kind of folder.
    recurse : bool
        Empty subfolders too. False leaves every subfolder alone (and so the
        folder, if it has any): in a folder that other jobs share.

    Returns
    -------
    bool
        True when the folder is gone.
    """

    folder = Path(folder)
    if not is_owned(folder):
        return False
    remove_stale_temp_files(folder)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return False
    for entry in entries:
        if entry.name == MARKER:
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                if not recurse:
                    continue
                if not remove_owned(entry.path, names) and not is_owned(entry.path):
                    # An empty folder in one of the engine's (one whose marker a kill
                    # removed just before the folder) holds nothing to lose.
                    os.rmdir(entry.path)  # fails, harmlessly, unless it is empty
            elif entry.is_file(follow_symlinks=False) and names.fullmatch(entry.name):
                os.unlink(entry.path)
        except OSError:
            continue
    try:
        if os.listdir(folder) != [MARKER]:
            return False
        os.unlink(folder / MARKER)
        folder.rmdir()
    except OSError:
        if folder.is_dir() and not is_owned(folder):
            try:  # something arrived meanwhile: the folder stays, and stays ours
                _mark(folder, "Kar-Wai")
            except OSError:
                pass
        return False
    return True


# --------------------------------------------------------------------------------------
# lock


class FolderLock:
    """One job per folder: an exclusive OS-level lock on ``FOLDER/.karwai-lock``.

    The lock is ``flock`` on POSIX and ``msvcrt.locking`` on Windows, so it is
    released by the operating system when the process dies, however it dies; a
    killed job never leaves a stale lock. The lock file is removed on release
    (POSIX); a process that opened it meanwhile sees that it is gone and retries
    on a fresh one.

    Parameters
    ----------
    folder : path-like
        An existing folder.
    """

    NAME = ".karwai-lock"

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self._fd = None

    def acquire(self):
        """Take the lock, or raise ``FrameError("... already running in FOLDER")``."""
        for _ in range(100):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
            except OSError as exc:
                raise FrameError(f"{self.path}: cannot create the job lock ({exc.strerror or exc})") from None
            try:
                if not _try_lock(fd):
                    raise FrameError(
                        f"another Kar-Wai job is already running in {self.folder}; wait for it to "
                        "finish (or stop it) and run again")
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if not same:  # released and removed by its holder meanwhile: take a fresh one
                    os.close(fd)
                    continue
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except BaseException:
                try:
                    os.close(fd)
                except OSError:
                    pass
                raise
            self._fd = fd
            return self
        raise FrameError(f"{self.path}: cannot take the job lock")

    def release(self):
        """Release the lock and remove its file."""
        if self._fd is None:
            return
        try:
            if os.name != "nt":
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
        finally:
            os.close(self._fd)
            self._fd = None
            if os.name == "nt":
                try:
                    os.unlink(self.path)
                except OSError:
                    pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _try_lock(fd):
    if os.name == "nt":  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


# --------------------------------------------------------------------------------------
# checksums

_SEAL = b"KWSUM1"
_DIGEST_SIZE = 32


def _digest(payload, context):
    h = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    context = str(context).encode("utf-8")
    h.update(len(context).to_bytes(8, "little"))
    h.update(context)
    h.update(payload)
    return h.digest()


def seal(payload, context=""):
    """``payload`` followed by a tag and its BLAKE2b digest (38 bytes in all).

    Parameters
    ----------
    payload : bytes-like
    context : str
        What the data is (its cache key, its span): part of the digest, so a
        valid file of another entry, copied or swapped in, does not unseal either.
    """
    return bytes(payload) + seal_tail(payload, context)


def seal_tail(payload, context=""):
    """The bytes :func:`seal` appends to ``payload``: write both, in order, to write a sealed file
    without first copying a large payload into one buffer."""
    return _SEAL + _digest(memoryview(payload).cast("B"), context)


def unseal(data, context=""):
    """The payload of :func:`seal`'s output, or ``None`` when the digest (or context) does not match.

    The payload is a read-only ``memoryview`` of ``data`` (no copy of a large file).
    """
    data = memoryview(data).cast("B")
    tail = len(_SEAL) + _DIGEST_SIZE
    if len(data) < tail or data[-tail:-_DIGEST_SIZE] != _SEAL:
        return None
    payload, digest = data[:-tail], data[-_DIGEST_SIZE:]
    if _digest(payload, context) != digest:
        return None
    return payload.toreadonly()


def file_digest(path, *, what="file"):
    """SHA-256 hex digest of a regular file's bytes (a FIFO or device is refused)."""
    return hashlib.sha256(read_regular_file(path, what=what)).hexdigest()


def name_pattern(*patterns):
    """One compiled full-match pattern from alternatives."""
    return re.compile("|".join(f"(?:{p})" for p in patterns))
