"""Add a keyframe: a timeline marker at the current frame."""

import bpy
from bpy.props import IntProperty, StringProperty

from .. import compat, strips
from ..strips import Refusal


class KARWAI_OT_add_keyframe(bpy.types.Operator):
    """Add a keyframe marker at the current frame, inside the source strip"""

    bl_idname = "karwai.add_keyframe"
    bl_label = "Add Keyframe"
    bl_options = {"UNDO"}

    strip: StringProperty(name="Strip", description="Source strip (default: the active strip)",
                          options={"SKIP_SAVE"})
    frame: IntProperty(name="Frame", description="Scene frame (default: the current frame)",
                       options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        scene = compat.sequencer_scene(context)
        if scene is None or scene.sequence_editor is None:
            cls.poll_message_set("The scene has no sequencer strips")
            return False
        return True

    def execute(self, context):
        scene = compat.sequencer_scene(context)
        frame = self.frame if self.properties.is_property_set("frame") else scene.frame_current
        try:
            source = strips.resolve_source(context, scene, self.strip)
            strips.check_mappable(scene, source)
            strips.check_frame_in_strip(source, frame)
        except Refusal as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for marker in scene.timeline_markers:
            if marker.frame == frame:
                self.report({"INFO"}, f"Frame {frame} is already a keyframe ('{marker.name}')")
                return {"CANCELLED"}
        for marker in scene.timeline_markers:
            marker.select = False
        marker = scene.timeline_markers.new(f"key {frame}", frame=frame)
        marker.select = True
        self.report({"INFO"}, f"Added a keyframe at frame {frame}")
        return {"FINISHED"}
