"""Video propagation: keyframes to every frame (Jamriška et al. 2019)."""

from .job import Cancelled, PropagateResult, Span, plan_job, plan_spans, propagate
from ..settings import QUALITY_PRESETS, JobSettings
from .stylized_keys import KeyStylization

__all__ = ["propagate", "PropagateResult", "Cancelled", "JobSettings", "QUALITY_PRESETS",
           "plan_spans", "plan_job", "Span", "KeyStylization"]
