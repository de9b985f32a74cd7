"""Propagate: carry the keys' style over the whole strip, as a new strip above it."""

import bpy
from bpy.props import StringProperty

from . import _job
from .. import strips
from ..properties import settings as scene_settings


def apply_result(scene, snap, result):
    """Put a finished propagation into the scene (main thread): the keys' state and
    previews, and the result strip replacing an earlier one. Returns
    ``(strip, key errors)``."""
    source = _job.source_strip(scene, snap)
    errors = _job.apply_key_results(scene, result["keys"])
    relative = scene_settings(scene).output_dir.strip().startswith("//")
    strip = strips.replace_result_strip(scene, source, result["frames_dir"], result["files"],
                                        relative=relative)
    return strip, errors


class KARWAI_OT_propagate(_job.JobOperatorMixin, bpy.types.Operator):
    """Carry the keyframes' style over every frame of the strip, as a new strip above it"""

    bl_idname = "karwai.propagate"
    bl_label = "Propagate"
    bl_options = {"UNDO"}

    job_kind = "propagate"

    strip: StringProperty(name="Strip", description="Source strip (default: the active strip)",
                          options={"SKIP_SAVE"})

    def finish(self, context, scene, snap, result):
        if "plan" in result:
            # Written for a farm: nothing to show yet; the keys' state is still news.
            errors = _job.apply_key_results(scene, result["keys"])
            if errors:
                self.report({"WARNING"}, "; ".join(errors))
            self.report({"INFO"}, f"Wrote the farm plan {result['plan']} ({result['tasks']} tasks); submit it "
                                  f"to Flamenco (job type karwai-propagate) or run it with Dask")
            return {"FINISHED"}
        strip, errors = apply_result(scene, snap, result)
        if errors:
            self.report({"WARNING"}, "; ".join(errors))
        self.report({"INFO"}, f"Added strip '{strip.name}' on channel {strip.channel}")
        return {"FINISHED"}
