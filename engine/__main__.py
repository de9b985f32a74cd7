"""Command line of the Kar-Wai engine: ``python -m engine SUBCOMMAND ...``.

Each subcommand lives in its own module exposing ``add_<name>_parser(subparsers)``
and ``run_<name>(args) -> int``; this file only wires them together.
"""

import argparse
import sys

from .cli_farm import add_plan_parser, add_run_task_parser
from .cli_propagate import add_propagate_parser, add_suggest_parser
from .cli_stylize import add_stylize_parser


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m engine", description="Kar-Wai video stylization engine")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    add_propagate_parser(subparsers)
    add_stylize_parser(subparsers)
    add_suggest_parser(subparsers)
    add_plan_parser(subparsers)
    add_run_task_parser(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
