"""Fuzzing of ``engine.synth.synthesize`` and ``engine.propagation.propagate`` (issue 7, part 5).

    python build.py bench fuzz [--synth 1000] [--propagate 200] [--seed 0] [--timeout 60]
    python tests/fuzzing.py [same options]

Hypothesis draws random shapes, dtypes, weights, keys and settings, including
broken ones (NaN, inf, negative, huge, wrong types, empty arrays, keys outside
the clip...). Every case must either return a result of the right shape, with
sane values, or raise ``ValueError``. Anything else is a failure: another
exception ("error"), a dead process ("crash": a segfault or abort) or a case
that does not finish within ``--timeout`` seconds ("hang").

The cases run in worker subprocesses, so that a segfault is counted instead of
killing the fuzzer; a supervisor watches each case's start and end, kills a
worker that hangs, and starts a new one for the remaining cases. The two kinds
of case run in parallel (one worker each). Prints how many cases ran, and the
crashes, hangs and errors with the case that caused them; exits 1 if there
were any.

``tests/test_fuzz.py`` runs a smaller campaign through :func:`run_campaigns`. The
harness is test code, so it lives here, beside the tests; each worker is this
file run as a script, and :class:`engine.child.ChildProcess` supervises it.
"""

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.child import ChildProcess  # noqa: E402 - standard library only

KINDS = ("synth", "propagate")
#: Extra seconds the first case of a worker may take: loading (or, with a cold
#: cache, compiling) the numba kernels.
STARTUP_ALLOWANCE = 300.0


# ---------------------------------------------------------------------------
# Case generation (hypothesis), in the worker


