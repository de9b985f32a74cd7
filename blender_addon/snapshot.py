"""From the scene to a job: read the strip, markers, styles and preferences once,
on the main thread, into a plain :class:`~.worker.Snapshot` for the worker."""

import os

import bpy

from . import strips
from .preferences import Prefs
from .properties import settings as scene_settings
from .strips import Refusal
from .worker import KeyTask, Snapshot, keys_dir, style_signature

#: What the panel shows for a key, from :func:`key_state`.
STATE_LABELS = {
    "missing": "not stylized",
    "stylized": "stylized",
    "stale": "style changed",
    "repainted": "repainted",
    "error": "error",
}


def output_dir(scene, source):
    """The job's output folder for ``source``, absolute.

    Raises
    ------
    Refusal
        For a relative folder while the .blend file was never saved.
    """
    template = scene_settings(scene).output_dir.strip() or "//karwai/{strip}/"
    path = template.replace("{strip}", bpy.path.clean_name(source.name))
    if path.startswith("//") and not bpy.data.filepath:
        raise Refusal(f"Save the .blend file first: the output folder '{template}' is relative "
                      "to it (or set an absolute output folder)")
    return os.path.normpath(bpy.path.abspath(path))


def key_file(out_dir, number):
    """The stylized key image of source frame ``number``."""
    return os.path.join(keys_dir(out_dir), f"key_{number:06d}.png")


def file_stat(path):
    """``(size, mtime_ns)`` of a regular file, or None: what a key's state depends on.

    Jobs call this; the panel calls a cached copy (:class:`FileStats`), since it asks
    for every key at every redraw."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns) if os.path.isfile(path) else None


class FileStats:
    """:func:`file_stat` remembered until :meth:`clear` (the panel clears it on events:
    a timer, a file load, the end of a job), so that redraws touch no file."""

    def __init__(self):
        self._known = {}

    def __call__(self, path):
        if path not in self._known:
            self._known[path] = file_stat(path)
        return self._known[path]

    def clear(self):
        self._known.clear()


def _stamp(path, stat):
    found = stat(path)
    return f"{path}:missing" if found is None else f"{path}:{found[0]}:{found[1]}"


def _source_id(plan, number, params, stat=file_stat):
    """What a stylized key was made from: the source frame's file, and the style
    image's (so a changed painting or artwork makes the key stale)."""
    frame = next(f for f in plan.frames if f.number == number)
    parts = [_stamp(frame.file or plan.path, stat), str(number)]
    if "style_image" in params:
        parts.append(_stamp(params["style_image"], stat))
    return "|".join(parts)


def key_state(entry, signature, path, stat=file_stat):
    """``"missing"``, ``"stylized"``, ``"stale"``, ``"repainted"`` or ``"error"``.

    A key whose file changed on disk since Kar-Wai wrote it counts as repainted,
    so that no job overwrites an artist's work unasked.
    """
    if entry is None or entry.status == "NONE":
        return "missing"
    if entry.status == "ERROR":
        return "error"
    found = stat(entry.path) if entry.path else None
    if found is None or entry.path != path:
        return "missing"
    if entry.status == "EDITED":
        return "repainted"
    if str(found[1]) != entry.mtime_ns:
        return "repainted"
    return "stylized" if entry.signature == signature else "stale"


def describe_key(scene, source, plan, out_dir, frame, stat=file_stat):
    """``(state, style label)`` of the key at ``frame``, for the panel (which passes its
    cached ``stat``)."""
    settings = scene_settings(scene)
    entry = settings.key_for(frame)
    style = settings.style_for(frame)
    number = plan.number_at(frame)
    label = style.method if style.method != "painterly" else style.painterly_filter
    try:
        method, params = style.as_task()
    except ValueError:
        return "error", label
    signature = style_signature(method, params, _source_id(plan, number, params, stat))
    return key_state(entry, signature, key_file(out_dir, number), stat), label


