"""Spans as tasks for a farm (issue 15): the plan, run-task, Dask, Flamenco, the simulation.

The clip is real: the first 12 frames of sam2_dog scaled to 160x90, keys on
frames 3, 7 and 10 (a span before the first key, two between keys, one after
the last), at draft quality, so a job takes a second or two. Every farm run
is compared byte for byte with a local :func:`engine.propagate` of the same job.
Nothing here asserts a time.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.propagation import JobSettings, plan_job, propagate
from engine.propagation.plan import PLAN_NAME, TASKS_DIR, PlanError, load_plan
from engine.propagation.task_lock import TaskLock
from engine.propagation.tasks import run_task
from engine.propagation.simulate import critical_path, simulate, table

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ROOT.parent / "shared" / "data" / "clips"
KEYS = (3, 7, 10)
N = 12
SETTINGS = JobSettings(quality="draft")

needs_clips = pytest.mark.skipif(not (CLIPS / "sam2_dog").is_dir(), reason="the shared real clips are absent")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _style(bgr):
    return cv2.cvtColor(cv2.stylization(bgr, sigma_s=40, sigma_r=0.35), cv2.COLOR_BGR2RGB)


class Clip:
    def __init__(self, root):
        self.root = root
        self.frames = root / "clip"
        self.frames.mkdir()
        for t in range(1, N + 1):
            bgr = cv2.imread(str(CLIPS / "sam2_dog" / f"{t:04d}.jpg"))
            cv2.imwrite(str(self.frames / f"{t:04d}.png"), cv2.resize(bgr, (160, 90), interpolation=cv2.INTER_AREA))
        self.key_files = {}
        for n in KEYS:
            path = root / f"key{n}.png"
            cv2.imwrite(str(path), cv2.cvtColor(_style(cv2.imread(str(self.frames / f"{n:04d}.png"))),
                                                cv2.COLOR_RGB2BGR))
            self.key_files[n] = path
        result = propagate(self.frames, dict(self.key_files), out=root / "reference", settings=SETTINGS)
        assert result.computed == N - len(KEYS)
        self.reference = {p.name: p.read_bytes() for p in result.frames}

    def plan(self, out, **kwargs):
        return plan_job(self.frames, dict(self.key_files), out=out, settings=SETTINGS, **kwargs)

    def key_args(self):
        return [a for n, p in self.key_files.items() for a in ("--key", f"{n}={p}")]

    def assert_identical(self, out):
        out = Path(out)
        got = {p.name: p.read_bytes() for p in out.glob("*.png") if not p.name.startswith(".")}
        assert sorted(got) == sorted(self.reference)
        different = [name for name in got if got[name] != self.reference[name]]
        assert not different, f"frames that differ from the local run: {different}"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    if not (CLIPS / "sam2_dog").is_dir():
        pytest.skip("the shared real clips are absent")
    return Clip(tmp_path_factory.mktemp("farm"))


def run_cli(*args, check=True, **kwargs):
    proc = subprocess.run([sys.executable, "-m", "engine", *map(str, args)], capture_output=True, text=True,
                          env=_env(), cwd=ROOT, **kwargs)
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


# ---------------------------------------------------------------------------
# The plan


@needs_clips
def test_plan_lists_every_task_with_its_graph_and_command(clip, tmp_path):
    proc = run_cli("plan", clip.frames, *clip.key_args(), "--out", tmp_path / "out", "--quality", "draft")
    plan = load_plan(tmp_path / "out" / PLAN_NAME)
    ids = [t["id"] for t in plan.tasks]
    spans = ["before-None-3", "between-3-7", "between-7-10", "after-10-None"]
    expected = {f"key-{n}" for n in KEYS} | {f"{k}-{s}" for s in spans for k in ("flow", "finish")} | \
        {"bwd-before-None-3", "fwd-after-10-None", "end"} | \
        {f"{d}-{s}" for s in spans[1:3] for d in ("fwd", "bwd")}
    assert set(ids) == expected and len(ids) == len(expected)
    position = {task_id: i for i, task_id in enumerate(ids)}
    for task in plan.tasks:
        assert all(position[d] < position[task["id"]] for d in task["deps"]), task["id"]
        assert task["command"] == ["python", "-m", "engine", "run-task", str((tmp_path / "out" / PLAN_NAME).resolve()),
                                   task["id"]]
        assert len(task["fingerprint"]) == 64 and isinstance(task["inputs"], list)
    by_id = {t["id"]: t for t in plan.tasks}
    # The passes between two keys are independent; the finish waits for both.
    assert set(by_id["finish-between-3-7"]["deps"]) == {"flow-between-3-7", "fwd-between-3-7", "bwd-between-3-7"}
    assert by_id["fwd-between-3-7"]["deps"] == ["flow-between-3-7", "key-3"]
    assert by_id["finish-between-3-7"]["outputs"] == ["0004.png", "0005.png", "0006.png"]
    assert set(by_id["end"]["deps"]) == {t["id"] for t in plan.tasks if t["kind"] in ("finish", "key")}
    assert "18 tasks" in proc.stdout
    # Nothing was computed: only the plan, the keys it refers to and no frame.
    assert not list((tmp_path / "out").glob("*.png"))


@needs_clips
def test_run_task_resumes_and_skips_what_is_done(clip, tmp_path):
    plan = clip.plan(tmp_path / "out")
    for task in plan.tasks:
        assert run_task(plan.path, task["id"]) >= 0
    clip.assert_identical(tmp_path / "out")
    # Re-submitting the whole job does nothing ...
    again = [run_cli("run-task", plan.path, task_id).stdout
             for task_id in ("key-3", "flow-between-3-7", "bwd-between-7-10", "finish-after-10-None")]
    assert all("already done" in line for line in again)
    # ... except where an output is gone or damaged: that span is recomputed, to the same bytes.
    (tmp_path / "out" / "0005.png").write_bytes(b"not the frame")
    (tmp_path / "out" / "0011.png").unlink()
    redone = {t["id"]: run_task(plan.path, t["id"]) for t in load_plan(plan.path).tasks}
    assert redone["fwd-between-3-7"] == 3 and redone["fwd-after-10-None"] == 2
    assert redone["fwd-between-7-10"] == 0 and redone["bwd-before-None-3"] == 0
    clip.assert_identical(tmp_path / "out")


@needs_clips
def test_a_task_whose_dependency_is_missing_is_refused(clip, tmp_path):
    plan = clip.plan(tmp_path / "out")
    proc = run_cli("run-task", plan.path, "finish-between-3-7", check=False)
    assert proc.returncode == 1
    assert "fwd-between-3-7" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "0004.png").exists()


# ---------------------------------------------------------------------------
# Bad input


@needs_clips
@pytest.mark.parametrize("field, edit", [
    ("settings", lambda d: d["settings"].update(seed=7)),
    ("source", lambda d: d["source"]["frames"].pop()),
    ("keys", lambda d: d["keys"]["3"].update(sha256="0" * 64)),
    ("tasks['fwd-between-3-7']", lambda d: d["tasks"][7]["command"].append("--force")),
    ("tasks", lambda d: d["tasks"].pop(3)),
    ("engine_version", lambda d: d.update(engine_version="0.0.1")),
    ("version", lambda d: d.update(version=99)),
])
def test_a_plan_edited_by_hand_or_from_another_version_is_refused_naming_the_field(clip, tmp_path, field, edit):
    plan = clip.plan(tmp_path / "out")
    data = json.loads(plan.path.read_text())
    assert data["tasks"][7]["id"] == "fwd-between-3-7"
    edit(data)
    plan.path.write_text(json.dumps(data, indent=1))
    with pytest.raises(PlanError, match=re.escape(f"field {field}")):
        load_plan(plan.path)
    proc = run_cli("run-task", plan.path, "key-3", check=False)
    assert proc.returncode == 1 and f"field {field}" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "0003.png").exists()


@needs_clips
def test_a_task_run_twice_at_once_waits_for_the_first(clip, tmp_path):
    plan = clip.plan(tmp_path / "out")
    run_task(plan.path, "key-3")
    run_task(plan.path, "flow-between-3-7")
    lock = tmp_path / "out" / TASKS_DIR / "fwd-between-3-7.lock"
    with TaskLock(lock):  # as if another worker were running the task
        proc = subprocess.Popen([sys.executable, "-m", "engine", "run-task", str(plan.path), "fwd-between-3-7"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        reader.start()
        deadline = time.monotonic() + 120
        while not any("waiting" in line for line in lines) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        waiting = "".join(lines)
        assert "is running elsewhere; waiting for it" in waiting and str(lock) in waiting
        assert proc.poll() is None, "the second run went ahead while the first held the task"
        assert not list((tmp_path / "out").rglob("fwd_[0-9]*.npz"))
    out = proc.stdout.read()
    assert proc.wait(timeout=300) == 0, "".join(lines)
    assert "done" in out and len(list((tmp_path / "out").rglob("fwd_[0-9]*.npz"))) == 3


@needs_clips
def test_a_worker_that_cannot_see_the_shared_folder_gets_the_path(clip, tmp_path):
    plan = clip.plan(tmp_path / "out")
    missing = tmp_path / "not-mounted" / PLAN_NAME
    proc = run_cli("run-task", missing, "key-3", check=False)
    assert proc.returncode == 1 and str(missing) in proc.stderr and "mounted" in proc.stderr
    assert "Traceback" not in proc.stderr
    # The plan is there but the frames are not (another mount point on this worker).
    hidden = tmp_path / "clip-hidden"
    shutil.copytree(tmp_path / "out", hidden / "out")
    proc = run_cli("run-task", hidden / "out" / PLAN_NAME, "key-3", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "not found on this machine" in proc.stderr and "clip" in proc.stderr
    assert run_cli("run-task", plan.path, "key-3").returncode == 0


# ---------------------------------------------------------------------------
# Dask


def _need_dask():
    return pytest.importorskip("distributed")


@needs_clips
def test_dask_local_cluster_gives_the_bytes_of_a_local_run(clip, tmp_path, monkeypatch):
    distributed = _need_dask()
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    steps = []
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        result = propagate(clip.frames, dict(clip.key_files), out=tmp_path / "out", settings=SETTINGS,
                           dask=client, progress=lambda done, total, message: steps.append((done, total)))
    clip.assert_identical(tmp_path / "out")
    workers = {json.loads(p.read_text())["worker"] for p in (tmp_path / "out" / TASKS_DIR).glob("*.json")}
    assert len(workers) >= 2 and os.getpid() not in {int(w.rsplit(":", 1)[1]) for w in workers}
    assert result.computed == N - len(KEYS) and result.skipped == 0
    assert steps[-1] == (14, 14) and [d for d, _ in steps] == sorted(d for d, _ in steps)
    assert not (tmp_path / "out" / ".karwai-cache").exists(), "the job's cache is removed when it succeeds"


@needs_clips
def test_dask_cancel_stops_the_job_and_a_rerun_resumes_to_the_same_bytes(clip, tmp_path, monkeypatch):
    distributed = _need_dask()
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    from engine.propagation import Cancelled

    cancel = threading.Event()
    steps = []

    def progress(done, total, message):
        steps.append(message)
        if message.startswith(("fwd-", "bwd-")):
            cancel.set()  # after the first pass: the rest of the job must not run

    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with pytest.raises(Cancelled):
            propagate(clip.frames, dict(clip.key_files), out=tmp_path / "out", settings=SETTINGS, dask=client,
                      progress=progress, cancel=cancel)
        time.sleep(1.0)  # let any task that was running see the cancel and stop
        records = {p.stem: p.read_bytes() for p in (tmp_path / "out" / TASKS_DIR).glob("*.json")}
        assert "end" not in records and len(records) < 18, sorted(records)
        kept = {k: v for k, v in records.items() if k.startswith(("fwd-", "bwd-"))}
        assert kept, "the pass that reported progress left its record"
        propagate(clip.frames, dict(clip.key_files), out=tmp_path / "out", settings=SETTINGS, dask=client)
    clip.assert_identical(tmp_path / "out")
    # The resumed job did not redo the passes finished before the cancel.
    assert {k: (tmp_path / "out" / TASKS_DIR / f"{k}.json").read_bytes() for k in kept} == kept


@needs_clips
def test_dask_scheduler_and_two_workers_started_here(clip, tmp_path):
    _need_dask()
    scheduler_file = tmp_path / "scheduler.json"
    procs = []
    logs = []

    def start(*args):
        log = open(tmp_path / f"dask-{len(procs)}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log, stderr=subprocess.STDOUT,
                                      env=_env(), cwd=tmp_path))

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(scheduler_file))
        deadline = time.monotonic() + 120
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for _ in range(2):
            start("worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard")
        proc = run_cli("propagate", clip.frames, *clip.key_args(), "--out", tmp_path / "out", "--quality", "draft",
                       "--dask", address, "--quiet", timeout=600)
        assert f"{N} frames" in proc.stdout and f"{N - len(KEYS)} computed" in proc.stdout
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
    clip.assert_identical(tmp_path / "out")
    assert all(p.poll() is not None for p in procs)


@needs_clips
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX-only")
def test_a_worker_killed_mid_task_still_gives_the_same_bytes(clip, tmp_path, monkeypatch):
    distributed = _need_dask()
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    for attempt in range(3):
        out = tmp_path / f"out{attempt}"
        killed = {}
        with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            pids = client.run(os.getpid)

            def killer():
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline and not killed:
                    for state in out.glob(".karwai-cache/work/*/*_state.npz"):
                        direction = state.name.split("_")[0]
                        for addr, keys in client.processing().items():
                            for key in keys:
                                name = key if isinstance(key, str) else str(key)
                                if name.startswith(f"karwai-{direction}-") and addr in pids:
                                    task_id = name[len("karwai-"):name.rindex("-")]
                                    if (out / TASKS_DIR / f"{task_id}.json").exists():
                                        continue
                                    os.kill(pids[addr], signal.SIGKILL)
                                    killed.update(task=task_id, state=state.exists(),
                                                  done=(out / TASKS_DIR / f"{task_id}.json").exists())
                                    return
                    time.sleep(0.005)

            thread = threading.Thread(target=killer, daemon=True)
            thread.start()
            result = propagate(clip.frames, dict(clip.key_files), out=out, settings=SETTINGS, dask=client)
            thread.join(timeout=5)
        clip.assert_identical(out)
        assert result.computed + result.skipped <= N - len(KEYS)
        if killed and not killed["done"]:
            break  # the kill landed while the task was running, and the job still finished
    assert killed and not killed["done"], f"no worker was killed in the middle of a task in 3 tries: {killed}"


def test_without_distributed_the_cli_and_propagate_work_and_dask_is_a_clear_error(tmp_path):
    script = f"""
