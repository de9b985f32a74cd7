"""The "Kar-Wai" tab of the sequencer's sidebar (N panel)."""

import time

import bpy

from . import compat, dependencies, jobs, snapshot, strips
from .properties import settings as scene_settings
from .strips import Refusal

_TORCH_METHODS = ("neural", "deepdream")
_STATUS_STATES = {"NONE": "missing", "STYLIZED": "stylized", "EDITED": "repainted",
                  "ERROR": "error"}

#: The key files' states as the panel last saw them: redraws (many a second while the
#: mouse moves) touch no file. Cleared by :func:`refresh`: every REFRESH_SECONDS (a
#: key repainted in another program shows by then), on loading a file, at a job's end.
_file_stats = snapshot.FileStats()
REFRESH_SECONDS = 2.0


def refresh(*_args):
    """Forget what the panel knows of files and strips; they are looked at again on the
    next redraw. A timer and a load handler call it (hence the unused arguments)."""
    _file_stats.clear()
    _Info._cache.clear()
    return REFRESH_SECONDS


class _Info:
    """What the panel knows about the source strip, recomputed at most once a second."""

    _cache = {}

    def __init__(self, context, scene):
        self.source = None
        self.plan = None
        self.out_dir = None
        self.error = ""
        try:
            self.source = strips.resolve_source(context, scene)
        except Refusal as exc:
            self.error = str(exc)
            return
        key = (scene.name, self.source.name, compat.content_start(self.source), compat.content_trim_start(self.source),
               *compat.visible_range(self.source),
               getattr(self.source, "filepath", ""), getattr(self.source, "directory", ""),
               scene_settings(scene).output_dir, bpy.data.filepath)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < 1.0:
            _, self.plan, self.out_dir, self.error = cached
            return
        try:
            self.plan = strips.clip_plan(scene, self.source)
        except Refusal as exc:
            self.error = str(exc)
        if self.plan is not None:
            try:
                self.out_dir = snapshot.output_dir(scene, self.source)
            except Refusal:
                self.out_dir = None
        self._cache.clear()
        self._cache[key] = (time.monotonic(), self.plan, self.out_dir, self.error)


def _wrapped(layout, text, *, icon="NONE", width=40):
    """Draw a long message on several lines."""
    col = layout.column(align=True)
    words = text.split()
    line = ""
    first = True
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            col.label(text=line, icon=icon if first else "BLANK1")
            first = False
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        col.label(text=line, icon=icon if first else "BLANK1")
    return col


def draw_style(layout, style):
    """The fields of a style."""
    layout.prop(style, "method")
    if style.method == "painterly":
        layout.prop(style, "painterly_filter")
    if style.method in ("image", "neural"):
        layout.prop(style, "style_image")
    layout.prop(style, "params")
    if style.method in _TORCH_METHODS and not dependencies.torch_available():
        layout.label(text="PyTorch is not installed: this method cannot run", icon="ERROR")
        layout.operator("karwai.install_torch", icon="IMPORT")


class KARWAI_UL_keyframes(bpy.types.UIList):
    """The keyframes: timeline markers inside the source strip's range."""

    bl_idname = "KARWAI_UL_keyframes"

    def draw_item(self, context, layout, data, item, icon, active_data, active_property,
                  index=0, flt_flag=0):
        scene = compat.sequencer_scene(context)
        info = _Info(context, scene)
        row = layout.row(align=True)
        row.label(text=f"{item.frame}", icon="MARKER_HLT" if item.select else "MARKER")
        if info.plan is None:
            row.label(text=item.name)
            return
        if info.out_dir is None:
            entry = scene_settings(scene).key_for(item.frame)
            state = "missing" if entry is None else _STATUS_STATES[entry.status]
            style = scene_settings(scene).style_for(item.frame)
            label = style.method if style.method != "painterly" else style.painterly_filter
        else:
            state, label = snapshot.describe_key(scene, info.source, info.plan, info.out_dir,
                                                 item.frame, _file_stats)
        row.label(text=label)
        row.label(text=snapshot.STATE_LABELS[state],
                  icon={"missing": "RADIOBUT_OFF", "stylized": "CHECKMARK",
                        "stale": "FILE_REFRESH", "repainted": "BRUSH_DATA",
                        "error": "ERROR"}[state])

    def filter_items(self, context, data, propname):
        markers = getattr(data, propname)
        scene = compat.sequencer_scene(context)
        info = _Info(context, scene)
        flags = [0] * len(markers)
        if info.source is not None:
            start, end = strips.visible_range(info.source)
            for i, marker in enumerate(markers):
                if start <= marker.frame < end:
                    flags[i] = self.bitflag_filter_item
        order = sorted(range(len(markers)), key=lambda i: markers[i].frame)
        new_order = [0] * len(markers)
        for position, i in enumerate(order):
            new_order[i] = position
        return flags, new_order


class _Panel:
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Kar-Wai"

    @classmethod
    def poll(cls, context):
        scene = compat.sequencer_scene(context)
        return scene is not None and hasattr(scene, "karwai")


