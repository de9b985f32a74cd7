"""Strip geometry (checked against Blender's own render) and the documented refusals."""

import shutil

import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import compat  # noqa: E402

from conftest import (H, W, add_image_strip, add_movie_strip, frame_index,  # noqa: E402
                      render_frame, write_images)

pytestmark = pytest.mark.blender


def _plan_and_reader(scene, strip):
    from blender_addon import strips
    from blender_addon.engine_import import get_engine

    plan = strips.clip_plan(scene, strip)
    return plan, get_engine().clips.ClipReader(plan.to_json())


@pytest.mark.parametrize("kind", ["images", "movie"])
def test_frames_map_to_the_media_frames_blender_shows(addon, media, tmp_path, kind):
    """Trims, a start before frame 1 and skipped media frames: each visible scene frame
    maps to the media frame that Blender itself renders there, read at source size."""
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = W, H
    if kind == "images":
        strip = add_image_strip(scene, media["images"], frame_start=-6)
    else:
        strip = add_movie_strip(scene, media["movie"], frame_start=-6)
    compat.set_geometry(strip, animation_offset_start=2, frame_offset_start=3, frame_offset_end=4)
    start, end = compat.visible_range(strip)
    assert start < 1 and end - start == 24 - 2 - 3 - 4

    plan, reader = _plan_and_reader(scene, strip)
    assert [f.timeline for f in plan.frames] == list(range(start, end))
    try:
        for f in plan.frames[::3] + (plan.frames[-1],):
            shown = frame_index(render_frame(scene, f.timeline, tmp_path / "r.png"))
            frame = reader.read(f.number)
            assert frame.shape == (H, W, 3)
            assert frame_index(frame) == shown, f"scene frame {f.timeline}"
    finally:
        reader.close()


def test_image_numbers_come_from_the_file_names(addon, media):
    from blender_addon import strips

    scene = bpy.context.scene
    strip = add_image_strip(scene, media["images"], frame_start=10)
    plan = strips.clip_plan(scene, strip)
    assert plan.kind == "images"
    assert plan.frames[0].number == 1 and plan.frames[0].file.endswith("shot_0001.png")
    assert plan.number_at(10) == 1 and plan.number_at(33) == 24


# --------------------------------------------------------------------------------------
# refusals


def _propagate_error(strip_name=""):
    with pytest.raises(RuntimeError) as info:
        bpy.ops.karwai.propagate(strip=strip_name)
    return str(info.value)


def test_no_strip_is_refused(saved):
    bpy.context.scene.sequence_editor_create()
    assert "Select a movie or image-sequence strip" in _propagate_error()


@pytest.mark.parametrize("kind,expected", [
    ("sound", "is a sound strip"),
    ("scene", "is a scene strip"),
    ("colour", "is a colour strip"),
    ("text", "is a text strip"),
    ("meta", "is a meta strip"),
    ("speed", "is a speed (retiming) strip"),
])
def test_strips_without_source_frames_are_refused(saved, media, kind, expected):
    scene = bpy.context.scene
    editor = scene.sequence_editor_create()
    if kind == "sound":
        strip = compat.strips(editor).new_sound("s", str(media["wav"]), 1, 1)
    elif kind == "scene":
        strip = compat.strips(editor).new_scene("s", bpy.data.scenes.new("other"), 1, 1)
    elif kind == "colour":
        strip = compat.new_effect(editor, name="s", type="COLOR", channel=1, frame_start=1, length=9)
    elif kind == "text":
        strip = compat.new_effect(editor, name="s", type="TEXT", channel=1, frame_start=1, length=9)
    elif kind == "meta":
        strip = compat.strips(editor).new_meta("s", 1, 1)
    else:
        movie = add_movie_strip(scene, media["movie"], channel=1)
        strip = compat.new_effect(editor, name="s", type="SPEED", channel=2, frame_start=1,
                                         input1=movie)
    scene.timeline_markers.new("k", frame=3)
    editor.active_strip = strip
    message = _propagate_error()
    assert f"Strip 's' {expected}" in message
    assert "needs a movie or image-sequence strip" in message


def _retime(scene, strip):
    """Speed a strip up 2x with Blender's own retiming operators."""
    window = bpy.context.window_manager.windows[0]
    area = window.screen.areas[0]
    old_type = area.type
    area.type = "SEQUENCE_EDITOR"
    try:
        region = next(r for r in area.regions if r.type == "WINDOW")
        scene.sequence_editor.active_strip = strip
        strip.select = True
        with bpy.context.temp_override(window=window, area=area, region=region,
                                       screen=window.screen, scene=scene,
                                       space_data=area.spaces.active, sequencer_scene=scene):
            assert bpy.ops.sequencer.retiming_show() == {"FINISHED"}
            assert bpy.ops.sequencer.retiming_segment_speed_set(speed=200.0) == {"FINISHED"}
    finally:
        area.type = old_type


