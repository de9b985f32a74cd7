"""Crash safety, cancellation and disk (issue 7, parts 2, 3 and 6).

* SIGKILL the CLI at random moments of a propagation, 20 times: after each kill
  every output frame present is complete, and a re-run finishes the job with
  bytes identical to those of an uninterrupted run.
* Cancel through the API (a ``threading.Event``) at random moments: same guarantees.
* A full disk gives "disk full while writing <file>" and leaves the outputs as
  a kill does; the flow cache is capped and the cache is removed when a job succeeds.

The clip is tiny (10 frames of 64x48, keys on frames 3 and 8, so a backward
span, a blended span between the keys and a forward span) and runs at
``quality="draft"``, so a run takes a second or two and the kills land all
over it.
"""

import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import engine.files as files_module
from engine.frames import FrameError, WriteError, remove_stale_temp_files
from engine.propagation import Cancelled, JobSettings, propagate

DRAFT = JobSettings(quality="draft")

#: Kills and re-runs: the full suite, not `build.py test --fast`.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
H, W = 48, 64
N = 10
KEYS = (3, 8)
SPAN_SIZES = {"before-None-3": 2, "between-3-8": 4, "after-8-None": 2}
TRIALS = 20


def texture(h, w, seed):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


def imwrite(path, rgb):
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    Path(path).write_bytes(buf.tobytes())


def decodes_fully(path):
    data = Path(path).read_bytes()
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is None:
        return False
    try:
        with Image.open(path) as im:
            im.load()
    except OSError:
        return False
    return True


def frame_pngs(out):
    """The output frames present (hidden names are temporary files)."""
    if not Path(out).is_dir():
        return []
    return sorted(p for p in Path(out).glob("*.png") if not p.name.startswith("."))


def assert_only_complete_frames(out):
    """Every PNG present decodes fully; no temporary file carries a .png name."""
    out = Path(out)
    if not out.is_dir():
        return
    for p in out.rglob("*"):
        if p.is_file() and p.name.endswith(".png"):
            assert not p.name.startswith("."), f"a temporary file with a .png name: {p}"
            assert decodes_fully(p), f"{p} is not a complete PNG"


