"""Kar-Wai engine: example-based video stylization (Ebsynth-style patch synthesis).

Pure Python, no ``bpy``. The heavy submodules (numba kernels, torch stylizers) are
imported lazily so that ``import engine`` stays cheap. Every public name below, the
functions and the submodules alike, works on first use in a fresh process: attribute
access imports what it needs. No function shares its name with a submodule
(``engine.propagate`` is the function, ``engine.propagation`` its package), so the
order in which things were imported never changes what a name means.
"""

__version__ = "0.1.0"

#: Public functions and classes: name -> (submodule, attribute).
_LAZY = {
    "synthesize": (".synth", "synthesize"),
    "SynthResult": (".synth", "SynthResult"),
    "stylize": (".stylizers", "stylize"),
    "propagate": (".propagation", "propagate"),
    "PropagateResult": (".propagation", "PropagateResult"),
    "JobSettings": (".settings", "JobSettings"),
    "KeyStylization": (".propagation", "KeyStylization"),
    "Cancelled": (".errors", "Cancelled"),
    "suggest_keyframes": (".keyframes", "suggest_keyframes"),
    "open_frames": (".frames", "open_frames"),
    "stylize_keys": (".stylizers.keys", "stylize_keys"),
    "key_disagreement": (".stylizers.keys", "key_disagreement"),
    "stylize_video": (".stylizers.video", "stylize_video"),
    "VideoResult": (".stylizers.video", "VideoResult"),
    "parse_video_param": (".stylizers.video", "parse_video_param"),
}

#: Public submodules, imported on first attribute access (``engine.frames.read_image``).
_SUBMODULES = ("clips", "errors", "files", "frames", "images", "flow", "guides", "keyframes", "propagation", "safety",
               "settings", "stylizers", "synth", "threads")


def __getattr__(name):
    import importlib

    if name in _LAZY:
        module_name, attr = _LAZY[name]
        value = getattr(importlib.import_module(module_name, __name__), attr)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        # import_module binds the submodule to this package's namespace itself.
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


__all__ = sorted(_LAZY)
