"""Where a plan's tasks run: one task by id (a farm's worker), or all of them in order (a local job).

A task holds its :class:`~.task_lock.TaskLock` while it runs and records its
fingerprint and its outputs' hashes in ``OUT/.karwai-tasks/TASK_ID.json`` when
it is done; a task whose record matches and whose outputs are intact does
nothing, so re-submitting a job resumes it.
"""

from concurrent.futures import ThreadPoolExecutor
import hashlib
import json
import os
import socket
import time

from ..files import read_regular_file, remove_stale_temp_files, write_bytes_atomic
from ..flow import JOB_MEMORY_BYTES, FlowCache
from ..frame_source import open_frames
from ..guides import open_masks
from ..images import read_image
from .plan import TASKS_DIR, Plan, PlanError, _file_sha256, load_plan
from .spans import span_chain
from .task_lock import TaskLock

__all__ = ["TaskEnv", "run_task", "run_task_status", "run_plan", "task_is_done", "PassDamaged"]


def _read_marker(plan, task_id):
    try:
        data = json.loads(read_regular_file(plan.marker_path(task_id), what="task record"))
    except (OSError, ValueError):  # FrameError is a ValueError
        return None
    return data if isinstance(data, dict) else None


def task_is_done(plan, task):
    """True when the task's record matches its fingerprint and its outputs are intact."""
    marker = _read_marker(plan, task["id"])
    if marker is None or marker.get("fingerprint") != task["fingerprint"]:
        return False
    outputs = marker.get("outputs")
    if not isinstance(outputs, dict) or (task["kind"] != "flow" and set(outputs) != set(task["outputs"])):
        return False  # a damaged record: each task but flow records every output it has
    for name, digest in outputs.items():
        path = plan.resolve(name)
        try:
            if digest is None:
                if not path.exists():
                    return False
            elif _file_sha256(path) != digest:
                return False
        except OSError:
            return False
    return True


def _needed(plan, task):
    """Whether a task has work to do: not done, and (for a pass or flow) its span not finished."""
    if task["kind"] == "end":
        return True  # cheap, and it must see the final state of every other task
    if task_is_done(plan, task):
        return False
    if task["kind"] in ("flow", "fwd", "bwd"):
        return not task_is_done(plan, plan.task(f"finish-{task['span']}"))
    return True


def _write_marker(plan, task, outputs, seconds):
    data = {"task": task["id"], "fingerprint": task["fingerprint"], "outputs": outputs,
            "seconds": round(seconds, 3), "units": task["units"], "worker": f"{socket.gethostname()}:{os.getpid()}"}
    write_bytes_atomic(plan.marker_path(task["id"]), json.dumps(data, indent=1).encode())


class TaskEnv:
    """What tasks of one plan share in one process: the source, keys, masks and flow cache."""

    def __init__(self, plan, *, source=None, progress=None, cancel=None, total=None, record=None, names=None,
                 masks=None, flow_cache=None):
        from ..allocator import tune_for_jobs
        from .passes import JobContext

        tune_for_jobs()
        data = plan.data
        self.plan = plan
        if source is None:
            source_path = data["source"]["path"]
            if source_path is None:
                raise PlanError(f"{plan.path}: this plan's frames were given as an object without a path "
                                f"(field source); it can only run in the process that made it")
            source_path = plan.resolve(source_path)
            if not source_path.exists():
                raise PlanError(f"{source_path}: source frames not found on this machine (the plan "
                                f"{plan.path} refers to them; is the shared folder mounted here?)")
            from .job import FRAME_CACHE_BYTES

            source = open_frames(source_path, cache_bytes=FRAME_CACHE_BYTES)
        self.source = source
        if list(source.frame_numbers) != data["source"]["frames"] or list(source.size) != data["source"]["size"]:
            raise PlanError(f"{getattr(source, 'path', 'the source')}: the frames differ from those the plan "
                            f"was made for (field source); make the plan again")
        settings = plan.settings
        if masks is None and data["masks"] is not None:
            mask_path = plan.resolve(data["masks"]["path"])
            if not mask_path.exists():
                raise PlanError(f"{mask_path}: masks not found on this machine (field masks of {plan.path})")
            masks = open_masks(mask_path, size=source.size, frame_numbers=source.frame_numbers)
        if flow_cache is None:
            limit = data["options"]["cache_limit_mb"]
            flow_cache = FlowCache(plan.cache / "flow", params=settings.flow_params,
                                   max_bytes=None if limit is None else int(float(limit) * (1 << 20)),
                                   memory_bytes=JOB_MEMORY_BYTES)
        if names is None:
            names = {n: source.name_for(n) for n in source.frame_numbers}
        if total is None:
            total = sum(t["units"].get("pass", 0) for t in plan.tasks)
        self.ctx = JobContext(source=source, flow_cache=flow_cache, settings=settings, keys=_LazyKeys(plan),
                            masks=masks, out=plan.out, cancel=cancel, progress=progress, total=total,
                            record=record, names=names)
        self._checked_frames = set()

    def check_sources(self, numbers):
        """Refuse to work from a source frame that changed since the plan was made."""
        from .record import source_identity

        wanted = self.plan.data["source"]["identity"]
        todo = [n for n in numbers if n not in self._checked_frames]
        if not todo:
            return
        current = source_identity(self.source, todo)
        for n in todo:
            if current.get(n) != wanted.get(str(n)):
                where = self.source.path_for(n) if hasattr(self.source, "path_for") else self.source.path
                raise PlanError(f"{where}: source frame {n} changed since the plan was made "
                                f"(field source.identity of {self.plan.path}); make the plan again")
            self._checked_frames.add(n)


