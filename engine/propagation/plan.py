"""A propagation job as a plan of tasks that any machine seeing the output folder can run.

:func:`make_plan` splits a job into tasks and writes ``OUT/.karwai-plan.json``:

* ``key-N``: write key N's output frame (the key itself, masked);
* ``flow-SPAN``: the optical flow between the consecutive frames of a span
  (into the flow cache; a pass computes any pair it finds missing, so this
  task only does that work once, ahead of both passes);
* ``fwd-SPAN`` / ``bwd-SPAN``: the pass from the key before / after the span's
  frames (pass images and synthesis errors in the span's work folder);
* ``finish-SPAN``: blend the two passes (between keys), smooth along the flow,
  restore detail, write the output frames;
* ``end``: after every other task, remove the cache the job made (unless it
  is kept) and write the job record.

Each task lists its inputs, outputs, dependencies, the fingerprint of
everything that decides its outputs, and its command line,
``python -m engine run-task OUT/.karwai-plan.json TASK_ID``. A task writes
every file atomically, holds an OS lock while it runs (a second run of the same
task waits for it), and records its fingerprint and its outputs' hashes in
``OUT/.karwai-tasks/TASK_ID.json`` when it is done; a task whose record matches
and whose outputs are intact does nothing, so re-submitting a job resumes it.

:func:`engine.propagate` runs these same task functions in plan order in one
process, so a local run and a farm run write the same bytes. Paths inside the
plan are relative to the plan's folder, so a farm that mounts the shared folder
elsewhere still finds everything.
"""

from dataclasses import dataclass
import hashlib
import json
import os
from pathlib import Path
import re
import socket
import threading
import time

import numpy as np

from ..errors import FrameError
from ..files import remove_stale_temp_files, write_bytes_atomic
from ..frame_source import open_frames
from ..images import read_image, write_image
from ..flow import FlowCache
from ..guides import open_masks
from ..safety import own_folder
from ..settings import ALGORITHM_VERSION, JobSettings

__all__ = ["PLAN_NAME", "TASKS_DIR", "PlanError", "Plan", "TaskEnv", "make_plan", "load_plan", "run_task",
           "run_task_status", "run_plan", "task_is_done"]

PLAN_NAME = ".karwai-plan.json"
TASKS_DIR = ".karwai-tasks"
PLAN_FORMAT = "karwai-plan"
PLAN_VERSION = 1
#: Fields of the plan, in the order they are checked; each has its own checksum.
PLAN_FIELDS = ("engine_version", "algorithm", "source", "masks", "keys", "settings", "options", "tasks")


class PlanError(FrameError):
    """A plan that cannot be used (edited, from another version, unreadable); the message names the field."""


def _engine_version():
    from .. import __version__

    return __version__


def _hash(*parts):
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def _canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _digest(value):
    return hashlib.sha256(_canonical(value).encode()).hexdigest()


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _rel(path, base):
    """``path`` relative to ``base`` when they share a root, else absolute."""
    path = os.path.abspath(path)
    try:
        return os.path.relpath(path, os.path.abspath(base))
    except ValueError:  # another drive on Windows
        return path


# ---------------------------------------------------------------------------
# The plan


@dataclass
class Plan:
    """A loaded plan: its file, folder and fields (see the module docstring)."""

    path: Path
    data: dict

    @property
    def out(self):
        return self.path.parent

    def resolve(self, relative):
        return (self.out / relative) if not os.path.isabs(relative) else Path(relative)

    @property
    def cache(self):
        return self.resolve(self.data["options"]["cache"])

    @property
    def tasks(self):
        return self.data["tasks"]

    def task(self, task_id):
        for task in self.tasks:
            if task["id"] == task_id:
                return task
        raise PlanError(f"{self.path}: no task {task_id!r} in this plan (field tasks)")

    @property
    def settings(self):
        return JobSettings.from_dict(self.data["settings"])

    def marker_path(self, task_id):
        return self.out / TASKS_DIR / f"{task_id}.json"


