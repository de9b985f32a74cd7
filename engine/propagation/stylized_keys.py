"""Keys the job stylizes itself: one task per key, so that a farm spreads the most costly step too.

A neural key takes minutes on a CPU, so on a long film the keys, not the
propagation, decide the wall time. With ``stylize=KeyStylization(...)`` a
plan's ``key-N`` task stylizes frame ``N`` (:func:`engine.stylizers.keys.stylize_key`)
before writing it out, and every pass that starts from that key depends on it,
as it would on a painted key. Keys that agree (``consistent``, the optimising
methods) follow their neighbour towards the anchor, so each such task also
depends on the key it follows; the others run in any order.

The image is not known when the plan is made, so its place in every
fingerprint is taken by its *recipe*: the method, its parameters, the style
image's bytes, the weights, the key frame and (for a key that follows) the
recipe of the key it follows and the frames between the two. The key image
lands in ``OUT/.karwai-tasks/keys/key-N-RECIPE.png``; the task's record holds
its digest, and every later reader checks it against that record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..frames import FrameError, read_image, write_frame_atomic
from ..safety import file_digest

from ..stylizers import FRAME_METHODS as STYLIZED_METHODS

__all__ = ["KeyStylization", "STYLIZED_METHODS"]

#: Parameters naming a file that every worker must read (kept relative to the plan, and hashed).
_FILE_PARAMS = ("style_image", "weights")


@dataclass(frozen=True)
class KeyStylization:
    """Which keys a job stylizes as tasks, and how.

    Parameters
    ----------
    numbers : sequence of int
        The frames to stylize as keys (besides any painted keys of the job).
    method : str
        One of :data:`STYLIZED_METHODS` (see :func:`engine.stylize`).
    params : dict
        The method's parameters (``style_image`` a path, which every worker
        must see, like the frames).
    consistent : bool
        Keys of the optimising methods follow their neighbour, so they agree
        (:func:`engine.stylize_keys`); ``False``: each on its own.
    anchor : int, optional
        The key stylized first (default the first).
    temporal_weight : float, optional
        How strongly a following key is held to its warped neighbour
        (default :data:`engine.stylizers.keys.DEFAULT_KEY_TEMPORAL_WEIGHT`).
    """

    numbers: tuple
    method: str
    params: dict = field(default_factory=dict)
    consistent: bool = True
    anchor: int | None = None
    temporal_weight: float | None = None

    def checked(self, source):
        """This stylization with its numbers, method and parameters checked against ``source``."""
        from ..stylizers.keys import DEFAULT_KEY_TEMPORAL_WEIGHT, key_order

        if not isinstance(self.method, str) or self.method not in STYLIZED_METHODS:
            raise ValueError(f"stylize.method: a plan stylizes keys with {', '.join(STYLIZED_METHODS)}, "
                             f"not {self.method!r} (a painted picture is given as a key)")
        numbers = []
        for n in self.numbers:
            if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
                raise ValueError(f"stylize.numbers: frame number {n!r} is not an integer")
            if int(n) not in source:
                raise ValueError(f"stylize.numbers: frame {int(n)} is not in the clip "
                                 f"(frames {source.first}..{source.last})")
            numbers.append(int(n))
        if len(set(numbers)) != len(numbers):
            raise ValueError("stylize.numbers: a frame is given twice")
        if not numbers:
            raise ValueError("stylize.numbers: at least one frame to stylize is needed")
        key_order(numbers, self.anchor)  # refuses an anchor that is not a key
        weight = DEFAULT_KEY_TEMPORAL_WEIGHT if self.temporal_weight is None else self.temporal_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not np.isfinite(weight) or weight < 0:
            raise ValueError(f"stylize.temporal_weight must be a number >= 0, got {self.temporal_weight!r}")
        if not isinstance(self.params, dict):
            raise ValueError("stylize.params must be a dict {name: value}")
        params = dict(self.params)
        for name in _FILE_PARAMS:
            value = params.get(name)
            if value is None:
                continue
            if not isinstance(value, (str, os.PathLike)):
                raise ValueError(f"stylize.params[{name!r}] must be a file path, which every worker reads "
                                 f"(got {type(value).__name__})")
            if not os.path.isfile(value):
                raise ValueError(f"stylize.params[{name!r}]: file not found: '{value}'")
            params[name] = Path(value)
        if self.method == "neural" and params.get("style_image") is None:
            raise ValueError("stylize.params: method 'neural' needs 'style_image', the artwork")
        _check_param_names(self.method, params)
        for name, value in params.items():
            if name not in _FILE_PARAMS:
                try:
                    json.dumps(value)
                except TypeError:
                    raise ValueError(f"stylize.params[{name!r}]: {type(value).__name__} cannot be written "
                                     f"into a plan; give a number, string or list") from None
        return KeyStylization(numbers=tuple(sorted(numbers)), method=self.method, params=params,
                              consistent=bool(self.consistent), anchor=self.anchor, temporal_weight=float(weight))

    def order(self):
        """``[(key, the key it follows or None)]`` in the order the keys can be stylized."""
        from ..stylizers.keys import follows_neighbour, key_order

        follows = follows_neighbour(self.method, consistent=self.consistent, temporal_weight=self.temporal_weight,
                                    keys=len(self.numbers))
        return [(n, ref if follows else None) for n, ref in key_order(self.numbers, self.anchor)]

    def recipes(self, source, identity):
        """``{key: digest}`` of everything that decides each stylized key (in place of its pixels)."""
        from .. import __version__

        files = {name: f"{Path(self.params[name]).name}:{file_digest(self.params[name], what=name)}"
                 for name in _FILE_PARAMS if self.params.get(name) is not None}
        plain = {k: v for k, v in self.params.items() if k not in _FILE_PARAMS}
        base = json.dumps({"engine": __version__, "method": self.method, "params": plain, "files": files},
                          sort_keys=True, default=str)
        numbers = list(source.frame_numbers)
        recipes = {}
        for n, ref in self.order():
            parts = [base, identity[n]]
            if ref is not None:
                lo, hi = sorted((numbers.index(n), numbers.index(ref)))
                parts += [self.temporal_weight, recipes[ref], *(identity[m] for m in numbers[lo:hi + 1])]
            recipes[n] = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
        return recipes

    def plan_entry(self, n, follows, rel):
        """The plan's description of how key ``n`` is made (paths through ``rel``, relative to the plan)."""
        params = {k: (rel(v) if k in _FILE_PARAMS and v is not None else v) for k, v in self.params.items()}
        return {"method": self.method, "params": params, "follows": follows,
                "temporal_weight": self.temporal_weight}


