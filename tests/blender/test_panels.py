"""The sidebar panels, drawn into a recording layout that checks every name against
Blender's RNA (no GUI exists here), and the open-for-repainting operator."""

import os
import stat
import time

import pytest

bpy = pytest.importorskip("bpy")

from conftest import add_image_strip  # noqa: E402

pytestmark = pytest.mark.blender

ICONS = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())


class Layout:
    """Records what a panel draws; refuses unknown properties, operators and icons."""

    def __init__(self, log):
        self.log = log
        self.use_property_split = False
        self.use_property_decorate = True
        self.scale_y = 1.0
        self.enabled = True
        self.alert = False

    def _sub(self, *_args, **_kwargs):
        return Layout(self.log)

    row = column = box = split = _sub

    def separator(self, **_kwargs):
        pass

    def _icon(self, icon):
        assert icon in ICONS, f"unknown icon {icon}"

    def label(self, *, text="", icon="NONE"):
        self._icon(icon)
        self.log.append(("label", text))

    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name}"
        self._icon(kwargs.get("icon", "NONE"))
        self.log.append(("prop", name))

    def prop_search(self, data, name, search_data, search_name, **kwargs):
        assert name in data.bl_rna.properties
        assert search_name in search_data.bl_rna.properties, search_name
        self._icon(kwargs.get("icon", "NONE"))
        self.log.append(("prop_search", name, search_name))

    def operator(self, idname, *, text=None, icon="NONE"):
        category, name = idname.split(".")
        rna = getattr(getattr(bpy.ops, category), name).get_rna_type()
        self._icon(icon)
        self.log.append(("operator", idname))
        return _OperatorProps(rna)

    def template_list(self, listtype, list_id, data, propname, active_data, active_propname,
                      **_kwargs):
        assert hasattr(bpy.types, listtype)
        assert propname in data.bl_rna.properties
        assert active_propname in active_data.bl_rna.properties
        self.log.append(("list", listtype, propname))

    def template_icon(self, *, icon_value, scale=1.0):
        self.log.append(("preview", icon_value))

    def icon(self, data):
        assert isinstance(data, bpy.types.ID)
        return 1

    def progress(self, *, factor, type="BAR", text=""):  # noqa: A002 - Blender's name
        assert 0.0 <= factor <= 1.0
        self.log.append(("progress", round(factor, 3), text))


class _OperatorProps:
    def __init__(self, rna):
        object.__setattr__(self, "rna", rna)

    def __setattr__(self, name, value):
        assert name in self.rna.properties, f"{self.rna.identifier} has no property {name}"


class _Self:
    """Stands in for the panel or list instance Blender passes to draw()."""

    bitflag_filter_item = 1 << 30

    def __init__(self, log):
        self.layout = Layout(log)


def _draw(panel):
    log = []
    panel.draw(_Self(log), bpy.context)
    return log


def _panels():
    from blender_addon import panels

    return panels


def test_panels_without_a_source_strip_say_what_to_do(addon):
    panels = _panels()
    bpy.context.scene.sequence_editor_create()
    log = _draw(panels.KARWAI_PT_main)
    text = " ".join(entry[1] for entry in log if entry[0] == "label")
    assert "Select a movie or image-sequence strip" in text
    assert ("operator", "karwai.propagate") in log


def test_panels_show_the_source_keys_settings_and_progress(saved, media):
    from blender_addon import jobs
    from blender_addon import snapshot as snapshots
    from blender_addon.engine_import import get_engine

    panels = _panels()
    scene = bpy.context.scene
    source = add_image_strip(scene, media["images"], frame_start=5)
    scene.sequence_editor.active_strip = source
    for frame in (6, 20):
        bpy.ops.karwai.add_keyframe(frame=frame)
    scene.timeline_markers.new("elsewhere", frame=100)
    bpy.ops.karwai.stylize_keyframes()

    log = _draw(panels.KARWAI_PT_main)
    labels = [entry[1] for entry in log if entry[0] == "label"]
    assert "seq" in labels and "frames 5–28" in labels and "96×64 source" in labels
    assert ("operator", "karwai.propagate") in log

    # the keyframe list: markers inside the strip only, each with style and status
    markers = scene.timeline_markers
    flags, order = panels.KARWAI_UL_keyframes.filter_items(_Self([]), bpy.context, scene,
                                                           "timeline_markers")
    shown = [m.frame for m, f in zip(markers, flags) if f]
    assert sorted(shown) == [6, 20]
    row = []
    panels.KARWAI_UL_keyframes.draw_item(_Self(row), bpy.context, Layout(row), scene, markers[0],
                                         0, scene.karwai, "active_marker_index")
    assert ("label", "watercolour") in row and ("label", "stylized") in row
    scene.karwai.default_style.painterly_filter = "ink"
    panels._Info._cache.clear()
    row = []
    panels.KARWAI_UL_keyframes.draw_item(_Self(row), bpy.context, Layout(row), scene, markers[0],
                                         0, scene.karwai, "active_marker_index")
    assert ("label", "style changed") in row

    scene.karwai.active_marker_index = 0
    entry = scene.karwai.key_for(markers[0].frame)
    entry.use_own_style = True
    entry.style.method = "neural"
    log = _draw(panels.KARWAI_PT_keyframes)
    assert ("list", "KARWAI_UL_keyframes", "timeline_markers") in log
    assert ("operator", "karwai.open_keyframe") in log
    assert ("operator", "karwai.reload_keyframe") in log
    assert any(entry[0] == "preview" for entry in log)
    assert ("prop", "style_image") in log  # the neural method's artwork

    log = _draw(panels.KARWAI_PT_settings)
    assert {("prop", "quality"), ("prop", "output_dir"), ("prop", "method")} <= set(log)
    assert ("prop_search", "mask_strip", "strips_all") in log
    log = _draw(panels.KARWAI_PT_advanced)
    assert [e[1] for e in log if e[0] == "prop"] == ["colour", "edge", "positional", "temporal",
                                                       "style", "blend", "key_fit", "seed",
                                                       "temporal_smoothing", "restore_detail"]

    # while a job runs: a progress bar with the step and a Cancel button
    entry.use_own_style = False
    snap, _ = snapshots.build(bpy.context, scene, "propagate")
    controller = jobs.JobController(snap, mode="thread", engine=get_engine())
    controller._progress.apply({"type": "step", "index": 2, "count": 4, "name": "Propagating"}, 0.0)
    controller._progress.apply({"type": "progress", "done": 10, "total": 40, "message": "m"}, 1.0)
    controller._progress.apply({"type": "progress", "done": 20, "total": 40, "message": "m"}, 3.0)
    jobs.set_active(controller)
    try:
        assert not bpy.ops.karwai.propagate.poll()
        assert bpy.ops.karwai.cancel_job.poll()
        log = _draw(panels.KARWAI_PT_main)
    finally:
        jobs.set_active(None)
    progress = [e for e in log if e[0] == "progress"]
    assert progress == [("progress", 0.625, "Propagating (3/4): 20/40, 0:04 left")]
    assert ("operator", "karwai.cancel_job") in log
    assert ("operator", "karwai.propagate") not in log


