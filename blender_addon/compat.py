"""Every difference between Blender 4.2 LTS and 5.2 LTS that Kar-Wai meets, in one place.

* 4.4 renamed the strip type ``bpy.types.Sequence`` to ``bpy.types.Strip``.
* 5.0 removed ``SequenceEditor.sequences`` / ``sequences_all`` in favour of
  ``strips`` / ``strips_all``.
* 5.0 renamed ``context.active_sequence_strip`` to ``context.active_strip``.
* 5.0 lets the sequencer show a scene other than the window's
  (``context.sequencer_scene``).
* 5.2 renamed a strip's geometry (the old names still work but warn that 6.0
  removes them): ``frame_start`` -> ``content_start``, ``frame_duration`` ->
  ``content_duration``, ``animation_offset_start`` -> ``content_trim_start``,
  ``frame_final_start``/``frame_final_end`` -> ``left_handle``/``right_handle``.
  5.2 also keeps the visible frames in place when the content is trimmed
  (``content_start`` moves by the trim, where 5.0 moved the end instead); the
  mapping scene frame ``t`` -> media frame ``t - content_start + content_trim_start``
  holds in both, as Blender's own renders confirm (tests/blender/test_strips.py).

Each is decided once, by looking at what this Blender's RNA has (not at version
numbers), so the rest of the add-on never checks a version.
"""

import bpy

_EDITOR_PROPS = bpy.types.SequenceEditor.bl_rna.properties

#: The strip RNA type (``Strip`` since 4.4, ``Sequence`` before).
STRIP_TYPE = getattr(bpy.types, "Strip", None) or getattr(bpy.types, "Sequence")

#: Name of the editor's top-level strip collection.
STRIPS_PROP = "strips" if "strips" in _EDITOR_PROPS else "sequences"

#: Name of the editor's collection of all strips, meta strip contents included.
STRIPS_ALL_PROP = "strips_all" if "strips_all" in _EDITOR_PROPS else "sequences_all"

#: Name of the context member holding the active strip; it was renamed in the
#: release (5.0) that removed ``SequenceEditor.sequences``.
ACTIVE_STRIP_CONTEXT = "active_sequence_strip" if "sequences" in _EDITOR_PROPS else "active_strip"


def strips(editor):
    """The top-level strips of a sequence editor (a collection with ``new_image`` etc.)."""
    return getattr(editor, STRIPS_PROP)


def strips_all(editor):
    """All strips of a sequence editor, those inside meta strips included."""
    return getattr(editor, STRIPS_ALL_PROP)


def sequencer_scene(context):
    """The scene the sequencer edits (5.0: possibly not the window's scene)."""
    scene = getattr(context, "sequencer_scene", None)
    return scene if scene is not None else context.scene


def active_strip(context, scene=None):
    """The active strip: the context's when it has one, else the editor's."""
    strip = getattr(context, ACTIVE_STRIP_CONTEXT, None)
    if strip is not None:
        return strip
    scene = scene if scene is not None else sequencer_scene(context)
    editor = scene.sequence_editor if scene is not None else None
    return editor.active_strip if editor is not None else None


# --------------------------------------------------------------------------------------
# strip geometry (scene frames)

_STRIP_PROPS = STRIP_TYPE.bl_rna.properties

#: The names 5.2 gave the strip geometry, by the names before (which 5.2 still
#: accepts, with a warning that 6.0 removes them).
GEOMETRY_RENAMED = {
    "frame_start": "content_start",
    "frame_duration": "content_duration",
    "animation_offset_start": "content_trim_start",
    "animation_offset_end": "content_trim_end",
    "frame_final_start": "left_handle",
    "frame_final_end": "right_handle",
    "frame_offset_start": "left_handle_offset",
    "frame_offset_end": "right_handle_offset",
}
_NEW_GEOMETRY = all(new in _STRIP_PROPS for new in ("content_start", "left_handle"))


def geometry_name(name):
    """This Blender's name for the geometry property called ``name`` before 5.2."""
    return GEOMETRY_RENAMED[name] if _NEW_GEOMETRY else name


def set_geometry(strip, **values):
    """Set geometry properties given by their pre-5.2 names (``frame_offset_start=3``)."""
    for name, value in values.items():
        setattr(strip, geometry_name(name), value)


def content_start(strip):
    """Scene frame at which the strip's media begins (its first untrimmed frame)."""
    return getattr(strip, geometry_name("frame_start"))


def content_duration(strip):
    """Number of media frames the strip holds, trims of its content excluded."""
    return getattr(strip, geometry_name("frame_duration"))


def content_trim_start(strip):
    """Media frames skipped before ``content_start``."""
    return getattr(strip, geometry_name("animation_offset_start"))


def visible_range(strip):
    """``(start, end)``: the scene frames the strip shows, end exclusive."""
    return (int(getattr(strip, geometry_name("frame_final_start"))),
            int(getattr(strip, geometry_name("frame_final_end"))))


def new_effect(editor, *, name, type, channel, frame_start, length=None, **inputs):  # noqa: A002
    """A new effect strip; ``length`` frames long when given (5.0 takes ``length``, earlier
    Blenders ``frame_end``). ``inputs``: ``input1``, ``input2``."""
    collection = strips(editor)
    if length is not None:
        if "length" in collection.bl_rna.functions["new_effect"].parameters:
            inputs["length"] = length
        else:
            inputs["frame_end"] = frame_start + length
    return collection.new_effect(name=name, type=type, channel=channel, frame_start=frame_start,
                                 **inputs)


def in_background():
    """Whether Blender runs without its UI (``blender -b``): no timer would ever fire."""
    return bpy.app.background