def task_graph(frame_numbers, key_numbers):
    """The tasks of a job and their dependencies, without files: ``id``, ``kind``, ``deps``, ``units``.

    ``units`` counts the work of a task (``flow`` pairs, ``pass`` frames,
    ``finish`` frames, ``key`` images), from which :mod:`.simulate` predicts
    its duration. Tasks come in an order that respects the dependencies.
    """
    from .job import plan_spans

    keys = sorted(key_numbers)
    tasks = [{"id": f"key-{n}", "kind": "key", "key": n, "deps": [], "units": {"key": 1}} for n in keys]
    finishes = [t["id"] for t in tasks]
    for span in plan_spans(frame_numbers, keys):
        base = {"span": span.name, "span_kind": span.kind, "key_a": span.key_a, "key_b": span.key_b,
                "frames": list(span.frames)}
        flow_id = f"flow-{span.name}"
        tasks.append({"id": flow_id, "kind": "flow", **base, "deps": [],
                      "units": {"flow": len(_chain(span)) - 1}})
        passes = []
        for direction, key in (("fwd", span.key_a), ("bwd", span.key_b)):
            if key is not None:
                passes.append(f"{direction}-{span.name}")
                tasks.append({"id": passes[-1], "kind": direction, **base, "deps": [flow_id, f"key-{key}"],
                              "units": {"pass": len(span.frames)}})
        finishes.append(f"finish-{span.name}")
        tasks.append({"id": finishes[-1], "kind": "finish", **base, "deps": [flow_id, *passes],
                      "units": {"finish": len(span.frames)}})
    tasks.append({"id": "end", "kind": "end", "deps": finishes, "units": {}})
    return tasks


#: The key images a plan writes (``key-N-DIGEST.png``).
KEY_FILES = re.compile(r"key--?[0-9]+-[0-9a-f]{16}\.png")


