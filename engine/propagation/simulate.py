"""Predicting a plan's wall time on N workers from its task graph and measured per-unit costs.

A task lasts ``overhead + sum(units[k] * cost[k])``: flow pairs, pass frames,
finish frames and keys, each at the seconds per unit measured on this machine
by :func:`measure_costs` (a short real job on the clip's own frames at the
plan's settings). :func:`simulate` schedules the graph on W identical workers
the way a farm does: whenever a worker is free it takes the ready task with
the longest chain of work after it (the same priority the Dask runner gives
the scheduler). The result is bounded below by the total work over W and by the
critical path, the longest chain of dependent tasks: one span's flow, its
slower pass and its finish.
"""

import heapq
import json
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["measure_costs", "simulate", "critical_path", "task_seconds", "COST_KINDS", "OPTIONAL_KINDS"]

COST_KINDS = ("flow", "pass", "finish", "key", "stylize")
#: Kinds a costs file may leave out (a job without keys to stylize has no use for their cost).
OPTIONAL_KINDS = ("stylize",)


def task_seconds(task, costs):
    """Predicted seconds of one task."""
    units = task.get("units", {})
    return costs.get("overhead", 0.0) + sum(units.get(k, 0) * costs.get(k, 0.0) for k in COST_KINDS)


def _children(tasks):
    children = {t["id"]: [] for t in tasks}
    for t in tasks:
        for d in t["deps"]:
            children[d].append(t["id"])
    return children


def critical_path(tasks, costs):
    """``(seconds, [task ids])``: the longest chain of dependent tasks."""
    seconds = {t["id"]: task_seconds(t, costs) for t in tasks}
    by_id = {t["id"]: t for t in tasks}
    best = {}
    via = {}
    for t in tasks:  # dependencies come first
        prev = max(t["deps"], key=lambda d: best[d], default=None)
        best[t["id"]] = seconds[t["id"]] + (best[prev] if prev is not None else 0.0)
        via[t["id"]] = prev
    end = max(best, key=best.get)
    chain = [end]
    while via[chain[-1]] is not None:
        chain.append(via[chain[-1]])
    del by_id
    return best[end], chain[::-1]


