"""The settings of one propagation job: one dataclass that the CLI, the API and
the Blender add-on all build."""

from dataclasses import asdict, dataclass, field
import hashlib
import json

from ..flow import FlowParams
from ..guides import GuideWeights

__all__ = ["JobSettings", "QUALITY_PRESETS", "ALGORITHM_VERSION"]

#: Bumped whenever a change makes old outputs invalid, so a resume recomputes.
ALGORITHM_VERSION = 2

#: How much work each preset does per frame. ``synth`` goes to ``synthesize``
#: on top of the warm schedule; ``flow`` picks the optical-flow settings.
QUALITY_PRESETS = {
    "draft": {"synth": {}, "flow": "medium"},
    "balanced": {"synth": {}, "flow": "refined"},
    "best": {"synth": {"search_vote_iters": 2, "patchmatch_iters": 2}, "flow": "refined"},
}

BLEND_MODES = ("weighted", "poisson", "crossfade")
KEY_FITS = ("refuse", "crop", "pad")


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
        flicker (0.8 by default; 0 turns it off). See :mod:`.refine`.
    restore_detail : bool
        Scale each frame's detail bands towards the detail the keys predict,
        undoing the softening of synthesis, blending and smoothing (default
        true). See :mod:`.refine`.
    """

    quality: str = "balanced"
    weights: GuideWeights = field(default_factory=GuideWeights)
    blend: str = "weighted"
    key_fit: str = "refuse"
    seed: int = 0
    temporal_smoothing: float = 0.8
    restore_detail: bool = True

    def __post_init__(self):
        if self.quality not in QUALITY_PRESETS:
            raise ValueError(f"quality must be one of {', '.join(QUALITY_PRESETS)}, got {self.quality!r}")
        if not isinstance(self.weights, GuideWeights):
            from ..safety import ParameterTypeError

            raise ParameterTypeError(f"weights must be a GuideWeights, got {type(self.weights).__name__}")
        if self.blend not in BLEND_MODES:
            raise ValueError(f"blend must be one of {', '.join(BLEND_MODES)}, got {self.blend!r}")
        if self.key_fit not in KEY_FITS:
            raise ValueError(f"key_fit must be one of {', '.join(KEY_FITS)}, got {self.key_fit!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        smoothing = self.temporal_smoothing
        if (isinstance(smoothing, bool) or not isinstance(smoothing, (int, float))
                or not 0.0 <= smoothing < 1.0):
            raise ValueError(f"temporal_smoothing must be a number in [0, 1), got {smoothing!r}")
        if not isinstance(self.restore_detail, bool):
            raise ValueError(f"restore_detail must be true or false, got {self.restore_detail!r}")

    @property
    def synth_params(self):
        return dict(QUALITY_PRESETS[self.quality]["synth"])

    @property
    def flow_params(self):
        if QUALITY_PRESETS[self.quality]["flow"] == "medium":
            return FlowParams.preset_only("medium")
        return FlowParams()

    def as_dict(self):
        d = asdict(self)
        d["weights"] = asdict(self.weights)
        return d

    def fingerprint(self):
        """Hash of everything in the settings that changes the output."""
        blob = json.dumps({"algorithm": ALGORITHM_VERSION, **self.as_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()