def key_tasks(scene, source, plan, out_dir, *, restylize):
    """The keyframes of ``source`` as worker tasks.

    Parameters
    ----------
    restylize : callable
        ``restylize(state) -> bool``: whether a key in that state is stylized by
        the job (otherwise its file is used as it is).

    Raises
    ------
    Refusal
        No markers, or a key whose style cannot be used.
    """
    settings = scene_settings(scene)
    tasks = []
    for marker in strips.require_keyframes(scene, source):
        frame = marker.frame
        number = plan.number_at(frame)
        style = settings.style_for(frame)
        try:
            method, params = style.as_task()
        except ValueError as exc:
            raise Refusal(f"Key at frame {frame}: {exc}") from None
        if method in ("image", "neural") and not os.path.isfile(params["style_image"]):
            raise Refusal(f"Key at frame {frame}: image not found: {params['style_image']}")
        signature = style_signature(method, params, _source_id(plan, number, params))
        path = key_file(out_dir, number)
        state = key_state(settings.key_for(frame), signature, path)
        tasks.append(KeyTask(timeline=frame, number=number, path=path,
                             stylize=bool(restylize(state)), method=method, params=params,
                             signature=signature))
    return tuple(tasks)


def build(context, scene, kind, *, strip_name="", force=False):
    """The snapshot of a ``kind`` job on the source strip.

    Parameters
    ----------
    kind : {"stylize", "propagate", "suggest", "video"}
    strip_name : str
        The source strip (default: the active strip).
    force : bool
        ``stylize``: stylize again also up-to-date and repainted keys.

    Returns
    -------
    (worker.Snapshot, strip)

    Raises
    ------
    Refusal
    """
    source = strips.resolve_source(context, scene, strip_name)
    plan = strips.clip_plan(scene, source)
    out_dir = output_dir(scene, source)
    if plan.kind == "images" and _inside(out_dir, plan.path):
        raise Refusal(f"The output folder {out_dir} is inside the source frames' folder "
                      f"{plan.path}; choose another output folder")
    prefs = Prefs(context)
    settings = scene_settings(scene)
    keys = ()
    mask = None
    if kind == "stylize":
        if force:
            keys = key_tasks(scene, source, plan, out_dir, restylize=lambda state: True)
        else:
            keys = key_tasks(scene, source, plan, out_dir,
                             restylize=lambda state: state in ("missing", "stale", "error"))
    elif kind == "propagate":
        keys = key_tasks(scene, source, plan, out_dir,
                         restylize=lambda state: state in ("missing", "stale", "error"))
        mask = strips.mask_plan(scene, settings.mask_strip, source, plan)
    elif kind == "video":
        mask = strips.mask_plan(scene, settings.mask_strip, source, plan)
    elif kind != "suggest":
        raise ValueError(f"unknown job kind {kind!r}")
    video = {}
    if kind == "video":
        video = _video_fields(settings)
    snapshot = Snapshot(
        kind=kind, strip=source.name, clip=plan, out_dir=out_dir, cache_dir=prefs.cache_dir,
        keys=keys, mask=mask, settings=settings.job_settings(),
        farm_plan=bool(settings.farm_plan) and kind == "propagate", threads=prefs.threads, device=prefs.device, vgg_weights=prefs.vgg_weights,
        download=bool(getattr(bpy.app, "online_access", False)),
        consistent_keys=bool(settings.consistent_keys), anchor=_anchor(settings, plan),
        **video,
    )
    return snapshot, source


def _anchor(settings, plan):
    """Source frame number of the key marked as the anchor (the first marked), or None."""
    for item in sorted(settings.keys, key=lambda k: k.frame):
        if item.anchor:
            number = plan.number_at(item.frame)
            if number is not None:
                return number
    return None


def _video_fields(settings):
    """The ``video_*`` fields of a ``"video"`` snapshot.

    Raises
    ------
    Refusal
        When the method is not a neural video method or the artwork is missing.
    """
    method = settings.video_method
    if method not in ("neural-video", "fast-network"):
        raise Refusal("Choose Neural Video or Fast Network as the method (Settings) to stylize "
                      "every frame; Keyframes + Propagation uses Propagate")
    art = settings.default_style.style_image
    path = bpy.path.abspath(art) if art else ""
    if not path or not os.path.isfile(path):
        raise Refusal("Neural video methods take the default style's artwork: choose its Image "
                      f"(Settings){': not found: ' + path if path else ''}")
    params = {}
    for part in settings.video_params.replace("\n", ";").split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise Refusal(f"Video parameters: '{part.strip()}' is not of the form name=value")
        params[name.strip()] = value.strip()
    return {"video_method": method, "video_style_image": path, "video_params": params}


def _inside(path, folder):
    path = os.path.realpath(path)
    folder = os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
