"""Open a stylized key in an image editor, to repaint it."""

import os

import bpy
from bpy.props import IntProperty, StringProperty

from . import _keys
from ..strips import Refusal


class KARWAI_OT_open_keyframe(bpy.types.Operator):
    """Open the stylized keyframe in an image editor to repaint it, then reload it"""

    bl_idname = "karwai.open_keyframe"
    bl_label = "Open Keyframe"
    bl_options = set()

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
        except Refusal as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if not os.path.isfile(entry.path):
            self.report({"ERROR"}, f"Key at frame {frame}: file not found: {entry.path}")
            return {"CANCELLED"}
        if context.preferences.filepaths.image_editor:
            result = bpy.ops.image.external_edit(filepath=entry.path)
        else:
            result = bpy.ops.wm.path_open(filepath=entry.path)
        if "FINISHED" not in result:
            return {"CANCELLED"}
        self.report({"INFO"}, f"Opened {entry.path}; save it there, then Reload Keyframe")
        return {"FINISHED"}