def test_open_keyframe_uses_the_image_editor_from_the_preferences(saved, media, tmp_path):
    scene = bpy.context.scene
    add_image_strip(scene, media["images"])
    bpy.ops.karwai.add_keyframe(strip="seq", frame=7)
    bpy.ops.karwai.stylize_keyframes(strip="seq")
    opened = tmp_path / "opened.txt"
    editor = tmp_path / "editor.sh"
    editor.write_text(f'#!/bin/sh\necho "$1" > "{opened}"\n')
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    paths = bpy.context.preferences.filepaths
    paths.image_editor = str(editor)
    try:
        assert bpy.ops.karwai.open_keyframe(strip="seq", frame=7) == {"FINISHED"}
        deadline = time.monotonic() + 10
        while not opened.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert opened.read_text().strip() == scene.karwai.key_for(7).path
    finally:
        paths.image_editor = ""
    with pytest.raises(RuntimeError, match="The key at frame 9 has no stylized image yet"):
        bpy.ops.karwai.open_keyframe(strip="seq", frame=9)
    os.remove(scene.karwai.key_for(7).path)
    with pytest.raises(RuntimeError, match="Key at frame 7: file not found"):
        bpy.ops.karwai.open_keyframe(strip="seq", frame=7)


def test_redraws_touch_no_file_until_a_refresh(saved, media, monkeypatch):
    """The keyframe list asks for every key's files at every redraw: it reads them once,
    and again only after a refresh (a timer, a file load or a job's end)."""
    from blender_addon import snapshot as snapshots

    panels = _panels()
    scene = bpy.context.scene
    scene.sequence_editor.active_strip = add_image_strip(scene, media["images"])
    for frame in (3, 9):
        bpy.ops.karwai.add_keyframe(strip="seq", frame=frame)
    bpy.ops.karwai.stylize_keyframes(strip="seq")
    seen = []
    real = snapshots.file_stat
    monkeypatch.setattr(snapshots, "file_stat", lambda path: seen.append(path) or real(path))
    markers = scene.timeline_markers
    panels.refresh()

    def draw_rows():
        labels = []
        for marker in markers:
            row = []
            panels.KARWAI_UL_keyframes.draw_item(_Self(row), bpy.context, Layout(row), scene,
                                                 marker, 0, scene.karwai, "active_marker_index")
            labels.append(row[-1][1])
        return labels

    assert draw_rows() == ["stylized", "stylized"]
    first = len(seen)
    assert first > 0
    for _ in range(5):
        draw_rows()
    assert len(seen) == first  # nothing looked at again

    # a key repainted in another program shows after the next refresh
    key = scene.karwai.key_for(9).path
    os.utime(key, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert draw_rows() == ["stylized", "stylized"]
    panels.refresh()
    assert draw_rows() == ["stylized", "repainted"]
    assert len(seen) > first


def test_torch_methods_say_whether_pytorch_is_installed(addon):
    """The neural style's fields offer Install PyTorch only when torch cannot be found."""
    import importlib.util

    panels = _panels()
    style = bpy.context.scene.karwai.default_style
    style.method = "neural"
    log = []
    panels.draw_style(Layout(log), style)
    missing = ("label", "PyTorch is not installed: this method cannot run") in log
    assert missing == (importlib.util.find_spec("torch") is None)
    assert (("operator", "karwai.install_torch") in log) == missing
