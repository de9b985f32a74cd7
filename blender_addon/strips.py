"""Strips and source frames: which media frame a strip shows at each scene frame,
and the result folder back into the sequencer as a strip.

Geometry of a movie or image-sequence strip (all in scene frames; the names are
:mod:`.compat`'s, which reads 5.2's ``content_*``/``*_handle`` or the older names):

* the media's first frame is at ``content_start`` (possibly before frame 1);
  ``content_trim_start`` media frames are skipped before it;
* the strip shows ``visible_range`` = ``[left_handle, right_handle)`` (end exclusive);
* so scene frame ``t`` shows media frame ``t - content_start + content_trim_start``
  (0-based): ``elements[...]`` of an image strip, frame ``... + 1`` of a movie,
  read from the media at its own resolution (never a render of the timeline).

Strips this cannot map one to one are refused with a :class:`Refusal` whose
message says what to do. The messages (also listed in HEADLESS.md):

=========================  ==============================================================
case                       message starts with
=========================  ==============================================================
no strip                   ``Select a movie or image-sequence strip``
sound/scene/colour/...     ``Strip 'NAME' is a sound strip`` (scene, colour, text, meta...)
retimed                    ``Strip 'NAME' is retimed``
reversed / strobe          ``Strip 'NAME' plays its frames reversed`` / ``... strobe``
holds                      ``Strip 'NAME' holds a frame``
inside a meta strip        ``Strip 'NAME' is inside a meta strip``
missing media              ``Strip 'NAME': media file not found``
still image                ``Strip 'NAME' is a single still image``
unnumbered images          ``Strip 'NAME': image 'FILE' has no frame number``
marker outside             ``Frame F is outside strip 'NAME'``
no markers                 ``No keyframe markers inside strip 'NAME'``
=========================  ==============================================================
"""

import os

import bpy

from . import compat
from .worker import ClipFrame, ClipPlan

#: Custom property that marks a result strip with its source strip's name.
RESULT_OF = "karwai_result_of"
#: Custom property holding the folder a result strip shows.
RESULT_DIR = "karwai_frames_dir"
#: Highest sequencer channel.
MAX_CHANNEL = 128

_KIND_NAMES = {
    "SOUND": "sound",
    "SCENE": "scene",
    "COLOR": "colour",
    "TEXT": "text",
    "META": "meta",
    "MOVIECLIP": "movie clip",
    "MASK": "mask",
    "SPEED": "speed (retiming)",
    "ADJUSTMENT": "adjustment layer",
    "MULTICAM": "multicam",
}


class Refusal(Exception):
    """Kar-Wai cannot work on this strip or marker; the message says why and what to do."""


def kind_name(strip):
    """How a message names the strip's type: ``"sound"``, ``"colour"``, ``"effect"``..."""
    if strip.type in ("IMAGE", "MOVIE"):
        return {"IMAGE": "image-sequence", "MOVIE": "movie"}[strip.type]
    return _KIND_NAMES.get(strip.type, "effect")


def visible_range(strip):
    """``(start, end)`` scene frames the strip shows, end exclusive."""
    return compat.visible_range(strip)


def describe_range(strip):
    start, end = visible_range(strip)
    return f"frames {start}\u2013{end - 1}"


def _editor(scene):
    editor = scene.sequence_editor
    if editor is None:
        raise Refusal("Select a movie or image-sequence strip: the scene has no sequencer strips")
    return editor


def find_strip(scene, name):
    """The strip called ``name`` (meta contents included), or None."""
    editor = scene.sequence_editor
    if editor is None or not name:
        return None
    return compat.strips_all(editor).get(name)


def resolve_source(context, scene, name=""):
    """The source strip: ``name``, else the active strip. A result strip stands for its source.

    Raises
    ------
    Refusal
        When there is no such strip.
    """
    _editor(scene)
    if name:
        strip = find_strip(scene, name)
        if strip is None:
            raise Refusal(f"Select a movie or image-sequence strip: no strip is called '{name}'")
    else:
        strip = compat.active_strip(context, scene)
        if strip is None:
            raise Refusal("Select a movie or image-sequence strip first (none is active)")
    source_name = strip.get(RESULT_OF) if hasattr(strip, "get") else None
    if source_name:
        source = find_strip(scene, source_name)
        if source is not None:
            return source
    return strip


def _abspath(path, strip):
    return os.path.normpath(bpy.path.abspath(path, library=strip.id_data.library))


def _frame_number(name):
    from .engine_import import get_engine

    return get_engine().frames.frame_number_from_name(name)