def _check_param_names(method, params):
    """Refuse a parameter the method does not take, when the method can be inspected here."""
    from ..stylizers import method_params

    try:
        known = method_params(method, filter=params.get("filter") if method == "painterly" else None)
    except ImportError:
        return  # torch is not installed where the plan is made; the workers check (and need it)
    for name in params:
        if name not in known:
            raise ValueError(f"stylize.params: method '{method}' has no parameter {name!r} "
                             f"(it takes {', '.join(sorted(known))})")


def stylized_key_image(plan, n):
    """Key ``n``'s stylized image, checked against the digest its task recorded."""
    from .plan import PlanError, _file_sha256
    from .tasks import _read_marker

    entry = plan.data["keys"][str(n)]
    path = plan.resolve(entry["file"])
    marker = _read_marker(plan, f"key-{n}")
    digest = None if marker is None else (marker.get("outputs") or {}).get(entry["file"])
    task = plan.task(f"key-{n}")
    if marker is None or marker.get("fingerprint") != task["fingerprint"] or digest is None:
        raise PlanError(f"{path}: key {n} has not been stylized yet (task key-{n} of {plan.path} has not run)")
    if not path.exists():
        raise PlanError(f"{path}: the stylized key of frame {n} is missing (task key-{n} of {plan.path} "
                        f"made it); run that task again")
    if _file_sha256(path) != digest:
        raise PlanError(f"{path}: the stylized key of frame {n} changed since task key-{n} made it; "
                        f"run that task again")
    return _as_channels(read_image(path, alpha=True), entry.get("channels", 3))


def _as_channels(image, channels):
    image = image[:, :, :3] if image.shape[2] > 3 else image
    if channels == 4:
        image = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    return np.ascontiguousarray(image)


def make_stylized_key(plan, n, env):
    """Stylize key ``n`` and return ``(image, digest)``.

    The image made by an earlier run of the task is kept when the task's record
    still vouches for its bytes (only the output frame was lost).
    """
    from ..stylizers.keys import stylize_key
    from .plan import _file_sha256
    from .tasks import _read_marker

    entry = plan.data["keys"][str(n)]
    how = entry["stylize"]
    path = plan.resolve(entry["file"])
    marker = _read_marker(plan, f"key-{n}") or {}
    recorded = (marker.get("outputs") or {}).get(entry["file"]) \
        if marker.get("fingerprint") == plan.task(f"key-{n}")["fingerprint"] else None
    if recorded is None or not path.exists() or _file_sha256(path) != recorded:
        params = {k: (str(plan.resolve(v)) if k in _FILE_PARAMS and v is not None else v)
                  for k, v in how["params"].items()}
        for name in _FILE_PARAMS:
            if params.get(name) is not None and not os.path.isfile(params[name]):
                raise FrameError(f"{params[name]}: the {name.replace('_', ' ')} of the keys is not found on "
                                 f"this machine (field keys.{n}.stylize.params of {plan.path}); "
                                 f"is the shared folder mounted here?")
        follows = how["follows"]
        reference = None if follows is None else (follows, env.ctx.keys[follows])
        env.check_sources(_frames_between(env.source, n, follows))

        def progress(k, steps, loss=None):
            if env.ctx.progress is not None:
                env.ctx.progress(env.ctx.done, env.ctx.total, f"stylizing key {n}: iteration {k}/{steps}")

        image = stylize_key(env.source, n, method=how["method"], reference=reference,
                            temporal_weight=how["temporal_weight"], progress=progress, cancel=env.ctx.cancel,
                            params=params)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_frame_atomic(path, image)
    return _as_channels(read_image(path, alpha=True), entry.get("channels", 3)), _file_sha256(path)


def _frames_between(source, n, follows):
    if follows is None:
        return [n]
    numbers = list(source.frame_numbers)
    lo, hi = sorted((numbers.index(n), numbers.index(follows)))
    return numbers[lo:hi + 1]