@pytest.mark.parametrize("case,expected", [
    ("retimed", "Strip 'clip' is retimed"),
    ("reversed", "Strip 'clip' plays its frames reversed"),
    ("strobe", "Strip 'clip' uses strobe 2"),
    ("hold", "Strip 'clip' holds a frame beyond the ends of its media"),
    ("meta", "Strip 'clip' is inside a meta strip"),
])
def test_strips_that_do_not_map_one_to_one_are_refused(saved, media, case, expected):
    scene = bpy.context.scene
    strip = add_movie_strip(scene, media["movie"], channel=2)
    scene.timeline_markers.new("k", frame=3)
    if case == "retimed":
        _retime(scene, strip)
        assert compat.content_duration(strip) == 12
    elif case == "reversed":
        strip.use_reverse_frames = True
    elif case == "strobe":
        strip.strobe = 2.0
    elif case == "hold":
        compat.set_geometry(strip, frame_offset_start=-3)
    elif case == "meta":
        meta = compat.strips(scene.sequence_editor).new_meta("m", 5, 1)
        strip.move_to_meta(meta)
    assert expected in _propagate_error("clip")


def test_missing_media_is_refused(saved, media, tmp_path):
    scene = bpy.context.scene
    movie = tmp_path / "gone.mp4"
    shutil.copy(media["movie"], movie)
    add_movie_strip(scene, movie)
    scene.timeline_markers.new("k", frame=3)
    movie.unlink()
    assert f"Strip 'clip': media file not found: {movie}" in _propagate_error("clip")

    folder = write_images(tmp_path / "frames", 6)
    strip = add_image_strip(scene, folder, channel=3)
    (folder / "0004.png").unlink()
    missing = folder / "0004.png"
    assert f"Strip 'seq': media file not found: {missing}" in _propagate_error(strip.name)


def test_still_images_and_unnumbered_files_are_refused(saved, media, tmp_path):
    scene = bpy.context.scene
    add_image_strip(scene, media["images"], name="still", files=["shot_0003.png"])
    scene.timeline_markers.new("k", frame=1)
    assert "Strip 'still' is a single still image" in _propagate_error("still")

    folder = tmp_path / "named"
    folder.mkdir()
    for name in ("alpha.png", "beta.png"):
        shutil.copy(media["images"] / "shot_0001.png", folder / name)
    add_image_strip(scene, folder, name="named", channel=2)
    assert "Strip 'named': image 'alpha.png' has no frame number" in _propagate_error("named")


def test_markers_outside_the_strip_are_refused(saved, media):
    scene = bpy.context.scene
    strip = add_movie_strip(scene, media["movie"], frame_start=11)  # frames 11..34
    scene.sequence_editor.active_strip = strip
    with pytest.raises(RuntimeError, match=r"Frame 40 is outside strip 'clip' \(frames 11–34\)"):
        bpy.ops.karwai.add_keyframe(frame=40)
    with pytest.raises(RuntimeError, match="Frame 10 is outside strip 'clip'"):
        bpy.ops.karwai.add_keyframe(frame=10)
    # markers outside the strip are not keyframes: with only those, there are none
    scene.timeline_markers.new("elsewhere", frame=5)
    assert "No keyframe markers inside strip 'clip' (frames 11–34)" in _propagate_error()
    assert bpy.ops.karwai.add_keyframe(frame=11) == {"FINISHED"}
    assert [m.frame for m in scene.timeline_markers] == [5, 11]
    assert bpy.ops.karwai.add_keyframe(frame=11) == {"CANCELLED"}  # already a key


def test_relative_output_needs_a_saved_file(addon, media):
    scene = bpy.context.scene
    add_movie_strip(scene, media["movie"])
    scene.timeline_markers.new("k", frame=3)
    assert "Save the .blend file first" in _propagate_error("clip")


def test_mask_must_cover_the_strip(saved, media):
    scene = bpy.context.scene
    add_movie_strip(scene, media["movie"])
    add_image_strip(scene, media["images"], name="mask", channel=3, frame_start=5)
    scene.timeline_markers.new("k", frame=3)
    scene.karwai.mask_strip = "mask"
    assert ("Mask strip 'mask' does not cover frames 1–4 of strip 'clip'"
            in _propagate_error("clip"))
    scene.karwai.mask_strip = "nothing"
    assert "Mask strip 'nothing' does not exist" in _propagate_error("clip")


def test_output_inside_the_source_folder_is_refused(saved, tmp_path):
    scene = bpy.context.scene
    folder = write_images(tmp_path / "src", 6)
    add_image_strip(scene, folder)
    scene.timeline_markers.new("k", frame=2)
    scene.karwai.output_dir = str(folder / "out")
    assert "is inside the source frames' folder" in _propagate_error("seq")


def test_result_strip_goes_on_the_first_free_channel(addon):
    from blender_addon import strips

    scene = bpy.context.scene
    editor = scene.sequence_editor_create()

    def new(**kwargs):
        return compat.new_effect(editor, **kwargs)

    new(name="src", type="COLOR", channel=2, frame_start=10, length=10)   # 10..19
    new(name="a", type="COLOR", channel=3, frame_start=15, length=20)     # overlaps
    new(name="b", type="COLOR", channel=4, frame_start=1, length=9)       # ends before 10
    new(name="c", type="COLOR", channel=5, frame_start=20, length=5)      # starts at end
    assert strips.first_free_channel(scene, 2, 10, 20) == 4
    new(name="d", type="COLOR", channel=4, frame_start=19, length=3)      # overlaps frame 19
    assert strips.first_free_channel(scene, 2, 10, 20) == 5
