"""Kar-Wai's settings: one PropertyGroup on the scene, ``scene.karwai``.

* ``default_style``: the style of every key that has no style of its own;
* ``keys``: per keyframe (by scene frame) its own style, if any, and the state of
  its stylized image on disk;
* the propagation's knobs (``quality``, ``blend``, ``key_fit``, ``seed``,
  ``temporal_smoothing``, ``restore_detail`` and ``weights``, the guide weights),
  made from ``engine.settings.JobSettings``'s fields, so that the add-on offers
  every knob the API and the command line do, with the same defaults, ranges
  and help;
* ``mask_strip`` and ``output_dir`` (``//karwai/{strip}/`` by default).
"""

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty,
                       IntProperty, PointerProperty, StringProperty)

from .engine_import import engine_module

METHOD_ITEMS = (
    ("painterly", "Painterly", "Built-in filters: watercolour, oil, pencil, ink, cartoon"),
    ("image", "Painted Image", "A picture painted by the artist, fitted to the frame"),
    ("neural", "Neural", "Style transfer from an artwork (Gatys et al., VGG19; needs PyTorch)"),
    ("deepdream", "Deep Dream", "Deep Dream on VGG19 (needs PyTorch)"),
)

FILTER_ITEMS = (
    ("watercolour", "Watercolour",
     "Abstracted washes, darkened wet edges, paper and pigment texture"),
    ("oil", "Oil", "Brush-like patches with crisp edges (smooth Kuwahara filter)"),
    ("pencil", "Pencil", "Pencil sketch with hatching"),
    ("ink", "Ink", "Ink outlines with dark areas filled"),
    ("cartoon", "Cartoon", "Flat quantised colours with dark outlines"),
)

STATUS_ITEMS = (
    ("NONE", "Not Stylized", "No stylized image yet", "RADIOBUT_OFF", 0),
    ("STYLIZED", "Stylized", "Stylized with its style", "CHECKMARK", 1),
    ("EDITED", "Repainted", "Repainted outside Blender and reloaded; used as it is",
     "BRUSH_DATA", 2),
    ("ERROR", "Error", "Stylizing failed; see the message", "ERROR", 3),
)

VIDEO_METHOD_ITEMS = (
    ("propagate", "Keyframes + Propagation",
     "Stylize the keyframes and carry their look over every frame (Propagate)"),
    ("neural-video", "Neural Video",
     "Optimise every frame with the default style's artwork and a temporal loss along the motion "
     "(Ruder et al.; slow on a CPU, needs PyTorch)"),
    ("fast-network", "Fast Network",
     "Train a fast network for the default style's artwork on the strip, then run it on every "
     "frame (Johnson et al. with a stability loss; needs PyTorch)"),
)

#: The propagation's knobs, from the engine's one description of them
#: (standard library only, so this works before the engine's dependencies are installed).
JOB_KNOBS = tuple(engine_module("settings").knobs())


def _sentence(text):
    return text[:1].upper() + text[1:]


def knob_property(knob):
    """The Blender property of one ``engine.settings.Knob``."""
    common = {"name": knob.label, "default": knob.default, "description": _sentence(knob.help)}
    if knob.type is bool:
        return BoolProperty(**common)
    if knob.choices:
        return EnumProperty(items=tuple(knob.choices), **common)
    if knob.type is int:
        return IntProperty(min=int(knob.minimum), **common)
    limits = {"min": knob.minimum}
    if knob.maximum is not None:
        limits["max"] = knob.maximum
    if knob.below is not None:  # an open bound: Blender's max is inclusive
        limits["max"] = knob.soft_max if knob.soft_max is not None else knob.below
    if knob.soft_max is not None:
        limits["soft_max"] = knob.soft_max
    return FloatProperty(**limits, **common)


def _add_knob_properties(cls, knobs):
    """Put each knob's property on a PropertyGroup before it is registered."""
    for name, knob in knobs:
        cls.__annotations__[name] = knob_property(knob)

DEFAULT_OUTPUT = "//karwai/{strip}/"


class KARWAI_PG_style(bpy.types.PropertyGroup):
    """How a keyframe is stylized: a method and its parameters, or a painted image."""

    method: EnumProperty(name="Method", items=METHOD_ITEMS, default="painterly",
                         description="How the keyframe is stylized")
    painterly_filter: EnumProperty(name="Filter", items=FILTER_ITEMS, default="watercolour",
                                   description="The painterly filter")
    style_image: StringProperty(
        name="Image", subtype="FILE_PATH", default="",
        description="Painted Image: the picture used as the key. Neural: the artwork whose "
                    "style is transferred")
    params: StringProperty(
        name="Parameters", default="",
        description="More parameters of the method as 'name=value' pairs separated by ';' "
                    "(e.g. 'abstraction=40; granulation=0.2' or 'iterations=200')")

    def as_task(self):
        """``(method, {name: text})`` for the worker."""
        params = {}
        for part in self.params.replace("\n", ";").split(";"):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"parameters: '{part.strip()}' is not of the form name=value")
            params[name.strip()] = value.strip()
        if self.method == "painterly":
            params.setdefault("filter", self.painterly_filter)
        if self.method in ("image", "neural"):
            if not self.style_image:
                what = "painted picture" if self.method == "image" else "artwork"
                raise ValueError(f"choose the {what} (Image) for the '{self.method}' method")
            params["style_image"] = bpy.path.abspath(self.style_image)
        return self.method, params

    def copy_from(self, other):
        for name in ("method", "painterly_filter", "style_image", "params"):
            setattr(self, name, getattr(other, name))


