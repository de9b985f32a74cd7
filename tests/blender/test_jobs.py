"""The job controller: polled as the modal timer polls it, while the engine works."""

import importlib
import random
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import compat  # noqa: E402

from conftest import (FakeContext, FakeEvent, add_image_strip, summarise_polls, hash_tree,  # noqa: E402
                      read_rgb, result_strips, timed, write_images)

pytestmark = [pytest.mark.blender, pytest.mark.slow]


def _build(kind, **kwargs):
    from blender_addon import snapshot

    snap, _source = snapshot.build(bpy.context, bpy.context.scene, kind, **kwargs)
    return snap


def _process_controller(snap, tmp_path):
    from blender_addon import jobs
    from blender_addon.engine_import import get_engine, search_path

    return jobs.JobController(snap, mode="process", engine_path=search_path(get_engine()),
                              log_dir=str(tmp_path / "logs"))


def _drive(controller, *, cancel_when=None, interval=0.005, timeout=120.0):
    """Poll like the modal timer does (faster, to measure finely) until the job ends.

    Returns a record: every poll's duration, when ``done`` advanced in the
    propagation step, when cancel was asked and when the job ended.
    """
    record = {"polls": [], "cpu": [], "advances": [], "cancel_at": None, "end_at": None}
    last_done = None
    start = time.monotonic()
    controller.start()
    while True:
        state, wall, cpu = timed(controller.poll)
        record["polls"].append(wall)
        record["cpu"].append(cpu)
        now = time.monotonic()
        if state.finished:
            record["end_at"] = now
            record["state"] = state
            return record
        if state.step == "Propagating" and state.done != last_done:
            if last_done is not None:
                record["advances"].append(now)
            last_done = state.done
        if record["cancel_at"] is None and cancel_when is not None and cancel_when(record, state):
            controller.cancel()
            record["cancel_at"] = time.monotonic()
            record["done_at_cancel"] = state.done
        assert now - start < timeout, "the job did not end"
        time.sleep(interval)


