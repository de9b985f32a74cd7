"""Install PyTorch into Kar-Wai's own site folder, for the neural and Deep Dream methods.

From the UI (the button in the add-on's preferences, or under a neural style
in the sidebar) pip runs in a background process and a timer polls it: Blender
stays responsive, the preferences show pip's progress, Esc cancels. From
scripts and ``blender -b`` (where timers never fire) it runs synchronously and
prints its progress.
"""

import bpy

from .. import dependencies
from ..compat import in_background

#: Seconds between two polls of pip.
POLL_INTERVAL = 0.25


def _redraw(context):
    """Redraw the preferences and sequencer areas of every window (progress)."""
    wm = getattr(context, "window_manager", None)
    for window in getattr(wm, "windows", ()):
        for area in window.screen.areas:
            if area.type in ("PREFERENCES", "SEQUENCE_EDITOR"):
                area.tag_redraw()


class KARWAI_OT_install_torch(bpy.types.Operator):
    """Download PyTorch (CUDA build with an NVIDIA GPU, else CPU) into Kar-Wai's folder"""

    bl_idname = "karwai.install_torch"
    bl_label = "Install PyTorch"
    bl_options = set()

    @classmethod
    def poll(cls, context):
        if dependencies.installing():
            cls.poll_message_set("PyTorch is being installed")
            return False
        if dependencies.torch_available():
            cls.poll_message_set("PyTorch is already installed")
            return False
        return True

    def _start(self):
        if not dependencies.online_access():
            self.report({"ERROR"}, "Online access is off: allow it in Preferences > System > "
                                   "Network, then install PyTorch")
            return None
        try:
            return dependencies.start_install()
        except (OSError, RuntimeError) as exc:
            self.report({"ERROR"}, f"Cannot install PyTorch: {exc}")
            return None

    def _report(self, state):
        if state.status == dependencies.FINISHED:
            self.report({"INFO"}, f"PyTorch {state.version} installed: the neural and Deep "
                                  "Dream methods are available")
            return {"FINISHED"}
        if state.status == dependencies.CANCELLED:
            self.report({"WARNING"}, state.describe())
        else:
            self.report({"ERROR"}, state.describe())
        return {"CANCELLED"}

    def execute(self, context):
        installer = self._start()
        if installer is None:
            return {"CANCELLED"}
        print(f"Kar-Wai: installing PyTorch, {installer.plan.description}")
        state = installer.wait(log=lambda text: print(f"Kar-Wai: {text}"))
        return self._report(state)

    def invoke(self, context, event):
        if in_background():
            return self.execute(context)
        installer = self._start()
        if installer is None:
            return {"CANCELLED"}
        self._installer = installer
        wm = context.window_manager
        self._timer = wm.event_timer_add(POLL_INTERVAL, window=context.window)
        wm.modal_handler_add(self)
        self.report({"INFO"}, f"Installing PyTorch: {installer.plan.description}")
        _redraw(context)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            self._installer.cancel()
        elif event.type != "TIMER" or event.timer is not self._timer:
            return {"PASS_THROUGH"}
        state = self._installer.poll()
        _redraw(context)
        if not state.finished:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        self._timer = None
        return self._report(state)
