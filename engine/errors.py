"""The engine's errors, in one place.

Every user-facing refusal of the engine is a :class:`ValueError` whose message
names the file or parameter: :class:`FrameError` for files, folders and videos
(:class:`WriteError` when writing fails), :class:`ParameterTypeError` for an
argument of the wrong type. :class:`Cancelled` is raised when a job's ``cancel``
asked it to stop.
"""

__all__ = ["FrameError", "FileMissingError", "WriteError", "ParameterTypeError", "Cancelled"]


class FrameError(ValueError):
    """A frame, folder or video cannot be used; the message names the file.

    Attributes
    ----------
    problems : list of str
        Every problem found (more than one only for :meth:`ImageSequence.validate`).
    """

    def __init__(self, message, *, problems=None):
        super().__init__(message)
        self.problems = list(problems) if problems is not None else [message]


class FileMissingError(FrameError, FileNotFoundError):
    """A file the engine was asked to read does not exist; the message names it.

    Both a :class:`FrameError` and a :class:`FileNotFoundError`.
    """


class WriteError(FrameError, OSError):
    """Writing an output or cache file failed; the message names the file.

    Both a :class:`FrameError` (so a user-facing error) and an :class:`OSError`.
    A full disk reads ``"disk full while writing PATH ..."``.

    Attributes
    ----------
    errno : int or None
        The operating system's error number (``errno.ENOSPC`` for a full disk).
    """

    def __init__(self, message, *, errno=None):
        super().__init__(message)
        self.errno = errno


class ParameterTypeError(TypeError, ValueError):
    """An argument of the wrong type; the message names the parameter.

    Both a :class:`TypeError` (what Python raises for a wrong type) and a
    :class:`ValueError` (what every other refusal of the engine's API is), so a
    caller that catches either gets it, as numpy's ``AxisError`` is both a
    ``ValueError`` and an ``IndexError``.
    """


class Cancelled(Exception):
    """Raised by a job or an optimising stylizer when its ``cancel`` asked it to stop."""
