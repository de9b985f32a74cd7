"""Which keyframe the open/reload operators act on: not an operator itself."""

from .. import compat, strips
from ..properties import settings as scene_settings
from ..strips import Refusal


def active_key_frame(context, scene, strip_name=""):
    """Scene frame of the keyframe selected in the panel's list.

    Raises
    ------
    Refusal
        When no keyframe of the source strip is selected.
    """
    source = strips.resolve_source(context, scene, strip_name)
    settings = scene_settings(scene)
    markers = scene.timeline_markers
    index = settings.active_marker_index
    if 0 <= index < len(markers):
        frame = markers[index].frame
        strips.check_frame_in_strip(source, frame)
        return frame
    raise Refusal("Select a keyframe in the Kar-Wai keyframe list first")


def key_entry(context, op):
    """``(scene, frame, entry)`` for an operator with ``strip`` and ``frame`` properties.

    Raises
    ------
    Refusal
        When that key has no stylized image yet.
    """
    scene = compat.sequencer_scene(context)
    if op.properties.is_property_set("frame"):
        frame = op.frame
    else:
        frame = active_key_frame(context, scene, op.strip)
    entry = scene_settings(scene).key_for(frame)
    if entry is None or not entry.path:
        raise Refusal(f"The key at frame {frame} has no stylized image yet; run Stylize "
                      "Keyframes first")
    return scene, frame, entry


def poll_keys(cls, context):
    scene = compat.sequencer_scene(context)
    if scene is None or scene.sequence_editor is None:
        cls.poll_message_set("The scene has no sequencer strips")
        return False
    if not len(scene_settings(scene).keys):
        cls.poll_message_set("No keyframe has been stylized yet")
        return False
    return True
