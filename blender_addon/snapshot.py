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


def _stamp(path):
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def _source_id(plan, number, params):
    """What a stylized key was made from: the source frame's file, and the style
    image's (so a changed painting or artwork makes the key stale)."""
    frame = next(f for f in plan.frames if f.number == number)
    parts = [_stamp(frame.file or plan.path), str(number)]
    if "style_image" in params:
        parts.append(_stamp(params["style_image"]))
    return "|".join(parts)


def key_state(entry, signature, path):
    """``"missing"``, ``"stylized"``, ``"stale"``, ``"repainted"`` or ``"error"``.

    A key whose file changed on disk since Kar-Wai wrote it counts as repainted,
    so that no job overwrites an artist's work unasked.
    """
    if entry is None or entry.status == "NONE":
        return "missing"
    if entry.status == "ERROR":
        return "error"
    if not entry.path or not os.path.isfile(entry.path) or entry.path != path:
        return "missing"
    if entry.status == "EDITED":
        return "repainted"
    try:
        changed = str(os.stat(entry.path).st_mtime_ns) != entry.mtime_ns
    except OSError:
        return "missing"
    if changed:
        return "repainted"
    return "stylized" if entry.signature == signature else "stale"


def describe_key(scene, source, plan, out_dir, frame):
    """``(state, style label)`` of the key at ``frame``, for the panel."""
    settings = scene_settings(scene)
    entry = settings.key_for(frame)
    style = settings.style_for(frame)
    number = plan.number_at(frame)
    label = style.method if style.method != "painterly" else style.painterly_filter
    try:
        method, params = style.as_task()
    except ValueError:
        return "error", label
    signature = style_signature(method, params, _source_id(plan, number, params))
    return key_state(entry, signature, key_file(out_dir, number)), label


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
    kind : {"stylize", "propagate", "suggest"}
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
    elif kind != "suggest":
        raise ValueError(f"unknown job kind {kind!r}")
    snapshot = Snapshot(
        kind=kind, strip=source.name, clip=plan, out_dir=out_dir, cache_dir=prefs.cache_dir,
        keys=keys, mask=mask, quality=settings.quality, weights=settings.weights.as_dict(),
        temporal_smoothing=float(settings.temporal_smoothing), restore_detail=bool(settings.restore_detail),
        farm_plan=bool(settings.farm_plan) and kind == "propagate", threads=prefs.threads, device=prefs.device, vgg_weights=prefs.vgg_weights,
        download=bool(getattr(bpy.app, "online_access", False)),
    )
    return snapshot, source


def _inside(path, folder):
    path = os.path.realpath(path)
    folder = os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
