"""``python -m engine propagate`` and ``python -m engine suggest``.

::

    python -m engine propagate FRAMES_DIR_OR_VIDEO --key 1=key0001.png --key 40=key0040.png \\
        --out OUT_DIR [--mask DIR] [--quality draft|balanced|best] [--blend weighted|poisson|crossfade]
    python -m engine suggest FRAMES_DIR_OR_VIDEO

User errors (bad frames, keys, masks, folders or settings) end with a one-line
message on stderr and exit status 1, without a traceback; Ctrl-C exits with 130
and leaves only complete frames, and a re-run resumes.
"""

import re
import sys
import threading
import warnings

from .interrupts import caused_by_interrupt
from .settings import add_arguments as add_setting_arguments

__all__ = ["add_propagate_parser", "run_propagate", "add_suggest_parser", "run_suggest"]


def add_propagate_parser(subparsers):
    p = subparsers.add_parser(
        "propagate", help="carry stylized keyframes over every frame of a clip",
        description="Carry stylized keyframes over every frame of a clip (Ebsynth method). "
                    "Frames are numbered by the digits in their file names (0001.png is frame 1); "
                    "for a video, from 1.")
    add_job_arguments(p)
    p.add_argument("--dask", metavar="ADDRESS",
                   help="run the job's tasks on an existing Dask cluster, e.g. tcp://HOST:8786; the workers "
                        "must see OUT_DIR and the frames at the same paths (needs dask[distributed])")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_propagate)
    return p


def add_job_arguments(p, *, required=True):
    """The arguments that describe a job, shared by ``propagate`` and ``plan``."""
    from .stylizers import FRAME_METHODS as STYLIZED_METHODS

    p.add_argument("frames", metavar="FRAMES_DIR_OR_VIDEO", nargs=None if required else "?")
    p.add_argument("--key", action="append", default=[], metavar="N=IMAGE",
                   help="a stylized keyframe for frame N (repeatable; or --stylize-keys)")
    p.add_argument("--out", required=required, metavar="OUT_DIR")
    p.add_argument("--mask", metavar="DIR", help="folder of per-frame masks; output is RGBA")
    add_setting_arguments(p)
    p.add_argument("--cache-dir", metavar="DIR", help="flow cache and pass states (default OUT/.karwai-cache)")
    p.add_argument("--keep-cache", action="store_true",
                   help="keep the flow cache after a successful job, for re-runs with changed keys "
                        "(by default it is removed; an unfinished job always keeps what it needs to resume)")
    p.add_argument("--cache-limit-mb", type=float, default=1024.0, metavar="MB",
                   help="size cap of the flow cache; least recently used pairs are evicted (default 1024)")
    g = p.add_argument_group("keys the job stylizes", "Frames the job stylizes itself, one task per key (on a farm, "
                             "spread over the workers), besides any --key. With neural and deepdream the keys "
                             "agree, as with 'stylize-keys'.")
    g.add_argument("--stylize-keys", metavar="N,N,...", help="frame numbers of the keys to stylize, e.g. 1,41,81")
    g.add_argument("--method", choices=STYLIZED_METHODS, help="how they are stylized")
    g.add_argument("--style-image", metavar="ART", help="the artwork, for --method neural")
    g.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a parameter of the method, e.g. iterations=300 (repeatable)")
    g.add_argument("--anchor", type=int, metavar="N", help="the key stylized first (default the first)")
    g.add_argument("--independent", action="store_true", help="stylize each key on its own (keys will disagree)")
    g.add_argument("--key-temporal-weight", type=float, metavar="W",
                   help="how strongly a key is held to its warped neighbour (default 1000)")