class _LazyKeys(dict):
    """The plan's key images, read from their files (and checked) on first use."""

    def __init__(self, plan):
        super().__init__()
        self.plan = plan

    def __missing__(self, n):
        entry = self.plan.data["keys"].get(str(n))
        if entry is None:
            raise KeyError(n)
        if "stylize" in entry:
            from .stylized_keys import stylized_key_image

            self[n] = stylized_key_image(self.plan, n)
            return self[n]
        path = self.plan.resolve(entry["file"])
        if not path.exists():
            raise PlanError(f"{path}: key image of frame {n} not found (field keys of {self.plan.path}); "
                            f"is the shared folder mounted here, or was the job's cache removed? "
                            f"Make the plan again")
        image = read_image(path, alpha=True)
        if hashlib.sha256(image.tobytes() + str(image.shape).encode()).hexdigest() != entry["sha256"]:
            raise PlanError(f"{path}: key image of frame {n} changed since the plan was made "
                            f"(field keys of {self.plan.path}); make the plan again")
        self[n] = image
        return image

    def __contains__(self, n):
        return str(n) in self.plan.data["keys"]


def _span_of(task):
    from .spans import Span

    return Span(task["span_kind"], task["key_a"], task["key_b"], tuple(task["frames"]))


def run_task(plan, task_id, *, env=None, env_factory=None, on_wait=None):
    """Run one task of a plan, unless its outputs are already there with a matching fingerprint.

    Parameters
    ----------
    plan : Plan or str or os.PathLike
        The plan, or the path of its file.
    task_id : str
    env : TaskEnv, optional
        Shared state of a process running many tasks of the plan (progress,
        cancel, the open source).
    env_factory : callable, optional
        Makes the :class:`TaskEnv` when the task has work to do (default
        ``TaskEnv(plan)``); unused when ``env`` is given.
    on_wait : callable, optional
        ``on_wait(lock_path)`` when another run of the same task holds its lock.

    Returns
    -------
    int
        Frames synthesized (0 for a task that had nothing to do).
    """
    return run_task_status(plan, task_id, env=env, env_factory=env_factory, on_wait=on_wait)[0]


def run_task_status(plan, task_id, *, env=None, env_factory=None, on_wait=None):
    """:func:`run_task`, returning ``(frames synthesized, whether the task had work to do)``."""
    from ..allocator import tune_for_jobs

    tune_for_jobs()  # before the checks below wake any thread pool (see engine.allocator)
    if not isinstance(plan, Plan):
        from ..safety import as_path

        plan = load_plan(as_path("plan", plan))  # a wrong type names the parameter
    task = plan.task(task_id)
    for dep in task["deps"]:
        if dep.startswith("flow-"):
            continue  # an optimisation only: a pass computes any flow pair it finds missing
        if not task_is_done(plan, plan.task(dep)) and not _finished_elsewhere(plan, plan.task(dep)):
            raise PlanError(f"{plan.path}: task {task_id} needs task {dep}, which has not finished "
                            f"(field tasks[{task_id!r}].deps)")
    tasks_dir = plan.out / TASKS_DIR
    if not plan.out.is_dir():
        raise PlanError(f"{plan.out}: output folder not found; is the shared folder mounted here?")
    try:
        tasks_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise PlanError(f"{tasks_dir}: cannot create the task records' folder ({exc.strerror or exc})") from None
    with TaskLock(tasks_dir / f"{task_id}.lock", on_wait=on_wait):
        if not _needed(plan, task):
            if env is not None:
                env.ctx.advance(task["units"].get("pass", 0))
            return 0, False
        if env is None:
            env = env_factory() if env_factory is not None else TaskEnv(plan)
        t0 = time.perf_counter()
        computed, outputs = _RUNNERS[task["kind"]](plan, task, env)
        _write_marker(plan, task, outputs, time.perf_counter() - t0)
        return computed, True


