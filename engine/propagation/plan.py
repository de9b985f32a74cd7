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
:mod:`.tasks` runs the tasks and :mod:`.task_lock` holds their locks.

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

from ..errors import FrameError
from ..files import remove_stale_temp_files, write_bytes_atomic
from ..images import read_image, write_image
from ..safety import own_folder
from ..settings import ALGORITHM_VERSION, JobSettings
from .spans import span_chain

__all__ = ["PLAN_NAME", "TASKS_DIR", "PlanError", "Plan", "make_plan", "load_plan", "task_graph"]

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


def task_graph(frame_numbers, key_numbers, *, stylized=None):
    """The tasks of a job and their dependencies, without files: ``id``, ``kind``, ``deps``, ``units``.

    ``units`` counts the work of a task (``flow`` pairs, ``pass`` frames,
    ``finish`` frames, ``key`` images, ``stylize``d keys), from which
    :mod:`.simulate` predicts its duration. ``stylized`` lists the keys the job
    stylizes, in the order they can be made, as ``[(key, the key it follows or
    None)]`` (:meth:`~engine.propagation.stylized_keys.KeyStylization.order`).
    Tasks come in an order that respects the dependencies.
    """
    from .job import plan_spans

    stylized = list(stylized or [])
    follows = dict(stylized)
    painted = sorted(set(key_numbers) - set(follows))
    tasks = [{"id": f"key-{n}", "kind": "key", "key": n, "deps": [], "units": {"key": 1}} for n in painted]
    tasks += [{"id": f"key-{n}", "kind": "key", "key": n, "deps": [] if ref is None else [f"key-{ref}"],
               "units": {"key": 1, "stylize": 1}} for n, ref in stylized]
    keys = sorted(set(key_numbers) | set(follows))
    finishes = [t["id"] for t in tasks]
    for span in plan_spans(frame_numbers, keys):
        base = {"span": span.name, "span_kind": span.kind, "key_a": span.key_a, "key_b": span.key_b,
                "frames": list(span.frames)}
        flow_id = f"flow-{span.name}"
        tasks.append({"id": flow_id, "kind": "flow", **base, "deps": [],
                      "units": {"flow": len(span_chain(span)) - 1}})
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
              keep_cache=False, cache_limit_mb=None, write=True, key_dir=None, stylize=None):
    """Split a checked job into tasks; write the keys and (when ``write``) the plan file.

    ``source`` is an opened, validated frame source; ``key_styles`` the fitted
    keys (``{n: uint8 array}``); ``out`` the checked output folder;
    ``fingerprints`` what :func:`engine.propagation.job.propagate` computed
    about the inputs (one source of truth for what decides each output; a
    stylized key's ``key_hashes`` entry is its recipe); ``stylize`` the checked
    :class:`~engine.propagation.stylized_keys.KeyStylization` of the keys the
    tasks stylize. Returns a :class:`Plan`.
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
    stylized = stylize.order() if stylize is not None else []
    # Stylized keys stay beside the task records whatever the cache: each is minutes of work.
    stylized_dir = own_folder(out / TASKS_DIR / "keys", "the plan's keys", adopt=KEY_FILES) if stylized \
        else None
    channels = 4 if any(image.shape[2] == 4 for image in key_styles.values()) else 3
    for n, follows in stylized:
        path = stylized_dir / f"key-{n}-{fingerprints.key_hashes[n][:16]}.png"
        keys[str(n)] = {"file": _rel(path, out), "recipe": fingerprints.key_hashes[n], "channels": channels,
                        "stylize": stylize.plan_entry(n, follows, lambda p: _rel(p, out))}
    wanted = {Path(entry["file"]).name for entry in keys.values()}
    for folder in {key_dir, stylized_dir} - {None}:
        for old in folder.iterdir():  # keys of an earlier plan of this job, written by it
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
    key_numbers = sorted(set(key_styles) | {n for n, _ in stylized})
    spans = {span.name: span for span in plan_spans(source.frame_numbers, key_numbers)}
    for task in task_graph(source.frame_numbers, key_numbers, stylized=stylized):
        tasks.append(task)
        if task["kind"] == "key":
            n = task["key"]
            if "stylize" in keys[str(n)]:
                task.update(inputs=[source.name_for(n) if not hasattr(source, "path_for") else
                                    _rel(source.path_for(n), out)],
                            outputs=[source.name_for(n), keys[str(n)]["file"]], fingerprint=fingerprints.keys[n])
            else:
                task.update(inputs=[keys[str(n)]["file"]], outputs=[source.name_for(n)],
                            fingerprint=fingerprints.keys[n])
            continue
        if task["kind"] == "end":
            task.update(inputs=[], outputs=[],
                        fingerprint=_hash("end", keep_cache, *(t["fingerprint"] for t in tasks[:-1])))
            continue
        span = spans[task["span"]]
        chain = span_chain(span)
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
        if os.path.exists(path) and not os.path.isfile(path):  # a FIFO would block, /dev/zero never end
            raise PlanError(f"{path}: not a plan (not a regular file)")
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
