"""Suggest keyframes: markers at shot cuts and where motion or new content piles up."""

import bpy
from bpy.props import StringProperty

from . import _job
from .. import strips


class KARWAI_OT_suggest_keyframes(_job.JobOperatorMixin, bpy.types.Operator):
    """Add keyframe markers at the strip's cuts, large motion and newly revealed content"""

    bl_idname = "karwai.suggest_keyframes"
    bl_label = "Suggest Keyframes"
    bl_options = {"UNDO"}

    job_kind = "suggest"

    strip: StringProperty(name="Strip", description="Source strip (default: the active strip)",
                          options={"SKIP_SAVE"})

    def finish(self, context, scene, snap, result):
        source = _job.source_strip(scene, snap)
        start, end = strips.visible_range(source)
        taken = {m.frame for m in scene.timeline_markers}
        added = []
        for timeline, _number, reason in result["suggestions"]:
            if timeline in taken or not start <= timeline < end:
                continue
            scene.timeline_markers.new(f"key {timeline} ({reason})", frame=timeline)
            taken.add(timeline)
            added.append(timeline)
        if added:
            self.report({"INFO"}, f"Added {len(added)} keyframe(s): "
                                  + ", ".join(str(t) for t in added))
        else:
            self.report({"INFO"}, "No new keyframes suggested")
        return {"FINISHED"}
