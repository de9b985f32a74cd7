"""Kar-Wai's demo: the whole product on a built-in example, inside Blender (the bpy module).

    python build.py demo [--out out/demo] [--frames 48] [--size 640x360] [--filter oil]

1. ``build.py`` creates ``.venv`` (bpy, numba, OpenCV, ...) when it is missing
   or its pins changed.
2. The input, with no download: a photograph that scikit-image ships (NASA's
   astronaut portrait) becomes a 48-frame 640x360 shot with a camera move and
   a ball that bounces on its own (``engine.demo``), written as an MPEG-4
   movie, and a sound track as a WAV file.
3. A .blend file: the movie strip ``shot`` with its sound strip, and two
   timeline markers inside the shot as keyframes.
4. Kar-Wai's operators, as a user runs them from the sequencer's sidebar:
   Stylize Keyframes (a painterly filter) and Propagate, which adds the
   stylized image strip above the shot.
5. The edited sequence rendered to MP4 (H.264 video, AAC sound) by Blender's
   FFmpeg output.
6. A check of the MP4 (frame count, size, sound track, frames stylized), a
   preview image (source and stylized frame side by side), and the output paths
   and the time each step took.

The add-on is registered from the source tree (``blender_addon/``); Blender's
user folders are kept inside the output folder, so a real Blender
configuration is never read or changed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ADDON = "blender_addon"


class DemoError(RuntimeError):
    """A step of the demo failed, or its output does not pass the check."""


@dataclass
class Result:
    """What a demo run produced."""

    paths: dict = field(default_factory=dict)     # label -> Path
    timings: list = field(default_factory=list)   # (step, seconds)
    facts: dict = field(default_factory=dict)     # what the check measured


def key_frames(n):
    """The two keyframes of an ``n``-frame shot: frames 8 and 40 of 48, scaled."""
    first = max(1, int(round(1 + (n - 1) * 7 / 47)))
    last = min(n, max(first + 1, int(round(1 + (n - 1) * 39 / 47))))
    return first, last


# --------------------------------------------------------------------------------------
# MP4 tracks, read from the file's boxes (ISO/IEC 14496-12), without FFmpeg


_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}


def _boxes(data, start, end):
    """``(type, payload_start, box_end)`` of the boxes in ``data[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise DemoError(f"malformed MP4 box {kind!r} at byte {pos}")
        yield kind, pos + header, pos + size
        pos += size


def mp4_tracks(path):
    """The tracks of an MP4 file: ``[{"handler": "vide"|"soun", "codec": "avc1"|"mp4a"|...,
    "seconds": duration, "samples": number of samples}]``."""
    data = Path(path).read_bytes()
    tracks = []

    def walk(start, end, track):
        for kind, body, box_end in _boxes(data, start, end):
            if kind == b"trak":
                track = {}
                walk(body, box_end, track)
                tracks.append(track)
            elif kind in _CONTAINERS:
                walk(body, box_end, track)
            elif kind == b"mdhd":
                if data[body] == 1:
                    timescale, duration = struct.unpack(">IQ", data[body + 20:body + 32])
                else:
                    timescale, duration = struct.unpack(">II", data[body + 12:body + 20])
                track["seconds"] = duration / timescale if timescale else 0.0
            elif kind == b"hdlr":
                track["handler"] = data[body + 8:body + 12].decode("latin-1")
            elif kind == b"stsd":
                track["codec"] = data[body + 12:body + 16].decode("latin-1")
            elif kind == b"stsz":
                track["samples"] = struct.unpack(">I", data[body + 8:body + 12])[0]

    walk(0, len(data), None)
    return tracks


def _small(image):
    import cv2

    h, w = image.shape[:2]
    return cv2.resize(image.astype(np.float32), (max(8, w // 4), max(8, h // 4)),
                      interpolation=cv2.INTER_AREA)


def style_distance(a, b):
    """Mean absolute difference of two RGB images at a quarter of their size (0..255):
    insensitive to codec noise, sensitive to colours and flattened texture."""
    return float(np.abs(_small(a) - _small(b)).mean())


# --------------------------------------------------------------------------------------
# the steps


def make_input(out, n, size):
    """Step 2: the shot as an MPEG-4 movie and its sound as a WAV file."""
    from engine import demo

    frames = demo.demo_frames(n, size)
    movie = demo.write_movie(out / "input" / "shot.mp4", frames)
    wav = demo.write_wav(out / "input" / "shot.wav", demo.demo_audio(n))
    return frames, movie, wav


def build_blend(out, movie, wav, n, size, keys):
    """Step 3: a .blend with the movie strip, its sound strip and keyframe markers."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.name = "Demo"
    render = scene.render
    render.resolution_x, render.resolution_y = size
    render.resolution_percentage = 100
    render.fps, render.fps_base = 24, 1.0
    scene.frame_start, scene.frame_end = 1, n
    # The media's colours, unchanged (a new file's default view transform tone-maps them).
    scene.view_settings.view_transform = "Standard"
    from blender_addon import compat

    editor = scene.sequence_editor_create()
    compat.strips(editor).new_sound("shot sound", str(wav), 1, 1)
    shot = compat.strips(editor).new_movie("shot", str(movie), 2, 1)
    start, end = compat.visible_range(shot)
    if end - start != n:
        raise DemoError(f"Blender reads {end - start} frames from {movie}, not {n}")
    editor.active_strip = shot
    for number, frame in enumerate(keys, 1):
        scene.timeline_markers.new(f"key {number}", frame=frame)
    blend = out / "demo.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    return blend


def enable_addon():
    """Register Kar-Wai from the source tree, as Blender does for an enabled add-on."""
    import addon_utils

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    def fail(exc):
        raise DemoError(f"the add-on does not enable: {exc}") from exc

    module = addon_utils.enable(ADDON, default_set=True, handle_error=fail)
    if module is None:
        raise DemoError("the add-on does not enable")
    return module


def disable_addon():
    import addon_utils

    addon_utils.disable(ADDON, default_set=True)


def stylize_keys(painterly_filter):
    """Step 4a: Stylize Keyframes with a painterly filter (the operator, as a script runs it)."""
    import bpy

    scene = bpy.context.scene
    scene.karwai.default_style.method = "painterly"
    scene.karwai.default_style.painterly_filter = painterly_filter
    if bpy.ops.karwai.stylize_keyframes(strip="shot") != {"FINISHED"}:
        raise DemoError("Stylize Keyframes did not finish")


def propagate():
    """Step 4b: Propagate; returns the result strip's frames folder."""
    import bpy

    from blender_addon import compat

    scene = bpy.context.scene
    before = {s.name for s in compat.strips(scene.sequence_editor)}
    if bpy.ops.karwai.propagate(strip="shot") != {"FINISHED"}:
        raise DemoError("Propagate did not finish")
    added = [s for s in compat.strips(scene.sequence_editor) if s.name not in before]
    if len(added) != 1 or added[0].type != "IMAGE":
        raise DemoError(f"Propagate added {[s.name for s in added]}, not one image strip")
    bpy.ops.wm.save_mainfile()
    return added[0]


def render_mp4(out):
    """Step 5: render the sequencer to MP4, H.264 video and AAC sound."""
    import bpy

    scene = bpy.context.scene
    render = scene.render
    settings = render.image_settings
    if "media_type" in settings.bl_rna.properties:  # Blender 5.0 and later
        settings.media_type = "VIDEO"
    settings.file_format = "FFMPEG"
    render.ffmpeg.format = "MPEG4"
    render.ffmpeg.codec = "H264"
    render.ffmpeg.constant_rate_factor = "HIGH"
    render.ffmpeg.audio_codec = "AAC"
    render.ffmpeg.audio_channels = "STEREO"
    render.ffmpeg.audio_mixrate = 48000
    render.use_sequencer = True
    path = out / "render" / "demo.mp4"
    if path.exists():
        path.unlink()
    render.filepath = str(path)
    bpy.ops.render.render(animation=True)
    bpy.ops.wm.save_mainfile()
    if not path.is_file():
        raise DemoError(f"Blender wrote no file at {path}")
    return path


def check(mp4, source_frames, size, keys, painterly_filter):
    """Step 6a: the MP4 has the shot's frames, stylized, and a sound track."""
    import engine

    facts = {}
    tracks = mp4_tracks(mp4)
    video = [t for t in tracks if t.get("handler") == "vide"]
    audio = [t for t in tracks if t.get("handler") == "soun"]
    if len(video) != 1 or len(audio) != 1:
        raise DemoError(f"{mp4}: tracks {tracks}; expected one video and one sound track")
    facts["video codec"], facts["audio codec"] = video[0].get("codec"), audio[0].get("codec")
    facts["audio seconds"] = round(audio[0].get("seconds", 0.0), 2)
    seconds = len(source_frames) / 24
    if audio[0].get("codec") != "mp4a" or abs(audio[0].get("seconds", 0.0) - seconds) > 0.2:
        raise DemoError(f"{mp4}: sound track {audio[0]}, expected AAC (mp4a) of {seconds:.2f} s")
    video_source = engine.open_frames(mp4)
    frames = [video_source.read(n) for n in video_source.frame_numbers]
    facts["frames"] = len(frames)
    if len(frames) != len(source_frames):
        raise DemoError(f"{mp4}: {len(frames)} frames, expected {len(source_frames)}")
    if frames[0].shape[:2] != (size[1], size[0]):
        raise DemoError(f"{mp4}: frames of {frames[0].shape[1]}x{frames[0].shape[0]}, "
                        f"expected {size[0]}x{size[1]}")
    # Stylized, every frame: far from its source frame, and nearer to the painterly
    # filter applied to that source frame than to the source itself.
    to_source, to_style = [], []
    for i, (rendered, source) in enumerate(zip(frames, source_frames), 1):
        to_source.append(style_distance(rendered, source))
        if i in keys or i % 4 == 0:
            styled = engine.stylize(source, method="painterly", filter=painterly_filter)
            to_style.append((i, style_distance(rendered, styled), to_source[-1]))
    facts["least change from source"] = round(min(to_source), 1)
    facts["frames nearer the style"] = f"{sum(s < d for _, s, d in to_style)}/{len(to_style)}"
    unstylized = [i for i, d in enumerate(to_source, 1) if d < 4.0]
    if unstylized:
        raise DemoError(f"{mp4}: frames {unstylized} look like the source, not stylized")
    nearer_source = [i for i, s, d in to_style if not s < d]
    if nearer_source:
        raise DemoError(f"{mp4}: frames {nearer_source} are nearer the source than the "
                        f"{painterly_filter} style")
    return facts


def make_preview(out, source_frames, strip, frame):
    """Step 6b: the source frame and the stylized frame side by side."""
    import bpy
    import cv2

    folder = Path(bpy.path.abspath(strip.directory))
    stylized = cv2.imread(str(folder / strip.strip_elem_from_frame(frame).filename),
                          cv2.IMREAD_COLOR)
    if stylized is None:
        raise DemoError(f"cannot read the stylized frame {frame} in {folder}")
    source = source_frames[frame - 1][:, :, ::-1]
    gap = np.full((source.shape[0], 8, 3), 255, np.uint8)
    path = out / "preview.png"
    if not cv2.imwrite(str(path), np.concatenate([source, gap, stylized], axis=1)):
        raise DemoError(f"cannot write {path}")
    return path


# --------------------------------------------------------------------------------------


def run(out="out/demo", *, frames=48, size=(640, 360), painterly_filter="oil", log=print):
    """Run the demo into ``out``; returns a :class:`Result` (raises DemoError on failure)."""
    out = Path(out).resolve()
    if out.exists():
        for name in ("input", "render", "karwai", "demo.blend", "demo.blend1", "preview.png"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    (out / "input").mkdir(parents=True, exist_ok=True)
    # Blender's user folders inside the output folder: never the user's real ones.
    # (Read by bpy when it is first imported.)
    os.environ.setdefault("BLENDER_USER_RESOURCES", str(out / "blender-user"))
    result = Result()
    keys = key_frames(frames)

    def step(name, function, *args):
        log(f"== {name}")
        t0 = time.perf_counter()
        value = function(*args)
        result.timings.append((name, time.perf_counter() - t0))
        return value

    source, movie, wav = step(f"2. input: {frames} frames {size[0]}x{size[1]} and sound",
                              make_input, out, frames, size)
    t0 = time.perf_counter()
    import bpy  # noqa: F401 - (its import is part of step 3's time)

    blend = step(f"3. .blend: movie + sound strips, markers at {keys[0]} and {keys[1]}",
                 build_blend, out, movie, wav, frames, size, keys)
    result.timings[-1] = (result.timings[-1][0], time.perf_counter() - t0)
    enable_addon()
    try:
        step(f"4a. Stylize Keyframes ({painterly_filter})", stylize_keys, painterly_filter)
        strip = step("4b. Propagate", propagate)
        mp4 = step("5. render MP4 (H.264 + AAC)", render_mp4, out)
        result.facts = step("6a. check the MP4", check, mp4, source, size, keys,
                            painterly_filter)
        preview = step("6b. preview", make_preview, out, source, strip,
                       (keys[0] + keys[1]) // 2)
        keys_dir = Path(bpy.path.abspath(bpy.context.scene.karwai.key_for(keys[0]).path)).parent
        frames_dir = Path(bpy.path.abspath(strip.directory))
    finally:
        disable_addon()
    result.paths = {
        "Blender file": blend,
        "source movie": movie,
        "sound": wav,
        "stylized keys": keys_dir,
        "stylized frames": frames_dir,
        "rendered MP4": mp4,
        "preview (source | stylized)": preview,
    }
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python build.py demo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "out" / "demo"),
                        help="output folder (default: out/demo)")
    parser.add_argument("--frames", type=int, default=48, help="frames in the shot (default 48)")
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT (default 640x360)")
    parser.add_argument("--filter", default="oil",
                        choices=("watercolour", "oil", "pencil", "ink", "cartoon"),
                        help="painterly filter for the keyframes (default oil)")
    parser.add_argument("--setup-seconds", type=float, default=None,
                        help=argparse.SUPPRESS)  # build.py's set-up time, for the table
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must be WIDTHxHEIGHT, not {args.size!r}")
    if args.frames < 4 or width < 32 or height < 32 or width % 2 or height % 2:
        parser.error("the shot needs at least 4 frames and an even size of at least 32x32")

    t0 = time.perf_counter()
    try:
        result = run(args.out, frames=args.frames, size=(width, height),
                     painterly_filter=args.filter)
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    total = time.perf_counter() - t0

    print()
    print("Outputs")
    for label, path in result.paths.items():
        print(f"  {label:28s} {path}")
    print("Check of the MP4")
    for label, value in result.facts.items():
        print(f"  {label:28s} {value}")
    print("Time per step")
    if args.setup_seconds is not None:
        print(f"  {'1. set-up (.venv)':52s} {args.setup_seconds:7.1f} s")
    for name, seconds in result.timings:
        print(f"  {name:52s} {seconds:7.1f} s")
    print(f"  {'total (steps 2-6)':52s} {total:7.1f} s")
    print(f"Preview: {result.paths['preview (source | stylized)']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