import sys
sys.modules["distributed"] = None  # as if dask[distributed] were not installed
import numpy as np
from engine.frames import write_frame_atomic
from engine.propagation import JobSettings, propagate
from pathlib import Path
clip = Path({str(tmp_path / 'clip')!r}); clip.mkdir()
rng = np.random.default_rng(0)
for t in range(1, 5):
    write_frame_atomic(clip / f"{{t:04d}}.png", (rng.random((24, 32, 3)) * 255).astype(np.uint8))
key = (rng.random((24, 32, 3)) * 255).astype(np.uint8)
r = propagate(clip, {{1: key}}, out={str(tmp_path / 'out')!r}, settings=JobSettings(quality="draft"))
print("local", r.computed)
try:
    propagate(clip, {{1: key}}, out={str(tmp_path / 'out2')!r}, dask="tcp://127.0.0.1:1")
except ValueError as exc:
    print("refused", exc)
from engine.__main__ import main
sys.exit(main(["plan", str(clip), "--key", "1=" + str(clip / "0001.png"), "--out", {str(tmp_path / 'out3')!r}]))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "local 3" in proc.stdout
    assert "refused dask: running on a Dask cluster needs dask[distributed]" in proc.stdout
    assert (tmp_path / "out3" / PLAN_NAME).exists()


