"""The settings of one propagation job, written once.

:class:`JobSettings` carries every knob a user can turn, in every front end: the
Python API (``propagate(..., settings=JobSettings(...))``), the command line
(``python -m engine propagate``, whose arguments :func:`add_arguments` makes from
the fields) and the Blender add-on (whose properties are made from
:func:`knobs`). Each field's default, range, choices and help text live in its
metadata here and nowhere else.

Standard library only: the add-on reads this module at registration, before
numba, OpenCV or Pillow are installed.
"""

import dataclasses
from dataclasses import asdict, dataclass, field
import hashlib
import json
import math

__all__ = ["JobSettings", "GuideWeights", "Knob", "knobs", "QUALITY_PRESETS", "ALGORITHM_VERSION",
           "DEFAULT_TEMPORAL_SMOOTHING"]

#: Bumped whenever a change makes old outputs invalid, so a resume recomputes.
ALGORITHM_VERSION = 2

#: How much work each preset does per frame. ``synth`` goes to ``synthesize``
#: on top of the warm schedule; ``flow`` picks the optical-flow settings.
QUALITY_PRESETS = {
    "draft": {"synth": {}, "flow": "medium"},
    "balanced": {"synth": {}, "flow": "refined"},
    "best": {"synth": {"search_vote_iters": 2, "patchmatch_iters": 2}, "flow": "refined"},
}

#: The strength of the recursive filter along the flow, written once.
DEFAULT_TEMPORAL_SMOOTHING = 0.8

#: Largest guide weight: larger weights overflow the synthesis's float32 distances.
MAX_WEIGHT = 1e9


def _knob(default=dataclasses.MISSING, *, label, help, choices=None, minimum=None, maximum=None,
          below=None, soft_max=None, off_help=None, default_factory=dataclasses.MISSING):
    """A dataclass field with its front-end description in the metadata.

    ``choices`` is ``((value, label, description), ...)``; ``minimum``/``maximum``
    are inclusive bounds, ``below`` an exclusive upper bound; ``soft_max`` is
    only the end of a UI slider; ``off_help`` describes a true-by-default
    switch's ``--no-...`` option.
    """
    meta = {"label": label, "help": help, "choices": choices, "minimum": minimum, "maximum": maximum,
            "below": below, "soft_max": soft_max, "off_help": off_help}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class GuideWeights:
    """Weights of the guides and of the style term, as in the literature.

    Each weight is split evenly over its guide's channels by the synthesis, as
    Ebsynth does. Note that Ebsynth's positional guide is an RGB image with a zero
    blue channel, so its weight 2 is 2/3 per channel; ``positional_guide``
    returns two channels by default (1 per channel) and three with ``channels=3``.

    Parameters
    ----------
    colour, edge, positional, temporal, style : float
        Non-negative weights, at most 1e9 (defaults 6, 0.5, 2, 0.5, 1).
    """

    colour: float = _knob(6.0, label="Colour", help="weight of the colour guide: match the source frame's colours",
                          minimum=0.0, maximum=MAX_WEIGHT, soft_max=20.0)
    edge: float = _knob(0.5, label="Edges", help="weight of the edge guide: match the source frame's edges",
                        minimum=0.0, maximum=MAX_WEIGHT, soft_max=10.0)
    positional: float = _knob(2.0, label="Position",
                              help="weight of the positional guide: keep texture where the motion carries it",
                              minimum=0.0, maximum=MAX_WEIGHT, soft_max=10.0)
    temporal: float = _knob(0.5, label="Temporal",
                            help="weight of the temporal guide: follow the previous stylized frame (less flicker)",
                            minimum=0.0, maximum=MAX_WEIGHT, soft_max=10.0)
    style: float = _knob(1.0, label="Style", help="weight of the style term: the keyframe's style itself",
                         minimum=0.0, maximum=MAX_WEIGHT, soft_max=10.0)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"weight {f.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"weight {f.name} must be finite and >= 0, got {value!r}")
            if value > MAX_WEIGHT:
                raise ValueError(f"weight {f.name} must be at most 1e9, got {value!r}")