def simulate(tasks, costs, workers):
    """Makespan in seconds of the task graph on ``workers`` workers (list scheduling, longest path first).

    Parameters
    ----------
    tasks : list of dict
        Tasks with ``id``, ``deps`` and ``units``, dependencies first (a plan's
        ``tasks`` or :func:`engine.propagation.plan.task_graph`).
    costs : dict
        Seconds per unit of each kind in :data:`COST_KINDS`, and ``overhead``
        per task.
    workers : int
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    seconds = {t["id"]: task_seconds(t, costs) for t in tasks}
    children = _children(tasks)
    rank = {}
    for t in reversed(tasks):
        rank[t["id"]] = seconds[t["id"]] + max((rank[c] for c in children[t["id"]]), default=0.0)
    order = {t["id"]: i for i, t in enumerate(tasks)}
    waiting = {t["id"]: len(t["deps"]) for t in tasks}
    ready = [(-rank[t["id"]], order[t["id"]], t["id"]) for t in tasks if not t["deps"]]
    heapq.heapify(ready)
    running = []  # (finish time, order, id)
    free = workers
    now = 0.0
    done = 0
    while done < len(tasks):
        while free and ready:
            _, i, task_id = heapq.heappop(ready)
            heapq.heappush(running, (now + seconds[task_id], i, task_id))
            free -= 1
        now, _, task_id = heapq.heappop(running)
        free += 1
        done += 1
        for child in children[task_id]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (-rank[child], order[child], child))
    return now


def worker_counts(n):
    """1, 2, 4, ... up to ``n`` (and ``n`` itself)."""
    counts = []
    w = 1
    while w < n:
        counts.append(w)
        w *= 2
    counts.append(n)
    return counts


def table(tasks, costs, max_workers):
    """Rows ``(workers, makespan, speedup, efficiency, lower bound)`` for 1, 2, 4 ... ``max_workers``."""
    total = sum(task_seconds(t, costs) for t in tasks)
    path, _ = critical_path(tasks, costs)
    rows = []
    for w in worker_counts(max_workers):
        span = simulate(tasks, costs, w)
        rows.append((w, span, total / span, total / span / w, max(total / w, path)))
    return rows


def measure_costs(source, settings, *, frames=6, start=None, stylize=None):
    """Seconds per flow pair, pass frame, finish frame and key, measured on ``source`` at ``settings``.

    ``stylize`` (``(method, params)``) also times one key stylized from the
    middle frame (``stylize``: seconds per stylized key).

    Runs a short job on ``frames + 1`` of the clip's own frames (from
    ``start``, default the middle of the clip) with a key at each end, through
    the same tasks as any job, one at a time as a farm worker runs them (a
    local job runs a span's two passes side by side, which would time each
    at the pace of two), after a warm-up run that loads the compiled
    kernels. The task records' seconds divided by their units give the costs;
    ``overhead`` is what a farm worker spends on each task before its work
    starts (reading the plan, opening the frames, checking the task records).
    """
    from ..frames import write_frame_atomic
    from .job import plan_job
    from .plan import PLAN_NAME
    from .tasks import TaskEnv, run_task

    def run_one_by_one(keys, out):
        plan = plan_job(clip, keys, out=out, settings=settings)
        env = TaskEnv(plan)  # one process runs them all, as one worker does
        for task in plan.tasks:
            run_task(plan, task["id"], env=env)

    numbers = list(source.frame_numbers)
    frames = max(2, min(int(frames), len(numbers) - 1))
    if start is None:
        start = max(0, (len(numbers) - frames - 1) // 2)
    chosen = numbers[start:start + frames + 1]
    with tempfile.TemporaryDirectory(prefix="karwai-costs-") as tmp:
        tmp = Path(tmp)
        clip = tmp / "clip"
        clip.mkdir()
        for i, n in enumerate(chosen, start=1):
            write_frame_atomic(clip / f"{i:06d}.png", source.read(n))
        first = source.read(chosen[0])
        last = source.read(chosen[-1])
        keys = {1: np.ascontiguousarray(first), len(chosen): np.ascontiguousarray(last)}
        run_one_by_one({1: keys[1], 3: source.read(chosen[2])}, tmp / "warm")
        run_one_by_one(keys, tmp / "run")
        seconds = {k: 0.0 for k in COST_KINDS}
        units = {k: 0 for k in COST_KINDS}
        for marker in (tmp / "run" / ".karwai-tasks").glob("*.json"):
            data = json.loads(marker.read_text())
            for kind, count in data.get("units", {}).items():
                if kind in seconds and count:
                    # Split a task's seconds over its kinds in proportion to its units (one kind per task).
                    seconds[kind] += data["seconds"]
                    units[kind] += count
        overhead = _task_overhead(tmp / "run" / PLAN_NAME)
    costs = {k: seconds[k] / units[k] if units[k] else 0.0 for k in COST_KINDS if k not in OPTIONAL_KINDS}
    costs["overhead"] = overhead
    if stylize is not None:
        import time

        from ..stylizers import stylize as stylize_frame

        method, params = stylize
        frame = np.ascontiguousarray(source.read(numbers[len(numbers) // 2]))
        t0 = time.perf_counter()
        stylize_frame(frame, method=method, **params)
        costs["stylize"] = time.perf_counter() - t0
    costs["size"] = list(source.size)
    costs["quality"] = settings.quality
    return costs


def _task_overhead(plan_path, repeats=3):
    """Median seconds to load a plan, open its frames and check a task's record, as a worker does per task."""
    import time

    from .plan import load_plan
    from .tasks import TaskEnv, task_is_done

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        plan = load_plan(plan_path)
        env = TaskEnv(plan)
        task_is_done(plan, plan.tasks[-2])
        env.check_sources(plan.tasks[-2].get("frames", [])[:1])
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]
