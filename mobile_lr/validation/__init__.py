"""Field-level validation shared by every file format mobile-lr reads.

Schedule specs, device profiles, policies, scenarios and bundle manifests all
come from files a person wrote or a phone downloaded. A bad one must be refused
with an error that names the field (as a dotted path such as
``shape.milestones[2]``) and says what is allowed, never with a traceback from
deep inside the math. This module is a leaf: it imports nothing of ours, so the
pure schedule math may use it without pulling in anything else.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "ValidationError",
    "check_keys",
    "get_bool",
    "get_choice",
    "get_int",
    "get_number",
    "get_object",
]


class ValidationError(ValueError):
    """A value read from a file is not allowed.

    ``field`` is the dotted path of the offending value and ``allowed`` a short
    description of what would have been accepted. ``str(err)`` reads as
    ``"<field>: <problem>; allowed: <allowed>"`` so a CLI can print it as is.
    """

    def __init__(self, field: str, problem: str, allowed: str | None = None):
        self.field = field
        self.problem = problem
        self.allowed = allowed
        msg = f"{field}: {problem}"
        if allowed:
            msg += f"; allowed: {allowed}"
        super().__init__(msg)


def join(path: str, key: str | int) -> str:
    """Extend a dotted field path: ``join("shape", "gamma") == "shape.gamma"``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def get_object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(path or "<root>", f"expected an object, got {type(value).__name__}",
                              "a JSON object")
    return value


def check_keys(obj: Mapping[str, Any], path: str, allowed: Iterable[str],
               required: Iterable[str] = ()) -> None:
    """Refuse unknown keys (typos must not be silently ignored) and missing ones."""
    allowed = list(allowed)
    for key in obj:
        if key not in allowed:
            raise ValidationError(join(path, key), "unknown field",
                                  ", ".join(sorted(allowed)) or "no fields")
    for key in required:
        if key not in obj:
            raise ValidationError(join(path, key), "missing required field")


def get_number(obj: Mapping[str, Any], key: str, path: str, *, default: Any = ...,
               lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite real number within [lo, hi] (or open bounds). Booleans are refused."""
    field = join(path, key)
    if key not in obj:
        if default is ...:
            raise ValidationError(field, "missing required field")
        return default
    return check_number(obj[key], field, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open)


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"
    return (f"a finite number in {left}{'-inf' if lo is None else lo}, "
            f"{'inf' if hi is None else hi}{right}")


def check_number(value: Any, field: str, *, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False) -> float:
    allowed = _interval(lo, hi, lo_open, hi_open)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(field, f"expected a number, got {value!r}", allowed)
    x = float(value)
    if not math.isfinite(x):
        raise ValidationError(field, f"{value!r} is not finite", allowed)
    if lo is not None and (x < lo or (lo_open and x == lo)):
        raise ValidationError(field, f"{value!r} is out of range", allowed)
    if hi is not None and (x > hi or (hi_open and x == hi)):
        raise ValidationError(field, f"{value!r} is out of range", allowed)
    return x


def get_int(obj: Mapping[str, Any], key: str, path: str, *, default: Any = ...,
            lo: int | None = None, hi: int | None = None) -> int:
    field = join(path, key)
    if key not in obj:
        if default is ...:
            raise ValidationError(field, "missing required field")
        return default
    return check_int(obj[key], field, lo=lo, hi=hi)


def check_int(value: Any, field: str, *, lo: int | None = None, hi: int | None = None) -> int:
    allowed = (f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]") \
        if lo is not None else "an integer"
    if isinstance(value, bool):
        raise ValidationError(field, f"expected an integer, got {value!r}", allowed)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ValidationError(field, f"expected an integer, got {value!r}", allowed)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValidationError(field, f"{value!r} is out of range", allowed)
    return value


def get_bool(obj: Mapping[str, Any], key: str, path: str, *, default: Any = ...) -> bool:
    field = join(path, key)
    if key not in obj:
        if default is ...:
            raise ValidationError(field, "missing required field")
        return default
    if not isinstance(obj[key], bool):
        raise ValidationError(field, f"expected true or false, got {obj[key]!r}", "true, false")
    return obj[key]


def get_choice(obj: Mapping[str, Any], key: str, path: str, choices: Iterable[str], *,
               default: Any = ...) -> str:
    field = join(path, key)
    choices = list(choices)
    if key not in obj:
        if default is ...:
            raise ValidationError(field, "missing required field", ", ".join(choices))
        return default
    if obj[key] not in choices:
        raise ValidationError(field, f"unknown value {obj[key]!r}", ", ".join(choices))
    return obj[key]
