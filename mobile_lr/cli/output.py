"""What every command prints: JSON that is JSON, and one refusal format.

``json.dumps`` writes ``NaN`` and ``Infinity`` for non-finite floats, which no
JSON reader but Python's accepts (a diverged run's loss, a growth schedule's LR
at its limit); :func:`print_json` writes them as ``null``. :func:`refusal` is
the object a command prints under ``--json`` when it refuses its input
(``{"ok": false, "error": ..., "field": ...}``, exit status 2), so a script
reads the same shape from every command.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from mobile_lr.validation import MAX_SEED, ValidationError

__all__ = ["finite", "out_dir", "out_file", "print_json", "refusal", "seed"]


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (numpy scalars and arrays included)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # numpy scalar or array
        return finite(obj.tolist())
    return obj


def print_json(obj: Any, *, indent: int | None = None, default: Any = None) -> None:
    """Print ``obj`` as standard JSON (non-finite numbers as ``null``) on stdout."""
    if default is not None:
        obj = json.loads(json.dumps(obj, default=default))
    sys.stdout.write(json.dumps(finite(obj), indent=indent, allow_nan=False) + "\n")


def refusal(error: str, field: str | None, **extra: Any) -> dict[str, Any]:
    """The ``--json`` form of a refused input."""
    return {"ok": False, "error": error, "field": field, **extra}


def out_dir(path: Path, field: str = "--out") -> Path:
    """A directory to write into (created with its parents); refuses a path that is a file."""
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise ValidationError(field, f"{p} exists and is not a directory", "a directory path")
    path.mkdir(parents=True, exist_ok=True)
    return path


def out_file(path: Path, field: str = "--out") -> Path:
    """A file to write (its directory created); refuses a directory or a path through a file."""
    if path.is_dir():
        raise ValidationError(field, f"{path} is a directory", "a file path")
    out_dir(path.parent, field)
    return path


def seed(text: str) -> int:
    """The argparse type of every ``--seed``: an integer in ``[0, 2**32 - 1]``, what every random
    generator here takes (numpy's legacy ``RandomState`` the narrowest). ``--seed -1`` reached
    numpy as "expected non-negative integer", a line that named no option."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text[:40]!r}; allowed: an integer in "
                                         f"[0, {MAX_SEED}]") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{str(value)[:40]} is out of range; allowed: an integer in "
                                         f"[0, {MAX_SEED}]")
    return value
