"""The ``mobile-lr`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``; ``main`` wires them together. Errors in user input
(``ValueError``, which includes :class:`mobile_lr.validation.ValidationError`,
and missing files) and a missing optional dependency (:class:`mobile_lr.extras.MissingExtraError`,
which names the extra to install) print one clear line to stderr and exit with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mobile_lr import __version__
from mobile_lr.extras import MissingExtraError

# Sub-command modules, in the order `mobile-lr --help` lists them.
COMMAND_MODULES = [
    "mobile_lr.cli.schedule_cmd",
    "mobile_lr.cli.plan_cmd",
    "mobile_lr.cli.export_cmd",
    "mobile_lr.cli.simulate_cmd",
    "mobile_lr.cli.demo_cmd",
    "mobile_lr.cli.lr_find_cmd",
    "mobile_lr.cli.fleet_cmd",
    "mobile_lr.cli.fleet_train_cmd",
]

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobile-lr",
        description="Battery-aware learning-rate schedules and on-device fine-tuning for phones.",
    )
    parser.add_argument("--version", action="version", version=f"mobile-lr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, IsADirectoryError, MissingExtraError) as err:
        print(f"mobile-lr {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
