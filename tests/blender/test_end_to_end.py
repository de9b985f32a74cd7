"""Stylize then propagate through the operators, as a script under ``blender -b`` does."""

from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import compat  # noqa: E402

from conftest import (H, N, W, add_image_strip, add_movie_strip, frame_index,  # noqa: E402
                      hash_tree, read_rgb, render_frame, result_strips, ui_context)

pytestmark = pytest.mark.blender

KEYS = (5, 18)


def _source_frame(source_kind, media, number):
    """Source frame ``number`` decoded straight from the media (not through the add-on)."""
    import cv2

    if source_kind == "images":
        return read_rgb(media["images"] / f"shot_{number:04d}.png")
    cap = cv2.VideoCapture(str(media["movie"]))
    try:
        for _ in range(number):
            ok, bgr = cap.read()
            assert ok
    finally:
        cap.release()
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _strip_state(strip):
    names = ("name", "type", "channel", "mute") + tuple(
        compat.geometry_name(n) for n in ("frame_start", "frame_final_start", "frame_final_end",
                                          "frame_offset_start", "frame_offset_end"))
    return {n: getattr(strip, n) for n in names}


def _result_frame(strip, timeline):
    """The image a result strip shows at ``timeline``."""
    element = strip.strip_elem_from_frame(timeline)
    return read_rgb(Path(bpy.path.abspath(strip.directory)) / element.filename)


@pytest.mark.parametrize("source_kind", ["movie", "images"])
def test_stylize_then_propagate(saved, media, source_kind):
    import engine

    scene = bpy.context.scene
    editor = scene.sequence_editor_create()
    audio = compat.strips(editor).new_sound("audio", str(media["wav"]), 1, 1)
    if source_kind == "movie":
        source = add_movie_strip(scene, media["movie"], channel=2)
    else:
        source = add_image_strip(scene, media["images"], channel=2)
    # channel 3 is taken over part of the range: the result must go to channel 4
    compat.strips(editor).new_effect(name="title", type="COLOR", channel=3, frame_start=20, length=10)
    editor.active_strip = source
    for frame in KEYS:
        assert bpy.ops.karwai.add_keyframe(frame=frame) == {"FINISHED"}
    scene.karwai.default_style.painterly_filter = "cartoon"
    before = {"source": _strip_state(source), "audio": _strip_state(audio),
              "media": hash_tree(media["root"])}

    assert bpy.ops.karwai.stylize_keyframes() == {"FINISHED"}
    out = Path(bpy.path.abspath(f"//karwai/{bpy.path.clean_name(source.name)}"))
    for frame in KEYS:
        entry = scene.karwai.key_for(frame)
        assert entry.status == "STYLIZED", entry.message
        assert Path(entry.path).parent == out / "keys"
        assert entry.image is not None and Path(entry.image.filepath) == Path(entry.path)
        expected = engine.stylize(_source_frame(source_kind, media, frame), method="painterly",
                                  filter="cartoon")
        assert np.array_equal(read_rgb(entry.path), expected)

    assert bpy.ops.karwai.propagate() == {"FINISHED"}
    results = result_strips(scene)
    assert len(results) == 1
    result = results[0]
    assert result.type == "IMAGE"
    assert result.name == f"{source.name} (Kar-Wai)"
    assert result.channel == 4
    assert compat.visible_range(result) == (1, N + 1)
    assert len(result.elements) == N
    frames = Path(bpy.path.abspath(result.directory))
    assert frames == out / "frames"
    for element in result.elements:
        assert (frames / element.filename).is_file()
    for frame in KEYS:
        shown = _result_frame(result, frame)
        key = read_rgb(scene.karwai.key_for(frame).path)
        assert shown.shape == key.shape
        assert np.abs(shown.astype(int) - key.astype(int)).max() <= 1
    # between the keys the frames are stylized, not the source
    middle = _result_frame(result, 11)
    assert np.abs(middle.astype(int) - _source_frame(source_kind, media, 11).astype(int)).mean() > 3
    # the source strip, its audio and the media are untouched
    assert _strip_state(source) == before["source"]
    assert _strip_state(audio) == before["audio"]
    assert hash_tree(media["root"]) == before["media"]
    assert editor.active_strip == source