class KARWAI_PT_main(_Panel, bpy.types.Panel):
    """Source strip, the Propagate button and the running job's progress"""

    bl_idname = "KARWAI_PT_main"
    bl_label = "Kar-Wai"

    def draw(self, context):
        layout = self.layout
        scene = compat.sequencer_scene(context)
        info = _Info(context, scene)
        box = layout.box()
        if info.source is None or info.plan is None:
            _wrapped(box, info.error, icon="ERROR")
        else:
            source = info.source
            icon = "FILE_MOVIE" if source.type == "MOVIE" else "IMAGE_DATA"
            box.label(text=source.name, icon=icon)
            row = box.row()
            row.label(text=strips.describe_range(source))
            row.label(text=f"channel {source.channel}")
            if source.elements and source.elements[0].orig_width:
                element = source.elements[0]
                box.label(text=f"{element.orig_width}\u00d7{element.orig_height} source")
        state = jobs.active().state if jobs.busy() else None
        if state is not None:
            col = layout.column(align=True)
            col.progress(factor=state.factor, type="BAR", text=state.describe())
            if state.message:
                col.label(text=state.message)
            col.operator("karwai.cancel_job", icon="CANCEL")
        else:
            row = layout.row()
            row.scale_y = 1.5
            if scene_settings(scene).video_method == "propagate":
                farm = scene_settings(scene).farm_plan
                row.operator("karwai.propagate",
                             icon="NETWORK_DRIVE" if farm else "RENDER_ANIMATION",
                             text="Write Farm Plan" if farm else "Propagate")
            else:
                row.operator("karwai.stylize_video", icon="RENDER_ANIMATION")


class KARWAI_PT_keyframes(_Panel, bpy.types.Panel):
    """The keyframes inside the source strip, their styles and stylized images"""

    bl_idname = "KARWAI_PT_keyframes"
    bl_label = "Keyframes"
    bl_parent_id = "KARWAI_PT_main"

    def draw(self, context):
        layout = self.layout
        scene = compat.sequencer_scene(context)
        settings = scene_settings(scene)
        row = layout.row()
        row.template_list("KARWAI_UL_keyframes", "", scene, "timeline_markers", settings,
                          "active_marker_index", rows=3)
        col = row.column(align=True)
        col.operator("karwai.add_keyframe", text="", icon="ADD")
        col.operator("karwai.suggest_keyframes", text="", icon="VIEWZOOM")
        layout.operator("karwai.stylize_keyframes", icon="BRUSH_DATA")

        markers = scene.timeline_markers
        index = settings.active_marker_index
        info = _Info(context, scene)
        if info.source is None or not 0 <= index < len(markers):
            return
        frame = markers[index].frame
        start, end = strips.visible_range(info.source)
        if not start <= frame < end:
            return
        entry = settings.key_for(frame)
        box = layout.box()
        box.label(text=f"Key at frame {frame}", icon="MARKER_HLT")
        if entry is not None:
            row = box.row()
            row.prop(entry, "use_own_style")
            row.prop(entry, "anchor")
            if entry.use_own_style:
                draw_style(box.column(), entry.style)
            if entry.status == "ERROR" and entry.message:
                _wrapped(box, entry.message, icon="ERROR")
            if entry.image is not None:
                box.template_icon(icon_value=box.icon(entry.image), scale=6.0)
            row = box.row(align=True)
            op = row.operator("karwai.open_keyframe", icon="FILE_FOLDER")
            op.frame = frame
            op = row.operator("karwai.reload_keyframe", icon="FILE_REFRESH")
            op.frame = frame
        else:
            box.label(text="Uses the default style (see Settings)")


class KARWAI_PT_settings(_Panel, bpy.types.Panel):
    """Default style, quality, mask and output folder"""

    bl_idname = "KARWAI_PT_settings"
    bl_label = "Settings"
    bl_parent_id = "KARWAI_PT_main"

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        scene = compat.sequencer_scene(context)
        settings = scene_settings(scene)
        layout.prop(settings, "video_method")
        layout.label(text="Default Style")
        draw_style(layout.column(), settings.default_style)
        if settings.video_method != "propagate":
            if settings.default_style.method != "neural":
                layout.prop(settings.default_style, "style_image", text="Artwork")
            layout.prop(settings, "video_params")
        else:
            layout.prop(settings, "consistent_keys")
        layout.separator()
        layout.prop(settings, "quality")
        if scene.sequence_editor is not None:
            layout.prop_search(settings, "mask_strip", scene.sequence_editor,
                               compat.STRIPS_ALL_PROP, icon="MOD_MASK")
        layout.prop(settings, "output_dir")
        layout.prop(settings, "farm_plan")


class KARWAI_PT_advanced(_Panel, bpy.types.Panel):
    """Guide weights and finishing of the propagation"""

    bl_idname = "KARWAI_PT_advanced"
    bl_label = "Advanced"
    bl_parent_id = "KARWAI_PT_settings"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        settings = scene_settings(compat.sequencer_scene(context))
        layout.label(text="Guide Weights")
        for name in settings.weights.as_dict():
            layout.prop(settings.weights, name)
        layout.label(text="Finishing")
        for name in ("blend", "key_fit", "seed", "temporal_smoothing", "restore_detail"):
            layout.prop(settings, name)


CLASSES = (KARWAI_UL_keyframes, KARWAI_PT_main, KARWAI_PT_keyframes, KARWAI_PT_settings,
           KARWAI_PT_advanced)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.app.timers.register(refresh, first_interval=REFRESH_SECONDS, persistent=True)
    bpy.app.handlers.load_post.append(_on_load)


def unregister():
    if _on_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load)
    if bpy.app.timers.is_registered(refresh):
        bpy.app.timers.unregister(refresh)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)


@bpy.app.handlers.persistent
def _on_load(*_args):
    refresh()