class KARWAI_PG_key(bpy.types.PropertyGroup):
    """A keyframe's own style (if any) and the state of its stylized image."""

    frame: IntProperty(name="Frame", description="The keyframe's scene frame")
    use_own_style: BoolProperty(name="Own Style", default=False,
                                description="Give this keyframe a style of its own instead of "
                                            "the default style")
    style: PointerProperty(type=KARWAI_PG_style)
    status: EnumProperty(name="Status", items=STATUS_ITEMS, default="NONE")
    message: StringProperty(name="Message", description="Why stylizing failed")
    path: StringProperty(name="File", subtype="FILE_PATH",
                         description="The stylized keyframe image")
    signature: StringProperty(description="Fingerprint of the style and frame it was made from")
    mtime_ns: StringProperty(description="Modification time of the file when it was written")
    image: PointerProperty(type=bpy.types.Image, name="Preview")
    anchor: BoolProperty(name="Anchor", default=False,
                         description="Stylize this key first: the other neural and Deep Dream keys "
                                     "follow it outwards along the timeline, so that they agree")


class KARWAI_PG_weights(bpy.types.PropertyGroup):
    """Guide weights of the patch synthesis (Jamriška et al. 2019); one property per
    ``weight_*`` knob of the engine's JobSettings."""

    def as_dict(self):
        return {knob.path[1]: getattr(self, knob.path[1]) for knob in JOB_KNOBS if knob.path[0] == "weights"}


_add_knob_properties(KARWAI_PG_weights, [(k.path[1], k) for k in JOB_KNOBS if k.path[0] == "weights"])


class KARWAI_PG_settings(bpy.types.PropertyGroup):
    """Kar-Wai's settings for the scene's sequencer."""

    default_style: PointerProperty(type=KARWAI_PG_style)
    keys: CollectionProperty(type=KARWAI_PG_key)
    active_marker_index: IntProperty(name="Keyframe", default=0,
                                     description="The keyframe shown below the list")
    # quality, blend, key_fit, seed, temporal_smoothing, restore_detail: added below from the knobs
    weights: PointerProperty(type=KARWAI_PG_weights)
    consistent_keys: BoolProperty(
        name="Keys Agree", default=True,
        description="Neural and Deep Dream keys with the same style start from their neighbour's "
                    "result carried along the motion, so that they agree (no jump at each key)")
    video_method: EnumProperty(
        name="Method", items=VIDEO_METHOD_ITEMS, default="propagate",
        description="How the strip is stylized: from keyframes, or every frame by a neural method")
    video_params: StringProperty(
        name="Video Parameters", default="",
        description="Parameters of Neural Video or Fast Network as 'name=value' pairs separated by ';' "
                    "(e.g. 'iterations=200; temporal_weight=1000' or 'steps=2000; width=32')")
    farm_plan: BoolProperty(
        name="Write Farm Plan", default=False,
        description="Propagate writes the job's task plan (frames/.karwai-plan.json in the output "
                    "folder, beside the .blend file by default) and the frames it reads, for a "
                    "render farm (Flamenco, Dask), instead of running the job here")
    mask_strip: StringProperty(
        name="Mask", default="",
        description="Optional strip whose frames mask the style (white: stylized; outside "
                    "the mask the result is transparent)")
    output_dir: StringProperty(
        name="Output", subtype="DIR_PATH", default=DEFAULT_OUTPUT,
        description="Folder for the stylized keys (keys/) and frames (frames/); {strip} is "
                    "replaced by the source strip's name, // is the .blend file's folder")

    def key_for(self, frame, *, create=False):
        """The per-key entry of the keyframe at scene frame ``frame`` (None if absent)."""
        for item in self.keys:
            if item.frame == frame:
                return item
        if not create:
            return None
        item = self.keys.add()
        item.frame = frame
        item.name = str(frame)
        return item

    def job_settings(self):
        """``{knob name: value}`` of the propagation, for ``JobSettings.from_knobs``."""
        values = {}
        for knob in JOB_KNOBS:
            owner = self.weights if knob.path[0] == "weights" else self
            value = knob.type(getattr(owner, knob.path[-1]))
            if knob.type is float:
                # Blender stores floats in single precision: 0.8 reads back as
                # 0.800000011920929. Seven significant digits (what a float32
                # holds) give back the value typed, so a job set up here has the
                # fingerprint of the same job run from the command line.
                value = float(f"{value:.7g}")
            values[knob.name] = value
        return values

    def style_for(self, frame):
        """The style that applies to the key at ``frame``: its own, else the default."""
        item = self.key_for(frame)
        return item.style if item is not None and item.use_own_style else self.default_style


_add_knob_properties(KARWAI_PG_settings, [(k.name, k) for k in JOB_KNOBS if len(k.path) == 1])

CLASSES = (KARWAI_PG_style, KARWAI_PG_key, KARWAI_PG_weights, KARWAI_PG_settings)


def settings(scene):
    """The scene's Kar-Wai settings."""
    return scene.karwai


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.karwai = PointerProperty(type=KARWAI_PG_settings, name="Kar-Wai")


def unregister():
    del bpy.types.Scene.karwai
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
