"""Reload a stylized key repainted outside Blender."""

import os

import bpy
from bpy.props import IntProperty, StringProperty

from . import _job, _keys
from ..engine_import import EngineMissing, get_engine
from ..strips import Refusal


class KARWAI_OT_reload_keyframe(bpy.types.Operator):
    """Reload the keyframe's image after repainting it; propagation then uses it as it is"""

    bl_idname = "karwai.reload_keyframe"
    bl_label = "Reload Keyframe"
    bl_options = {"UNDO"}

    strip: StringProperty(name="Strip", description="Source strip (default: the active strip)",
                          options={"SKIP_SAVE"})
    frame: IntProperty(name="Frame", description="The key's scene frame (default: the key "
                                                 "selected in the list)", options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        return _keys.poll_keys(cls, context)

    def execute(self, context):
        try:
            _scene, frame, entry = _keys.key_entry(context, self)
            get_engine().frames.read_image(entry.path)  # refuses a missing or broken file
        except (Refusal, EngineMissing, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        entry.status = "EDITED"
        entry.message = ""
        entry.mtime_ns = str(os.stat(entry.path).st_mtime_ns)
        _job.load_preview(entry)
        self.report({"INFO"}, f"Reloaded the key at frame {frame}; it is used as painted")
        return {"FINISHED"}
