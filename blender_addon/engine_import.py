"""Where the add-on finds the Kar-Wai engine: the one place that imports it.

The extension build vendors the engine inside the add-on package
(``<add-on>/engine``). Running from the source tree, the engine is the top-level
``engine`` package next to ``blender_addon``. Both are tried, vendored first.

Nothing here imports ``bpy``; the worker process uses :func:`search_path` to
import the very same engine.
"""

import importlib
import importlib.util
import os

_ADDON_PACKAGE = __package__


class EngineMissing(ImportError):
    """The engine (or one of its dependencies) cannot be imported."""


def _vendored_name():
    return f"{_ADDON_PACKAGE}.engine" if _ADDON_PACKAGE else None


def get_engine():
    """The engine package (vendored copy first, then the top-level ``engine``).

    Returns
    -------
    module
        The imported engine package.

    Raises
    ------
    EngineMissing
        When neither copy can be imported; the message says why.
    """
    name = _vendored_name()
    if name and importlib.util.find_spec(name) is not None:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            raise EngineMissing(f"Kar-Wai's bundled engine cannot be loaded: {exc}") from exc
    try:
        module = importlib.import_module("engine")
    except ImportError as exc:
        raise EngineMissing(
            "Kar-Wai's engine is not installed: neither a bundled copy inside the add-on "
            f"nor an 'engine' package on the Python path was found ({exc})"
        ) from exc
    if not hasattr(module, "propagate") or not hasattr(module, "stylize"):
        raise EngineMissing(
            f"the 'engine' package at {getattr(module, '__file__', '?')} is not Kar-Wai's engine"
        )
    return module


#: The engine's modules that need the standard library only.
STANDALONE = ("settings", "child", "allocator")


def engine_module(module):
    """One of the engine's standard-library-only modules (vendored copy first), imported on its own.

    ``settings`` makes the add-on's properties at registration and ``child``
    supervises its worker and pip processes, before the engine's dependencies are
    installed; :func:`get_engine`'s check of the package would import the whole
    propagation.
    """
    if module not in STANDALONE:
        raise ValueError(f"engine.{module} is not one of the standalone modules {STANDALONE}")
    name = _vendored_name()
    try:
        if name and importlib.util.find_spec(name) is not None:
            return importlib.import_module(f"{name}.{module}")
        return importlib.import_module(f"engine.{module}")
    except ImportError as exc:
        raise EngineMissing(f"Kar-Wai's engine module {module} cannot be loaded: {exc}") from exc


def search_path(engine=None):
    """The folder to put on ``sys.path`` so that ``import engine`` finds this engine.

    Parameters
    ----------
    engine : module, optional
        The engine package (default :func:`get_engine`).

    Returns
    -------
    str
        The parent folder of the engine package.
    """
    engine = engine if engine is not None else get_engine()
    return os.path.dirname(os.path.dirname(os.path.abspath(engine.__file__)))