# ---------------------------------------------------------------------------
# Flamenco


def _node():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    return node


# A minimal implementation of the job compiler API that Flamenco's Manager gives
# a job script (internal/manager/job_compilers: author.go, scripts.go; see the
# script's header), recording the tasks, their commands and dependencies.
HARNESS = r"""
const fs = require("fs");
const nodePath = require("path");
const vm = require("vm");
const [scriptPath, settingsPath] = process.argv.slice(2);
let nextId = 0;
const recorded = [];
const author = {
  Task(name, type) {
    if (!name || !type) throw new Error("author.Task(name, type): name and type are required");
    const task = { uuid: `t${nextId++}`, name, type, commands: [], dependencies: [],
      addCommand(cmd) { this.commands.push(cmd); },
      addDependency(dep) { this.dependencies.push(dep); } };
    return task;
  },
  Command(name, parameters, totalStepCount) { return { name, parameters, totalStepCount: totalStepCount || 0 }; },
};
const flamencoPath = { join: nodePath.join, dirname: nodePath.dirname, basename: nodePath.basename,
  stem: (p) => nodePath.basename(p, nodePath.extname(p)) };
const context = { author, path: flamencoPath, print: (...a) => console.error(...a), JSON };
vm.createContext(context);
vm.runInContext(fs.readFileSync(scriptPath, "utf8") + "\n;globalThis.JOB_TYPE = JOB_TYPE; globalThis.compileJob = compileJob;", context);
const settings = JSON.parse(fs.readFileSync(settingsPath, "utf8"));
for (const s of context.JOB_TYPE.settings) {
  if (!(s.key in settings) && "default" in s) settings[s.key] = s.default;
}
const job = { settings, created: new Date(), addTask(t) { recorded.push(t); } };
try {
  context.compileJob(job);
} catch (err) {
  console.log(JSON.stringify({ error: String(err) }));
  process.exit(0);
}
console.log(JSON.stringify({ jobType: context.JOB_TYPE.settings.map((s) => s.key),
  tasks: recorded.map((t) => ({ name: t.name, type: t.type, commands: t.commands.map((c) => ({ name: c.name, parameters: c.parameters })),
    deps: t.dependencies.map((d) => d.name) })) }));
"""