def key_stylization(args):
    """The KeyStylization that ``--stylize-keys`` and its options describe, or None."""
    from .cli_video import _pairs, _parse_keys
    from .propagation import KeyStylization
    from .stylizers import FRAME_METHODS as STYLIZED_METHODS, parse_param

    given = [name for name in ("method", "style_image", "anchor", "key_temporal_weight") if getattr(args, name)
             is not None] + (["param"] if args.param else []) + (["independent"] if args.independent else [])
    if args.stylize_keys is None:
        if given:
            raise ValueError(f"--{given[0].replace('_', '-')} is for keys the job stylizes: give --stylize-keys")
        return None
    if args.method is None:
        raise ValueError("--stylize-keys needs --method (" + ", ".join(STYLIZED_METHODS) + ")")
    pairs = _pairs(args.param)
    filt = pairs.get("filter") if args.method == "painterly" else None
    try:
        params = {name: parse_param(args.method, name, text, filter=filt) for name, text in pairs.items()}
    except ImportError:  # the method needs torch, which only the workers must have: its own checks run there
        params = dict(pairs)
    if args.style_image is not None:
        params["style_image"] = args.style_image
    return KeyStylization(numbers=tuple(_parse_keys(args.stylize_keys)), method=args.method, params=params,
                          consistent=not args.independent, anchor=args.anchor,
                          temporal_weight=args.key_temporal_weight)


#: A frame number on the command line: plain decimal digits (a minus sign is
#: read, so that the error can say the frame is outside the clip). ``int()``
#: alone would also take "1_0", " 5", "+5" and other scripts' digits.
_FRAME_NUMBER = re.compile(r"-?[0-9]+", re.ASCII)


def parse_keys(items):
    keys = {}
    for item in items:
        number, sep, path = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--key {item!r}: expected N=IMAGE, e.g. --key 1=key0001.png")
        if not _FRAME_NUMBER.fullmatch(number):
            raise ValueError(f"--key {item!r}: frame number {number!r} is not an integer "
                             "(plain decimal digits, e.g. --key 12=key.png)")
        n = int(number)
        if n in keys:
            raise ValueError(f"--key: frame {n} is given twice")
        keys[n] = path
    return keys


def job_settings(args):
    """The JobSettings that the job arguments describe."""
    from .settings import from_arguments

    return from_arguments(args)


def run_propagate(args):
    from .frames import FrameError
    from .propagation import Cancelled, propagate

    bar = None
    cancel = threading.Event()
    try:
        keys = parse_keys(args.key)
        settings = job_settings(args)

        def progress(done, total, message):
            nonlocal bar
            if args.quiet:
                return
            if bar is None:
                from tqdm import tqdm
                bar = tqdm(total=total, unit="step", file=sys.stderr, desc="propagate")
            bar.update(done - bar.n)
            bar.set_postfix_str(message, refresh=True)

        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = lambda msg, *a, **k: print(f"warning: {msg}", file=sys.stderr)
            result = propagate(args.frames, keys, out=args.out, masks=args.mask, settings=settings,
                               progress=progress, cancel=cancel, cache_dir=args.cache_dir,
                               keep_cache=args.keep_cache, cache_limit_mb=args.cache_limit_mb, dask=args.dask,
                               stylize=key_stylization(args))
    except KeyboardInterrupt:
        print("\npropagate: interrupted; complete frames are kept, run again to resume", file=sys.stderr)
        return 130
    except Cancelled as exc:
        print(f"propagate: {exc}", file=sys.stderr)
        return 130
    except (FrameError, ValueError, OSError) as exc:
        if caused_by_interrupt(exc):
            print("\npropagate: interrupted; complete frames are kept, run again to resume", file=sys.stderr)
            return 130
        print(f"propagate: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    print(f"{len(result.frames)} frames in {result.out} ({result.computed} computed, "
          f"{result.skipped} kept from an earlier run) in {result.seconds:.1f} s")
    return 0


def add_suggest_parser(subparsers):
    p = subparsers.add_parser("suggest", help="propose keyframes (shot cuts, then motion and revealed content)")
    p.add_argument("frames", metavar="FRAMES_DIR_OR_VIDEO")
    p.set_defaults(func=run_suggest)
    return p


def run_suggest(args):
    from .frames import FrameError, open_frames
    from .keyframes import suggest_keyframes

    try:
        with open_frames(args.frames) as source:
            suggestions = suggest_keyframes(source)
    except KeyboardInterrupt:
        print("\nsuggest: interrupted", file=sys.stderr)
        return 130
    except (FrameError, ValueError, OSError) as exc:
        if caused_by_interrupt(exc):
            print("\nsuggest: interrupted", file=sys.stderr)
            return 130
        print(f"suggest: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    for s in suggestions:
        print(f"{s.frame}\t{s.reason}\t{s.value:.3g}")
    return 0
