"""Stylize Video: every frame of the strip by a neural video method, as a new strip above it."""

import bpy
from bpy.props import StringProperty

from . import _job
from .propagate import apply_result


class KARWAI_OT_stylize_video(_job.JobOperatorMixin, bpy.types.Operator):
    """Stylize every frame of the strip with the chosen neural video method and the default
    style's artwork, as a new strip above it"""

    bl_idname = "karwai.stylize_video"
    bl_label = "Stylize Video"
    bl_options = {"UNDO"}

    job_kind = "video"

    strip: StringProperty(name="Strip", description="Source strip (default: the active strip)",
                          options={"SKIP_SAVE"})

    def finish(self, context, scene, snap, result):
        strip, _errors = apply_result(scene, snap, result)
        self.report({"INFO"}, f"Added strip '{strip.name}' on channel {strip.channel}")
        return {"FINISHED"}