SCRIPT = ROOT / "farm" / "flamenco" / "karwai-propagate.js"


def _compile_job(tmp_path, settings):
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS)
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps(settings))
    proc = subprocess.run([_node(), str(harness), str(SCRIPT), str(settings_file)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@needs_clips
def test_flamenco_script_compiles_the_plan_and_its_commands_give_the_local_bytes(clip, tmp_path):
    out = tmp_path / "out"
    run_cli("plan", clip.frames, *clip.key_args(), "--out", out, "--quality", "draft",
            "--flamenco-job", tmp_path / "job.json", "--python", sys.executable, "--video")
    job = json.loads((tmp_path / "job.json").read_text())
    assert job["type"] == "karwai-propagate" and job["settings"]["plan"] == str((out / PLAN_NAME).resolve())
    compiled = _compile_job(tmp_path, job["settings"])
    assert "error" not in compiled, compiled
    plan = load_plan(out / PLAN_NAME)
    tasks = compiled["tasks"]
    assert [t["name"] for t in tasks] == [t["id"] for t in plan.tasks] + ["frames-to-video"]
    by_name = {t["name"]: t for t in tasks}
    for task in plan.tasks:
        got = by_name[task["id"]]
        assert got["type"] == "karwai" and sorted(got["deps"]) == sorted(task["deps"])
        (command,) = got["commands"]
        assert command["name"] == "exec"
        assert command["parameters"]["exe"] == sys.executable
        assert command["parameters"]["args"] == task["command"][1:]
    video = by_name["frames-to-video"]
    assert video["type"] == "ffmpeg" and video["deps"] == ["end"]
    assert video["commands"][0]["parameters"]["inputGlob"] == str(out / "*.png")
    # Run the recorded commands here in dependency order, as Flamenco's workers would.
    done = set()
    pending = [t for t in tasks if t["type"] == "karwai"]
    while pending:
        ready = [t for t in pending if set(t["deps"]) <= done]
        assert ready, "the recorded graph has a cycle"
        for t in ready:
            params = t["commands"][0]["parameters"]
            proc = subprocess.run([params["exe"], *params["args"]], capture_output=True, text=True, env=_env(),
                                  cwd=tmp_path)
            assert proc.returncode == 0, proc.stderr
            done.add(t["name"])
        pending = [t for t in pending if t["name"] not in done]
    clip.assert_identical(out)


def test_flamenco_script_refuses_a_graph_that_is_not_a_plan(tmp_path):
    bad = [["x", [], ["python", "-m", "engine", "run-task", "/p", "y"]], ["end", ["x"], ["python"]]]
    compiled = _compile_job(tmp_path, {"plan": "/p/.karwai-plan.json", "tasks": json.dumps(bad)})
    assert "error" in compiled and "not [id, deps, python -m engine run-task PLAN id]" in compiled["error"]
    compiled = _compile_job(tmp_path, {"plan": "/p/.karwai-plan.json", "tasks": "{not json"})
    assert "setting tasks is not JSON" in compiled["error"]
    later = [["a", ["end"], ["python", "-m", "engine", "run-task", "/p", "a"]],
             ["end", [], ["python", "-m", "engine", "run-task", "/p", "end"]]]
    compiled = _compile_job(tmp_path, {"plan": "/p/.karwai-plan.json", "tasks": json.dumps(later)})
    assert "depends on end, which comes later" in compiled["error"]


# ---------------------------------------------------------------------------
# The simulation's arithmetic, on graphs whose answer is known


def _graph(spec):
    """``{id: (seconds, [deps])}`` as tasks whose one unit of kind "pass" lasts ``seconds``."""
    return [{"id": k, "deps": list(deps), "units": {"pass": s}} for k, (s, deps) in spec.items()]


COSTS = {"flow": 0.0, "pass": 1.0, "finish": 0.0, "key": 0.0}


def test_simulation_of_independent_tasks_and_a_chain():
    four = _graph({"a": (3, []), "b": (3, []), "c": (3, []), "d": (3, [])})
    assert simulate(four, COSTS, 1) == 12 and simulate(four, COSTS, 2) == 6 and simulate(four, COSTS, 4) == 3
    assert simulate(four, COSTS, 8) == 3
    chain = _graph({"a": (2, []), "b": (5, ["a"]), "c": (1, ["b"])})
    assert simulate(chain, COSTS, 1) == 8 and simulate(chain, COSTS, 16) == 8
    assert critical_path(chain, COSTS) == (8, ["a", "b", "c"])


def test_simulation_starts_the_longest_chain_first_and_respects_dependencies():
    # Two workers: a 1 s task, and a chain of 4 s + 4 s. Longest chain first gives 8 s
    # (the short task fits beside it); taking the short task first would give 9 s.
    graph = _graph({"short": (1, []), "long1": (4, []), "long2": (4, ["long1"])})
    assert simulate(graph, COSTS, 2) == 8
    # A span: flow 1, two passes of 4 in parallel, finish 1; then an end that waits.
    span = _graph({"flow": (1, []), "fwd": (4, ["flow"]), "bwd": (4, ["flow"]), "finish": (1, ["fwd", "bwd"])})
    assert simulate(span, COSTS, 1) == 10 and simulate(span, COSTS, 2) == 6
    assert critical_path(span, COSTS)[0] == 6
    rows = table(span, COSTS, 3)
    assert [r[0] for r in rows] == [1, 2, 3]
    assert [r[1] for r in rows] == [10, 6, 6] and rows[1][2] == pytest.approx(10 / 6)
    assert all(r[1] >= r[4] for r in rows)  # never below max(total / workers, critical path)


def test_simulation_uses_units_and_overhead():
    costs = {"flow": 0.5, "pass": 2.0, "finish": 0.25, "key": 0.1, "overhead": 1.0}
    tasks = [{"id": "k", "deps": [], "units": {"key": 1}},
             {"id": "f", "deps": [], "units": {"flow": 4}},
             {"id": "p", "deps": ["f", "k"], "units": {"pass": 3}},
             {"id": "z", "deps": ["p"], "units": {"finish": 3}}]
    # k 1.1, f 3, p 7, z 1.75: one worker runs them all; the path f-p-z is 11.75.
    assert simulate(tasks, costs, 1) == pytest.approx(12.85)
    assert simulate(tasks, costs, 2) == pytest.approx(11.75)
    assert critical_path(tasks, costs) == (pytest.approx(11.75), ["f", "p", "z"])


def test_film_simulation_from_the_cli(tmp_path):
    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps({"flow": 0.1, "pass": 1.0, "finish": 0.1, "key": 0.05}))
    proc = run_cli("plan", "--simulate", "8", "--film", "401", "--key-every", "40", "--costs", costs)
    lines = proc.stdout.splitlines()
    assert "11 keys" in lines[0]
    rows = [line.split() for line in lines if line.strip() and line.split()[0] in {"1", "2", "4", "8"}]
    assert [r[0] for r in rows] == ["1", "2", "4", "8"]
    # 10 spans of 39 frames: per span flow 4 s, passes 2 x 39 s, finish 3.9 s; keys 0.55 s.
    assert rows[0][1] == "14:20"  # 10 * (4 + 78 + 3.9) + 0.55 = 859.55 s
    assert "critical path" in lines[-1] and ("fwd-between" in lines[-1] or "bwd-between" in lines[-1])
