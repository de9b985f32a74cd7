"""The headless recipe of HEADLESS.md, run as written (in the bpy module)."""

import re
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import compat  # noqa: E402

from conftest import (ROOT, H, N, W, add_movie_strip, read_rgb, render_frame,  # noqa: E402
                      result_strips)

pytestmark = pytest.mark.blender


def recipe():
    """The command line and the Python expression of the recipe."""
    text = (ROOT / "blender_addon" / "HEADLESS.md").read_text()
    block = re.search(r"```bash\n(blender -b .*?)\n```", text, re.S).group(1)
    command, expr = block.split(' --python-expr "', 1)
    assert expr.endswith('"')
    return command, expr[:-1]


def mp4_handlers(path):
    """Track handler types of an MP4 file ('vide', 'soun')."""
    data = Path(path).read_bytes()
    return {data[m.start() + 12:m.start() + 16].decode("latin-1")
            for m in re.finditer(b"hdlr", data)}


def test_recipe_renders_the_stylized_sequence_with_sound(saved, media):
    from engine import open_frames

    command, expr = recipe()
    assert command.startswith("blender -b edit.blend ")
    assert "--python-exit-code 1" in command

    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = W, H
    scene.render.resolution_percentage = 100
    scene.render.fps = 24
    scene.frame_start, scene.frame_end = 1, N
    editor = scene.sequence_editor_create()
    compat.strips(editor).new_sound("shot sound", str(media["wav"]), 1, 1)
    add_movie_strip(scene, media["movie"], name="shot", channel=2)
    scene.timeline_markers.new("k1", frame=4)
    scene.timeline_markers.new("k2", frame=19)
    bpy.ops.wm.save_mainfile()
    blend = Path(bpy.data.filepath)

    # What `blender -b edit.blend --python-expr ...` does: open the file, run the text.
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    exec(compile(expr, "<python-expr>", "exec"), {"__name__": "__main__"})

    video = blend.parent / "render" / "shot.mp4"
    assert video.is_file()
    assert {"vide", "soun"} <= mp4_handlers(video)
    source = open_frames(video)
    frames = [source.read(n) for n in source.frame_numbers]
    assert len(frames) == N
    assert frames[0].shape == (H, W, 3)

    scene = bpy.context.scene
    (result,) = result_strips(scene)
    assert result.name == "shot (Kar-Wai)" and result.channel == 3
    key = read_rgb(scene.karwai.key_for(19).path)
    rendered = frames[19 - 1].astype(int)
    original = open_frames(media["movie"]).read(19).astype(int)
    # the render shows the stylized key, not the source (H.264 is lossy: compare 8x8 means)
    def blocks(image):
        grey = image.astype(float) @ [0.299, 0.587, 0.114]
        return grey.reshape(H // 8, 8, W // 8, 8).mean(axis=(1, 3))

    def correlation(a, b):
        return float(np.corrcoef(blocks(a).ravel(), blocks(b).ravel())[0, 1])

    to_key = correlation(rendered, key)
    to_source = correlation(rendered, original)
    assert to_key > 0.95 and to_key > to_source
    # exactly: the sequencer's output at the key is the stylized key
    still = render_frame(scene, 19, blend.parent / "still.png")
    assert np.array_equal(still, key)
    assert not np.array_equal(still, original)
    # the saved file keeps the result strip
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    assert len(result_strips(bpy.context.scene)) == 1