def check_mappable(scene, strip, *, allow_still=False):
    """Refuse strips whose frames do not map one to one onto media frames."""
    name = strip.name
    if strip.type not in ("IMAGE", "MOVIE"):
        raise Refusal(
            f"Strip '{name}' is a {kind_name(strip)} strip; Kar-Wai needs a movie or "
            "image-sequence strip (sound, scene, colour, text, meta and effect strips have "
            "no source frames to read)")
    if strip.name not in compat.strips(_editor(scene)):
        raise Refusal(f"Strip '{name}' is inside a meta strip; ungroup it (or use a strip "
                      "outside meta strips) first")
    if len(getattr(strip, "retiming_keys", ())) > 1:
        raise Refusal(f"Strip '{name}' is retimed (it has speed keys); reset its retiming "
                      "(Strip \u25b8 Retiming \u25b8 Reset) or render it to new media first")
    if strip.use_reverse_frames:
        raise Refusal(f"Strip '{name}' plays its frames reversed; turn off Reverse Frames first")
    if strip.strobe > 1.0:
        raise Refusal(f"Strip '{name}' uses strobe {strip.strobe:g}; set Strobe to 1 first")
    start = compat.content_start(strip)
    if start != int(start):
        raise Refusal(f"Strip '{name}' starts between frames ({start:g}); snap it to a frame first")
    media_end = int(start) + compat.content_duration(strip)
    if not (allow_still and strip.type == "IMAGE" and len(strip.elements) == 1):
        shown_start, shown_end = visible_range(strip)
        if shown_start < start or shown_end > media_end:
            raise Refusal(f"Strip '{name}' holds a frame beyond the ends of its media; trim it to "
                          "its media first")


def clip_plan(scene, strip, *, allow_still=False):
    """The media frames behind the strip's visible frames.

    Parameters
    ----------
    scene : bpy.types.Scene
    strip : strip
        A movie or image-sequence strip.
    allow_still : bool
        Accept a single still image (for masks): every frame shows it.

    Returns
    -------
    worker.ClipPlan

    Raises
    ------
    Refusal
    """
    check_mappable(scene, strip, allow_still=allow_still)
    name = strip.name
    start, end = visible_range(strip)
    first = int(compat.content_start(strip))
    offset = int(compat.content_trim_start(strip))
    if strip.type == "MOVIE":
        path = _abspath(strip.filepath, strip)
        if not os.path.isfile(path):
            raise Refusal(f"Strip '{name}': media file not found: {path}")
        if getattr(strip, "stream_index", 0) > 0:
            raise Refusal(f"Strip '{name}' uses video stream {strip.stream_index} of its file; "
                          "only the first video stream can be read")
        frames = tuple(ClipFrame(t, t - first + offset + 1) for t in range(start, end))
        return ClipPlan("movie", path, frames)

    folder = _abspath(strip.directory, strip)
    elements = strip.elements
    if len(elements) == 1:
        path = os.path.join(folder, elements[0].filename)
        if not allow_still:
            raise Refusal(f"Strip '{name}' is a single still image; Kar-Wai needs a movie or an "
                          "image sequence with one image per frame")
        if not os.path.isfile(path):
            raise Refusal(f"Strip '{name}': media file not found: {path}")
        return ClipPlan("still", path, tuple(ClipFrame(t, 1, path) for t in range(start, end)))
    frames = []
    seen = {}
    for t in range(start, end):
        filename = elements[t - first + offset].filename
        path = os.path.join(folder, filename)
        if not os.path.isfile(path):
            raise Refusal(f"Strip '{name}': media file not found: {path}")
        number = _frame_number(filename)
        if number is None:
            raise Refusal(f"Strip '{name}': image '{filename}' has no frame number at the end of "
                          "its name (e.g. 'shot_0012.png'); rename the sequence's files")
        if number in seen:
            raise Refusal(f"Strip '{name}': images '{seen[number]}' and '{filename}' have the "
                          f"same frame number {number}")
        seen[number] = filename
        frames.append(ClipFrame(t, number, path))
    return ClipPlan("images", folder, tuple(frames))


def keyframe_markers(scene, strip):
    """The markers inside the strip's visible range, sorted by frame (the keyframes)."""
    start, end = visible_range(strip)
    return sorted((m for m in scene.timeline_markers if start <= m.frame < end),
                  key=lambda m: (m.frame, m.name))


def check_frame_in_strip(strip, frame):
    """Refuse a keyframe at ``frame`` outside the strip's visible range."""
    start, end = visible_range(strip)
    if not start <= frame < end:
        raise Refusal(f"Frame {frame} is outside strip '{strip.name}' ({describe_range(strip)}); "
                      "keyframes must be frames the strip shows")


