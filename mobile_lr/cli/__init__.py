"""The ``mobile-lr`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``; ``main`` wires them together.

There is one error path for refused input. Every way an input can be wrong ends
in one line on stderr and exit status 2 (under ``--json``: the object
``{"ok": false, "error": ..., "field": ...}`` on stdout as well), never in a
traceback: argument errors (argparse), ``ValueError`` (which includes every
:class:`mobile_lr.validation.ValidationError`: a bad spec, profile, policy,
bundle, checkpoint or data file), a missing optional dependency
(:class:`mobile_lr.extras.MissingExtraError`, which names the extra to install),
and the whole ``OSError`` family (a missing
or unreadable file, a directory where a file is expected or the reverse, a path
through a file, a name too long, a symlink loop, a full disk while writing
outputs). ``MemoryError`` and ``RecursionError`` get the same treatment as a last
line of defence (the readers bound sizes and depth, and the commands cap their
sizes first, naming the cap). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

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
    "mobile_lr.cli.budgets_cmd",
    "mobile_lr.cli.fleet_train_cmd",
]

EXIT_USAGE = 2


class UsageError(Exception):
    """An argument the parser refused (argparse's own message); ``prog`` names the (sub-)command."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse, with errors raised to :func:`main` (one error path) instead of exiting here."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mobile-lr",
        description="Battery-aware learning-rate schedules and on-device fine-tuning for phones.",
    )
    parser.add_argument("--version", action="version", version=f"mobile-lr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _describe(err: BaseException) -> tuple[str, str | None, dict[str, str]]:
    """(message, field, extra JSON keys) of a refused input."""
    from mobile_lr.validation import describe_os_error

    if isinstance(err, UsageError):
        found = re.search(r"argument ([^:\s]+)", str(err))
        return str(err), found.group(1) if found else None, {}
    if isinstance(err, OSError):
        return describe_os_error(err), None, {}
    if isinstance(err, MemoryError):
        return "out of memory: the input is too large for this machine", None, {}
    if isinstance(err, RecursionError):
        return "input nested too deeply", None, {}
    extra = {"file": err.file} if hasattr(err, "file") else {}
    return str(err), getattr(err, "field", None), extra


def one_line(message: str) -> str:
    """``message`` with every unprintable character escaped: a refusal is one line whatever the
    input holds (a file named ``a\nb.json`` split it in two; an ANSI escape in a name would have
    reached the terminal)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


# Noise to a user, about code not theirs, each with an install path: torchao (which ExecuTorch and
# transformers import) warns that its CUDA-only kernels do not load on a CPU build, and torch logs a
# deprecation note each time torchao registers an Enum as a pytree constant
_QUIET_LOGGERS = ("torchao", "torch.utils._pytree")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    args = None
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except (UsageError, ValueError, OSError, MemoryError, RecursionError, MissingExtraError) as err:
        message, field, extra = _describe(err)
        message = one_line(message)
        command = getattr(args, "command", None)
        prog = err.prog if isinstance(err, UsageError) else f"mobile-lr{' ' + command if command else ''}"
        print(f"{prog}: error: {message}", file=sys.stderr)
        if getattr(args, "json", False) if args is not None else "--json" in argv:
            from mobile_lr.cli.output import print_json, refusal

            print_json(refusal(message, field, **extra))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("mobile-lr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