def _strategies():
    """Build the hypothesis strategies (imported lazily: the supervisor needs none).

    Each case starts valid and then gets 0, 1 or 2 *mutations*, each of which
    replaces one input with a hostile value (a wrong dtype or shape, NaN, inf,
    a negative or huge number, a wrong type, an empty array, a key outside the
    clip...). About 40 % of the cases stay valid, so the normal paths are
    fuzzed too.
    """
    import numpy as np
    from hypothesis import strategies as st

    hostile_numbers = st.sampled_from([float("nan"), float("inf"), -float("inf"), -1.0, -1e-9, 1e10, 1e38,
                                       1e308, True, "1.0", None, [1.0], 2 ** 70])
    hostile_dtypes = st.sampled_from(["float64", "uint16", "int32", "bool", "float16", "int8", "complex64",
                                      "object"])
    n_mutations = st.sampled_from([0, 0, 1, 1, 2])

    def array(draw, shape, dtype, mode="normal"):
        rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
        values = rng.random(shape) * 255.0
        if mode == "constant":
            values[...] = draw(st.sampled_from([0.0, 255.0, 17.0]))
        if mode in ("nan", "inf", "negative", "over255") and values.size:
            index = tuple(int(rng.integers(0, s)) for s in shape)
            values[index] = {"nan": np.nan, "inf": np.inf, "negative": -3.0, "over255": 300.0}[mode]
        if dtype == "object":
            return values.astype(object)
        if np.dtype(dtype).kind in "fc":
            return values.astype(dtype)
        if dtype == "bool":
            return values > 127
        return np.clip(np.nan_to_num(values), np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)

    def hostile_array(draw, hw, channels):
        """An image input gone wrong in one way."""
        how = draw(st.sampled_from(["dtype", "nan", "inf", "negative", "over255", "ndim1", "ndim4",
                                    "empty", "list", "scalar", "zero channels"]))
        dtype = draw(st.sampled_from(["uint8", "float32"]))
        if how == "dtype":
            return array(draw, (*hw, channels), draw(hostile_dtypes))
        if how in ("nan", "inf", "negative", "over255"):
            return array(draw, (*hw, channels), "float32", how)
        if how == "ndim1":
            return array(draw, (hw[0] * hw[1] * channels,), dtype)
        if how == "ndim4":
            return array(draw, (*hw, channels, 1), dtype)
        if how == "empty":
            return array(draw, (0, hw[1], channels), dtype)
        if how == "list":
            return array(draw, (*hw, channels), "uint8").tolist()
        if how == "scalar":
            return np.float32(7.0)
        return array(draw, (*hw, 0), dtype)

    sizes = st.integers(7, 40)

    def channels(x):
        shape = np.shape(x)
        return shape[2] if len(shape) == 3 and shape[2] > 0 else 1

    @st.composite
    def synth_cases(draw):
        hs, ws = draw(sizes), draw(sizes)
        ht, wt = (hs, ws) if draw(st.booleans()) else (draw(sizes), draw(sizes))
        cs = draw(st.sampled_from([3, 3, 3, 4, 1, 2]))
        style_dtype = draw(st.sampled_from(["uint8", "uint8", "float32"]))
        style = array(draw, (hs, ws, cs) if cs > 1 or draw(st.booleans()) else (hs, ws), style_dtype,
                      draw(st.sampled_from(["normal"] * 5 + ["constant"])))
        source_guides, target_guides = [], []
        for _ in range(draw(st.integers(1, 4))):
            c = draw(st.integers(1, 4))
            dtype = draw(st.sampled_from(["uint8", "float32"]))
            source_guides.append(array(draw, (hs, ws, c), dtype))
            target_guides.append(array(draw, (ht, wt, c), dtype))
        case = {
            "style": style, "source_guides": source_guides, "target_guides": target_guides,
            "guide_weights": [draw(st.one_of(st.floats(0.0, 10.0), st.just(0.0))) for _ in source_guides],
            "style_weight": draw(st.floats(0.0, 10.0)),
            "patch_size": draw(st.sampled_from([5, 5, 3, 7])),
            "pyramid_levels": draw(st.one_of(st.none(), st.none(), st.integers(1, 3))),
            "search_vote_iters": draw(st.one_of(st.none(), st.integers(1, 3))),
            "patchmatch_iters": draw(st.one_of(st.none(), st.integers(0, 3))),
            "uniformity": draw(st.one_of(st.just(3500.0), st.floats(0.0, 1e4))),
            "extra_pass_3x3": draw(st.booleans()),
            "vote": draw(st.sampled_from(["plain", "weighted"])),
            "vote_radius": draw(st.one_of(st.none(), st.none(), st.integers(0, 6))),
            "seed": draw(st.one_of(st.integers(0, 2 ** 32), st.integers(2 ** 63, 2 ** 80))),
        }
        init = draw(st.sampled_from([None, None, "valid", "outside"]))
        if init is not None:
            rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
            if init == "outside":  # clamped into the source: still valid
                case["init_nnf"] = rng.integers(-10 ** 6, 10 ** 6, (ht, wt, 2)).astype(np.int64)
            else:
                nnf = np.empty((ht, wt, 2), np.int32)
                nnf[..., 0] = rng.integers(0, ws, (ht, wt))
                nnf[..., 1] = rng.integers(0, hs, (ht, wt))
                case["init_nnf"] = nnf

        for _ in range(draw(n_mutations)):
            what = draw(st.sampled_from([
                "style", "source guide", "target guide", "guide size", "guide channels", "guide count",
                "no guides", "weights count", "weight", "style_weight", "patch_size", "pyramid_levels",
                "search_vote_iters", "patchmatch_iters", "uniformity", "vote", "vote_radius", "seed",
                "init_nnf", "tiny", "extra pass"]))
            g = draw(st.integers(0, len(case["source_guides"]) - 1)) if case["source_guides"] else 0
            if what == "style":
                case["style"] = hostile_array(draw, (hs, ws), cs)
            elif what == "source guide" and case["source_guides"]:
                case["source_guides"][g] = hostile_array(draw, (hs, ws), 2)
            elif what == "target guide" and case["target_guides"]:
                case["target_guides"][g] = hostile_array(draw, (ht, wt), 2)
            elif what == "guide size" and case["target_guides"]:
                side = draw(st.sampled_from(["source_guides", "target_guides"]))
                old = np.shape(case[side][g])
                if len(old) == 3:  # (an earlier mutation may have broken it already)
                    case[side][g] = array(draw, (old[0] + draw(st.integers(1, 5)), *old[1:]), "uint8")
            elif what == "guide channels" and case["target_guides"]:
                old = np.shape(case["target_guides"][g])
                if len(old) == 3:
                    case["target_guides"][g] = array(draw, (*old[:2], old[2] % 4 + 1), "uint8")
            elif what == "guide count":
                case["target_guides"] = case["target_guides"][:-1]
            elif what == "no guides":
                case["source_guides"], case["target_guides"], case["guide_weights"] = [], [], []
            elif what == "weights count":
                case["guide_weights"] = case["guide_weights"] + [1.0] if draw(st.booleans()) \
                    else case["guide_weights"][:-1]
            elif what == "weight" and case["guide_weights"]:
                case["guide_weights"][g] = draw(hostile_numbers)
            elif what == "style_weight":
                case["style_weight"] = draw(hostile_numbers)
            elif what == "patch_size":
                case["patch_size"] = draw(st.sampled_from([-1, 0, 1, 2, 4, 6, 99, 10001, 5.0, True, None]))
            elif what == "pyramid_levels":
                case["pyramid_levels"] = draw(st.sampled_from([0, -1, 50, 10001, 1.5, True, "2"]))
            elif what in ("search_vote_iters", "patchmatch_iters"):
                case[what] = draw(st.sampled_from([-1, 10001, 2.5, False, "3"] + ([0] if what[0] == "s" else [])))
            elif what == "uniformity":
                case["uniformity"] = draw(hostile_numbers)
            elif what == "vote":
                case["vote"] = draw(st.sampled_from(["median", "", None, 1]))
            elif what == "vote_radius":
                case["vote_radius"] = draw(st.sampled_from([-1, 10001, 1.5, True]))
            elif what == "seed":
                case["seed"] = draw(st.sampled_from([-1, -(2 ** 70), 1.5, None, "0", True, np.int64(5)]))
            elif what == "init_nnf":
                rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
                case["init_nnf"] = draw(st.sampled_from([
                    rng.random((ht, wt, 2)), rng.integers(0, 5, (ht + 1, wt, 2)),
                    rng.integers(0, 5, (ht, wt, 3)), rng.integers(0, 5, (ht, wt)), np.zeros((ht, wt, 2), bool),
                    rng.integers(0, 5, (ht, wt, 2)).tolist(), np.full((ht, wt, 2), 2 ** 62, np.int64),
                    np.full((ht, wt, 2), 2 ** 64 - 1, np.uint64)]))
            elif what == "tiny":
                # Smaller than a patch, on either side.
                side = draw(st.sampled_from(["style", "target"]))
                small = (draw(st.integers(1, 4)), draw(st.integers(1, 40)))
                if side == "style":
                    case["style"] = array(draw, (*small, cs), "uint8")
                    case["source_guides"] = [array(draw, (*small, channels(s)), "uint8") for s in case["source_guides"]]
                else:
                    case["target_guides"] = [array(draw, (*small, channels(t)), "uint8") for t in case["target_guides"]]
                    case.pop("init_nnf", None)
            elif what == "extra pass":
                case["extra_pass_3x3"] = draw(st.sampled_from([None, "yes", 2]))
        return case

    @st.composite
    def propagate_cases(draw):
        h, w = draw(st.integers(8, 40)), draw(st.integers(8, 40))
        n = draw(st.integers(1, 5))
        start = draw(st.integers(0, 3))
        numbers = sorted(draw(st.sets(st.integers(start, start + 8), min_size=n, max_size=n)))
        case = {
            "h": h, "w": w, "numbers": numbers, "frames_seed": draw(st.integers(0, 2 ** 32 - 1)),
            "frame_kind": draw(st.sampled_from(["rgb"] * 4 + ["grey", "rgba", "16bit", "jpeg"])),
            "keys": {},
            "weights": draw(st.sampled_from([None, None, "random"])),
            "weight_values": {name: draw(st.floats(0.0, 10.0))
                              for name in ("colour", "edge", "positional", "temporal", "style")},
            "quality": draw(st.sampled_from(["draft"] * 6 + ["balanced", "best"])),
            "blend_mode": draw(st.sampled_from(["weighted", "weighted", "poisson", "crossfade"])),
            "key_fit": draw(st.sampled_from(["refuse", "refuse", "crop", "pad"])),
            "seed": draw(st.integers(0, 2 ** 40)),
            "masks": draw(st.sampled_from([None] * 4 + ["folder", "single"])),
        }
        for k in draw(st.lists(st.sampled_from(numbers), min_size=1, max_size=min(3, n), unique=True)):
            case["keys"][k] = {
                "kind": draw(st.sampled_from(["int"] * 5 + ["np.int64"])),
                "value": draw(st.sampled_from(["array"] * 3 + ["path"])),
                "shape": draw(st.sampled_from([(h, w, 3)] * 4 + [(h, w), (h, w, 4), (2 * h, 2 * w, 3)])),
                "dtype": draw(st.sampled_from(["uint8"] * 4 + ["uint16"])),
                "mode": "normal", "seed": draw(st.integers(0, 2 ** 32 - 1)),
            }
        for _ in range(draw(n_mutations)):
            what = draw(st.sampled_from([
                "key number", "key number type", "key dtype", "key shape", "key value", "no keys",
                "weights", "quality", "blend_mode", "key_fit", "seed", "masks", "tiny frames"]))
            key = draw(st.sampled_from(sorted(case["keys"]))) if case["keys"] else None
            if what == "key number" and key is not None:
                new = draw(st.sampled_from([start - 1, -5, numbers[-1] + 1, numbers[-1] + 100, 0,
                                            *(set(range(start, numbers[-1])) - set(numbers) or {-7})]))
                case["keys"][new] = case["keys"].pop(key)
            elif what == "key number type" and key is not None:
                case["keys"][key]["kind"] = draw(st.sampled_from(["str", "bool", "float", "none"]))
            elif what == "key dtype" and key is not None:
                case["keys"][key].update(value="array", dtype=draw(st.sampled_from(
                    ["float32", "float64", "bool", "int32", "int8", "complex64"])),
                    mode=draw(st.sampled_from(["normal", "nan"])))
            elif what == "key shape" and key is not None:
                case["keys"][key]["shape"] = draw(st.sampled_from([
                    (h, w, 1), (h, w, 2), (h, w, 5), (h, 2 * w + 3, 3), (3 * h, w, 3), (0, w, 3), (h, 0, 3),
                    (h + 1, w, 3), (1, 1, 3), (h, w, 3, 1), (h * w * 3,)]))
            elif what == "key value" and key is not None:
                case["keys"][key]["value"] = draw(st.sampled_from(["corrupt path", "missing path", "none",
                                                                   "list", "folder path"]))
            elif what == "no keys":
                case["keys"] = {}
            elif what == "weights":
                case["weights"] = draw(st.sampled_from(["dict", "random"]))
                if case["weights"] == "random":
                    case["weight_values"][draw(st.sampled_from(sorted(case["weight_values"])))] = \
                        draw(hostile_numbers)
            elif what == "quality":
                case["quality"] = draw(st.sampled_from(["ultra", "", None, 1.5, "DRAFT"]))
            elif what == "blend_mode":
                case["blend_mode"] = draw(st.sampled_from(["median", None, ""]))
            elif what == "key_fit":
                case["key_fit"] = draw(st.sampled_from(["stretch", None]))
            elif what == "seed":
                case["seed"] = draw(st.sampled_from([-1, 1.5, None, "3", True, float("nan")]))
            elif what == "masks":
                case["masks"] = draw(st.sampled_from(["missing", "corrupt", "other size", "incomplete"]))
            elif what == "tiny frames":
                case["h"], case["w"] = draw(st.integers(1, 6)), draw(st.integers(1, 40))
                for spec in case["keys"].values():
                    spec["shape"] = (case["h"], case["w"], 3)
        return case

    return {"synth": synth_cases(), "propagate": propagate_cases()}


