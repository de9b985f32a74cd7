"""Long jobs that never freeze Blender: a controller polled from the main thread.

A job is a :class:`~.worker.Snapshot` (plain data) and the function
:func:`.worker.run`. The :class:`JobController` runs it off the main thread and
collects its progress; a modal timer operator calls :meth:`JobController.poll`
a few times a second, which only drains a queue of small events (well under
10 ms of main-thread work), and adds the result to the scene once the job has
finished. Two ways to run the worker:

``"process"`` (the default in the UI)
    A separate Python process (Blender's own interpreter, ``sys.executable``)
    running ``python -m worker`` (the :mod:`.worker` package, from the add-on's
    folder). The engine's kernels release the GIL, but its imports (numba,
    PyTorch) and its Python-level work would still compete with Blender's main
    thread; in a process of their own they never make it wait. A relay thread reads the process's events; cancelling writes
    ``cancel`` to its stdin, where a thread sets the engine's
    :class:`threading.Event`, checked before every frame.
``"thread"``
    A worker thread in Blender's process, calling the engine directly (and
    the one that takes a stand-in engine in tests).

Under ``blender -b`` no timer ever fires, so operators call :func:`run_sync`
instead: the same work, in the calling thread, printing its progress.

Nothing in this module touches ``bpy``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import sys
import tempfile
import threading
import time

from . import worker
from .engine_import import engine_module
from .worker import JobCancelled, JobError, Snapshot

__all__ = ["JobState", "JobController", "run_sync", "active", "set_active", "JobCancelled",
           "JobError", "RUNNING", "FINISHED", "CANCELLED", "FAILED"]

RUNNING = "RUNNING"
FINISHED = "FINISHED"
CANCELLED = "CANCELLED"
FAILED = "FAILED"

#: Most events handled by one poll (keeps each poll short whatever the backlog).
MAX_EVENTS_PER_POLL = 200


@dataclasses.dataclass(frozen=True)
class JobState:
    """What the UI shows about a job; a plain value, replaced at each poll.

    Attributes
    ----------
    status : str
        ``RUNNING``, ``FINISHED``, ``CANCELLED`` or ``FAILED``.
    step : str
        Name of the current step (e.g. ``"Propagating"``).
    step_index, step_count : int
        Which step of how many (0-based index).
    done, total : float
        Progress within the step.
    message : str
        The engine's last progress message.
    eta : float or None
        Seconds left in the current step, when it can be estimated.
    elapsed : float
        Seconds since the job started.
    error : str
        Why the job failed (``FAILED``).
    result : dict or None
        The worker's result (``FINISHED``).
    cancel_requested : bool
        Whether a cancel was asked for.
    """

    status: str = RUNNING
    step: str = "Starting"
    step_index: int = 0
    step_count: int = 1
    done: float = 0.0
    total: float = 0.0
    message: str = ""
    eta: float | None = None
    elapsed: float = 0.0
    error: str = ""
    result: dict | None = None
    cancel_requested: bool = False

    @property
    def finished(self):
        """bool: whether the job has ended (any way)."""
        return self.status != RUNNING

    @property
    def factor(self):
        """float: overall progress 0..1 (steps count equally)."""
        within = self.done / self.total if self.total > 0 else 0.0
        return max(0.0, min(1.0, (self.step_index + within) / max(1, self.step_count)))

    def describe(self):
        """One line for the progress bar: step, count and time left."""
        if self.status == CANCELLED:
            return "Cancelled"
        if self.status == FAILED:
            return "Failed"
        if self.status == FINISHED:
            return "Done"
        text = f"{self.step} ({self.step_index + 1}/{self.step_count})"
        if self.cancel_requested:
            return text + ": cancelling"
        if self.total > 0:
            text += f": {int(self.done)}/{int(self.total)}"
        if self.eta is not None:
            text += f", {format_seconds(self.eta)} left"
        return text


def format_seconds(seconds):
    """``"0:07"``, ``"12:30"``, ``"1:02:03"``."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _Progress:
    """Folds events into a :class:`JobState` (shared by the controller and run_sync)."""

    def __init__(self):
        self.started = time.monotonic()
        self.state = JobState()
        self._step_started = self.started
        self._first = None  # (time, done) of the first progress event of the step

    def apply(self, event, now):
        kind = event.get("type")
        st = self.state
        if kind == "step":
            self._step_started = now
            self._first = None
            st = dataclasses.replace(st, step=event["name"], step_index=int(event["index"]),
                                     step_count=int(event["count"]), done=0.0, total=0.0,
                                     message="", eta=None)
        elif kind == "progress":
            done, total = float(event["done"]), float(event["total"])
            if self._first is None or done < self._first[1]:
                self._first = (now, done)
            eta = None
            t0, d0 = self._first
            if total > 0 and done > d0 and now > t0:
                eta = (now - t0) / (done - d0) * (total - done)
            elif total > 0 and done > 0 and now > self._step_started:
                eta = (now - self._step_started) / done * (total - done)
            st = dataclasses.replace(st, done=done, total=total,
                                     message=event.get("message", ""), eta=eta)
        elif kind == "result":
            st = dataclasses.replace(st, status=FINISHED, result=event["result"], eta=None)
        elif kind == "cancelled":
            st = dataclasses.replace(st, status=CANCELLED, eta=None)
        elif kind == "error":
            st = dataclasses.replace(st, status=FAILED, error=event["message"], eta=None)
        self.state = dataclasses.replace(st, elapsed=now - self.started)
        return self.state