def _environment_of(pid):
    """The environment process ``pid`` started with (Linux's /proc/PID/environ)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _complete_pngs(folder):
    """Every PNG in ``folder`` decodes completely (nothing half-written)."""
    from engine.frames import read_image

    names = sorted(p for p in Path(folder).glob("*.png"))
    for path in names:
        read_image(path)
    assert not [p for p in Path(folder).iterdir() if p.name.endswith(".tmp")]
    return names


def test_poll_is_cheap_and_cancel_stops_within_a_frame(saved, tmp_path):
    """A real propagation runs in the worker; the main thread only polls."""
    scene = bpy.context.scene
    folder = write_images(tmp_path / "clip", 16, h=192, w=320)
    add_image_strip(scene, folder)
    for frame in (1, 16):
        bpy.ops.karwai.add_keyframe(strip="seq", frame=frame)
    assert bpy.ops.karwai.stylize_keyframes(strip="seq") == {"FINISHED"}
    snap = _build("propagate", strip_name="seq")
    assert not any(k.stylize for k in snap.keys)

    rng = random.Random(7)
    extra = rng.uniform(0.0, 1.0)
    controller = _process_controller(snap, tmp_path)
    worker_env = {}

    def cancel_when(record, state):
        if not worker_env and controller._proc is not None and sys.platform.startswith("linux"):
            worker_env.update(_environment_of(controller._proc.proc.pid))
        # after a few frames, at a random moment within a frame
        adv = record["advances"]
        if len(adv) < 4:
            return False
        unit = (adv[-1] - adv[0]) / (len(adv) - 1)
        return time.monotonic() - adv[-1] >= extra * unit

    record = _drive(controller, cancel_when=cancel_when)
    state = record["state"]
    assert state.status == "CANCELLED", state.error
    if sys.platform.startswith("linux"):
        from engine.allocator import job_environment

        # glibc reads these at the worker's start, before its threads make arenas (engine.allocator).
        wanted = job_environment({})
        assert {k: worker_env.get(k) for k in wanted} == wanted
    polls = record["polls"]
    assert len(polls) > 50
    summary = summarise_polls(polls, record["cpu"])
    advances = record["advances"]
    frame_time = max(b - a for a, b in zip(advances, advances[1:]))
    latency = record["end_at"] - record["cancel_at"]
    print(f"{summary}; frame up to {frame_time:.3f} s; cancel took {latency:.3f} s")
    # nothing half-made: no result strip, no result folder, only complete frames staged
    assert result_strips(scene) == []
    out = Path(snap.out_dir)
    assert not (out / "frames").exists()
    staged = _complete_pngs(out / "frames.partial")
    assert 2 <= len(staged) < 16


def test_cancelled_rerun_leaves_the_previous_result_alone(saved, media, tmp_path):
    scene = bpy.context.scene
    add_image_strip(scene, media["images"])
    for frame in (3, 20):
        bpy.ops.karwai.add_keyframe(strip="seq", frame=frame)
    assert bpy.ops.karwai.propagate(strip="seq") == {"FINISHED"}
    (first,) = result_strips(scene)
    first_state = (first.name, first.channel, [e.filename for e in first.elements])
    frames = Path(bpy.path.abspath(first.directory))
    before = hash_tree(frames)

    scene.karwai.default_style.painterly_filter = "oil"
    snap = _build("propagate", strip_name="seq")
    assert all(k.stylize for k in snap.keys)  # stale keys are stylized by the job

    def cancel_when(record, state):
        return len(record["advances"]) >= 3

    record = _drive(_process_controller(snap, tmp_path), cancel_when=cancel_when)
    assert record["state"].status == "CANCELLED"
    # what the modal operator does on CANCELLED: nothing to the scene
    (still,) = result_strips(scene)
    assert (still.name, still.channel, [e.filename for e in still.elements]) == first_state
    assert hash_tree(frames) == before
    _complete_pngs(frames.parent / "frames.partial")

    # a re-run finishes the job and replaces the result
    assert bpy.ops.karwai.propagate(strip="seq") == {"FINISHED"}
    (second,) = result_strips(scene)
    assert second.channel == first_state[1]
    assert hash_tree(frames) != before
    assert not (frames.parent / "frames.partial").exists()
    key = read_rgb(scene.karwai.key_for(3).path)
    element = second.strip_elem_from_frame(3)
    assert np.abs(read_rgb(frames / element.filename).astype(int) - key.astype(int)).max() <= 1


def test_worker_errors_and_crashes_are_reported(saved, media, tmp_path):
    import shutil

    scene = bpy.context.scene
    folder = write_images(tmp_path / "clip", 12)
    add_image_strip(scene, folder)
    bpy.ops.karwai.add_keyframe(strip="seq", frame=2)
    snap = _build("propagate", strip_name="seq")

    # a frame that is not an image: the engine's message names the file
    (folder / "0007.png").write_bytes(b"not a png")
    record = _drive(_process_controller(snap, tmp_path))
    assert record["state"].status == "FAILED"
    assert str(folder / "0007.png") in record["state"].error

    # the worker process dies: said so, with its log
    shutil.copy(media["images"] / "shot_0007.png", folder / "0007.png")
    controller = _process_controller(snap, tmp_path)

    def kill_when(record, state):
        if state.step == "Propagating" and controller._proc is not None:
            controller._proc.proc.kill()  # the process dies, as a crash would: not through kill()
            return False
        return False

    record = _drive(controller, cancel_when=kill_when)
    assert record["state"].status == "FAILED"
    assert "the worker process stopped (exit code" in record["state"].error


# --------------------------------------------------------------------------------------
# thread mode, with a stand-in engine


def _fake_engine(frame_seconds, *, fail=None, calls=None):
    """The real engine, but a propagate that takes ``frame_seconds`` per frame (and
    appends its keyword arguments to ``calls``)."""
    import engine
    import engine.frames
    import engine.guides
    import engine.keyframes
    import engine.stylizers

    def propagate(frames, keys, *, out, progress=None, cancel=None, **kwargs):
        if calls is not None:
            calls.append(dict(kwargs, frames=frames, keys=keys, out=out))
        source = engine.frames.open_frames(frames)
        Path(out).mkdir(parents=True, exist_ok=True)
        paths = []
        numbers = source.frame_numbers
        for i, n in enumerate(numbers):
            if cancel is not None and cancel.is_set():
                raise engine.Cancelled("cancelled")
            if fail is not None and i == 2:
                raise fail
            time.sleep(frame_seconds)
            path = Path(out) / source.name_for(n)
            engine.frames.write_frame_atomic(path, np.ascontiguousarray(source.read(n)[::-1]))
            paths.append(path)
            if progress is not None:
                progress(i + 1, len(numbers), f"frame {n}")
        return types.SimpleNamespace(frames=paths)

    real_propagate = importlib.import_module("engine.propagation")

    return types.SimpleNamespace(frames=engine.frames, stylizers=engine.stylizers,
                                 guides=engine.guides, keyframes=engine.keyframes, clips=engine.clips,
                                 threads=engine.threads,
                                 propagate=propagate, JobSettings=real_propagate.JobSettings,
                                 Cancelled=engine.Cancelled)


def _thread_controller(snap, engine):
    from blender_addon import jobs

    return jobs.JobController(snap, mode="thread", engine=engine)


def test_thread_mode_reports_steps_progress_and_eta(saved, media):
    scene = bpy.context.scene
    add_image_strip(scene, media["images"])
    bpy.ops.karwai.add_keyframe(strip="seq", frame=4)
    snap = _build("propagate", strip_name="seq")
    controller = _thread_controller(snap, _fake_engine(0.02))
    seen = []

    def watch(record, state):
        seen.append(state)
        return False

    record = _drive(controller, cancel_when=watch)
    assert record["state"].status == "FINISHED"
    steps = [s.step for s in seen]
    # Polls sample the steps (a short one may end between two polls): they only move on,
    # and propagation is step 3 of 4, after reading frames and stylizing the key.
    indices = [s.step_index for s in seen]
    assert indices == sorted(indices) and "Propagating" in steps
    mid = [s for s in seen if s.step == "Propagating" and 4 <= s.done < 20]
    assert mid and all(s.eta is not None and s.eta > 0 for s in mid)
    text = mid[-1].describe()
    assert text.startswith("Propagating (3/4): ") and "left" in text
    assert 0 < mid[0].factor < mid[-1].factor < 1
    files = record["state"].result["files"]
    assert [t for t, _ in files] == list(range(1, 25))
    # a worker thread shares the GIL: only the poll's own work is bounded here
    assert max(record["cpu"]) <= 0.010


def test_thread_mode_cancel_within_a_frame_and_errors(saved, media):
    scene = bpy.context.scene
    add_image_strip(scene, media["images"])
    bpy.ops.karwai.add_keyframe(strip="seq", frame=4)
    bpy.ops.karwai.stylize_keyframes(strip="seq")
    snap = _build("propagate", strip_name="seq")
    frame_seconds = 0.1
    record = _drive(_thread_controller(snap, _fake_engine(frame_seconds)),
                    cancel_when=lambda r, state: state.step == "Propagating" and state.done >= 3)
    assert record["state"].status == "CANCELLED"
    # the fake engine checks cancel before each frame: it stops within the frame it is on
    staged = _complete_pngs(Path(snap.out_dir) / "frames.partial")
    assert len(staged) <= record["done_at_cancel"] + 1 < 24
    assert not (Path(snap.out_dir) / "frames").exists()

    record = _drive(_thread_controller(snap, _fake_engine(0.0, fail=ValueError("key 4 is odd"))))
    assert record["state"].status == "FAILED" and record["state"].error == "key 4 is odd"
    record = _drive(_thread_controller(snap, _fake_engine(0.0, fail=KeyError("bug"))))
    assert record["state"].status == "FAILED" and record["state"].error.startswith("KeyError")


def test_run_sync_prints_progress_and_honours_cancel(saved, media, capsys):
    from blender_addon import jobs

    scene = bpy.context.scene
    add_image_strip(scene, media["images"])
    bpy.ops.karwai.add_keyframe(strip="seq", frame=4)
    scene.karwai.quality = "best"
    scene.karwai.weights.temporal = 2.5
    scene.karwai.temporal_smoothing = 0.5
    scene.karwai.restore_detail = False
    scene.karwai.blend, scene.karwai.key_fit, scene.karwai.seed = "crossfade", "crop", 5
    snap = _build("propagate", strip_name="seq")
    lines = []
    calls = []
    result = jobs.run_sync(snap, engine=_fake_engine(0.0, calls=calls), log=lines.append,
                           interval=0.0)
    (call,) = calls
    assert call["settings"].quality == "best"
    assert call["settings"].weights.temporal == 2.5 and call["settings"].weights.colour == 6.0
    assert call["settings"].temporal_smoothing == 0.5 and call["settings"].restore_detail is False
    assert (call["settings"].blend, call["settings"].key_fit, call["settings"].seed) == ("crossfade", "crop", 5)
    assert call["frames"] == str(media["images"])  # the folder holds exactly the strip's frames
    assert call["keys"] == {4: str(Path(snap.out_dir) / "keys" / "key_000004.png")}
    assert call["out"] == str(Path(snap.out_dir) / "frames.partial")
    assert [t for t, _ in result["files"]] == list(range(1, 25))
    assert lines[0] == "Kar-Wai: Reading frames (1/4)"
    assert any(line.startswith("Kar-Wai: Propagating (3/4): 24/24") for line in lines)

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(jobs.JobCancelled):
        jobs.run_sync(snap, engine=_fake_engine(0.0), log=lines.append, cancel=cancel)


def test_snapshot_round_trips_through_json(saved, media):
    import json

    from blender_addon.worker import Snapshot

    scene = bpy.context.scene
    add_image_strip(scene, media["images"], frame_start=-3)
    bpy.ops.karwai.add_keyframe(strip="seq", frame=0)
    snap = _build("propagate", strip_name="seq")
    again = Snapshot.from_json(json.loads(json.dumps(snap.to_json())))
    assert again == snap
    assert again.clip.frames[0].timeline == -3


# --------------------------------------------------------------------------------------
# the modal operator itself, fed timer events as Blender's window manager feeds them


def _modal_operator(monkeypatch, kind):
    """An instance running the real JobOperatorMixin code of the ``kind`` operator, as in the UI."""
    from blender_addon.operators import _job
    from blender_addon.operators import propagate as propagate_op

    monkeypatch.setattr(_job, "in_background", lambda: False)
    cls = {"propagate": propagate_op.KARWAI_OT_propagate}[kind]

    class Probe(_job.JobOperatorMixin):
        job_kind = kind
        finish = cls.finish
        strip = ""

        def __init__(self):
            self.reports = []

        def report(self, kinds, message):
            self.reports.append((set(kinds), message))

    return Probe()


def _run_modal(op, context, *, esc_when=None, timeout=120.0):
    """Feed timer events until the operator ends; returns (result, durations of modal())."""
    durations, cpus = [], []
    result = op.invoke(context, None)
    assert result == {"RUNNING_MODAL"}
    assert context.window_manager.handlers == [op] and len(context.window_manager.timers) == 1
    start = time.monotonic()
    escaped = False
    while True:
        time.sleep(op_poll_interval())
        if esc_when is not None and not escaped and esc_when(op):
            assert op.modal(context, FakeEvent("ESC", "PRESS")) == {"RUNNING_MODAL"}
            escaped = True
        timer = context.window_manager.timers[0]
        result, wall, cpu = timed(op.modal, context, FakeEvent("TIMER", timer=timer))
        durations.append(wall)
        cpus.append(cpu)
        if result != {"PASS_THROUGH"}:
            return result, (durations, cpus)
        assert op.modal(context, FakeEvent("MOUSEMOVE")) == {"PASS_THROUGH"}  # UI stays usable
        assert time.monotonic() - start < timeout


def op_poll_interval():
    from blender_addon.operators import _job

    return _job.POLL_INTERVAL / 4  # faster than Blender, to finish the test sooner


def test_modal_operator_runs_the_job_off_the_main_thread(saved, media, tmp_path, monkeypatch):
    from blender_addon import jobs

    scene = bpy.context.scene
    add_image_strip(scene, media["images"])
    scene.sequence_editor.active_strip = compat.strips(scene.sequence_editor)["seq"]
    for frame in (3, 20):
        bpy.ops.karwai.add_keyframe(frame=frame)

    # Esc: the job stops, nothing is added
    op = _modal_operator(monkeypatch, "propagate")
    context = FakeContext()
    result, durations = _run_modal(
        op, context, esc_when=lambda op: op._controller.state.step == "Propagating"
        and op._controller.state.done >= 2)
    assert result == {"CANCELLED"}
    assert op.reports[-1] == ({"WARNING"}, "Cancelled; nothing was added to the scene")
    assert result_strips(scene) == [] and context.window_manager.timers == []
    assert not jobs.busy()

    # to the end: the strip is added by the last timer tick, on the main thread
    op = _modal_operator(monkeypatch, "propagate")
    context = FakeContext()
    assert bpy.ops.karwai.propagate.poll()
    result, durations = _run_modal(op, context)
    assert result == {"FINISHED"}, op.reports
    print(summarise_polls(*durations))
    (strip,) = result_strips(scene)
    assert strip.channel == 2 and len(strip.elements) == 24
    assert op.reports[-1] == ({"INFO"}, "Added strip 'seq (Kar-Wai)' on channel 2")
    assert context.window_manager.timers == [] and not jobs.busy()


def test_preferences_reach_the_worker(saved, media, tmp_path):
    """Cache folder, threads, neural device and VGG19 weights go into the snapshot and
    on to the neural stylizers' parameters."""
    from blender_addon.engine_import import get_engine
    from blender_addon.worker import EngineAPI
    from blender_addon.worker.run import _style_params

    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.cache_dir = str(tmp_path / "my cache")
    prefs.threads = 1
    prefs.device = "cpu"
    weights = tmp_path / "vgg19.pth"
    weights.write_bytes(b"")
    prefs.vgg_weights = str(weights)
    artwork = tmp_path / "art.png"
    artwork.write_bytes((media["images"] / "shot_0001.png").read_bytes())

    scene = bpy.context.scene
    add_image_strip(scene, media["images"])
    bpy.ops.karwai.add_keyframe(strip="seq", frame=2)
    bpy.ops.karwai.add_keyframe(strip="seq", frame=9)
    entry = scene.karwai.key_for(9, create=True)
    entry.use_own_style = True
    entry.style.method = "neural"
    entry.style.style_image = str(artwork)
    entry.style.params = "iterations = 5"
    snap = _build("stylize", strip_name="seq")
    assert (snap.cache_dir, snap.threads, snap.device, snap.vgg_weights) == (
        str(tmp_path / "my cache"), 1, "cpu", str(weights))
    painterly, neural = snap.keys
    assert painterly.method == "painterly" and painterly.params == {"filter": "watercolour"}
    assert neural.method == "neural"
    assert neural.params == {"iterations": "5", "style_image": str(artwork)}
    api = EngineAPI(get_engine())
    assert _style_params(snap, painterly, engine=api) == {"filter": "watercolour"}
    if not api.stylizers.available_methods()["neural"].available:
        pytest.skip("PyTorch is not installed: neural parameters cannot be typed")
    params = _style_params(snap, neural, engine=api)
    assert params == {"iterations": 5, "style_image": str(artwork), "device": "cpu",
                      "weights": str(weights), "download": snap.download}