def make_plan(source, key_styles, *, out, settings, fingerprints, masks=None, cache_dir=None,
              keep_cache=False, cache_limit_mb=None, write=True, key_dir=None):
    """Split a checked job into tasks; write the keys and (when ``write``) the plan file.

    ``source`` is an opened, validated frame source; ``key_styles`` the fitted
    keys (``{n: uint8 array}``); ``out`` the checked output folder;
    ``fingerprints`` what :func:`engine.propagation.job.propagate` computed
    about the inputs (one source of truth for what decides each output).
    Returns a :class:`Plan`.
    """
    from .job import CACHE_NAME, plan_spans

    out = Path(out)
    plan_path = out / PLAN_NAME
    cache = Path(cache_dir) if cache_dir is not None else out / CACHE_NAME
    identity = fingerprints.identity
    source_path = getattr(source, "path", None)
    # For a farm the keys live beside the task records, not in the cache: a
    # re-submitted job that must redo a span needs them after the cache of a
    # finished job is gone. A job run here passes its cache (it writes them anew
    # each run).
    key_dir = key_dir if key_dir is not None else out / TASKS_DIR / "keys"
    remove_stale_temp_files(out / TASKS_DIR)  # task records a killed run was writing
    remove_stale_temp_files(key_dir)
    key_dir = own_folder(key_dir, "the plan's keys", adopt=KEY_FILES)
    keys = {}
    key_hashes = {}
    for n, image in key_styles.items():
        key_hashes[n] = fingerprints.key_hashes[n]
        path = key_dir / f"key-{n}-{key_hashes[n][:16]}.png"
        if not path.exists() or _png_hash(path) != key_hashes[n]:
            write_image(path, image)
        keys[str(n)] = {"file": _rel(path, out), "sha256": key_hashes[n]}
    wanted = {Path(entry["file"]).name for entry in keys.values()}
    for old in key_dir.iterdir():  # keys of an earlier plan of this job, written by it
        if KEY_FILES.fullmatch(old.name) and old.name not in wanted:
            try:
                old.unlink()
            except OSError:
                pass
    mask_identity = {str(n): d for n, d in fingerprints.masks.items()} if masks else None
    flow_key = settings.flow_params.cache_key()

    def frame_ids(numbers):
        return [f"{n}:{identity.get(n, '')}" for n in numbers]

    command_plan = str(plan_path.resolve()) if plan_path.parent.exists() else str(plan_path)

    def command(task_id):
        return ["python", "-m", "engine", "run-task", command_plan, task_id]

    tasks = []
    spans = {span.name: span for span in plan_spans(source.frame_numbers, key_styles)}
    for task in task_graph(source.frame_numbers, key_styles):
        tasks.append(task)
        if task["kind"] == "key":
            n = task["key"]
            task.update(inputs=[keys[str(n)]["file"]], outputs=[source.name_for(n)],
                        fingerprint=fingerprints.keys[n])
            continue
        if task["kind"] == "end":
            task.update(inputs=[], outputs=[],
                        fingerprint=_hash("end", keep_cache, *(t["fingerprint"] for t in tasks[:-1])))
            continue
        span = spans[task["span"]]
        chain = _chain(span)
        span_fp = fingerprints.spans[span.name]
        work = _rel(fingerprints.work(span_fp), out)
        sources = [_rel(source.path_for(n), out) for n in chain] if hasattr(source, "path_for") else \
            [_rel(source_path, out)]
        task["work"] = work
        if task["kind"] == "flow":
            task.update(inputs=sources, outputs=[_rel(cache / "flow", out)],
                        pairs=[[a, b] for a, b in zip(chain, chain[1:])],
                        fingerprint=_hash("flow", flow_key, *frame_ids(chain)))
        elif task["kind"] in ("fwd", "bwd"):
            key = span.key_a if task["kind"] == "fwd" else span.key_b
            prefix = task["kind"] if span.kind == "between" else "pass"
            task.update(inputs=sources + [keys[str(key)]["file"]],
                        outputs=[f"{work}/{prefix}_{n}.npz" for n in span.frames],
                        fingerprint=_hash(task["kind"], span_fp))
        else:
            task.update(inputs=[work] + sources, outputs=[source.name_for(n) for n in span.frames],
                        fingerprint=span_fp)
    for task in tasks:
        task["command"] = command(task["id"])
    data = {
        "format": PLAN_FORMAT, "version": PLAN_VERSION,
        "engine_version": _engine_version(), "algorithm": ALGORITHM_VERSION,
        "source": {"path": _rel(source_path, out) if source_path is not None else None,
                   "size": list(source.size), "frames": list(source.frame_numbers),
                   "identity": {str(n): identity[n] for n in source.frame_numbers}},
        "masks": {"path": _rel(masks, out), "identity": mask_identity} if masks else None,
        "keys": keys,
        "settings": settings.as_dict(),
        "options": {"cache": _rel(cache, out), "keep_cache": bool(keep_cache), "cache_limit_mb": cache_limit_mb},
        "tasks": tasks,
    }
    data["checksums"] = _checksums(data)
    plan = Plan(path=plan_path, data=data)
    if write:
        write_bytes_atomic(plan_path, json.dumps(data, indent=1).encode())
    return plan


def _png_hash(path):
    try:
        image = read_image(path, alpha=True)
    except (FrameError, OSError, ValueError):
        return None
    return hashlib.sha256(image.tobytes() + str(image.shape).encode()).hexdigest()


def _checksums(data):
    sums = {field: _digest(data[field]) for field in PLAN_FIELDS if field != "tasks"}
    sums["tasks"] = {task["id"]: _digest(task) for task in data["tasks"]}
    return sums


