"""Video propagation: keyframes to every frame (Jamriška et al. 2019)."""

import sys as _sys
import types as _types

from .job import Cancelled, PropagateResult, Span, plan_spans, propagate
from .settings import QUALITY_PRESETS, JobSettings

__all__ = ["propagate", "PropagateResult", "Cancelled", "JobSettings", "QUALITY_PRESETS",
           "plan_spans", "Span"]


class _CallableModule(_types.ModuleType):
    """Lets ``engine.propagate(...)`` work even when ``engine.propagate`` is this package.

    ``engine/__init__.py`` exposes the function :func:`propagate` lazily as
    ``engine.propagate``, but importing this subpackage binds it to that same
    attribute; calling the package forwards to the function, so both readings
    work (as for ``engine.stylize``).
    """

    def __call__(self, frames, keys, **kwargs):
        return propagate(frames, keys, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
