"""Kar-Wai's operators, one per file, registered in this order."""

import bpy

from . import _job
from .add_keyframe import KARWAI_OT_add_keyframe
from .cancel_job import KARWAI_OT_cancel_job
from .install_torch import KARWAI_OT_install_torch
from .open_keyframe import KARWAI_OT_open_keyframe
from .propagate import KARWAI_OT_propagate
from .reload_keyframe import KARWAI_OT_reload_keyframe
from .stylize_keyframes import KARWAI_OT_stylize_keyframes
from .stylize_video import KARWAI_OT_stylize_video
from .suggest_keyframes import KARWAI_OT_suggest_keyframes

CLASSES = (
    KARWAI_OT_add_keyframe,
    KARWAI_OT_suggest_keyframes,
    KARWAI_OT_stylize_keyframes,
    KARWAI_OT_open_keyframe,
    KARWAI_OT_reload_keyframe,
    KARWAI_OT_propagate,
    KARWAI_OT_stylize_video,
    KARWAI_OT_cancel_job,
    KARWAI_OT_install_torch,
)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    _job.register()


def unregister():
    _job.unregister()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
