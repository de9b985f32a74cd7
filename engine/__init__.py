"""Kar-Wai engine: example-based video stylization (Ebsynth-style patch synthesis).

Pure Python, no ``bpy``. The heavy submodules (numba kernels, torch stylizers) are
imported lazily so that ``import engine`` stays cheap.
"""

__version__ = "0.1.0"

_LAZY = {
    "synthesize": (".synth", "synthesize"),
    "SynthResult": (".synth", "SynthResult"),
    "stylize": (".stylize", "stylize"),
    "propagate": (".propagate", "propagate"),
    "PropagateResult": (".propagate", "PropagateResult"),
    "JobSettings": (".propagate", "JobSettings"),
    "Cancelled": (".stylize._common", "Cancelled"),
    "suggest_keyframes": (".keyframes", "suggest_keyframes"),
    "open_frames": (".frames", "open_frames"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name, __name__)
        value = getattr(module, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


__all__ = sorted(_LAZY)