def _finished_elsewhere(plan, dep):
    """A pass or flow task whose span is already finished counts as done (its files are gone)."""
    if dep["kind"] in ("flow", "fwd", "bwd"):
        return task_is_done(plan, plan.task(f"finish-{dep['span']}"))
    return False


def _run_key(plan, task, env):
    n = task["key"]
    env.check_sources([n])
    outputs = {}
    if "stylize" in plan.data["keys"][str(n)]:
        from .stylized_keys import make_stylized_key

        image, outputs[task["outputs"][1]] = make_stylized_key(plan, n, env)
        env.ctx.keys[n] = image
    env.ctx.write_output(n, env.ctx.keys[n], task["fingerprint"])
    name = task["outputs"][0]
    outputs[name] = _file_sha256(plan.out / name)
    return 0, outputs


def _run_flow(plan, task, env):
    import cv2

    from ..flow import keep_dis_objects, reusing_dis
    from .side_by_side import numba_threads

    env.check_sources([n for pair in task["pairs"] for n in pair])
    pairs = task["pairs"]

    def one_of_two(pair):
        # The pair's two directions one after the other, and one numba thread for the float16
        # conversions: the other pair's thread has the other core.
        a, b = pair
        with numba_threads(1):
            env.ctx.flows(b, a, split=False)

    # Whole pairs on two threads: each computes both directions and then stores them, so one
    # pair's hashing and writing overlaps the other's DIS (with the two directions of one pair
    # on two threads, a core waits for the slower direction and then for the writing).
    if cv2.getNumThreads() <= 1 or len(pairs) <= 1:
        with reusing_dis():
            for a, b in pairs:
                env.ctx.check_cancel()
                env.ctx.flows(b, a)
    else:
        # The pool's threads keep their DIS objects (and buffers) from pair to pair; they end,
        # and free them, with the task.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="karwai-flow-pairs",
                                initializer=keep_dis_objects) as pool:
            futures = [pool.submit(one_of_two, pair) for pair in pairs]
            try:
                for future in futures:
                    # Asked here, on the task's thread: a farm's cancel (a Dask Event) answers only there.
                    env.ctx.check_cancel()
                    future.result()
            finally:
                for future in futures:
                    future.cancel()
    return 0, {}


def _work_dir(plan, task):
    from ..safety import own_folder
    from .state import WORK_FILES

    work = plan.resolve(task["work"])
    # First the temporary files of killed writers: one killed while marking the
    # folder leaves the marker's, and the folder would not look like ours.
    remove_stale_temp_files(work)
    return own_folder(work, f"the pass states of {task['span']}", adopt=WORK_FILES)


def _run_pass(plan, task, env):
    from .passes import run_pass

    span = _span_of(task)
    env.check_sources(span_chain(span))
    work = _work_dir(plan, task)
    computed = run_pass(env.ctx, span, task["kind"], work)
    return computed, {name: None for name in task["outputs"]}


class PassDamaged(PlanError):
    """A finish found one of its span's pass results damaged (and removed it)."""


def _run_finish(plan, task, env):
    from ..safety import remove_owned
    from .finish import finish_span
    from .state import WORK_FILES, DamagedState

    span = _span_of(task)
    env.check_sources(span_chain(span))
    work = _work_dir(plan, task)
    prefixes = ("fwd", "bwd") if span.kind == "between" else ("pass",)
    for name in (f"{prefix}_{n}.npz" for prefix in prefixes for n in span.frames):
        if not (work / name).exists():
            raise PassDamaged(f"{work / name}: a pass result is missing; run the span's pass tasks again "
                              f"(re-submitting the job does)")
    try:
        finish_span(env.ctx, span, work, task["fingerprint"])
    except DamagedState as exc:
        try:
            os.unlink(exc.path)  # a pass result in the span's own folder: its pass is then not done
        except OSError:
            pass
        raise PassDamaged(f"{exc.path}: damaged pass result ({exc.why}); it was removed, and running the "
                          f"span's pass tasks again (re-submitting the job does) recomputes it") from None
    outputs = {name: _file_sha256(plan.out / name) for name in task["outputs"]}
    # The span's scratch files are no longer needed: its work folder (named by
    # the span's fingerprint, marked as made by this job) and, unless kept, its flow pairs.
    remove_owned(work, WORK_FILES)
    if not plan.data["options"]["keep_cache"]:
        flow_cache = env.ctx.flow_cache
        for a, b in zip(span_chain(span), span_chain(span)[1:]):
            lo, hi = min(a, b), max(a, b)
            try:
                os.unlink(flow_cache.path_for(env.source.read(lo), env.source.read(hi)))
            except OSError:
                pass
    return 0, outputs