def load_plan(path):
    """Read and check a plan file; refuse one edited by hand or made by another engine version.

    Raises
    ------
    PlanError
        Naming the plan file and the field at fault; a missing file names the
        path that this machine cannot see.
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise PlanError(f"{path}: plan not found; is the shared folder mounted at this path on this "
                        f"machine? (looked in {path.parent})") from None
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the plan ({exc.strerror or exc})") from None
    try:
        data = json.loads(blob)
    except ValueError as exc:
        raise PlanError(f"{path}: not a plan (invalid JSON: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise PlanError(f"{path}: not a Kar-Wai plan (field format is {data.get('format') if isinstance(data, dict) else None!r})")
    if data.get("version") != PLAN_VERSION:
        raise PlanError(f"{path}: plan format version {data.get('version')!r}, this engine reads version "
                        f"{PLAN_VERSION} (field version); make the plan again with this engine")
    if data.get("engine_version") != _engine_version():
        raise PlanError(f"{path}: plan made by engine {data.get('engine_version')!r}, this is engine "
                        f"{_engine_version()} (field engine_version); make the plan again with this engine")
    if data.get("algorithm") != ALGORITHM_VERSION:
        raise PlanError(f"{path}: plan made for algorithm version {data.get('algorithm')!r}, this engine has "
                        f"{ALGORITHM_VERSION} (field algorithm); make the plan again")
    sums = data.get("checksums")
    if not isinstance(sums, dict):
        raise PlanError(f"{path}: field checksums is missing; the plan was edited or damaged")
    for field in PLAN_FIELDS:
        if field not in data:
            raise PlanError(f"{path}: field {field} is missing; the plan was edited or damaged")
        if field == "tasks":
            continue
        if _digest(data[field]) != sums.get(field):
            raise PlanError(f"{path}: field {field} does not match its checksum: the plan was edited by "
                            f"hand; make it again with python -m engine plan")
    tasks = data["tasks"]
    task_sums = sums.get("tasks")
    if not isinstance(tasks, list) or not isinstance(task_sums, dict) or \
            [t.get("id") if isinstance(t, dict) else None for t in tasks] != list(task_sums):
        raise PlanError(f"{path}: field tasks was edited by hand (tasks added, removed or reordered); "
                        f"make the plan again with python -m engine plan")
    for task in tasks:
        if _digest(task) != task_sums[task["id"]]:
            changed = [k for k in task if k in ("command", "deps", "inputs", "outputs", "fingerprint")]
            raise PlanError(f"{path}: field tasks[{task['id']!r}] does not match its checksum: the plan was "
                            f"edited by hand (one of {', '.join(changed)}); make it again with "
                            f"python -m engine plan")
    return Plan(path=path, data=data)


# ---------------------------------------------------------------------------
# Locks and done records


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


def _read_marker(plan, task_id):
    try:
        data = json.loads(plan.marker_path(task_id).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def task_is_done(plan, task):
    """True when the task's record matches its fingerprint and its outputs are intact."""
    marker = _read_marker(plan, task["id"])
    if marker is None or marker.get("fingerprint") != task["fingerprint"]:
        return False
    outputs = marker.get("outputs")
    if not isinstance(outputs, dict):
        return False
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


# ---------------------------------------------------------------------------
# Running tasks


class TaskEnv:
    """What tasks of one plan share in one process: the source, keys, masks and flow cache."""

    def __init__(self, plan, *, source=None, progress=None, cancel=None, total=None, record=None, names=None,
                 masks=None, flow_cache=None):
        from .job import _Context

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
            source = open_frames(source_path)
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
                                   max_bytes=None if limit is None else int(float(limit) * (1 << 20)))
        if names is None:
            names = {n: source.name_for(n) for n in source.frame_numbers}
        if total is None:
            total = sum(t["units"].get("pass", 0) for t in plan.tasks)
        self.ctx = _Context(source=source, flow_cache=flow_cache, settings=settings, keys=_LazyKeys(plan),
                            masks=masks, out=plan.out, cancel=cancel, progress=progress, total=total,
                            record=record, names=names)
        self._checked_frames = set()

    def check_sources(self, numbers):
        """Refuse to work from a source frame that changed since the plan was made."""
        from .job import _source_identity

        wanted = self.plan.data["source"]["identity"]
        todo = [n for n in numbers if n not in self._checked_frames]
        if not todo:
            return
        current = _source_identity(self.source, todo)
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
    from .job import Span

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
    if not isinstance(plan, Plan):
        plan = load_plan(plan)
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
                env.ctx.done += task["units"].get("pass", 0)
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
    env.ctx.write_output(n, env.ctx.keys[n], task["fingerprint"])
    name = task["outputs"][0]
    return 0, {name: _file_sha256(plan.out / name)}


