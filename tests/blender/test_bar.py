"""The bar of issue 5: the whole flow on a 48-frame 640x360 clip, with the job run
as the UI runs it (worker process, main thread only polling)."""

import time
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import compat  # noqa: E402

from conftest import (add_movie_strip, summarise_polls, read_rgb, result_strips,  # noqa: E402
                      timed, write_movie, write_wav)

pytestmark = [pytest.mark.blender, pytest.mark.slow]

H, W, N = 360, 640, 48


def test_whole_flow_on_a_48_frame_640x360_clip(saved, tmp_path):
    from blender_addon import jobs
    from blender_addon import snapshot as snapshots
    from blender_addon.engine_import import get_engine, search_path
    from blender_addon.operators.propagate import apply_result

    movie = write_movie(tmp_path / "shot.mp4", N, h=H, w=W)
    scene = bpy.context.scene
    editor = scene.sequence_editor_create()
    compat.strips(editor).new_sound("shot sound", str(write_wav(tmp_path / "shot.wav", 2.0)), 1, 1)
    source = add_movie_strip(scene, movie, name="shot", channel=2)
    editor.active_strip = source
    for frame in (8, 40):
        assert bpy.ops.karwai.add_keyframe(frame=frame) == {"FINISHED"}
    assert bpy.ops.karwai.stylize_keyframes() == {"FINISHED"}

    snap, _ = snapshots.build(bpy.context, scene, "propagate")
    controller = jobs.JobController(snap, mode="process", engine_path=search_path(get_engine()),
                                    log_dir=str(tmp_path / "logs"))
    controller.start()
    polls, cpus = [], []
    deadline = time.monotonic() + 580
    while True:
        state, wall, cpu = timed(controller.poll)
        polls.append(wall)
        cpus.append(cpu)
        if state.finished:
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)  # the modal timer's interval
    assert state.status == "FINISHED", state.error
    summary = summarise_polls(polls, cpus)

    t0 = time.perf_counter()
    strip, errors = apply_result(scene, snap, state.result)  # the modal operator's finish
    finish = time.perf_counter() - t0
    print(f"{summary}; job {state.elapsed:.1f} s; "
          f"strip added in {finish * 1000:.1f} ms")
    assert not errors
    assert result_strips(scene) == [strip]
    assert strip.channel == 3 and compat.visible_range(strip) == (1, N + 1)
    assert len(strip.elements) == N
    frames = Path(bpy.path.abspath(strip.directory))
    for t in (1, 8, 24, 40, 48):
        image = read_rgb(frames / strip.strip_elem_from_frame(t).filename)
        assert image.shape == (H, W, 3)
    for t in (8, 40):
        key = read_rgb(scene.karwai.key_for(t).path)
        shown = read_rgb(frames / strip.strip_elem_from_frame(t).filename)
        assert np.abs(shown.astype(int) - key.astype(int)).max() <= 1
