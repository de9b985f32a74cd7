"""``python build.py demo``'s steps, run as build.py runs them, on a 12-frame 160x90 shot;
and the built-in example's shot and sound (engine/demo.py)."""

import os
import re
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import compat  # noqa: E402

from conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.blender

N, W, H = 12, 160, 90


# --------------------------------------------------------------------------------------
# the built-in example (no bpy)


def test_shot_has_a_camera_move_and_a_ball_that_moves_on_its_own():
    import cv2

    from engine import demo

    frames = demo.demo_frames(24, (320, 180))
    assert len(frames) == 24 and frames[0].shape == (180, 320, 3) and frames[0].dtype == np.uint8
    assert np.array_equal(demo.demo_frame(5, 24, (320, 180)), frames[4])  # deterministic
    # the camera: the top-left background (never crossed by the ball) pans between frames
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32)[:80, :120] for f in frames]
    (dx, dy), _ = cv2.phaseCorrelate(grey[8], grey[12])
    assert abs(dx) + abs(dy) > 5.0, (dx, dy)
    # the ball: where ball_position says, red, and moving against the pan
    for i in (1, 12, 24):
        x, y, r = demo.ball_position((i - 1) / 23, 320, 180)
        centre = frames[i - 1][int(y), int(x)].astype(int)
        assert centre[0] > 120 and centre[0] > centre[2] + 40, centre  # red-orange
        assert r > 5
    x0, x1 = demo.ball_position(0.0, 320, 180)[0], demo.ball_position(1.0, 320, 180)[0]
    assert x0 - x1 > 150
    assert demo.bounce_times(48) == [16, 40]


def test_sound_is_a_stereo_chord_with_knocks(tmp_path):
    from engine import demo

    samples = demo.demo_audio(48)
    assert samples.shape == (2 * demo.SAMPLE_RATE, 2) and samples.dtype == np.int16
    assert np.abs(samples).max() > 8000 and not np.array_equal(samples[:, 0], samples[:, 1])
    path = demo.write_wav(tmp_path / "s.wav", samples)
    with wave.open(str(path)) as handle:
        assert (handle.getnchannels(), handle.getsampwidth(), handle.getframerate(),
                handle.getnframes()) == (2, 2, demo.SAMPLE_RATE, 2 * demo.SAMPLE_RATE)
    # a knock at each bounce: louder than the chord just before it
    level = np.abs(samples[:, 0].astype(float))
    for frame in demo.bounce_times(48):
        at = int((frame - 1) / 24 * demo.SAMPLE_RATE)
        assert level[at:at + 2000].max() > 1.5 * level[at - 4000:at - 2000].max()


def test_input_for_the_command_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "engine.demo", "--out", str(tmp_path),
                          "--frames", "6", "--size", "64x36"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [
        f"{i:04d}.png" for i in range(1, 7)]
    assert (tmp_path / "shot.wav").is_file()


# --------------------------------------------------------------------------------------
# the demo, end to end


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """``python -m tools.demo`` (what ``build.py demo`` runs) on a small shot."""
    out = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env["BLENDER_USER_RESOURCES"] = str(out / "blender-user")
    run = subprocess.run([sys.executable, "-m", "tools.demo", "--out", str(out), "--frames",
                          str(N), "--size", f"{W}x{H}", "--setup-seconds", "0.0"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out, run.stdout


def _decode(path):
    import av

    with av.open(str(path)) as container:
        (video,) = container.streams.video
        (audio,) = container.streams.audio
        codecs = video.codec_context.name, audio.codec_context.name
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video)]
    with av.open(str(path)) as container:
        sound = np.concatenate([f.to_ndarray().reshape(-1) for f in
                                container.decode(container.streams.audio[0])])
        rate = container.streams.audio[0].codec_context.sample_rate
        channels = container.streams.audio[0].codec_context.channels
    return codecs, frames, sound, rate, channels


