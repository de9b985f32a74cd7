"""Running a plan's tasks on an existing Dask cluster.

Every task of the plan becomes one ``client.submit`` call whose arguments
carry the futures of the tasks it depends on, so the scheduler runs it only
after them. The function that runs on a worker is :func:`run_task_on_worker`:
it loads the plan from the shared folder and runs the task exactly as
``python -m engine run-task`` does (same fingerprints, locks, atomic writes),
so the frames are the bytes of a local run. A worker that dies mid-task loses
nothing that was written: Dask gives the task to another worker, which
resumes the pass from its state file.

``dask[distributed]`` is optional: it is imported only here, when a job asks
for a cluster.
"""

import secrets
import time

from ..errors import Cancelled
from .plan import PlanError, load_plan
from .tasks import TaskEnv, run_task_status

__all__ = ["run_plan_dask", "run_task_on_worker", "check_dask"]

#: How often a running task asks the scheduler whether the job was cancelled (seconds).
CANCEL_POLL_SECONDS = 0.5


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ValueError("dask: running on a Dask cluster needs dask[distributed] (pip install "
                         "'dask[distributed]', the version pinned in requirements.txt)") from None
    return distributed


def check_dask(dask):
    """Refuse a ``dask`` argument that cannot work (no distributed, wrong type) before a job starts."""
    distributed = _distributed()
    if not isinstance(dask, (str, distributed.Client)):
        raise ValueError(f"dask must be a scheduler address (tcp://HOST:PORT) or a distributed.Client, "
                         f"got {type(dask).__name__}")
    if isinstance(dask, str):
        # Before the job writes its plan: a refused job leaves nothing on disk.
        if not dask.strip():
            raise ValueError("dask: the scheduler address is empty (expected tcp://HOST:PORT)")
        if dask.startswith("tcp://"):
            import socket

            from distributed.comm import get_address_host_port  # distributed/comm/addressing.py
            try:
                host, port = get_address_host_port(dask)
                socket.create_connection((host, port), timeout=10).close()
            except (OSError, ValueError) as exc:
                raise ValueError(f"dask: cannot reach the Dask scheduler at {dask} ({exc})") from None


def _connect(dask):
    distributed = _distributed()
    if isinstance(dask, str):
        if not dask.strip():
            raise ValueError("dask: the scheduler address is empty (expected tcp://HOST:PORT)")
        try:
            return distributed.Client(dask, timeout="20s", set_as_default=False), True
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"dask: cannot reach the Dask scheduler at {dask} ({exc})") from None
    if isinstance(dask, distributed.Client):
        return dask, False
    raise ValueError(f"dask must be a scheduler address (tcp://HOST:PORT) or a distributed.Client, "
                     f"got {type(dask).__name__}")


class _ClusterCancel:
    """``is_set()`` of a named ``distributed.Event``, asked at most every CANCEL_POLL_SECONDS."""

    def __init__(self, name):
        self.name = name
        self._event = None
        self._checked = 0.0
        self._set = False

    def is_set(self):
        if self._set:
            return True
        now = time.monotonic()
        if now - self._checked >= CANCEL_POLL_SECONDS:
            self._checked = now
            if self._event is None:
                self._event = _distributed().Event(self.name)
            self._set = bool(self._event.is_set())
        return self._set


def run_task_on_worker(plan_path, task_id, cancel_name, dependencies):
    """Run one task of the plan on a Dask worker; returns ``(frames synthesized, whether it had work)``.

    ``dependencies`` are the results of the tasks this one waits for (Dask
    passes them in once they are done); they are not used otherwise.
    """
    del dependencies
    plan = load_plan(plan_path)
    cancel = _ClusterCancel(cancel_name) if cancel_name else None
    return run_task_status(plan, task_id, env_factory=lambda: TaskEnv(plan, cancel=cancel))


def run_plan_dask(plan, dask, *, progress=None, cancel=None, retries=2):
    """Submit a written plan's tasks to a Dask cluster and wait for them.

    Parameters
    ----------
    plan : Plan
    dask : str or distributed.Client
        Scheduler address or connected client.
    progress, cancel
        As for :func:`engine.propagate`: progress counts each pass's frames
        when its task ends; setting ``cancel`` stops the tasks at their next
        frame (through a cluster-wide event), cancels the rest, and raises
        :class:`Cancelled`. Complete frames stay; a re-run resumes.
    retries : int
        How often Dask re-runs a task that raised (a killed worker's task is
        re-run by the scheduler anyway).

    Returns
    -------
    (computed, skipped)
        As :func:`engine.propagation.tasks.run_plan` counts them.
    """
    distributed = _distributed()
    client, own = _connect(dask)
    token = secrets.token_hex(6)
    cancel_name = f"karwai-cancel-{token}"
    total = sum(t["units"].get("pass", 0) for t in plan.tasks)
    futures = {}
    by_key = {}
    try:
        priority = _priorities(plan)
        for task in plan.tasks:  # plan order respects the dependencies
            deps = [futures[d] for d in task["deps"]]
            future = client.submit(run_task_on_worker, str(plan.path), task["id"], cancel_name, deps,
                                   key=f"karwai-{task['id']}-{token}", pure=False, retries=retries,
                                   priority=priority[task["id"]])
            futures[task["id"]] = future
            by_key[future.key] = task
        pending = set(futures.values())
        done_units = 0
        per_span = {}
        skipped = 0
        try:
            while pending:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("propagation cancelled; complete frames are kept and a re-run resumes")
                try:
                    with client.as_current():  # wait() asks for the default client
                        finished, still = distributed.wait(list(pending), timeout=0.25,
                                                           return_when="FIRST_COMPLETED")
                except (TimeoutError, distributed.TimeoutError):
                    continue
                pending = set(still)
                for future in finished:
                    task = by_key[future.key]
                    if future.status != "finished":
                        error = future.exception()
                        if isinstance(error, (PlanError, ValueError, OSError, Cancelled)):
                            raise error
                        raise RuntimeError(f"task {task['id']} failed on the Dask cluster: {error!r}") from error
                    computed, ran = future.result()
                    if task["kind"] in ("fwd", "bwd"):
                        per_span[task["span"]] = max(per_span.get(task["span"], 0), computed)
                    if task["kind"] == "finish" and not ran:
                        skipped += len(task["frames"])
                    done_units += task["units"].get("pass", 0)
                    if progress is not None:
                        progress(done_units, total, f"{task['id']} done on the cluster")
        except BaseException:
            # Cancelled, a failed task, Ctrl-C: running tasks stop at their next frame, the rest never start.
            if pending:
                try:
                    distributed.Event(cancel_name, client=client).set()
                    client.cancel(list(pending))
                except Exception:  # the cluster may be what failed
                    pass
            raise
        return sum(per_span.values()), skipped
    finally:
        if own:
            client.close()


def _priorities(plan):
    """Dask priority of each task: the work on the longest path from it to the end, so long spans start first."""
    weight = {"flow": 1.0, "fwd": 4.0, "bwd": 4.0, "finish": 1.0}
    cost = {t["id"]: weight.get(t["kind"], 0.0) * max(len(t.get("frames", ())), 1) for t in plan.tasks}
    children = {t["id"]: [] for t in plan.tasks}
    for t in plan.tasks:
        for d in t["deps"]:
            children[d].append(t["id"])
    longest = {}
    for t in reversed(plan.tasks):
        longest[t["id"]] = cost[t["id"]] + max((longest[c] for c in children[t["id"]]), default=0.0)
    return {k: int(v * 10) for k, v in longest.items()}
