"""What the job operators (stylize, propagate, suggest) share: not an operator itself.

``invoke()`` (a button in the UI) snapshots the settings, starts a
:class:`~..jobs.JobController` and polls it from a modal timer: Blender stays
responsive, Esc or the Cancel button stops the job, and the result goes into the
scene on the main thread when the job has finished. ``execute()`` (scripts, and
``blender -b``, where timers never fire and ``INVOKE_DEFAULT`` falls back to
``execute()``) runs the same job synchronously and prints its progress.
"""

import os

import bpy
from bpy.app.handlers import persistent

from .. import compat, jobs, panels, snapshot, strips
from ..compat import in_background
from ..engine_import import EngineMissing, get_engine, search_path
from ..preferences import Prefs
from ..properties import settings as scene_settings
from ..strips import Refusal
from ..worker import USER_ERRORS, JobCancelled

#: Seconds between two polls of a running job.
POLL_INTERVAL = 0.1


def tag_redraw(context):
    """Redraw the sequencer areas (progress bar)."""
    screen = getattr(context, "screen", None)
    if screen is None:
        return
    for area in screen.areas:
        if area.type == "SEQUENCE_EDITOR":
            area.tag_redraw()


def apply_key_results(scene, results):
    """Store stylized keys' state and previews; returns the error messages."""
    settings = scene_settings(scene)
    errors = []
    for item in results:
        entry = settings.key_for(item["timeline"], create=True)
        entry.path = item["path"]
        if item["error"]:
            entry.status = "ERROR"
            entry.message = item["error"]
            errors.append(f"key at frame {item['timeline']}: {item['error']}")
            continue
        entry.status = "STYLIZED"
        entry.message = ""
        entry.signature = item["signature"]
        entry.mtime_ns = str(item["mtime_ns"])
        load_preview(entry)
    return errors


def load_preview(entry):
    """Load (or reload) the key's image as its preview."""
    image = bpy.data.images.load(entry.path, check_existing=True)
    image.reload()
    entry.image = image
    return image


class JobOperatorMixin:
    """Runs a job: asynchronously from the UI, synchronously from scripts and ``-b``."""

    #: Job kind for :func:`snapshot.build`.
    job_kind = ""

    @classmethod
    def poll(cls, context):
        scene = compat.sequencer_scene(context)
        if scene is None or scene.sequence_editor is None:
            cls.poll_message_set("The scene has no sequencer strips")
            return False
        if jobs.busy():
            cls.poll_message_set("A Kar-Wai job is running")
            return False
        return True

    # The operator's own work -------------------------------------------------

    def make_snapshot(self, context, scene):
        snap, _source = snapshot.build(context, scene, self.job_kind, strip_name=self.strip)
        return snap

    def finish(self, context, scene, snap, result):
        """Put the result into the scene (main thread); returns the operator's result."""
        raise NotImplementedError

    # Running ------------------------------------------------------------------

    def _prepare(self, context):
        scene = compat.sequencer_scene(context)
        try:
            snap = self.make_snapshot(context, scene)
            engine = get_engine() if snap is not None else None
        except (Refusal, EngineMissing) as exc:
            self.report({"ERROR"}, str(exc))
            return None, None, None
        return scene, snap, engine

    def execute(self, context):
        scene, snap, engine = self._prepare(context)
        if scene is None:
            return {"CANCELLED"}
        if snap is None:
            return {"FINISHED"}
        try:
            result = jobs.run_sync(snap, engine=engine, log=print)
        except JobCancelled:
            self.report({"WARNING"}, "Cancelled; nothing was added to the scene")
            return {"CANCELLED"}
        except USER_ERRORS as exc:
            self.report({"ERROR"}, str(exc) or type(exc).__name__)
            return {"CANCELLED"}
        return self._finish(context, scene.name, snap, result)

    def invoke(self, context, event):
        if in_background():
            return self.execute(context)
        scene, snap, engine = self._prepare(context)
        if scene is None:
            return {"CANCELLED"}
        if snap is None:
            return {"FINISHED"}
        prefs = Prefs(context)
        if prefs.use_process:
            controller = jobs.JobController(snap, mode="process", engine_path=search_path(engine),
                                            log_dir=os.path.join(prefs.cache_dir, "logs"))
        else:
            controller = jobs.JobController(snap, mode="thread", engine=engine)
        controller.start()
        jobs.set_active(controller)
        self._controller = controller
        self._scene_name = scene.name
        self._snap = snap
        wm = context.window_manager
        self._timer = wm.event_timer_add(POLL_INTERVAL, window=context.window)
        wm.modal_handler_add(self)
        tag_redraw(context)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        controller = self._controller
        if event.type == "ESC" and event.value == "PRESS":
            controller.cancel()
            return {"RUNNING_MODAL"}
        if event.type != "TIMER" or event.timer is not self._timer:
            return {"PASS_THROUGH"}
        state = controller.poll()
        tag_redraw(context)
        if not state.finished:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        self._timer = None
        jobs.set_active(None)
        if state.status == jobs.CANCELLED:
            self.report({"WARNING"}, "Cancelled; nothing was added to the scene")
            return {"CANCELLED"}
        if state.status == jobs.FAILED:
            self.report({"ERROR"}, state.error)
            return {"CANCELLED"}
        return self._finish(context, self._scene_name, self._snap, state.result)

    def _finish(self, context, scene_name, snap, result):
        scene = bpy.data.scenes.get(scene_name)
        if scene is None:
            self.report({"ERROR"}, f"Scene '{scene_name}' was removed while the job ran")
            return {"CANCELLED"}
        panels.refresh()  # the job wrote keys and frames: the panel looks at them again
        try:
            return self.finish(context, scene, snap, result)
        except Refusal as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}


def source_strip(scene, snap):
    """The job's source strip, still in the scene."""
    source = strips.find_strip(scene, snap.strip)
    if source is None:
        raise Refusal(f"Strip '{snap.strip}' was removed while the job ran")
    return source


@persistent
def _cancel_on_load(*_args):
    """Loading another file ends the modal operators: stop their job too."""
    controller = jobs.active()
    if controller is not None:
        controller.cancel()
        jobs.set_active(None)


def register():
    bpy.app.handlers.load_pre.append(_cancel_on_load)


def unregister():
    if _cancel_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_cancel_on_load)
    controller = jobs.active()
    if controller is not None:
        controller.cancel()
        controller.wait(5.0)
        jobs.set_active(None)