def test_demo_renders_a_stylized_mp4_with_sound(demo_run):
    import engine
    from engine import demo
    from tools.demo import key_frames, style_distance

    out, stdout = demo_run
    mp4 = out / "render" / "demo.mp4"
    codecs, frames, sound, rate, channels = _decode(mp4)
    assert codecs == ("h264", "aac")
    assert len(frames) == N and frames[0].shape == (H, W, 3)
    # the sound track is the shot's sound: about N/24 s of the chord, not silence
    seconds = sound.size / channels / rate
    assert abs(seconds - N / 24) < 0.1 and np.abs(sound).max() > 0.05
    # every frame is stylized: away from its source, nearer to the painterly look
    for i, rendered in enumerate(frames, 1):
        source = demo.demo_frame(i, N, (W, H))
        styled = engine.stylize(source, method="painterly", filter="oil")
        assert style_distance(rendered, source) > 4.0, i
        assert style_distance(rendered, styled) < style_distance(rendered, source), i
    # at a keyframe the render shows the stylized key
    import cv2

    k = key_frames(N)[1]
    keys = sorted((out / "karwai" / "shot" / "keys").glob("*.png"))
    assert len(keys) == 2 and str(k) in keys[1].stem
    key = cv2.cvtColor(cv2.imread(str(keys[1])), cv2.COLOR_BGR2RGB)
    assert style_distance(frames[k - 1], key) < 3.0


def test_demo_mp4_tracks_read_without_ffmpeg_match_pyav(demo_run):
    from tools.demo import mp4_tracks

    out, _ = demo_run
    tracks = {t["handler"]: t for t in mp4_tracks(out / "render" / "demo.mp4")}
    assert set(tracks) == {"vide", "soun"}
    assert tracks["vide"]["codec"] == "avc1" and tracks["vide"]["samples"] == N
    assert tracks["soun"]["codec"] == "mp4a" and abs(tracks["soun"]["seconds"] - N / 24) < 0.1


def test_demo_prints_paths_times_and_the_preview(demo_run):
    import cv2

    from engine import demo
    from tools.demo import key_frames

    out, stdout = demo_run
    for label in ("Blender file", "source movie", "sound", "stylized keys", "stylized frames",
                  "rendered MP4", "preview (source | stylized)"):
        line = re.search(rf"^  {re.escape(label)} +(\S.*)$", stdout, re.M)
        assert line, label
        assert Path(line.group(1)).exists(), line.group(1)
    steps = re.findall(r"^  (\d\w?\. .*?) +(\d+\.\d) s$", stdout, re.M)
    assert [s[0].split(".")[0] for s in steps] == ["1", "2", "3", "4a", "4b", "5", "6a", "6b"]
    assert re.search(r"^  total \(steps 2-6\) +\d+\.\d s$", stdout, re.M)
    preview_path = Path(re.search(r"^Preview: (.*)$", stdout, re.M).group(1))
    preview = cv2.cvtColor(cv2.imread(str(preview_path)), cv2.COLOR_BGR2RGB)
    assert preview.shape == (H, 2 * W + 8, 3)
    middle = sum(key_frames(N)) // 2
    assert np.array_equal(preview[:, :W], demo.demo_frame(middle, N, (W, H)))
    stylized = cv2.imread(str(out / "karwai" / "shot" / "frames" / f"{middle:04d}.png"))
    assert np.array_equal(preview[:, W + 8:], cv2.cvtColor(stylized, cv2.COLOR_BGR2RGB))


def test_demo_blend_has_the_strips_and_markers(demo_run, empty_file):
    from tools.demo import key_frames

    out, _ = demo_run
    bpy.ops.wm.open_mainfile(filepath=str(out / "demo.blend"))
    try:
        scene = bpy.context.scene
        strips = {s.name: s for s in compat.strips(scene.sequence_editor)}
        assert strips["shot"].type == "MOVIE" and strips["shot sound"].type == "SOUND"
        assert strips["shot (Kar-Wai)"].type == "IMAGE"
        assert strips["shot (Kar-Wai)"].channel > strips["shot"].channel
        start, end = compat.visible_range(strips["shot (Kar-Wai)"])
        assert end - start == N
        assert sorted(m.frame for m in scene.timeline_markers) == list(key_frames(N))
        assert (scene.render.resolution_x, scene.render.resolution_y) == (W, H)
        assert (scene.frame_start, scene.frame_end) == (1, N)
    finally:
        bpy.ops.wm.read_homefile(use_empty=True)
