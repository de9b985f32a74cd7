"""``python -m engine stylize-keys`` and ``python -m engine stylize-video``.

::

    python -m engine stylize-keys FRAMES --keys 1,20,40 --method neural --style-image ART --out DIR
        [--anchor N] [--independent] [--param name=value ...]
    python -m engine stylize-video FRAMES --method neural-video|fast-network --style-image ART --out DIR
        [--mask MASK] [--param name=value ...]

User errors end with a one-line message on stderr and exit status 1; Ctrl-C
exits with 130, leaves only complete files, and a re-run resumes.
"""

from __future__ import annotations

import os
import sys
import threading

from .cli_propagate import _FRAME_NUMBER
from .cli_stylize import _one_line

__all__ = ["add_stylize_keys_parser", "run_stylize_keys", "add_stylize_video_parser", "run_stylize_video"]


def add_stylize_keys_parser(subparsers):
    from .stylizers import METHODS

    p = subparsers.add_parser(
        "stylize-keys", help="stylize several keyframes of a shot so that they agree",
        description="Stylize several keyframes of a shot. With neural and deepdream the keys are made to "
                    "agree: each key after the anchor starts from its neighbour's result warped by the "
                    "optical flow and is held to it where the motion is known. One PNG per key is written "
                    "into --out, named like the source frame, ready for 'propagate --key N=FILE'.")
    p.add_argument("frames", metavar="FRAMES_DIR_OR_VIDEO")
    p.add_argument("--keys", required=True, metavar="N,N,...", help="frame numbers of the keys, e.g. 1,20,40")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--style-image", metavar="ART", default=None,
                   help="artwork for 'neural', painted picture for 'image'")
    p.add_argument("--anchor", type=_frame_number, default=None, metavar="N",
                   help="the key stylized first; the others follow it (default: the first key)")
    p.add_argument("--independent", action="store_true",
                   help="stylize each key on its own (keys will disagree)")
    p.add_argument("--temporal-weight", type=float, default=None, metavar="W",
                   help="how strongly a key is held to its warped neighbour (default 1000)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a method parameter, e.g. iterations=300 (repeatable)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_stylize_keys)
    return p


def add_stylize_video_parser(subparsers):
    from .stylizers.video import VIDEO_METHODS

    p = subparsers.add_parser(
        "stylize-video", help="stylize every frame with a stable neural method (neural-video, fast-network)",
        description="Stylize every frame of a clip. neural-video: Gatys optimisation of every frame with a "
                    "temporal loss towards the previous output warped by the optical flow (Ruder et al.). "
                    "fast-network: train a feed-forward network for the style on the shot with a stability "
                    "loss (Johnson et al., Gupta et al.) and run it on every frame. Parameters as "
                    "--param name=value (e.g. iterations=200, temporal_weight=1000, passes=2, long_term=2,5; "
                    "steps=1000, width=32, stability_weight=300, model=net.pt). A re-run resumes.")
    p.add_argument("frames", metavar="FRAMES_DIR_OR_VIDEO")
    p.add_argument("--method", required=True, choices=VIDEO_METHODS)
    p.add_argument("--style-image", required=True, metavar="ART", help="the artwork")
    p.add_argument("--mask", metavar="MASK", help="a mask image or folder of masks: only the masked region "
                                                  "is stylized, the output is RGBA")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a method parameter (repeatable)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_stylize_video)
    return p


def _pairs(items):
    pairs = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--param {item!r}: expected NAME=VALUE")
        if name == "style_image":
            raise ValueError("give the style image with --style-image ART, not --param")
        if name in pairs:
            raise ValueError(f"--param {name} given twice")
        pairs[name] = text
    return pairs


def _frame_number(text):
    """A frame number for argparse: plain decimal digits (``int`` would take "1_0" as 10)."""
    import argparse

    if not _FRAME_NUMBER.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a frame number (plain decimal digits)")
    return int(text)


def _parse_keys(text):
    numbers = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not _FRAME_NUMBER.fullmatch(part):  # int() would also take "1_0" (10), "+5" and other digits
            raise ValueError(f"--keys {text!r}: {part!r} is not a frame number (plain decimal digits)")
        numbers.append(int(part))
    if not numbers:
        raise ValueError("--keys: give at least one frame number, e.g. --keys 1,20,40")
    return numbers


