"""``python -m engine stylize``: stylize one keyframe from the command line.

::

    python -m engine stylize FRAME --method M [--style-image ART] [--param k=v ...] --out OUT.png

The main CLI (``engine/__main__.py``) adds the subcommand with
:func:`add_stylize_parser` and runs it with :func:`run_stylize`. User errors
(missing or unreadable files, unknown or bad parameters, missing weights) end
with a one-line message on stderr and exit status 1; a cancelled run (Ctrl-C)
exits with 130.
"""

from __future__ import annotations

import os
import sys

__all__ = ["add_stylize_parser", "run_stylize"]

_NEEDS_STYLE_IMAGE = ("neural", "image")


def add_stylize_parser(subparsers):
    """Add the ``stylize`` subcommand to an ``argparse`` subparsers object.

    Returns the new parser; its ``func`` default is :func:`run_stylize`.
    """
    from .stylizers import METHODS

    p = subparsers.add_parser(
        "stylize",
        help="stylize one keyframe (neural style, Deep Dream, painterly filter, painted image)",
        description=(
            "Stylize one keyframe. Methods: neural (style of --style-image, VGG19), deepdream, "
            "painterly (--param filter=watercolour|oil|pencil|ink|cartoon), image (the painted "
            "key --style-image fitted to the frame). Method parameters are given as "
            "--param name=value, lists comma-separated."
        ),
    )
    p.add_argument("frame", metavar="FRAME", help="the frame to stylize (an image file)")
    p.add_argument("--method", required=True, choices=METHODS, help="stylization method")
    p.add_argument("--style-image", metavar="ART", default=None,
                   help="artwork for 'neural', painted keyframe for 'image'")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a method parameter, e.g. iterations=300 or filter=oil (repeatable)")
    p.add_argument("--out", required=True, metavar="OUT.png", help="output image (.png or .jpg)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_stylize)
    return p


def _one_line(exc):
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class _Bar:
    """A tqdm bar opened on the first progress report (when the total is known)."""

    def __init__(self, desc, disable):
        self.desc = desc
        self.disable = disable
        self.bar = None

    def __call__(self, step, total, loss):
        if self.disable:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit="it", file=sys.stderr, leave=True)
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _parse_params(method, items):
    from .stylizers import parse_param

    pairs = []
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--param {item!r}: expected NAME=VALUE")
        pairs.append((name, text))
    filt = next((text for name, text in pairs if name == "filter"), None) if method == "painterly" else None
    params = {}
    for name, text in pairs:
        if name in ("style_image",):
            raise ValueError("give the style image with --style-image ART, not --param")
        if name in params:
            raise ValueError(f"--param {name} given twice")
        params[name] = parse_param(method, name, text, filter=filt)
    return params


def _check_out(path):
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".png", ".jpg", ".jpeg"):
        raise ValueError(f"--out {path!r}: the output must be a .png (or .jpg) file")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"--out {path!r}: folder '{folder}' does not exist")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise ValueError(f"--out {path!r}: exists and is not a regular file (a folder, FIFO or device)")


def _weights_read(method, items):
    """The VGG19 weights file a torch method would read (for the path checks), or None.

    Read from the raw ``--param`` items: the paths are checked before the parameters
    are parsed, which for a torch method needs torch itself."""
    from .stylizers import available_methods

    info = available_methods()[method]
    if not info.needs_torch:
        return None
    given = [text for name, _, text in (i.partition("=") for i in items) if name.strip() == "weights"]
    if given:
        return given[-1]
    if not info.available:
        return None
    from .stylizers.vgg import hub_weights_path

    return hub_weights_path()


def _check_paths(args):
    """Refuse an --out that is (or is a link to) the frame, the style image or the weights."""
    from .safety import check_clashes

    reads = [("the frame", args.frame, os.path.isdir(args.frame)),
             ("the style image (--style-image)", args.style_image, False),
             ("the VGG19 weights", _weights_read(args.method, args.param), False)]
    check_clashes(reads, [("--out", args.out, False)])


def run_stylize(args):
    """Run the ``stylize`` subcommand for parsed ``args``; returns the exit status."""
    from .frames import read_image, remove_stale_temp_files, write_frame_atomic
    from .interrupts import caused_by_interrupt
    from .stylizers import Cancelled, stylize

    bar = _Bar(args.method, disable=getattr(args, "quiet", False))
    try:
        _check_out(args.out)
        _check_paths(args)  # before anything else can fail: a clash is the first thing to say
        params = _parse_params(args.method, args.param)
        if args.style_image is not None:
            if args.method not in _NEEDS_STYLE_IMAGE:
                raise ValueError(f"--style-image is not used by method '{args.method}'")
            if not os.path.exists(args.style_image):
                raise ValueError(f"--style-image: file not found: '{args.style_image}'")
            params["style_image"] = args.style_image
        elif args.method in _NEEDS_STYLE_IMAGE:
            raise ValueError(f"method '{args.method}' needs --style-image ART")
        if args.out.lower().endswith((".jpg", ".jpeg")) and args.method == "image":
            params.setdefault("alpha", "composite")
        frame = read_image(args.frame, alpha=False)
        result = stylize(frame, method=args.method, progress=bar, **params)
        bar.close()
        # A killed earlier run may have left its temporary file beside the output.
        remove_stale_temp_files(os.path.dirname(os.path.abspath(args.out)), name=os.path.basename(args.out))
        write_frame_atomic(args.out, result)
    except (Cancelled, KeyboardInterrupt):
        bar.close()
        print("stylize: cancelled", file=sys.stderr)
        return 130
    except (ValueError, OSError, ImportError) as exc:
        bar.close()
        if caused_by_interrupt(exc):  # a Ctrl-C that a library (torch, numpy) reported as its own error
            print("stylize: cancelled", file=sys.stderr)
            return 130
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    if not getattr(args, "quiet", False):
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
