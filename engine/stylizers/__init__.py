"""Keyframe stylizers: one image per key, before propagation.

``stylize(frame, method=..., **params)`` dispatches to

``"neural"``
    Gatys et al. style transfer from an artwork with VGG19 (needs torch and the
    ImageNet weights), :func:`engine.stylizers.neural.stylize_neural`.
``"deepdream"``
    Mordvintsev et al. Deep Dream on VGG19 (needs torch and the weights),
    :func:`engine.stylizers.deepdream.stylize_deepdream`.
``"painterly"``
    Built-in filters (watercolour, oil, pencil, ink, cartoon) in numpy and
    OpenCV, :func:`engine.stylizers.painterly.painterly`.
``"image"``
    A picture the artist painted, fitted to the frame,
    :func:`engine.stylizers.painted.stylize_painted`.

Only the torch methods import torch, and only when they run.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect

from ..errors import Cancelled
from ._common import check_callable, check_cancel

__all__ = [
    "stylize",
    "available_methods",
    "method_params",
    "parse_param",
    "MethodInfo",
    "Cancelled",
    "METHODS",
    "FRAME_METHODS",
]


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """What :func:`available_methods` says about one method."""

    name: str
    description: str
    needs_torch: bool
    optimising: bool
    available: bool


_METHODS = {
    # name: (module, function, needs_torch, optimising, description)
    "neural": (".neural", "stylize_neural", True, True,
               "style transfer from an artwork (Gatys et al., VGG19)"),
    "deepdream": (".deepdream", "stylize_deepdream", True, True,
                  "Deep Dream on VGG19 (Mordvintsev et al.)"),
    "painterly": (".painterly", "painterly", False, False,
                  "built-in filters: watercolour, oil, pencil, ink, cartoon"),
    "image": (".painted", "stylize_painted", False, False,
              "a picture painted by the artist, fitted to the frame"),
}
#: Names of the methods, in the order of the list above.
METHODS = tuple(_METHODS)

#: Methods that make a key from its frame alone, so a job can stylize its keys itself
#: (``"image"`` fits a picture the artist painted: that picture is the key).
FRAME_METHODS = tuple(name for name in _METHODS if name != "image")

# Types of the parameters whose default is None (for parsing CLI strings).
_NONE_DEFAULT_TYPES = {
    "weights": "path",
    "style_image": "path",
    "style_layer_weights": "floats",
    "max_size": "int",
    "learning_rate": "float",
}
_RESERVED = ("frame", "progress", "cancel")


def _torch_installed():
    return importlib.util.find_spec("torch") is not None


def available_methods():
    """The stylization methods, which need torch, and whether they can run here.

    Returns
    -------
    dict
        ``{name: MethodInfo}``; ``available`` is false for the torch methods
        when torch is not installed (the VGG19 weights are only looked for when
        a method runs).
    """
    has_torch = _torch_installed()
    return {
        name: MethodInfo(name=name, description=desc, needs_torch=needs, optimising=opt,
                         available=has_torch or not needs)
        for name, (_mod, _fn, needs, opt, desc) in _METHODS.items()
    }


def _check_method(method):
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; available: {', '.join(_METHODS)}")
    return method


def _function(method):
    module_name, func_name, needs_torch, _opt, _desc = _METHODS[_check_method(method)]
    if needs_torch and not _torch_installed():
        raise ImportError(f"method '{method}' needs PyTorch, which is not installed")
    module = importlib.import_module(module_name, __name__)
    return getattr(module, func_name)


def method_params(method, *, filter=None):  # noqa: A002
    """``{name: default}`` of the parameters a method accepts (besides frame, progress, cancel).

    For ``"painterly"`` the parameters of ``filter`` (default watercolour) are
    included.
    """
    fn = _function(method)
    params = {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _RESERVED
        and not p.name.startswith("_")  # private hooks of engine.stylizers.keys
    }
    if method == "painterly":
        from .painterly import filter_params

        params.update(filter_params(filter if filter is not None else params["filter"]))
    return params


def _parse_bool(name, text):
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"parameter '{name}': cannot read {text!r} as true/false")


def _parse_as(name, kind, text):
    try:
        if kind == "bool":
            return _parse_bool(name, text)
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind in ("str", "path"):
            return text
        if kind == "floats":
            return tuple(float(v) for v in text.split(",") if v.strip())
        if kind == "ints":
            return tuple(int(v) for v in text.split(",") if v.strip())
        if kind == "strs":
            return tuple(v.strip() for v in text.split(",") if v.strip())
    except ValueError:
        what = {"int": "an integer", "float": "a number", "floats": "comma-separated numbers",
                "ints": "comma-separated integers"}.get(kind, kind)
        raise ValueError(f"parameter '{name}': cannot read {text!r} as {what}") from None
    raise AssertionError(kind)


def _kind_of(name, default):
    if default is None:
        return _NONE_DEFAULT_TYPES.get(name, "str")
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, (tuple, list)):
        if default and all(isinstance(v, str) for v in default):
            return "strs"
        if default and all(isinstance(v, int) and not isinstance(v, bool) for v in default):
            return "ints"
        return "floats"
    return "str"


def parse_param(method, name, text, *, filter=None):  # noqa: A002
    """Turn the text of a ``--param name=text`` into the value ``method`` expects.

    The type comes from the parameter's default (numbers, booleans,
    comma-separated lists). Raises ``ValueError`` naming the parameter for an
    unknown name or unreadable text.
    """
    params = method_params(method, filter=filter)
    if name not in params:
        raise ValueError(
            f"unknown parameter '{name}' for method '{method}'; known: {', '.join(sorted(params))}"
        )
    return _parse_as(name, _kind_of(name, params[name]), text)


def stylize(frame, *, method, progress=None, cancel=None, **params):
    """Stylize one keyframe.

    Parameters
    ----------
    frame : numpy.ndarray
        ``HxWx3`` uint8 RGB. Also accepted: ``HxW`` grey, ``HxWx4`` RGBA (the
        alpha is ignored by all methods but ``"image"``), ``uint16`` and float
        arrays in 0..255. A float array in 0..1 is refused (it would come out
        black): multiply it by 255.
    method : {"neural", "deepdream", "painterly", "image"}
        See :func:`available_methods`.
    progress : callable, optional
        ``progress(step, total, loss)`` after every iteration of the optimising
        methods (``neural``, ``deepdream``); not called by the others.
    cancel : callable or threading.Event, optional
        Polled before every iteration; :class:`Cancelled` is raised when it
        returns true. The other methods check it once before starting.
    **params
        The method's named parameters (:func:`method_params`); an unknown
        name raises ``ValueError``.

    Returns
    -------
    numpy.ndarray
        ``HxWx3`` uint8 RGB of the frame's size (``HxWx4`` RGBA for
        ``"image"`` with an alpha picture and ``alpha="keep"``).

    Raises
    ------
    TypeError (engine.safety.ParameterTypeError)
        When ``frame`` (or an image parameter) is not a numpy array or path;
        it is also a ``ValueError``.
    ValueError
        For an unknown method or parameter, a bad value (the message names the
        parameter), or a float frame in 0..1.

    References
    ----------
    L. A. Gatys, A. S. Ecker, M. Bethge, "Image Style Transfer Using
    Convolutional Neural Networks", CVPR 2016. L. A. Gatys et al., "Preserving
    Color in Neural Artistic Style Transfer", 2016. A. Mordvintsev, C. Olah,
    M. Tyka, "Inceptionism: Going Deeper into Neural Networks", 2015.
    """
    fn = _function(method)
    if not hasattr(frame, "dtype"):
        from ..safety import ParameterTypeError

        raise ParameterTypeError(f"frame must be a numpy array, got {type(frame).__name__}")
    check_callable("progress", progress)
    check_callable("cancel", cancel)
    known = method_params(method, filter=params.get("filter"))
    for name in params:
        if name not in known:
            raise ValueError(
                f"unknown parameter '{name}' for method '{method}'; known: {', '.join(sorted(known))}"
            )
    _, _, _, optimising, _ = _METHODS[method]
    if optimising:
        return fn(frame, progress=progress, cancel=cancel, **params)
    check_cancel(cancel)
    return fn(frame, **params)