def _check_style(path, needed, method):
    if path is None:
        if needed:
            raise ValueError(f"method '{method}' needs --style-image ART")
        return None
    if not os.path.isfile(path):
        problem = "not a regular file" if os.path.exists(path) else "file not found"
        raise ValueError(f"--style-image: {problem}: '{path}'")
    return path


class _FrameBar:
    """A tqdm bar over frames (fractions inside a frame), opened on the first report."""

    def __init__(self, desc, disable):
        self.desc, self.disable, self.bar = desc, disable, None

    def __call__(self, done, total, message=""):
        if self.disable:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit="frame", file=sys.stderr,
                            bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} [{elapsed}<{remaining}] {postfix}")
        self.bar.n = min(float(done), float(total))
        self.bar.set_postfix_str(str(message)[:60], refresh=False)
        self.bar.update(0)  # redraws at most every mininterval

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _check_keys_paths(source, out, style, weights):
    """The output folder against the frames, style image and weights (``..`` and links resolved)."""
    from .safety import check_clashes

    path = source.path
    reads = [("the source folder" if os.path.isdir(path) else "the source video", path, os.path.isdir(path))]
    if hasattr(source, "path_for"):
        reads += [(f"source frame {n}", source.path_for(n), False) for n in source.frame_numbers]
    reads += [(what, p, False) for what, p in (("the style image", style), ("the VGG weights", weights))
              if isinstance(p, (str, os.PathLike))]
    check_clashes(reads, [("--out", out, True)])


def run_stylize_keys(args):
    from .frames import check_output_dir, open_frames, write_frame_atomic
    from .safety import new_folders, remove_new_folders
    from .stylizers import Cancelled, parse_param
    from .stylizers.keys import stylize_keys

    bar = _FrameBar("keys", disable=args.quiet)
    cancel = threading.Event()
    try:
        numbers = _parse_keys(args.keys)
        style = _check_style(args.style_image, args.method in ("neural", "image"), args.method)
        if style is not None and args.method not in ("neural", "image"):
            raise ValueError(f"--style-image is not used by method '{args.method}'")
        pairs = _pairs(args.param)
        filt = pairs.get("filter") if args.method == "painterly" else None
        params = {name: parse_param(args.method, name, text, filter=filt) for name, text in pairs.items()}
        if args.temporal_weight is not None:
            params["temporal_weight"] = args.temporal_weight
        source = open_frames(args.frames)
        source.validate()
        for n in numbers:
            if n not in source:
                raise ValueError(f"--keys: frame {n} is not in the clip (frames {source.first}..{source.last})")
        _check_keys_paths(source, args.out, style, params.get("weights"))
        made = new_folders(args.out)
        out = check_output_dir(args.out, source.path)
        try:
            keys = stylize_keys(source, numbers, method=args.method, style_image=style,
                                consistent=not args.independent, anchor=args.anchor, progress=bar,
                                cancel=cancel, **params)
        except BaseException:
            remove_new_folders(made)  # a refused or cancelled job leaves no empty output folder
            raise
        bar.close()
        for n, image in keys.items():
            write_frame_atomic(out / source.name_for(n), image)
    except (Cancelled, KeyboardInterrupt):
        bar.close()
        print("stylize-keys: cancelled", file=sys.stderr)
        return 130
    except (ValueError, OSError, ImportError) as exc:
        bar.close()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"wrote {len(keys)} key(s) into {out}", file=sys.stderr)
    return 0


def run_stylize_video(args):
    from .stylizers import Cancelled
    from .stylizers.video import parse_video_param, stylize_video

    bar = _FrameBar(args.method, disable=args.quiet)
    try:
        style = _check_style(args.style_image, True, args.method)
        params = {name: parse_video_param(args.method, name, text) for name, text in _pairs(args.param).items()}
        if args.mask is not None and not os.path.exists(args.mask):
            raise ValueError(f"--mask: no such file or folder: '{args.mask}'")
        result = stylize_video(args.frames, method=args.method, style_image=style, out=args.out,
                               masks=args.mask, progress=bar, **params)
        bar.close()
    except (Cancelled, KeyboardInterrupt):
        bar.close()
        print("stylize-video: cancelled; complete frames are kept and a re-run resumes", file=sys.stderr)
        return 130
    except (ValueError, OSError, ImportError) as exc:
        bar.close()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    if not args.quiet:
        extra = f", network {result.model}" if result.model is not None else ""
        print(f"wrote {result.computed} frame(s), kept {result.skipped}, into {result.out}{extra}",
              file=sys.stderr)
    return 0