def describe(value, depth=0):
    """A short, JSON-friendly picture of a case (arrays by shape, dtype and range)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        text = f"array{value.shape} {value.dtype}"
        if value.size and value.dtype.kind in "fiub":
            with np.errstate(all="ignore"):
                text += f" [{np.nanmin(value) if value.dtype.kind == 'f' else value.min()}.." \
                        f"{np.nanmax(value) if value.dtype.kind == 'f' else value.max()}]"
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                text += " non-finite"
        return text
    if isinstance(value, dict):
        return {str(k): describe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) <= 8 and all(isinstance(v, (int, float)) for v in value):
            return list(value)  # e.g. a shape
        if depth > 1 or len(value) > 8:
            return f"{type(value).__name__} of {len(value)}"
        return [describe(v, depth + 1) for v in value]
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (int, str, bool)) or value is None:
        return value if not (isinstance(value, int) and abs(value) > 2 ** 53) else str(value)
    return repr(value)[:80]


# ---------------------------------------------------------------------------
# Running one case, in the worker


class BadResult(AssertionError):
    """The call returned, but its result is wrong."""


def run_synth_case(case):
    import numpy as np

    from engine.synth import synthesize

    result = synthesize(case["style"], case["source_guides"], case["target_guides"],
                        **{k: v for k, v in case.items()
                           if k not in ("style", "source_guides", "target_guides")})
    style = np.asarray(case["style"])
    hs, ws = style.shape[:2]
    cs = style.shape[2] if style.ndim == 3 else 1
    ht, wt = np.asarray(case["target_guides"][0]).shape[:2]
    if result.image.shape != (ht, wt, cs) or result.image.dtype != style.dtype:
        raise BadResult(f"image {result.image.shape} {result.image.dtype}, expected {(ht, wt, cs)} {style.dtype}")
    if not np.isfinite(result.image.astype(np.float64)).all() or result.image.min() < 0 or result.image.max() > 255:
        raise BadResult("image values outside 0..255 or not finite")
    if result.nnf.shape != (ht, wt, 2) or result.nnf.dtype != np.int32:
        raise BadResult(f"nnf {result.nnf.shape} {result.nnf.dtype}")
    if (result.nnf < 0).any() or (result.nnf[..., 0] >= ws).any() or (result.nnf[..., 1] >= hs).any():
        raise BadResult("nnf points outside the source")
    if result.error.shape != (ht, wt) or not np.isfinite(result.error).all() or (result.error < 0).any():
        raise BadResult(f"error map {result.error.shape}, finite={np.isfinite(result.error).all()}")
    return "returned"


def _imwrite(path, image):
    import cv2

    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(Path(path).suffix, image)
    assert ok
    Path(path).write_bytes(buf.tobytes())


def _key_array(spec):
    import numpy as np

    rng = np.random.default_rng(spec["seed"])
    values = rng.random(spec["shape"]) * 255.0
    dtype = spec["dtype"]
    if np.dtype(dtype).kind in "fc":
        if values.size and spec["mode"] == "nan":
            values.flat[0] = np.nan
        return values.astype(dtype)
    if dtype == "bool":
        return values > 127
    if dtype == "uint16":
        return (values * 257).astype(np.uint16)
    return np.clip(values, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)


def run_propagate_case(case, work):
    import cv2
    import numpy as np

    from engine.guides import GuideWeights
    from engine.propagation import JobSettings, propagate

    work = Path(work)
    h, w = case["h"], case["w"]
    rng = np.random.default_rng(case["frames_seed"])
    big = (rng.random((h, w + 2 * len(case["numbers"]) + 2, 3)) * 255).astype(np.uint8)
    frames = work / "frames"
    frames.mkdir()
    ext = ".jpg" if case["frame_kind"] == "jpeg" else ".png"
    for i, t in enumerate(case["numbers"]):
        img = np.ascontiguousarray(big[:, 2 * i:2 * i + w])
        img = {"grey": lambda a: a[:, :, 0], "rgba": lambda a: np.dstack([a, a[:, :, 0]]),
               "16bit": lambda a: a.astype(np.uint16) * 257}.get(case["frame_kind"], lambda a: a)(img)
        _imwrite(frames / f"{t:04d}{ext}", img)
    keys = {}
    for k, spec in case["keys"].items():
        number = {"int": k, "np.int64": np.int64(k), "str": str(k), "bool": bool(k), "float": float(k),
                  "none": None}[spec["kind"]]
        value = spec["value"]
        if value == "array":
            keys[number] = _key_array(spec)
        elif value == "list":
            keys[number] = _key_array(spec).tolist()
        elif value == "none":
            keys[number] = None
        else:
            path = work / f"key{k}.png"
            if value == "path":
                image = _key_array(spec)
                if image.dtype not in (np.uint8, np.uint16) or image.size == 0 or not (
                        image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))):
                    image = np.zeros((h, w, 3), np.uint8)  # what a PNG cannot hold: a plain key
                _imwrite(path, image)
            elif value == "corrupt path":
                path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
            elif value == "folder path":
                path.mkdir()
            keys[number] = path
    masks = None
    mask_hw = (h // 2 + 1, w) if case["masks"] == "other size" else (h, w)
    if case["masks"] in ("folder", "other size", "corrupt", "incomplete"):
        masks = work / "masks"
        masks.mkdir()
        for t in case["numbers"]:
            _imwrite(masks / f"{t:04d}.png", (rng.random(mask_hw) > 0.5).astype(np.uint8) * 255)
        if case["masks"] == "corrupt":
            (masks / f"{case['numbers'][-1]:04d}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        elif case["masks"] == "incomplete":
            (masks / f"{case['numbers'][0]:04d}.png").unlink()
    elif case["masks"] == "single":
        masks = work / "mask.png"
        _imwrite(masks, np.full((h, w), 255, np.uint8))
    elif case["masks"] == "missing":
        masks = work / "no masks here"
    weights = None
    if case["weights"] == "random":
        weights = GuideWeights(**case["weight_values"])
    elif case["weights"] == "dict":
        weights = {"colour": 1.0}
    out = work / "out"
    settings = JobSettings(quality=case["quality"], weights=GuideWeights() if weights is None else weights,
                           blend=case["blend_mode"], key_fit=case["key_fit"], seed=case["seed"])
    result = propagate(frames, keys, out=out, masks=masks, settings=settings)
    names = sorted(p.name for p in result.frames)
    if names != [f"{t:04d}.png" for t in case["numbers"]]:
        raise BadResult(f"outputs {names} for frames {case['numbers']}")
    for p in result.frames:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img is None or img.shape[:2] != (h, w):
            raise BadResult(f"{p.name}: {None if img is None else img.shape}, expected {h}x{w}")
    return "returned"


# ---------------------------------------------------------------------------
# Worker: runs cases, one JSON line per event on its protocol pipe


def worker(kind, count, seed, protocol, offset=0):
    import faulthandler
    import shutil
    import warnings

    import numpy as np
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    faulthandler.enable()  # a segfault prints the Python stack to stderr
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # the supervisor's "where are you?"
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    from hypothesis import strategies as st

    strategy = _strategies().get(kind, st.integers())  # the self-tests' cases are plain numbers
    index = {"i": 0}

    def emit(**event):
        protocol.write(json.dumps(event) + "\n")
        protocol.flush()

    @hypothesis_seed(seed)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(strategy)
    def fuzz(case):
        if index["i"] >= count:
            return
        i = offset + index["i"]  # the case's number in the whole campaign
        index["i"] += 1
        emit(event="start", i=i, case=describe(case))
        work = Path(tempfile.mkdtemp(prefix="karwai-fuzz-"))
        try:
            if kind == "synth":
                outcome = run_synth_case(case)
            elif kind == "propagate":
                outcome = run_propagate_case(case, work)
            else:  # the supervisor's own tests: a crash and a hang on purpose
                outcome = _selftest_case(kind, i)
            emit(event="end", i=i, outcome=outcome)
        except ValueError as exc:
            emit(event="end", i=i, outcome="ValueError", detail=str(exc)[:300])
        except Exception as exc:  # noqa: BLE001 -- every other exception is a finding
            import traceback

            emit(event="end", i=i, outcome="error", detail=f"{type(exc).__name__}: {exc}"[:300],
                 traceback=traceback.format_exc()[-3000:])
        finally:
            shutil.rmtree(work, ignore_errors=True)

    fuzz()
    emit(event="done", ran=min(index["i"], count))


def _selftest_case(kind, i):
    if kind == "selftest-crash" and i == 2:
        os.kill(os.getpid(), signal.SIGSEGV)
    if kind == "selftest-hang" and i == 1:
        time.sleep(3600)
    if kind == "selftest-error" and i == 0:
        raise IndexError("an unexpected exception")
    if i % 2:
        raise ValueError("a clear refusal")
    return "returned"


# ---------------------------------------------------------------------------
# Supervisor


@dataclass
class Report:
    kind: str
    requested: int
    ran: int = 0
    returned: int = 0
    refused: int = 0
    crashes: list = field(default_factory=list)
    hangs: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    seconds: float = 0.0
    slowest_s: float = 0.0
    slowest_case: object = None

    @property
    def failures(self):
        return len(self.crashes) + len(self.hangs) + len(self.errors)

    def summary(self):
        return (f"{self.kind}: {self.ran} cases ran ({self.returned} returned, {self.refused} ValueError), "
                f"{len(self.crashes)} crashes, {len(self.hangs)} hangs, {len(self.errors)} other errors, "
                f"in {self.seconds:.0f} s (slowest case {self.slowest_s:.1f} s)")


def _event(line):
    try:
        return json.loads(line)
    except ValueError:
        return {"event": "noise", "line": line[:200]}


def run_campaign(kind, count, *, seed=0, timeout=60.0, log=None):
    """Run ``count`` cases of ``kind`` in worker subprocesses; return a :class:`Report`.

    A worker that dies is counted as a crash of the case it was running and
    one that does not finish a case within ``timeout`` seconds as a hang of
    that case; either way a fresh worker continues with the remaining cases
    (from a new hypothesis seed).
    """
    report = Report(kind=kind, requested=count)
    start = time.monotonic()
    restarts = 0
    while report.ran < count:
        remaining = count - report.ran
        err = tempfile.TemporaryFile(mode="w+")
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = ChildProcess(
            [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--count", str(remaining),
             "--offset", str(report.ran), "--seed", str(seed + 7919 * restarts)],
            cwd=ROOT, env=env, stdout="lines", stderr=err).start()
        current = current_i = None
        started = time.monotonic()
        first = True
        finished = False
        while True:
            wait = timeout + (STARTUP_ALLOWANCE if first else 0.0)
            try:
                line = proc.read_line(timeout=wait)
            except TimeoutError:
                # Stuck in a case (or, with no case, while starting or drawing one):
                # ask for the Python stacks (faulthandler, in the worker), then kill it.
                if hasattr(signal, "SIGUSR1"):
                    proc.signal(signal.SIGUSR1)
                    time.sleep(1.0)
                proc.kill()
                err.seek(0)
                report.hangs.append({"i": current_i, "case": current, "after_s": wait,
                                     "stacks": err.read()[-4000:]})
                if current is not None:
                    report.ran += 1
                if log:
                    log(f"{kind}: HANG in case {report.ran}: {json.dumps(current)[:500]}")
                break
            event = {"event": "eof"} if line is None else _event(line)
            kind_of = event.get("event")
            if kind_of == "start":
                current, current_i, started = event["case"], event["i"], time.monotonic()
            elif kind_of == "end":
                first = False
                report.ran += 1
                took = time.monotonic() - started
                if took > report.slowest_s:
                    report.slowest_s, report.slowest_case = took, current
                outcome = event["outcome"]
                if outcome == "returned":
                    report.returned += 1
                elif outcome == "ValueError":
                    report.refused += 1
                else:
                    report.errors.append({"i": current_i, "case": current, "detail": event.get("detail"),
                                          "traceback": event.get("traceback")})
                    if log:
                        log(f"{kind}: ERROR {event.get('detail')} in {json.dumps(current)[:500]}")
                current = None
                if log and report.ran % 100 == 0:
                    report.seconds = time.monotonic() - start
                    log(report.summary())
            elif kind_of == "done":
                finished = True
            elif kind_of == "eof":
                proc.wait()
                if current is not None or (not finished and proc.returncode != 0):
                    err.seek(0)
                    report.crashes.append({"i": current_i, "case": current, "returncode": proc.returncode,
                                           "stderr": err.read()[-3000:],
                                           **({} if current is not None else
                                              {"note": "the worker died outside any case: a harness bug"})})
                    report.ran += 1
                    if log:
                        log(f"{kind}: CRASH (exit {proc.returncode}) in {json.dumps(current)[:500]}")
                elif finished and report.ran < count:
                    # Hypothesis ran out of distinct cases: nothing more to draw.
                    report.requested = report.ran
                    count = report.ran
                break
        err.close()
        restarts += 1
        if restarts > 50 and report.ran < count:
            report.crashes.append({"case": None, "returncode": None,
                                   "stderr": "gave up: more than 50 workers died or hung"})
            break
    report.seconds = time.monotonic() - start
    return report


def run_campaigns(counts, *, seed=0, timeout=60.0, log=None):
    """Run several campaigns in parallel, one worker each: ``{kind: count}`` -> ``{kind: Report}``."""
    reports = {}

    def one(kind):
        reports[kind] = run_campaign(kind, counts[kind], seed=seed, timeout=timeout, log=log)
    threads = [threading.Thread(target=one, args=(kind,)) for kind in counts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return reports


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python build.py bench fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--synth", type=int, default=1000, help="synthesize cases (default 1000)")
    parser.add_argument("--propagate", type=int, default=200, help="propagate cases (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a case counts as a hang")
    parser.add_argument("--json", metavar="PATH", help="also write the full report as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        # The protocol gets the original stdout; anything else printed goes to stderr.
        protocol = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
        worker(args.worker, args.count, args.seed, protocol, offset=args.offset)
        return 0

    def log(message):
        print(message, flush=True)
    counts = {k: n for k, n in (("synth", args.synth), ("propagate", args.propagate)) if n > 0}
    reports = run_campaigns(counts, seed=args.seed, timeout=args.timeout, log=log)
    print()
    total = sum(r.ran for r in reports.values())
    failures = sum(r.failures for r in reports.values())
    for r in reports.values():
        print(r.summary())
    print(f"total: {total} cases ran, {sum(len(r.crashes) for r in reports.values())} crashes, "
          f"{sum(len(r.hangs) for r in reports.values())} hangs, "
          f"{sum(len(r.errors) for r in reports.values())} other errors")
    for r in reports.values():
        for what in ("crashes", "hangs", "errors"):
            for item in getattr(r, what):
                print(f"\n{r.kind} {what[:-1] if what != 'crashes' else 'crash'}: "
                      f"{json.dumps(item, default=str)[:3000]}")
    if args.json:
        Path(args.json).write_text(json.dumps({k: r.__dict__ for k, r in reports.items()}, indent=1, default=str))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
