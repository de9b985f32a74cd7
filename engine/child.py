"""A child process that a loop or a UI timer polls: the one helper for every subprocess we supervise.

The add-on's job controller (the worker process), its PyTorch installer (pip,
then a check that PyTorch imports) and the fuzz supervisor each start a child,
read its output without blocking their own loop, tell it to stop and make sure
it is reaped. :class:`ChildProcess` does that once: standard library only, so the
add-on can use it before the engine's dependencies are installed.
"""

from __future__ import annotations

import queue
import subprocess
import threading

__all__ = ["ChildProcess"]

#: Windows: no console window for the child; elsewhere 0 (subprocess's own constants).
_NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0)
_BELOW_NORMAL = getattr(subprocess, "BELOW_NORMAL_PRIORITY_CLASS", 0)


class ChildProcess:
    """A polled child process.

    Parameters
    ----------
    command : sequence of str
    env : dict, optional
    cwd : str, optional
    stdin : bool
        Give the child a pipe to write lines to (:meth:`send`); else no input.
    stdout : {"lines", "capture"} or file or None
        ``"lines"``: a reader thread queues each line (:meth:`read_line`,
        :meth:`lines`), so the caller never blocks on the child; ``"capture"``:
        kept for :meth:`communicate`; a file: written there; ``None``: discarded.
    stderr : {"capture", "stdout"} or file or None
        As ``stdout`` (``"stdout"``: into the same stream).
    below_normal : bool
        Windows: start the child at below-normal priority.

    Raises
    ------
    OSError
        From :meth:`start`, when the program cannot be started.
    """

    def __init__(self, command, *, env=None, cwd=None, stdin=False, stdout="lines", stderr=None,
                 below_normal=False):
        self.command = list(command)
        self.env = env
        self.cwd = cwd
        self._stdin = stdin
        self._stdout = stdout
        self._stderr = stderr
        self._flags = _NO_WINDOW | (_BELOW_NORMAL if below_normal else 0)
        self._lines = queue.Queue()
        self._stdin_lock = threading.Lock()
        self.proc = None

    @staticmethod
    def _stream(how):
        if how in ("lines", "capture"):
            return subprocess.PIPE
        if how == "stdout":
            return subprocess.STDOUT
        return subprocess.DEVNULL if how is None else how

    def start(self):
        """Start the child; returns ``self``."""
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.PIPE if self._stdin else subprocess.DEVNULL,
            stdout=self._stream(self._stdout), stderr=self._stream(self._stderr), text=True, encoding="utf-8",
            errors="replace", env=self.env, cwd=self.cwd, creationflags=self._flags)
        if self._stdout == "lines":
            threading.Thread(target=self._read, name="child-output", daemon=True).start()
        return self

    def _read(self):
        try:
            for line in self.proc.stdout:
                self._lines.put(line)
        except (OSError, ValueError):
            pass
        self._lines.put(None)

    # -- output ----------------------------------------------------------------------

    def read_line(self, timeout=None):
        """The child's next line of output, or ``None`` once it has closed its output.

        Raises
        ------
        TimeoutError
            When no line came within ``timeout`` seconds.
        """
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no output from the child within {timeout} s") from None
        if line is None:
            self._lines.put(None)  # every later call sees the end too
        return line

    def lines(self):
        """Every line of the child's output, until it closes it (blocking)."""
        while True:
            line = self.read_line()
            if line is None:
                return
            yield line

    def communicate(self):
        """``(stdout, stderr)`` of a finished child started with ``"capture"``."""
        return self.proc.communicate()

    # -- input and control -----------------------------------------------------------

    def send(self, line):
        """Write one line to the child's stdin; False when it is closed (the child has gone)."""
        with self._stdin_lock:
            pipe = self.proc.stdin if self.proc is not None else None
            if pipe is None or pipe.closed:
                return False
            try:
                pipe.write(line.rstrip("\n") + "\n")
                pipe.flush()
                return True
            except (BrokenPipeError, OSError, ValueError):
                return False

    def close_stdin(self):
        with self._stdin_lock:
            if self.proc is not None and self.proc.stdin is not None:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass

    def poll(self):
        """The exit status, or ``None`` while the child runs."""
        return self.proc.poll()

    @property
    def returncode(self):
        return None if self.proc is None else self.proc.returncode

    def signal(self, sig):
        """Send ``sig`` to a running child."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout=None):
        return self.proc.wait(timeout)

    def kill(self):
        """Kill the child if it still runs, and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