@dataclass(frozen=True)
class JobSettings:
    """Everything that decides a propagation's output.

    Parameters
    ----------
    quality : {"draft", "balanced", "best"}
        How much work is done per frame (see ``QUALITY_PRESETS``).
    weights : GuideWeights
        Guide and style weights (colour 6, edge 0.5, positional 2, temporal
        0.5, style 1 by default, after Jamriška et al. 2019).
    blend : {"weighted", "poisson", "crossfade"}
        How the two passes between keys are combined. "weighted" (default):
        per-pixel weights from both passes' synthesis errors and the distance
        to each key, smooth in space and time. "poisson": the paper's
        error-based choice with histogram-preserving and gradient-domain
        blending, sharper but less stable over time. "crossfade": the linear
        baseline.
    key_fit : {"refuse", "crop", "pad"}
        What to do with a keyframe whose aspect ratio differs from the frames'
        by more than 1 %. Keys of the same aspect are resized, with a warning.
    seed : int
        Seed of the synthesis; the output is deterministic for a given seed.
    temporal_smoothing : float
        Strength, in [0, 1), of the recursive filter along the optical flow
        that runs over each span's frames in both directions and removes
        flicker (``DEFAULT_TEMPORAL_SMOOTHING`` by default; 0 turns it off).
        See :mod:`engine.propagation.refine`.
    restore_detail : bool
        Scale each frame's detail bands towards the detail the keys predict,
        undoing the softening of synthesis, blending and smoothing (default
        true). See :mod:`engine.propagation.refine`.
    """

    quality: str = _knob("balanced", label="Quality", help="speed against quality of the propagation", choices=(
        ("draft", "Draft", "Fastest: coarser optical flow"),
        ("balanced", "Balanced", "Refined optical flow (the default)"),
        ("best", "Best", "More patch-search iterations per frame: slowest, cleanest")))
    weights: GuideWeights = _knob(label="Guide Weights", help="guide and style weights",
                                  default_factory=GuideWeights)
    blend: str = _knob("weighted", label="Blend", help="how the passes between keys are combined", choices=(
        ("weighted", "Weighted", "Per-pixel weights from both passes' errors and the distance to each key"),
        ("poisson", "Poisson", "The paper's error-based choice with gradient-domain blending: sharper, "
                               "less stable over time"),
        ("crossfade", "Crossfade", "Linear crossfade between the two keys' passes (the baseline)")))
    key_fit: str = _knob("refuse", label="Key Fit", help="keys of another aspect ratio than the frames'", choices=(
        ("refuse", "Refuse", "Stop with an error naming the key"),
        ("crop", "Crop", "Scale the key to cover the frame and crop what lies outside"),
        ("pad", "Pad", "Fit the whole key inside the frame; the border left over is transparent")))
    seed: int = _knob(0, label="Seed", help="seed of the synthesis; the output is deterministic for a given seed",
                      minimum=0)
    temporal_smoothing: float = _knob(
        DEFAULT_TEMPORAL_SMOOTHING, label="Temporal Smoothing",
        help="strength in [0, 1) of the filter along the motion that removes flicker between frames (0: off)",
        minimum=0.0, below=1.0, soft_max=0.99)
    restore_detail: bool = _knob(
        True, label="Restore Detail",
        help="bring the frames between keys back to the keys' amount of detail, undoing the softening "
             "of patch synthesis",
        off_help="keep the synthesized frames' detail as it is, without scaling it towards the keys'")

    def __post_init__(self):
        if not isinstance(self.weights, GuideWeights):
            from .safety import ParameterTypeError

            raise ParameterTypeError(f"weights must be a GuideWeights, got {type(self.weights).__name__}")
        for knob in knobs(JobSettings):
            if knob.path[0] != "weights":
                knob.check(getattr(self, knob.name))

    @property
    def synth_params(self):
        return dict(QUALITY_PRESETS[self.quality]["synth"])

    @property
    def flow_params(self):
        from .flow import FlowParams

        if QUALITY_PRESETS[self.quality]["flow"] == "medium":
            return FlowParams.preset_only("medium")
        return FlowParams()

    def as_dict(self):
        d = asdict(self)
        d["weights"] = asdict(self.weights)
        return d

    @classmethod
    def from_dict(cls, data):
        """The settings :meth:`as_dict` wrote."""
        data = dict(data)
        data["weights"] = GuideWeights(**data.get("weights", {}))
        return cls(**data)

    def knob_values(self):
        """``{knob name: value}``, flat (``weight_colour``...), as :func:`knobs` names them."""
        return {knob.name: knob.get(self) for knob in knobs(self)}

    @classmethod
    def from_knobs(cls, values):
        """The settings from flat knob values (missing ones take their defaults)."""
        values = dict(values)
        unknown = set(values) - {knob.name for knob in knobs(cls)}
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        weights = {k.path[1]: values.pop(k.name) for k in knobs(cls) if k.path[0] == "weights" and k.name in values}
        return cls(weights=GuideWeights(**weights), **values)

    def fingerprint(self):
        """Hash of everything in the settings that changes the output."""
        blob = json.dumps({"algorithm": ALGORITHM_VERSION, **self.as_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Knob:
    """One setting as the front ends show it.

    ``name`` is flat (``weight_colour``), ``path`` the attributes that lead to
    it in :class:`JobSettings` (``("weights", "colour")``); ``flag`` is its
    command-line option.
    """

    name: str
    path: tuple
    type: type
    default: object
    label: str
    help: str
    choices: tuple = None
    minimum: float = None
    maximum: float = None
    below: float = None
    soft_max: float = None
    off_help: str = None

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")

    @property
    def values(self):
        """The allowed values of a choice, in order."""
        return tuple(c[0] for c in self.choices) if self.choices else None

    def get(self, settings):
        value = settings
        for part in self.path:
            value = getattr(value, part)
        return value

    def describe_range(self):
        if self.below is not None:
            return f"in [{self.minimum:g}, {self.below:g})"
        if self.maximum is not None:
            return f"in [{self.minimum:g}, {self.maximum:g}]"
        return f">= {self.minimum:g}"

    def check(self, value):
        """Raise ValueError naming the knob if ``value`` is not allowed."""
        if self.type is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be true or false, got {value!r}")
            return
        if self.choices:
            if value not in self.values:
                raise ValueError(f"{self.name} must be one of {', '.join(self.values)}, got {value!r}")
            return
        numeric = (int,) if self.type is int else (int, float)
        ok = not isinstance(value, bool) and isinstance(value, numeric)
        if ok and isinstance(value, float):
            ok = math.isfinite(value)
        if ok and self.minimum is not None:
            ok = value >= self.minimum
        if ok and self.maximum is not None:
            ok = value <= self.maximum
        if ok and self.below is not None:
            ok = value < self.below
        if not ok:
            kind = "an integer" if self.type is int else "a number"
            raise ValueError(f"{self.name} must be {kind} {self.describe_range()}, got {value!r}")


def knobs(settings=JobSettings):
    """Every knob of :class:`JobSettings` (a class or an instance), in field order;
    the guide weights come one by one as ``weight_<name>``."""
    cls = settings if isinstance(settings, type) else type(settings)
    for f in dataclasses.fields(cls):
        if f.name == "weights":
            for w in dataclasses.fields(GuideWeights):
                yield Knob(name=f"weight_{w.name}", path=("weights", w.name), type=float, default=w.default,
                           **{k: v for k, v in w.metadata.items() if k not in ("choices", "off_help")})
            continue
        kind = {"str": str, "int": int, "float": float, "bool": bool}.get(f.type, f.type) \
            if isinstance(f.type, str) else f.type
        yield Knob(name=f.name, path=(f.name,), type=kind, default=f.default, **f.metadata)


def add_arguments(parser):
    """Add one command-line option per knob to an ``argparse`` parser;
    :func:`from_arguments` reads them back."""
    for knob in knobs(JobSettings):
        default_text = knob.default if knob.type is not float else f"{knob.default:g}"
        if knob.type is bool:
            parser.add_argument(f"--no-{knob.name.replace('_', '-')}", dest=knob.name, action="store_false",
                                default=knob.default, help=knob.off_help)
        elif knob.choices:
            parser.add_argument(knob.flag, default=knob.default, choices=knob.values,
                                help=f"{knob.help}: " + "; ".join(f"{v}: {d[0].lower()}{d[1:]}"
                                                                  for v, _, d in knob.choices)
                                + f" (default {default_text})")
        else:
            parser.add_argument(knob.flag, type=knob.type, default=knob.default,
                                metavar="N" if knob.type is int else "X",
                                help=f"{knob.help} (default {default_text})")


def from_arguments(args):
    """The JobSettings that parsed :func:`add_arguments` options describe."""
    return JobSettings.from_knobs({knob.name: getattr(args, knob.name) for knob in knobs(JobSettings)})