def require_keyframes(scene, strip):
    """The keyframe markers, refusing when there are none."""
    markers = keyframe_markers(scene, strip)
    if not markers:
        raise Refusal(f"No keyframe markers inside strip '{strip.name}' ({describe_range(strip)}); "
                      "add one with Add Keyframe (a timeline marker)")
    return markers


def mask_plan(scene, mask_name, source, source_plan):
    """The mask strip's media for the source's visible frames (None without a mask)."""
    if not mask_name:
        return None
    mask = find_strip(scene, mask_name)
    if mask is None:
        raise Refusal(f"Mask strip '{mask_name}' does not exist; pick another mask or clear it")
    if mask.name == source.name:
        raise Refusal(f"Mask strip '{mask_name}' is the source strip itself; pick another mask")
    try:
        plan = clip_plan(scene, mask, allow_still=True)
    except Refusal as exc:
        raise Refusal(f"Mask: {exc}") from None
    shown = {f.timeline for f in plan.frames}
    missing = [f.timeline for f in source_plan.frames if f.timeline not in shown]
    if missing:
        raise Refusal(f"Mask strip '{mask.name}' does not cover frames {missing[0]}\u2013"
                      f"{missing[-1]} of strip '{source.name}'; extend or move the mask strip")
    frames = tuple(f for f in plan.frames if f.timeline in
                   {g.timeline for g in source_plan.frames})
    return ClipPlan(plan.kind, plan.path, frames)


# --------------------------------------------------------------------------------------
# the result strip


def result_strips(scene, source, frames_dir=None):
    """Earlier result strips of ``source`` (by source name, or showing ``frames_dir``)."""
    editor = scene.sequence_editor
    if editor is None:
        return []
    found = []
    for strip in compat.strips(editor):
        if strip.type != "IMAGE":
            continue
        if strip.get(RESULT_OF) == source.name or (
                frames_dir and strip.get(RESULT_DIR)
                and os.path.normpath(strip.get(RESULT_DIR)) == os.path.normpath(frames_dir)):
            found.append(strip)
    return found


def first_free_channel(scene, above, start, end):
    """The lowest channel above ``above`` with no strip in ``[start, end)``, or None."""
    editor = _editor(scene)
    busy = {}
    for strip in compat.strips(editor):
        busy.setdefault(strip.channel, []).append(visible_range(strip))
    for channel in range(above + 1, MAX_CHANNEL + 1):
        if all(e <= start or s >= end for s, e in busy.get(channel, ())):
            return channel
    return None


def result_name(source):
    return f"{source.name} (Kar-Wai)"


def replace_result_strip(scene, source, frames_dir, files, *, relative=False):
    """Put the propagated frames in the sequencer, replacing an earlier result.

    The new image strip sits on the first free channel above the source, over
    the source's visible frames, with the source's transform and crop, and is
    named after the source. The source strip (and its audio) is left alone.

    Parameters
    ----------
    scene : bpy.types.Scene
    source : strip
    frames_dir : str
        The folder with the frames.
    files : list of (int, str)
        ``(scene frame, file name)`` for every visible frame, in order.
    relative : bool
        Store the folder relative to the .blend file.

    Returns
    -------
    strip
        The new strip.
    """
    editor = _editor(scene)
    start, end = visible_range(source)
    expected = list(range(start, end))
    if [t for t, _ in files] != expected:
        raise Refusal(f"Strip '{source.name}' changed while the job ran (it now shows "
                      f"{describe_range(source)}); run Propagate again")
    for old in result_strips(scene, source, frames_dir):
        compat.strips(editor).remove(old)
    channel = first_free_channel(scene, source.channel, start, end)
    if channel is None:
        raise Refusal(f"No free channel above strip '{source.name}' for the result")
    names = [name for _, name in files]
    strip = compat.strips(editor).new_image(
        name=result_name(source), filepath=os.path.join(frames_dir, names[0]),
        channel=channel, frame_start=start, fit_method="ORIGINAL")
    for name in names[1:]:
        strip.elements.append(name)
    if relative and bpy.data.filepath:
        try:
            strip.directory = bpy.path.relpath(frames_dir) + "/"
        except ValueError:  # another drive (Windows)
            pass
    for attr in ("offset_x", "offset_y", "scale_x", "scale_y", "rotation", "origin", "filter"):
        setattr(strip.transform, attr, getattr(source.transform, attr))
    for attr in ("min_x", "max_x", "min_y", "max_y"):
        setattr(strip.crop, attr, getattr(source.crop, attr))
    strip.use_flip_x = source.use_flip_x
    strip.use_flip_y = source.use_flip_y
    strip[RESULT_OF] = source.name
    strip[RESULT_DIR] = frames_dir
    strip.select = False
    return strip