class JobController:
    """Runs one job off the main thread; :meth:`poll` reports on it.

    Parameters
    ----------
    snapshot : worker.Snapshot
        The job (plain data; the worker never sees ``bpy``).
    mode : {"process", "thread"}
        Where the engine runs (see the module docstring).
    engine : module, optional
        The engine, for ``"thread"`` mode (a stand-in in tests).
    engine_path : str, optional
        For ``"process"`` mode: the folder from which ``import engine`` imports
        the engine in the worker process.
    python : str, optional
        The interpreter for ``"process"`` mode (default ``sys.executable``).
    log_dir : str, optional
        Where the worker process's log goes (default: the system temp folder).
    kill_after : float
        Seconds a worker process gets to stop after a cancel before it is killed
        (every frame the engine wrote is complete, so killing is safe).
    """

    def __init__(self, snapshot, *, mode="process", engine=None, engine_path=None, python=None,
                 log_dir=None, kill_after=30.0):
        if mode not in ("process", "thread"):
            raise ValueError(f"mode must be 'process' or 'thread', got {mode!r}")
        if mode == "thread" and engine is None:
            raise ValueError("thread mode needs the engine")
        if mode == "process" and not engine_path:
            raise ValueError("process mode needs engine_path")
        self.snapshot = snapshot
        self.mode = mode
        self.engine = engine
        self.engine_path = engine_path
        self.python = python or sys.executable
        self.log_dir = log_dir or tempfile.gettempdir()
        self.kill_after = float(kill_after)
        self.cancel_event = threading.Event()
        self.log_path = None
        self._events = queue.SimpleQueue()
        self._progress = _Progress()
        self._thread = None
        self._proc = None  # the worker's engine.child.ChildProcess
        self._killer = None
        self._cancel_time = None

    # ---------------------------------------------------------------- main thread

    @property
    def state(self):
        """JobState: the state at the last :meth:`poll` (no work done)."""
        return self._progress.state

    def start(self):
        """Start the worker; returns immediately."""
        if self._thread is not None:
            raise RuntimeError("job already started")
        target = self._run_process if self.mode == "process" else self._run_thread
        self._thread = threading.Thread(target=target, name=f"karwai-{self.snapshot.kind}",
                                        daemon=True)
        self._thread.start()
        return self

    def poll(self):
        """Take in the worker's news; cheap enough to call from a UI timer.

        Returns
        -------
        JobState
        """
        state = self._progress.state
        if state.finished:
            return state
        for _ in range(MAX_EVENTS_PER_POLL):
            try:
                event, when = self._events.get_nowait()
            except queue.Empty:
                break
            state = self._progress.apply(event, when)
            if state.finished:
                return state
        state = dataclasses.replace(state, elapsed=time.monotonic() - self._progress.started,
                                    cancel_requested=self.cancel_event.is_set())
        self._progress.state = state
        return state

    def cancel(self):
        """Ask the job to stop (it stops before its next frame)."""
        if self.cancel_event.is_set():
            return
        self._cancel_time = time.monotonic()
        self.cancel_event.set()
        if self.mode == "process":
            self._send_cancel()
            self._killer = threading.Timer(self.kill_after, self._kill)
            self._killer.daemon = True
            self._killer.start()

    def wait(self, timeout=None):
        """Block until the worker has stopped (tests, shutdown); returns whether it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---------------------------------------------------------------- worker side

    def _put(self, event):
        self._events.put((event, time.monotonic()))

    def _run_thread(self):
        try:
            result = worker.run(self.snapshot, engine=self.engine, report=self._put,
                                cancel=self.cancel_event)
        except JobCancelled:
            self._put({"type": "cancelled"})
        except worker.USER_ERRORS as exc:
            self._put({"type": "error", "message": str(exc) or type(exc).__name__})
        except Exception as exc:  # noqa: BLE001 - shown to the user
            import traceback

            traceback.print_exc()
            self._put({"type": "error", "message": f"{type(exc).__name__}: {exc}"})
        else:
            self._put({"type": "result", "result": result})

    def _send_cancel(self):
        if self._proc is not None:
            self._proc.send("cancel")

    def _kill(self):
        if self._proc is not None:
            self._proc.kill()

    def _run_process(self):
        os.makedirs(self.log_dir, exist_ok=True)
        fd, self.log_path = tempfile.mkstemp(prefix=f"karwai-{self.snapshot.kind}-",
                                             suffix=".log", dir=self.log_dir)
        ending = None  # the worker's last event type: result, cancelled or error
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as log:
                proc = self._spawn(log)
                if proc is None:
                    return
                for line in proc.lines():
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if event.get("type") in ("result", "cancelled", "error"):
                        ending = event["type"]
                    self._put(event)
                proc.wait()
                proc.close_stdin()
            if ending is None:
                if self.cancel_event.is_set():
                    ending = "cancelled"
                    self._put({"type": "cancelled"})
                else:
                    self._put({"type": "error", "message": (
                        f"the worker process stopped (exit code {proc.returncode}); "
                        f"log: {self.log_path}\n{_tail(self.log_path)}")})
        finally:
            if self._killer is not None:
                self._killer.cancel()
            if ending in ("result", "cancelled"):  # the log only matters when it failed
                try:
                    os.unlink(self.log_path)
                except OSError:
                    pass

    def _spawn(self, log):
        """Start the worker process and send it the snapshot (None if it cannot start)."""
        env = dict(os.environ)
        # The add-on's folder first: the worker package runs from it as ``python -m worker``.
        addon_dir = os.path.dirname(os.path.dirname(os.path.abspath(worker.__file__)))
        paths = [addon_dir, self.engine_path] + [p for p in sys.path if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        # Read by glibc at the worker's start, before PyTorch's or OpenCV's threads exist.
        engine_module("allocator").job_environment(env)
        proc = engine_module("child").ChildProcess(
            [self.python, "-s", "-m", "worker"], env=env, cwd=self.log_dir, stdin=True, stdout="lines",
            stderr=log, below_normal=True)
        try:
            proc.start()
        except OSError as exc:
            self._put({"type": "error",
                       "message": f"cannot start the worker process {self.python}: {exc}"})
            return None
        # The snapshot goes first; only then can a cancel reach the process.
        proc.send(json.dumps(self.snapshot.to_json()))
        self._proc = proc
        if self.cancel_event.is_set():
            self._send_cancel()
        return proc


def _tail(path, limit=2000):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return ""
    return text[-limit:].strip()


# --------------------------------------------------------------------------------------
# synchronous runs (blender -b)


def run_sync(snapshot, *, engine, log=print, cancel=None, interval=1.0):
    """Run a job in the calling thread, printing its progress (for ``blender -b``).

    Parameters
    ----------
    snapshot : worker.Snapshot
    engine : module
    log : callable
        Receives each progress line (default :func:`print`).
    cancel : threading.Event, optional
    interval : float
        Least seconds between two progress lines within a step.

    Returns
    -------
    dict
        The job's result.

    Raises
    ------
    JobCancelled, JobError, ValueError, OSError, ImportError
    """
    progress = _Progress()
    last = [0.0]

    def report(event):
        now = time.monotonic()
        state = progress.apply(event, now)
        first_of_step = event.get("type") == "step"
        complete = event.get("type") == "progress" and state.total and state.done >= state.total
        if first_of_step or complete or now - last[0] >= interval:
            last[0] = now
            line = f"Kar-Wai: {state.describe()}"
            if state.message and not first_of_step:
                line += f" - {state.message}"
            log(line)

    return worker.run(snapshot, engine=engine, report=report,
                      cancel=cancel if cancel is not None else threading.Event())


# --------------------------------------------------------------------------------------
# the one job that may run at a time

_active = None


def active():
    """The running job's controller, or None."""
    return _active


def set_active(controller):
    """Make ``controller`` the running job (None when it has ended)."""
    global _active
    _active = controller


def busy():
    """bool: whether a job is running."""
    return _active is not None and not _active.state.finished


__all__.append("Snapshot")
