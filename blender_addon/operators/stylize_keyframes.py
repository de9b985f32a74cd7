"""Stylize keyframes: write each key's stylized image to disk and show it."""

import bpy
from bpy.props import BoolProperty, StringProperty

from . import _job
from .. import snapshot


class KARWAI_OT_stylize_keyframes(_job.JobOperatorMixin, bpy.types.Operator):
    """Stylize the strip's keyframes with their styles and save them in the output folder"""

    bl_idname = "karwai.stylize_keyframes"
    bl_label = "Stylize Keyframes"
    bl_options = {"UNDO"}

    job_kind = "stylize"

    strip: StringProperty(name="Strip", description="Source strip (default: the active strip)",
                          options={"SKIP_SAVE"})
    force: BoolProperty(name="Redo All",
                        description="Stylize again also the keys that are up to date or were "
                                    "repainted (a repainted key is overwritten)",
                        default=False, options={"SKIP_SAVE"})

    def make_snapshot(self, context, scene):
        snap, _source = snapshot.build(context, scene, "stylize", strip_name=self.strip,
                                       force=self.force)
        if not any(key.stylize for key in snap.keys):
            self.report({"INFO"}, "All keyframes are up to date (use Redo All to stylize them "
                                  "again)")
            return None
        return snap

    def finish(self, context, scene, snap, result):
        errors = _job.apply_key_results(scene, result["keys"])
        done = len(result["keys"]) - len(errors)
        if errors:
            self.report({"ERROR"}, "; ".join(errors))
        else:
            self.report({"INFO"}, f"Stylized {done} keyframe(s) into {snap.out_dir}")
        return {"FINISHED"}
