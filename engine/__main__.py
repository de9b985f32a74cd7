"""Command line of the Kar-Wai engine: ``python -m engine SUBCOMMAND ...``.

Each subcommand lives in its own module exposing ``add_<name>_parser(subparsers)``
and ``run_<name>(args) -> int``; this file only wires them together.

Ctrl-C at any moment, even while the modules are still being imported, ends in
one line on stderr and exit status 130, never a traceback.
"""

import sys

if __name__ == "__main__":
    # Before even the interrupts module is imported (compiling it can take a moment on a
    # busy machine): a Ctrl-C in that window is one line too, not a traceback.
    def _early_hook(kind, value, tb, _default=sys.excepthook):
        if issubclass(kind, KeyboardInterrupt):
            import os

            print("\npython -m engine: interrupted", file=sys.stderr, flush=True)
            os._exit(130)
        _default(kind, value, tb)

    sys.excepthook = _early_hook

from .interrupts import caused_by_interrupt, ignore_further, install, seen  # noqa: E402

_INTERRUPTED = 130


def _interrupted(prog="python -m engine"):
    """Say it once, ignore further Ctrl-C while leaving, and give the status."""
    ignore_further()
    print(f"\n{prog}: interrupted", file=sys.stderr)
    return _INTERRUPTED


if __name__ == "__main__":
    # First of all, before anything slow is imported: a Ctrl-C at any moment from
    # here on ends in one line, even one that escapes main() or that a library
    # turned into another error.
    install()

    def _excepthook(kind, value, tb, _default=sys.excepthook):
        if issubclass(kind, KeyboardInterrupt) or caused_by_interrupt(value):
            import os

            _interrupted()
            sys.stderr.flush()
            os._exit(_INTERRUPTED)
        _default(kind, value, tb)

    sys.excepthook = _excepthook

import argparse  # noqa: E402

from .cli_farm import add_plan_parser, add_run_task_parser  # noqa: E402
from .cli_propagate import add_propagate_parser, add_suggest_parser  # noqa: E402
from .cli_stylize import add_stylize_parser  # noqa: E402
from .cli_video import add_stylize_keys_parser, add_stylize_video_parser  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m engine", description="Kar-Wai video stylization engine")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    add_propagate_parser(subparsers)
    add_stylize_parser(subparsers)
    add_suggest_parser(subparsers)
    add_stylize_keys_parser(subparsers)
    add_stylize_video_parser(subparsers)
    add_plan_parser(subparsers)
    add_run_task_parser(subparsers)
    return parser


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except KeyboardInterrupt:
        return _interrupted()
    except MemoryError:
        print("python -m engine: error: out of memory", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the last net: one line, not a traceback
        import os

        if caused_by_interrupt(exc):  # e.g. numpy turns a Ctrl-C during its import into an ImportError
            return _interrupted()
        if os.environ.get("KARWAI_DEBUG"):
            raise
        text = " ".join(str(exc).split()) or "no message"
        print(f"python -m engine: error: internal error ({type(exc).__name__}: {text}); "
              "please report it, with KARWAI_DEBUG=1 set for the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":
    status = main()
    ignore_further()  # the work is done: a Ctrl-C while the interpreter shuts down changes nothing
    if seen():
        # A KeyboardInterrupt that went through C code run by an extension's import
        # leaves CPython's "unhandled interrupt" flag set, and the interpreter would
        # then end by killing itself with SIGINT whatever the status: leave directly.
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