def _run_flow(plan, task, env):
    env.check_sources([n for pair in task["pairs"] for n in pair])
    names = {}
    for a, b in task["pairs"]:
        env.ctx.check_cancel()
        env.ctx.flows(b, a)
    return 0, names


def _work_dir(plan, task):
    from ..safety import own_folder
    from .job import _WORK_FILES

    work = plan.resolve(task["work"])
    # First the temporary files of killed writers: one killed while marking the
    # folder leaves the marker's, and the folder would not look like ours.
    remove_stale_temp_files(work)
    return own_folder(work, f"the pass states of {task['span']}", adopt=_WORK_FILES)


def _run_pass(plan, task, env):
    from .job import run_pass

    span = _span_of(task)
    env.check_sources(_chain(span))
    work = _work_dir(plan, task)
    computed = run_pass(env.ctx, span, task["kind"], work)
    return computed, {name: None for name in task["outputs"]}


def _chain(span):
    return [n for n in (span.key_a, *span.frames, span.key_b) if n is not None]


class PassDamaged(PlanError):
    """A finish found one of its span's pass results damaged (and removed it)."""


def _run_finish(plan, task, env):
    from ..safety import remove_owned
    from .job import _WORK_FILES, _DamagedState, finish_span

    span = _span_of(task)
    env.check_sources(_chain(span))
    work = _work_dir(plan, task)
    prefixes = ("fwd", "bwd") if span.kind == "between" else ("pass",)
    for name in (f"{prefix}_{n}.npz" for prefix in prefixes for n in span.frames):
        if not (work / name).exists():
            raise PassDamaged(f"{work / name}: a pass result is missing; run the span's pass tasks again "
                              f"(re-submitting the job does)")
    try:
        finish_span(env.ctx, span, work, task["fingerprint"])
    except _DamagedState as exc:
        try:
            os.unlink(exc.path)  # a pass result in the span's own folder: its pass is then not done
        except OSError:
            pass
        raise PassDamaged(f"{exc.path}: damaged pass result ({exc.why}); it was removed, and running the "
                          f"span's pass tasks again (re-submitting the job does) recomputes it") from None
    outputs = {name: _file_sha256(plan.out / name) for name in task["outputs"]}
    # The span's scratch files are no longer needed: its work folder (named by
    # the span's fingerprint, marked as made by this job) and, unless kept, its flow pairs.
    remove_owned(work, _WORK_FILES)
    if not plan.data["options"]["keep_cache"]:
        flow_cache = env.ctx.flow_cache
        for a, b in zip(_chain(span), _chain(span)[1:]):
            lo, hi = min(a, b), max(a, b)
            try:
                os.unlink(flow_cache.path_for(env.source.read(lo), env.source.read(hi)))
            except OSError:
                pass
    return 0, outputs


def _run_end(plan, task, env):
    from ..safety import remove_owned
    from .job import RECORD_NAME, _WORK_FILES, _Record

    if env.ctx.record is None:
        # On a farm: the job record beside the output learns the frames the tasks wrote
        # (their digests are in the task records), so a later job owns them too.
        record = _Record.load(plan.out / RECORD_NAME)
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
        remove_owned(work_root, _WORK_FILES, recurse=False)  # only when no span's folder is left
    if not plan.data["options"]["keep_cache"]:
        env.ctx.flow_cache.clear()
        remove_owned(plan.cache, _WORK_FILES, recurse=False)  # only a cache folder the job made
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
    for task in plan.tasks:
        if task["kind"] == "flow" and skip_flow:
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