def _run_end(plan, task, env):
    from ..safety import remove_owned
    from .record import RECORD_NAME, JobRecord
    from .state import WORK_FILES

    if env.ctx.record is None:
        # On a farm: the job record beside the output learns the frames the tasks wrote
        # (their digests are in the task records), so a later job owns them too.
        record = JobRecord.load(plan.out / RECORD_NAME)
        for t in plan.tasks:
            if t["kind"] not in ("key", "finish") or not task_is_done(plan, t):
                continue
            marker = _read_marker(plan, t["id"])
            for name, digest in marker["outputs"].items():
                if record.frames.get(name, {}).get("sha256") != digest:
                    record.note_frame(name, t["fingerprint"], digest)
            if t["kind"] == "finish":
                record.spans[t["span"]] = t["fingerprint"]
        record.settings = plan.data["settings"]
        record.save()
    remove_stale_temp_files(plan.out / TASKS_DIR)
    works = {plan.resolve(t["work"]).parent for t in plan.tasks if "work" in t}
    for work_root in works:
        remove_owned(work_root, WORK_FILES, recurse=False)  # only when no span's folder is left
    if not plan.data["options"]["keep_cache"]:
        env.ctx.flow_cache.clear()
        remove_owned(plan.cache, WORK_FILES, recurse=False)  # only a cache folder the job made
    return 0, {}


_RUNNERS = {"key": _run_key, "flow": _run_flow, "fwd": _run_pass, "bwd": _run_pass, "finish": _run_finish,
            "end": _run_end}


def run_plan(plan, *, env=None, skip_flow=False, after_task=None):
    """Run every task of a plan here, in plan order (which respects the dependencies).

    ``skip_flow`` leaves out the flow tasks (a pass computes the pairs it
    needs itself; with a flow cache that keeps nothing they would be wasted).
    Returns ``(computed, skipped)``: frames synthesized in this run (a frame
    between keys counts once), and frames of spans kept from an earlier run.
    """
    env = env or TaskEnv(plan)
    per_span = {}
    skipped = 0
    tasks = [t for t in plan.tasks if not (t["kind"] == "flow" and skip_flow)]
    side_by_side = None
    ran_beside = set()
    for i, task in enumerate(tasks):
        if task["id"] in ran_beside:
            continue
        pair = tasks[i + 1] if i + 1 < len(tasks) else None
        if (task["kind"] == "fwd" and pair is not None and pair["kind"] == "bwd" and pair["span"] == task["span"]
                and _needed(plan, task) and _needed(plan, pair)):
            from .side_by_side import pass_threads, run_side_by_side

            if side_by_side is None:
                side_by_side = pass_threads(env.source.size[0] * env.source.size[1]) > 1
            if side_by_side:
                # The span's work folder is made (and marked) here, not by both threads at once.
                env.check_sources(span_chain(_span_of(task)))
                _work_dir(plan, task)
                counts = run_side_by_side([lambda t=t: run_task(plan, t["id"], env=env) for t in (task, pair)])
                ran_beside.add(pair["id"])
                for t, n in zip((task, pair), counts):
                    per_span[t["span"]] = max(per_span.get(t["span"], 0), n)
                    if after_task is not None:
                        after_task(t)
                continue
        if task["kind"] == "finish" and not _needed(plan, task):
            skipped += len(task["frames"])
            env.ctx.report(f"kept {task['span']} from an earlier run")
        try:
            n = run_task(plan, task["id"], env=env)
        except PassDamaged as exc:
            import warnings

            warnings.warn(f"{exc}; recomputing {task['span']}", stacklevel=2)
            for t in plan.tasks:
                if t.get("span") == task["span"] and t["kind"] in ("fwd", "bwd"):
                    run_task(plan, t["id"], env=env)
            n = run_task(plan, task["id"], env=env)
        if task["kind"] in ("fwd", "bwd"):
            per_span[task["span"]] = max(per_span.get(task["span"], 0), n)
        if after_task is not None:
            after_task(task)
    return sum(per_span.values()), skipped