def test_rerun_replaces_the_result_and_undo_restores(saved, media):
    scene = bpy.context.scene
    with ui_context():
        source = add_image_strip(scene, media["images"], channel=1)
        scene.sequence_editor.active_strip = source
        for frame in KEYS:
            bpy.ops.karwai.add_keyframe(frame=frame)
        bpy.ops.ed.undo_push(message="keys added")
        # undo=True: push an undo step as a button in the UI does
        assert bpy.ops.karwai.propagate("EXEC_DEFAULT", True) == {"FINISHED"}  # stylizes keys too
        first = result_strips(scene)
        assert len(first) == 1 and first[0].channel == 2
        key_before = read_rgb(scene.karwai.key_for(5).path)

        scene.karwai.default_style.painterly_filter = "ink"  # the keys become stale
        bpy.ops.ed.undo_push(message="style changed")
        assert bpy.ops.karwai.propagate("EXEC_DEFAULT", True) == {"FINISHED"}
        second = result_strips(scene)
        assert len(second) == 1 and second[0].channel == 2
        key_after = read_rgb(scene.karwai.key_for(5).path)
        assert not np.array_equal(key_before, key_after)
        assert np.abs(_result_frame(second[0], 5).astype(int) - key_after.astype(int)).max() <= 1
        frames = Path(bpy.path.abspath(second[0].directory))
        assert not list(frames.parent.glob("frames.partial*"))
        assert not list(frames.parent.glob("frames.old-*"))

        second_name = second[0].name
        assert bpy.ops.ed.undo() == {"FINISHED"}  # the second propagation
        scene = bpy.context.scene
        assert scene.karwai.default_style.painterly_filter == "ink"
        assert len(result_strips(scene)) == 1  # the first result is back
        assert scene.karwai.key_for(5).signature != ""
        assert bpy.ops.ed.undo() == {"FINISHED"}  # the style change
        assert bpy.ops.ed.undo() == {"FINISHED"}  # the first propagation
        scene = bpy.context.scene
        assert result_strips(scene) == []
        assert compat.strips(scene.sequence_editor).get(second_name) is None
        assert [m.frame for m in scene.timeline_markers] == list(KEYS)


@pytest.mark.parametrize("source_kind", ["images", "movie"])
def test_trims_are_honoured(saved, media, source_kind):
    """A strip that starts before frame 1, trimmed at both ends, with skipped media frames."""
    import engine

    scene = bpy.context.scene
    if source_kind == "images":
        source = add_image_strip(scene, media["images"], frame_start=-6)
    else:
        source = add_movie_strip(scene, media["movie"], frame_start=-6)
    compat.set_geometry(source, animation_offset_start=1, frame_offset_start=3, frame_offset_end=5)
    start, end = compat.visible_range(source)
    assert start < 1 and end - start == N - 1 - 3 - 5
    # Which media frame each key shows: Blender's own render says (5.2 moved the content
    # when it is trimmed, so no formula of the properties holds in every version).
    scene.render.resolution_x, scene.render.resolution_y = W, H
    numbers = {frame: frame_index(render_frame(scene, frame, Path(saved).parent / "r.png"))
               for frame in (-2, 9)}
    scene.sequence_editor.active_strip = source
    for frame in (-2, 9):
        bpy.ops.karwai.add_keyframe(frame=frame)
    scene.timeline_markers.new("trimmed away", frame=14)  # not a key: outside the strip
    scene.timeline_markers.new("before", frame=-5)

    assert bpy.ops.karwai.propagate() == {"FINISHED"}
    assert {k.frame for k in scene.karwai.keys} == {-2, 9}
    result = result_strips(scene)[0]
    assert compat.visible_range(result) == (start, end)
    assert len(result.elements) == end - start
    for frame in (-2, 9):
        number = numbers[frame]
        key = read_rgb(scene.karwai.key_for(frame).path)
        expected = engine.stylize(_source_frame(source_kind, media, number), method="painterly",
                                  filter="watercolour")
        assert np.array_equal(key, expected), frame
        assert np.abs(_result_frame(result, frame).astype(int) - key.astype(int)).max() <= 1


def test_painted_image_and_repainted_keys(saved, media, tmp_path):
    """A key with its own painted style, and a stylized key repainted then reloaded."""
    import cv2

    scene = bpy.context.scene
    source = add_image_strip(scene, media["images"])
    scene.sequence_editor.active_strip = source
    for frame in KEYS:
        bpy.ops.karwai.add_keyframe(frame=frame)
    painting = np.zeros((128, 192, 3), np.uint8)
    painting[:, :, 2] = 200
    cv2.imwrite(str(tmp_path / "painted.png"), painting[:, :, ::-1])
    own = scene.karwai.key_for(18, create=True)
    own.use_own_style = True
    own.style.method = "image"
    own.style.style_image = str(tmp_path / "painted.png")

    assert bpy.ops.karwai.stylize_keyframes() == {"FINISHED"}
    assert np.all(read_rgb(own.path) == (0, 0, 200))
    # a new version of the painting makes that key stale: stylizing again picks it up
    painting[:, :, 1] = 90
    cv2.imwrite(str(tmp_path / "painted.png"), painting[:, :, ::-1])
    assert bpy.ops.karwai.stylize_keyframes() == {"FINISHED"}
    assert np.all(read_rgb(own.path) == (0, 90, 200))

    # repaint key 5 "elsewhere", reload it: stylizing again leaves it alone
    key5 = scene.karwai.key_for(5)
    repainted = read_rgb(key5.path)
    repainted[:20] = (255, 0, 0)
    cv2.imwrite(key5.path, repainted[:, :, ::-1])
    assert bpy.ops.karwai.reload_keyframe(frame=5) == {"FINISHED"}
    assert key5.status == "EDITED"
    scene.karwai.default_style.painterly_filter = "oil"
    # the only stale key is the repainted one: nothing to do
    assert bpy.ops.karwai.stylize_keyframes() == {"FINISHED"}
    assert key5.status == "EDITED"
    assert np.array_equal(read_rgb(key5.path), repainted)
    assert bpy.ops.karwai.propagate() == {"FINISHED"}
    result = result_strips(scene)[0]
    assert np.abs(_result_frame(result, 5).astype(int) - repainted.astype(int)).max() <= 1
    # Redo All overwrites the repainted key
    assert bpy.ops.karwai.stylize_keyframes(force=True) == {"FINISHED"}
    assert key5.status == "STYLIZED"
    assert not np.array_equal(read_rgb(key5.path), repainted)