def assert_finished_like(out, reference):
    """The output equals the reference run byte for byte, with nothing left over."""
    out = Path(out)
    got = {p.name: p.read_bytes() for p in frame_pngs(out)}
    assert sorted(got) == sorted(reference)
    different = [name for name in reference if got[name] != reference[name]]
    assert not different, f"frames differ from the uninterrupted run: {different}"
    leftovers = [p for p in out.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    assert not (out / ".karwai-cache").exists(), "the cache is removed when the job succeeds"


class Clip:
    def __init__(self, root):
        self.root = Path(root)
        self.frames = self.root / "frames"
        self.frames.mkdir(parents=True)
        big = texture(H, W + 3 * N + 8, seed=11)
        for t in range(1, N + 1):
            # A pan with a little brightness drift, so that every pair of frames differs.
            img = np.clip(big[:, 3 * t:3 * t + W].astype(np.int16) + t, 0, 255).astype(np.uint8)
            imwrite(self.frames / f"{t:04d}.png", img)
        self.keys = {}
        for n in KEYS:
            rgb = cv2.cvtColor(cv2.imread(str(self.frames / f"{n:04d}.png")), cv2.COLOR_BGR2RGB)
            style = np.ascontiguousarray(((rgb // 64) * 64 + 32)[:, :, ::-1])
            self.keys[n] = self.root / f"key{n}.png"
            imwrite(self.keys[n], style)

    def argv(self, out):
        args = [str(self.frames), "--out", str(out), "--quality", "draft", "--quiet"]
        for n, path in self.keys.items():
            args.append(f"--key={n}={path}")
        return [sys.executable, "-m", "engine", "propagate", *args]

    def run_api(self, out, **kwargs):
        return propagate(self.frames, dict(self.keys), out=out, settings=DRAFT, **kwargs)


def cli_env():
    return dict(os.environ, PYTHONPATH=str(ROOT))


def run_cli(clip, out):
    return subprocess.run(clip.argv(out), cwd=ROOT, env=cli_env(), capture_output=True, text=True,
                          timeout=300)


def parse_summary(stdout):
    match = re.search(r"\((\d+) computed, (\d+) kept", stdout)
    assert match, stdout
    return int(match.group(1)), int(match.group(2))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    clip = Clip(tmp_path_factory.mktemp("clip"))
    # Warm numba's on-disk cache in-process (a cold compile takes ~25 s), and
    # take the reference bytes from an uninterrupted run of the API ...
    api = clip.run_api(clip.root / "reference-api")
    clip.reference = {p.name: p.read_bytes() for p in api.frames}
    assert len(clip.reference) == N
    start = time.monotonic()
    clip.run_api(clip.root / "timing-api")
    clip.api_duration = time.monotonic() - start
    # ... and of the CLI, timed: kill moments are drawn from its duration.
    start = time.monotonic()
    proc = run_cli(clip, clip.root / "reference-cli")
    clip.duration = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    cli = {p.name: p.read_bytes() for p in frame_pngs(clip.root / "reference-cli")}
    assert cli == clip.reference, "the CLI and the API disagree on the same job"
    return clip


# ---------------------------------------------------------------------------
# SIGKILL at random moments


def kill_at_random(clip, out, rng, attempt):
    """Start the CLI and SIGKILL it at a random moment; return what happened.

    Half the trials kill after a random delay drawn from the measured run
    time; the others wait until a random number of frames is on disk and then
    kill within about one frame's time, so the kills land all over the run
    whatever the machine's speed. A run that finished before the kill is
    tried again with a shorter delay (``attempt``).
    """
    proc = subprocess.Popen(clip.argv(out), cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    shrink = 0.5 ** attempt
    if rng.random() < 0.5:
        delay = rng.uniform(0.02, clip.duration) * shrink
        how = f"after {delay:.2f} s"
        time.sleep(delay)
    else:
        target = rng.randint(1, N - 1)
        delay = rng.uniform(0.0, clip.duration / N) * shrink
        how = f"{delay:.2f} s after {target} frames were on disk"
        deadline = time.monotonic() + 120
        while proc.poll() is None and len(frame_pngs(out)) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    return proc.returncode == -signal.SIGKILL, how, stderr


def one_kill_trial(clip, trial):
    """Kill a run at a random moment (every 5th trial kills the re-run too)."""
    rng = random.Random(7000 + trial)
    out = clip.root / f"kill-{trial:02d}"
    report = {"kills": [], "present": [], "out": out}
    for round_ in range(2 if trial % 5 == 4 else 1):
        for attempt in range(4):
            killed, how, stderr = kill_at_random(clip, out, rng, attempt)
            if killed:
                break
            if round_ == 0:
                shutil.rmtree(out, ignore_errors=True)  # it finished: start that trial afresh
        report["kills"].append((killed, how, stderr))
        if not killed:
            return report
        # After each kill: only complete frames on disk, and no temp file named .png.
        present = frame_pngs(out)
        report["present"].append(len(present))
        broken = [str(p) for p in present if not decodes_fully(p)]
        broken += [str(p) for p in out.rglob(".*.png")]
        if broken:
            report["broken"] = broken
    record_path = out / ".karwai-job.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {"spans": {}}
    report["finished_spans"] = [s for s in record["spans"] if s in SPAN_SIZES]
    if trial % 5 == 4:
        proc = run_cli(clip, out)
        report["rerun"] = (proc.returncode, proc.stderr, *(parse_summary(proc.stdout) if proc.returncode == 0
                                                           else (None, None)))
    return report


@pytest.fixture(scope="module")
def kill_trials(clip):
    """All kill trials, two CLI runs at a time (one per core); then the re-runs.

    The re-runs of most trials go through the API in this process (the CLI is a
    thin layer over it, and gives the same bytes: see the ``clip`` fixture),
    which saves the CLI's two seconds of start-up; every 5th trial re-runs
    through the CLI.
    """
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda t: one_kill_trial(clip, t), range(TRIALS)))
    for report in reports:
        if "rerun" not in report and all(k[0] for k in report["kills"]) and "broken" not in report:
            result = clip.run_api(report["out"])
            report["rerun"] = (0, "", result.computed, result.skipped)
    return reports


posix_only = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX-only")


@posix_only
@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_then_rerun_gives_identical_bytes(clip, kill_trials, trial):
    report = kill_trials[trial]
    for killed, how, stderr in report["kills"]:
        assert killed, f"the run finished before every kill ({how}); nothing was tested\n{stderr}"
        assert "Traceback" not in stderr, stderr
    assert "broken" not in report, f"incomplete output after a kill: {report['broken']}"
    returncode, stderr, computed, kept = report["rerun"]
    assert returncode == 0, stderr
    assert computed + kept <= N - len(KEYS)
    # Spans the killed run had finished are kept, not recomputed.
    assert kept >= sum(SPAN_SIZES[s] for s in report["finished_spans"])
    assert_finished_like(report["out"], clip.reference)


@posix_only
def test_kills_landed_all_over_the_run(kill_trials):
    """The trials did kill mid-job: some before any frame, some with frames on disk."""
    present = [n for r in kill_trials for n in r["present"]]
    assert len(present) >= TRIALS
    assert any(0 < n < N for n in present), present


# ---------------------------------------------------------------------------
# Cancel through the API at random moments


@pytest.mark.parametrize("trial", range(10))
def test_cancel_at_a_random_moment_then_resume(clip, tmp_path, trial):
    rng = random.Random(500 + trial)
    cancel = threading.Event()
    out = tmp_path / "out"
    steps = []
    at_cancel = {}
    if trial % 2 == 0:
        # From the progress callback, after a random number of steps.
        stop_at = rng.randint(0, N - len(KEYS) + SPAN_SIZES["between-3-8"])

        def progress(done, total, message):
            steps.append(done)
            if len(steps) >= stop_at and not cancel.is_set():
                cancel.set()
                at_cancel["frames"] = {p.name for p in frame_pngs(out)}
        if stop_at == 0:
            cancel.set()
        timer = None
    else:
        # From another thread, after a random delay within the measured run time.
        progress = None
        timer = threading.Timer(rng.uniform(0.0, clip.api_duration), cancel.set)
        timer.start()
    try:
        clip.run_api(out, progress=progress, cancel=cancel)
        cancelled = False
    except Cancelled:
        cancelled = True
    finally:
        if timer is not None:
            timer.cancel()
    assert_only_complete_frames(out)
    finished_spans = []
    if cancelled:
        assert len(frame_pngs(out)) < N
        if "frames" in at_cancel:  # it stopped at once: no frame was written after the cancel
            assert {p.name for p in frame_pngs(out)} == at_cancel["frames"]
        # A cancelled job keeps what a resume needs (the cache is only cleaned on success).
        assert (out / ".karwai-cache").is_dir()
        record = json.loads((out / ".karwai-job.json").read_text())
        finished_spans = [s for s in record["spans"] if s in SPAN_SIZES]
    resumed = clip.run_api(out)
    # The resume keeps the spans the cancelled run had finished.
    assert resumed.skipped >= sum(SPAN_SIZES[s] for s in finished_spans)
    assert_finished_like(out, clip.reference)


def test_cancel_before_the_first_frame_leaves_nothing(clip, tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        clip.run_api(tmp_path / "out", cancel=cancel)
    # Only the keys themselves (complete) may be there.
    assert {p.name for p in frame_pngs(tmp_path / "out")} <= {f"{n:04d}.png" for n in KEYS}
    clip.run_api(tmp_path / "out")
    assert_finished_like(tmp_path / "out", clip.reference)


# ---------------------------------------------------------------------------
# Disk full


def _full_disk_after(monkeypatch, writes_allowed):
    """Let ``writes_allowed`` atomic writes through, then fail like a full disk.

    The failing write puts half its bytes in the temporary file first, as a
    real ENOSPC does.
    """
    real = files_module._write_all
    calls = {"n": 0, "failed": None}

    def write_all(fd, data, *rest):
        calls["n"] += 1
        if calls["n"] <= writes_allowed:
            return real(fd, data, *rest)
        blob = b"".join(bytes(part) for part in data) if isinstance(data, list) else bytes(data)
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob[: len(blob) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files_module, "_write_all", write_all)
    return calls


def _count_writes(clip, tmp_path, monkeypatch):
    real = files_module._write_all
    count = {"n": 0}

    def counting(fd, data, *rest):
        count["n"] += 1
        return real(fd, data, *rest)
    with monkeypatch.context() as m:
        m.setattr(files_module, "_write_all", counting)
        clip.run_api(tmp_path / "count")
    return count["n"]


def test_a_full_disk_is_a_clear_error_and_a_rerun_completes(clip, tmp_path, monkeypatch):
    total = _count_writes(clip, tmp_path, monkeypatch)
    assert total > 20  # keys, flow, pass states, frames, the job record
    rng = random.Random(3)
    # The first write (a key frame), the last (the job record) and a few between.
    for allowed in sorted({0, total - 1, *rng.sample(range(1, total - 1), 6)}):
        out = tmp_path / f"out-{allowed}"
        with monkeypatch.context() as m:
            _full_disk_after(m, allowed)
            with pytest.raises(WriteError) as info:
                clip.run_api(out)
        message = str(info.value)
        assert message.startswith("disk full while writing "), message
        named = Path(message[len("disk full while writing "):].split(" (")[0])
        assert named.parent.exists() and not named.name.endswith(".tmp"), message
        assert isinstance(info.value, FrameError) and isinstance(info.value, OSError)
        assert info.value.errno == errno.ENOSPC
        assert_only_complete_frames(out)
        assert not [p for p in out.rglob("*.tmp")], "the failed write's temporary file was left"
        # Space is back: the re-run finishes the job, bytes as if nothing happened.
        clip.run_api(out)
        assert_finished_like(out, clip.reference)


def test_a_full_disk_through_the_cli_is_one_line_and_exit_1(clip, tmp_path):
    """The CLI's handling of the error, with the disk filled up after 5 writes."""
    script = (
        "import errno, os, sys\n"
        "import engine.files as f\n"
        "real, n = f._write_all, [0]\n"
        "def full(fd, data, *rest):\n"
        "    n[0] += 1\n"
        "    if n[0] <= 5:\n"
        "        return real(fd, data, *rest)\n"
        "    os.close(fd)\n"
        "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
        "f._write_all = full\n"
        "from engine.__main__ import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    argv = clip.argv(tmp_path / "out")
    proc = subprocess.run([sys.executable, "-c", script, *argv[3:]], cwd=ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("propagate: error: disk full while writing "), proc.stderr
    assert_only_complete_frames(tmp_path / "out")
    proc = run_cli(clip, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert_finished_like(tmp_path / "out", clip.reference)


# ---------------------------------------------------------------------------
# Cache: capped, cleaned on success, stale temporary files removed


def _flow_bytes(folder):
    return sum(p.stat().st_size for p in Path(folder).glob("flow-*.npy"))


def test_the_cache_is_removed_when_a_job_succeeds_unless_kept(clip, tmp_path):
    clip.run_api(tmp_path / "plain")
    assert not (tmp_path / "plain" / ".karwai-cache").exists()
    kept = clip.run_api(tmp_path / "kept", keep_cache=True)
    cache = tmp_path / "kept" / ".karwai-cache"
    assert not (cache / "work").exists(), "pass states are removed with their span"
    assert len(list((cache / "flow").glob("flow-*.npy"))) == N - 1  # one per neighbouring pair
    assert {p.name: p.read_bytes() for p in kept.frames} == clip.reference
    # A given cache folder that holds other things is left in place, emptied of ours.
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    (shared / "notes.txt").write_text("mine")
    clip.run_api(tmp_path / "with-shared", cache_dir=shared)
    assert sorted(p.name for p in shared.rglob("*")) == ["notes.txt"]


def test_the_flow_cache_is_capped_and_eviction_does_not_change_the_output(clip, tmp_path):
    entry = 2 * H * W * 2 * 2 + 128  # float16 (2, H, W, 2) and the .npy header
    limit_mb = 3.5 * entry / (1 << 20)
    result = clip.run_api(tmp_path / "out", keep_cache=True, cache_limit_mb=limit_mb)
    flow = tmp_path / "out" / ".karwai-cache" / "flow"
    assert 0 < _flow_bytes(flow) <= limit_mb * (1 << 20)
    assert len(list(flow.glob("flow-*.npy"))) <= 3
    assert {p.name: p.read_bytes() for p in result.frames} == clip.reference
    # No cache at all on disk: the same bytes again.
    result = clip.run_api(tmp_path / "none", keep_cache=True, cache_limit_mb=0)
    assert _flow_bytes(tmp_path / "none" / ".karwai-cache" / "flow") == 0
    assert {p.name: p.read_bytes() for p in result.frames} == clip.reference


def test_flow_cache_evicts_the_least_recently_used(tmp_path):
    from engine.flow import FlowCache

    frames = [texture(24, 32, s) for s in range(5)]
    probe = FlowCache(tmp_path / "probe", max_bytes=None)
    probe.pair(frames[0], frames[1])
    size = _flow_bytes(tmp_path / "probe")
    cache = FlowCache(tmp_path / "flow", max_bytes=3 * size)
    paths = []
    for i in range(3):
        cache.pair(frames[i], frames[i + 1])
        paths.append(cache.path_for(frames[i], frames[i + 1]))
        time.sleep(0.01)
    cache.pair(frames[0], frames[1])  # a hit makes the oldest entry the newest
    time.sleep(0.01)
    assert cache.hits == 1
    cache.pair(frames[3], frames[4])  # over the cap: evict down to 90 % of it
    assert not paths[1].exists() and paths[0].exists()
    assert cache.evictions >= 1 and _flow_bytes(tmp_path / "flow") <= 3 * size


def test_stale_temporary_files_of_killed_writers_are_removed(clip, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = files_module._HOST_TAG
    stale = out / f".0004.png.{dead.pid}.{here}abcd.tmp"
    stale.write_bytes(b"\x89PNG half a frame")
    alive = out / f".0005.png.{os.getppid()}.{here}abcd.tmp"  # a live writer's: kept
    alive.write_bytes(b"busy")
    # Another machine's writer (a farm sharing the folder): its pid means nothing here, so
    # it is kept while fresh, and removed once older than any write takes.
    other = "0000" if here != "0000" else "ffff"
    remote = out / f".0006.png.{dead.pid}.{other}abcd.tmp"
    remote.write_bytes(b"being written on another machine")
    remote_old = out / f".0007.png.{dead.pid}.{other}abce.tmp"
    remote_old.write_bytes(b"left by a dead worker elsewhere")
    old = time.time() - 2 * files_module._STALE_TEMP_AGE
    os.utime(remote_old, (old, old))
    mine = out / "notes.0123abcd.tmp"  # not the writer's pattern: never touched
    mine.write_bytes(b"user file")
    clip.run_api(out)
    assert not stale.exists() and not remote_old.exists()
    assert alive.exists() and mine.exists() and remote.exists()
    assert remove_stale_temp_files(tmp_path / "does not exist") == 0


# ---------------------------------------------------------------------------
# Issue 11: damaged pass states, and stylize and suggest killed at random moments


def _cancel_after(clip, out, steps):
    """Run the API and cancel it after ``steps`` progress reports (pass states are then on disk)."""
    cancel = threading.Event()
    count = []

    def progress(done, total, message):
        count.append(done)
        if len(count) >= steps:
            cancel.set()
    with pytest.raises(Cancelled):
        clip.run_api(out, progress=progress, cancel=cancel)


@pytest.mark.parametrize("damage", ["truncate", "empty", "flip", "garbage"])
def test_damaged_pass_states_are_recomputed_not_trusted(clip, tmp_path, damage):
    out = tmp_path / "out"
    # Into the span between the keys: its forward pass and its state are on disk.
    _cancel_after(clip, out, SPAN_SIZES["before-None-3"] + 3)
    states = sorted((out / ".karwai-cache" / "work").rglob("*.npz"))
    assert states, "the cancelled run left pass states"
    for path in states:
        data = path.read_bytes()
        if damage == "truncate":
            data = data[: len(data) // 2]
        elif damage == "empty":
            data = b""
        elif damage == "flip":
            data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
        else:
            data = b"PK\x03\x04" + bytes(64)
        path.write_bytes(data)
    with pytest.warns(UserWarning, match="damaged pass state") as record:
        clip.run_api(out)
    assert any(str(states[0].parent) in str(w.message) for w in record)
    assert_finished_like(out, clip.reference)
    # Through the CLI: no traceback, a warning line naming the file, the same bytes.
    out2 = tmp_path / "out2"
    _cancel_after(clip, out2, SPAN_SIZES["before-None-3"] + 3)
    for path in (out2 / ".karwai-cache" / "work").rglob("*_state.npz"):
        path.write_bytes(path.read_bytes()[:10])
    proc = run_cli(clip, out2)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "damaged pass state" in proc.stderr and "_state.npz" in proc.stderr
    assert_finished_like(out2, clip.reference)


def _kill_runs(argv, trials, seed, duration, done):
    """Run ``argv`` ``trials`` times, SIGKILLed at a random moment of its measured ``duration``."""
    rng = random.Random(seed)
    kills = 0
    for trial in range(trials):
        proc = subprocess.Popen(argv, cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.0, duration))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        kills += proc.returncode == -signal.SIGKILL
        done(trial)
    return kills


@posix_only
def test_stylize_killed_at_random_moments_then_rerun(tmp_path):
    frame = tmp_path / "frame_0001.png"
    imwrite(frame, texture(H, W, seed=5))
    out_dir = tmp_path / "keys"
    out_dir.mkdir()
    out = out_dir / "key_0001.png"
    argv = [sys.executable, "-m", "engine", "stylize", str(frame), "--method", "painterly", "--param",
            "filter=oil", "--out", str(out), "--quiet"]
    start = time.monotonic()
    reference = subprocess.run(argv[:-2] + [str(tmp_path / "reference.png"), "--quiet"], cwd=ROOT,
                               env=cli_env(), capture_output=True, text=True, timeout=300)
    duration = time.monotonic() - start
    assert reference.returncode == 0, reference.stderr
    expected = (tmp_path / "reference.png").read_bytes()

    def after_kill(trial):
        # After a kill: no output, or a complete one; a re-run gives the same bytes, nothing left over.
        if out.exists():
            assert out.read_bytes() == expected
        if trial % 2:
            proc = subprocess.run(argv, cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
            assert out.read_bytes() == expected
            assert sorted(p.name for p in out_dir.iterdir()) == ["key_0001.png"], "stray files"
            out.unlink()
    kills = _kill_runs(argv, 8, 1100, duration, after_kill)
    assert kills >= 4


@posix_only
def test_suggest_killed_at_random_moments_then_rerun(clip, tmp_path):
    argv = [sys.executable, "-m", "engine", "suggest", str(clip.frames)]
    before = {p.name: p.read_bytes() for p in clip.frames.iterdir()}
    start = time.monotonic()
    reference = subprocess.run(argv, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    duration = time.monotonic() - start
    assert reference.returncode == 0 and reference.stdout.strip(), reference.stderr

    def after_kill(trial):
        proc = subprocess.run(argv, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and proc.stdout == reference.stdout, proc.stderr
    kills = _kill_runs(argv, 6, 1200, duration, after_kill)
    assert kills >= 3
    assert {p.name: p.read_bytes() for p in clip.frames.iterdir()} == before
    assert list(tmp_path.iterdir()) == [], "suggest writes nothing"


def test_stylize_removes_only_its_own_dead_temporary_file(tmp_path):
    frame = tmp_path / "frame_0001.png"
    imwrite(frame, texture(H, W, seed=5))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = files_module._HOST_TAG  # written on this machine (another machine's is judged by its age)
    mine = tmp_path / f".out.png.{dead.pid}.{here}abcd.tmp"  # what a killed stylize leaves
    mine.write_bytes(b"half a png")
    other = tmp_path / f".other.png.{dead.pid}.{here}abcd.tmp"  # another output's: not this run's business
    other.write_bytes(b"someone else's")
    proc = subprocess.run([sys.executable, "-m", "engine", "stylize", str(frame), "--method", "painterly",
                           "--out", str(tmp_path / "out.png"), "--quiet"], cwd=ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not mine.exists() and other.exists()


def test_a_folder_killed_while_being_marked_is_still_the_engines(tmp_path):
    """A kill between creating a cache folder and renaming its marker into place leaves
    only the marker's temporary file: the folder is still the engine's, and the dead
    writer's temporary file is cleared (a live writer's is left alone)."""
    from engine import safety

    folder = tmp_path / "cache"
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    from engine.files import _HOST_TAG

    stale = folder / f"..karwai-owned.{dead}.{_HOST_TAG}0123.tmp"
    live = folder / f"..karwai-owned.{os.getpid()}.{_HOST_TAG}89ab.tmp"
    stale.write_text("{")
    live.write_text("{")
    safety.own_folder(folder, "the cache folder")
    assert safety.is_owned(folder)
    assert not stale.exists() and live.exists()
    (folder / "thesis.txt").write_text("mine")
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.txt").write_text("mine")
    with pytest.raises(Exception, match="not made by Kar-Wai"):
        safety.own_folder(other, "the cache folder")