def test_cancels_at_random_moments_then_a_rerun_matches_an_uninterrupted_run(saved, media,
                                                                            tmp_path):
    """Issue 7's guarantees through the add-on's controller: after cancels at random
    moments only complete frames exist, the earlier strip is untouched, and the re-run
    ends with the very bytes of an uninterrupted run."""
    scene = bpy.context.scene
    add_image_strip(scene, media["images"])
    for frame in (5, 18):
        bpy.ops.karwai.add_keyframe(strip="seq", frame=frame)
    scene.karwai.output_dir = str(tmp_path / "straight")
    assert bpy.ops.karwai.propagate(strip="seq") == {"FINISHED"}
    straight = {k: v for k, v in hash_tree(tmp_path / "straight" / "frames").items()
                if k.endswith(".png")}
    assert len(straight) == 24
    (first,) = result_strips(scene)

    scene.karwai.output_dir = str(tmp_path / "interrupted")
    rng = random.Random(5)
    for _attempt in range(2):
        snap = _build("propagate", strip_name="seq")
        after = rng.randint(1, 8)
        record = _drive(_process_controller(snap, tmp_path),
                        cancel_when=lambda r, state, after=after: len(r["advances"]) >= after)
        assert record["state"].status == "CANCELLED"
        assert result_strips(scene) == [first] and first.directory.endswith("straight/frames/")
        _complete_pngs(tmp_path / "interrupted" / "frames.partial")
    assert bpy.ops.karwai.propagate(strip="seq") == {"FINISHED"}
    resumed = {k: v for k, v in hash_tree(tmp_path / "interrupted" / "frames").items()
               if k.endswith(".png")}
    assert resumed == straight
    (second,) = result_strips(scene)
    assert second.directory.endswith("interrupted/frames/")
