"""Cancel the running Kar-Wai job."""

import bpy

from .. import jobs


class KARWAI_OT_cancel_job(bpy.types.Operator):
    """Stop the running Kar-Wai job before its next frame; nothing is added to the scene"""

    bl_idname = "karwai.cancel_job"
    bl_label = "Cancel"
    bl_options = set()

    @classmethod
    def poll(cls, context):
        if not jobs.busy():
            cls.poll_message_set("No Kar-Wai job is running")
            return False
        return True

    def execute(self, context):
        jobs.active().cancel()
        self.report({"INFO"}, "Cancelling the Kar-Wai job")
        return {"FINISHED"}