def test_bad_parameters_name_the_key_and_parameter(saved, media):
    scene = bpy.context.scene
    add_image_strip(scene, media["images"])
    bpy.ops.karwai.add_keyframe(strip="seq", frame=3)
    scene.karwai.default_style.params = "abstraction=lots"
    with pytest.raises(RuntimeError, match="key at frame 3: parameter 'abstraction'"):
        bpy.ops.karwai.stylize_keyframes(strip="seq")
    assert scene.karwai.key_for(3).status == "ERROR"
    assert result_strips(scene) == []
    scene.karwai.default_style.params = "nonsense"
    with pytest.raises(RuntimeError, match="'nonsense' is not of the form name=value"):
        bpy.ops.karwai.propagate(strip="seq")


def test_mask_makes_the_outside_transparent(saved, media, tmp_path):
    import cv2

    scene = bpy.context.scene
    add_image_strip(scene, media["images"])
    mask = np.zeros((64, 96), np.uint8)
    mask[:, 48:] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    add_image_strip(scene, tmp_path, name="mask", channel=5, files=["mask.png"])
    compat.set_geometry(compat.strips(scene.sequence_editor)["mask"],  # a still held over the clip
                        frame_final_end=N + 1)
    scene.karwai.mask_strip = "mask"
    bpy.ops.karwai.add_keyframe(strip="seq", frame=4)
    assert bpy.ops.karwai.propagate(strip="seq") == {"FINISHED"}
    result = result_strips(scene)[0]
    frame = _result_frame(result, 12)
    assert frame.shape[2] == 4
    assert frame[:, :40, 3].max() == 0 and frame[:, 56:, 3].min() == 255


def test_suggest_keyframes_adds_markers_inside_the_strip(saved, media):
    scene = bpy.context.scene
    source = add_movie_strip(scene, media["movie"], frame_start=3)
    scene.sequence_editor.active_strip = source
    assert bpy.ops.karwai.suggest_keyframes() == {"FINISHED"}
    frames = sorted(m.frame for m in scene.timeline_markers)
    assert frames and frames[0] == 3  # the first frame is always proposed
    assert all(3 <= f < 27 for f in frames)
    count = len(frames)
    bpy.ops.karwai.suggest_keyframes()  # again: no duplicates
    assert len(scene.timeline_markers) == count


@pytest.mark.parametrize("source_kind", ["images", "movie"])
def test_write_farm_plan_instead_of_propagating(saved, media, tmp_path, source_kind):
    """Propagate with "Write Farm Plan" writes the plan beside the .blend file and adds no strip;
    the plan's tasks, run elsewhere, give the frames a local Propagate gives."""
    from engine.propagation.plan import load_plan
    from engine.propagation.tasks import run_task

    scene = bpy.context.scene
    with ui_context():
        if source_kind == "images":
            source = add_image_strip(scene, media["images"], frame_start=-6)
            source.frame_offset_start = 3  # trimmed: the add-on links the shown frames beside the output
        else:
            source = add_movie_strip(scene, media["movie"])
        scene.sequence_editor.active_strip = source
        for frame in (source.frame_final_start + 1, source.frame_final_end - 3):
            assert bpy.ops.karwai.add_keyframe(frame=frame) == {"FINISHED"}
        scene.karwai.quality = "draft"
        scene.karwai.farm_plan = True
        assert bpy.ops.karwai.propagate() == {"FINISHED"}
        assert result_strips(scene) == []
        out = Path(bpy.path.abspath(f"//karwai/{bpy.path.clean_name(source.name)}")) / "frames"
        assert out.parent.parent == saved.parent / "karwai"
        plan = load_plan(out / ".karwai-plan.json")
        assert not list(out.glob("*.png")), "the job was planned, not run"
        # Everything the plan reads lies beside the .blend file or is the user's media.
        source_path = plan.resolve(plan.data["source"]["path"]).resolve()
        assert source_path.is_relative_to(saved.parent) or source_path.is_relative_to(media["root"])
        for task in plan.tasks:
            run_task(plan, task["id"])
        farm = {p.name: p.read_bytes() for p in out.glob("*.png")}
        assert len(farm) == source.frame_final_end - source.frame_final_start

        scene.karwai.farm_plan = False
        assert bpy.ops.karwai.propagate() == {"FINISHED"}
        (result,) = result_strips(scene)
        local = Path(bpy.path.abspath(result.directory))
        assert {p.name: p.read_bytes() for p in local.glob("*.png")} == farm
