"""Every difference between Blender 4.2 LTS and 5.0 that Kar-Wai meets, in one place.

* 4.4 renamed the strip type ``bpy.types.Sequence`` to ``bpy.types.Strip``.
* 5.0 removed ``SequenceEditor.sequences`` / ``sequences_all`` in favour of
  ``strips`` / ``strips_all``.
* 5.0 renamed ``context.active_sequence_strip`` to ``context.active_strip``.
* 5.0 lets the sequencer show a scene other than the window's
  (``context.sequencer_scene``).

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
