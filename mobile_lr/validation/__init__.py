"""Field-level validation shared by every file format mobile-lr reads.

Schedule specs, device profiles, policies, scenarios and bundle manifests all
come from files a person wrote or a phone downloaded. A bad one must be refused
with an error that names the field (as a dotted path such as
``shape.milestones[2]``) and says what is allowed, never with a traceback from
deep inside the math. This module is a leaf: it imports nothing of ours, so the
pure schedule math may use it without pulling in anything else.

Files. Every file mobile-lr reads on a user's behalf (schedule specs, device profiles,
policies, scenarios, bundle manifests) goes through :func:`read_bytes` and
:func:`parse_json`, so each of them refuses the same things with one clear
:class:`~mobile_lr.validation.ValidationError` instead of a traceback or a hang:

* a path that is not a regular file: a FIFO (opening it for reading would block
  until a writer comes), a device, a directory; it is opened non-blocking and
  checked with ``fstat`` on the open descriptor, so nothing can swap it between
  check and read;
* a file larger than the bound of its kind (the bound is in the message), read
  at most ``limit + 1`` bytes so a pseudo-file that claims size 0 (``/proc``)
  cannot grow without bound either;
* every ``OSError`` while opening or reading (permission denied, a symlink loop,
  a path through a file, a name too long, an I/O error of a process-memory
  pseudo-file), reported with its reason;
* JSON that Python's own reader refuses, plus: duplicate keys (a second value
  would silently win), nesting deeper than :data:`MAX_DEPTH`, integers outside
  the signed 64-bit range (the Kotlin core reads integers as ``Long``), and text
  that is not UTF-8.

``NaN``/``Infinity`` literals stay readable (Python's ``json`` reads them, and
the golden vectors carry refused specs that contain them); every numeric field
refuses non-finite values itself.

>>> parse_json('{"a": [1, 2.5, "x"]}', "spec")
{'a': [1, 2.5, 'x']}
>>> parse_json('{"a": 1, "a": 2}', "spec")
Traceback (most recent call last):
...
mobile_lr.validation.ValidationError: spec: duplicate key 'a' in a JSON object; allowed: each key once
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "INT_LIMIT",
    "MAX_DEPTH",
    "MAX_JSON_BYTES",
    "MAX_SEED",
    "ValidationError",
    "check_bool",
    "check_fields",
    "check_keys",
    "check_list",
    "check_text",
    "check_zip_members",
    "describe_os_error",
    "get_bool",
    "get_choice",
    "get_int",
    "get_number",
    "get_object",
    "parse_json",
    "read_bytes",
    "read_json",
]


INT_LIMIT = 2**63 - 1  # the largest integer any field accepts (the Kotlin core reads integers as Long)


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
    try:
        x = float(value)
    except OverflowError:  # an integer beyond the float range (e.g. 401 digits)
        raise ValidationError(field, f"{_short_repr(value)} is out of range", allowed) from None
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


def _short_repr(value: Any) -> str:
    """``repr`` of a value for a message; an integer of many digits is described, not printed."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT:
        return f"an integer of {len(str(abs(value)))} digits"
    return repr(value)


def check_int(value: Any, field: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """An integer within [lo, hi]; integral floats are accepted. Every integer is also within the
    signed 64-bit range (the Kotlin core's ``Long``), so no step count overflows later."""
    allowed = (f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]") \
        if lo is not None else "an integer"
    if isinstance(value, bool):
        raise ValidationError(field, f"expected an integer, got {value!r}", allowed)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ValidationError(field, f"expected an integer, got {value!r}", allowed)
    if abs(value) > INT_LIMIT:
        raise ValidationError(field, f"{_short_repr(value)} is out of range",
                              f"{allowed} (64-bit: |n| <= 2**63 - 1)")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValidationError(field, f"{value!r} is out of range", allowed)
    return value


def get_bool(obj: Mapping[str, Any], key: str, path: str, *, default: Any = ...) -> bool:
    field = join(path, key)
    if key not in obj:
        if default is ...:
            raise ValidationError(field, "missing required field")
        return default
    return check_bool(obj[key], field)


def check_bool(value: Any, field: str) -> bool:
    """``true`` or ``false``: 0 and 1 are refused (a typo, not a decision)."""
    if not isinstance(value, bool):
        raise ValidationError(field, f"expected true or false, got {_short_repr(value)}", "true, false")
    return value


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


def check_text(value: Any, field: str) -> str:
    """A string (a saved reason, phase or name; what it may say is checked where it is used)."""
    if not isinstance(value, str):
        raise ValidationError(field, f"expected a string, got {_short_repr(value)}", "a string")
    return value


def check_list(value: Any, field: str, item: Callable[[Any, str], Any], *,
               length: int | None = None) -> list[Any]:
    """A JSON array, each element checked by ``item(element, "field[i]")``; ``length``: exactly
    that many elements (a ``[step, total]`` pair)."""
    if not isinstance(value, list):
        raise ValidationError(field, f"expected an array, got {type(value).__name__}",
                              "a JSON array" if length is None else f"an array of {length}")
    if length is not None and len(value) != length:
        raise ValidationError(field, f"expected {length} elements, got {len(value)}",
                              f"an array of {length}")
    return [item(x, join(field, i)) for i, x in enumerate(value)]


def check_fields(value: Any, path: str, fields: Mapping[str, Callable[[Any, str], Any]],
                 optional: Iterable[str] = ()) -> dict[str, Any]:
    """An object with exactly ``fields`` (those in ``optional`` may be absent), each value
    checked by its function: the keyword arguments of a saved record (``Rollback(**...)``), so
    a wrong key or type is a :class:`ValidationError`, not a ``TypeError`` from the call."""
    obj = get_object(value, path)
    optional = set(optional)
    check_keys(obj, path, fields, [k for k in fields if k not in optional])
    return {k: check(obj[k], join(path, k)) for k, check in fields.items() if k in obj}


# --------------------------------------------------------------------------- files

MAX_SEED = 2**32 - 1  # every random generator here takes it (numpy's legacy RandomState the narrowest)
MAX_JSON_BYTES = 16 << 20  # 16 MiB: the largest spec, profile, scenario or manifest is a few kB
MAX_DEPTH = 64  # JSON nesting; the deepest file mobile-lr writes is 6 levels


def _size_text(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n:,} bytes"


def describe_os_error(err: OSError) -> str:
    """One line for an ``OSError``: its reason, and the path when it has one."""
    reason = err.strerror or (errno.errorcode.get(err.errno or 0) if err.errno else None) or str(err) \
        or type(err).__name__
    where = err.filename if err.filename is not None else None
    return f"{reason}: {where}" if where is not None else reason


def _shown(path: str) -> str:
    name = Path(path).name or path
    return name if len(name) <= 80 else f"{name[:60]}...({len(name)} characters)"


def read_bytes(path: str | os.PathLike[str], field: str, limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or a :class:`ValidationError`."""
    name = os.fspath(path)
    shown = _shown(name)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise ValidationError(field, f"cannot open {shown} ({err.strerror or err})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValidationError(field, f"{shown} is not a regular file (a directory, FIFO, socket or "
                                         "device)", "a regular file")
        bound = f"at most {_size_text(limit)}"
        if st.st_size > limit:
            raise ValidationError(field, f"{shown} is {st.st_size:,} bytes, over the bound of "
                                         f"{_size_text(limit)}", bound)
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise ValidationError(field, f"{shown} grew over the bound of {_size_text(limit)} while "
                                         "being read", bound)
        return b"".join(chunks)
    except OSError as err:
        raise ValidationError(field, f"cannot read {shown} ({err.strerror or err})") from None
    finally:
        os.close(fd)


def _pairs(field: str):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValidationError(field, f"duplicate key {key[:80]!r} in a JSON object", "each key once")
            out[key] = value
        return out
    return hook


def _parse_int(field: str):
    def parse(text: str) -> int:
        digits = len(text.lstrip("-"))
        if digits > 19 or not -INT_LIMIT - 1 <= int(text) <= INT_LIMIT:
            raise ValidationError(field, f"integer of {digits} digits is outside the 64-bit range",
                                  "integers in [-2**63, 2**63 - 1]")
        return int(text)
    return parse


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            if d > limit:
                return False
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return True


def parse_json(data: bytes | str, field: str) -> Any:
    """Strict JSON (see the module docstring); ``field`` names the input in the error."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValidationError(field, f"not UTF-8 text (byte {err.start})", "UTF-8 JSON") from None
    try:
        value = json.loads(data, object_pairs_hook=_pairs(field), parse_int=_parse_int(field))
    except ValidationError:
        raise
    except RecursionError:
        raise ValidationError(field, f"JSON nested deeper than {MAX_DEPTH} levels",
                              f"at most {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as err:
        raise ValidationError(field, f"not valid JSON ({err.msg} at line {err.lineno} column {err.colno})",
                              "a JSON document") from None
    except ValueError as err:  # e.g. a number literal Python cannot convert
        raise ValidationError(field, f"not valid JSON ({err})", "a JSON document") from None
    if not _depth_ok(value, MAX_DEPTH):
        raise ValidationError(field, f"JSON nested deeper than {MAX_DEPTH} levels",
                              f"at most {MAX_DEPTH} levels")
    return value


def read_json(path: str | os.PathLike[str], field: str, limit: int = MAX_JSON_BYTES) -> Any:
    """:func:`read_bytes` then :func:`parse_json`."""
    return parse_json(read_bytes(path, field, limit), field)


def check_zip_members(path: str | os.PathLike[str], field: str, max_bytes: int,
                      member: re.Pattern[str], kind: str = ".npz") -> list[str]:
    """Names of a zip archive's members (e.g. an ``.npz``), refused before anything is inflated when
    a member name does not fullmatch ``member``, appears twice, or the members inflate to more than
    ``max_bytes`` together (a small archive can inflate to gigabytes)."""
    name = _shown(os.fspath(path))
    read_bytes_bound = f"at most {_size_text(max_bytes)}"
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ValidationError(field, f"{name} is not a regular file", "a regular file")
        if st.st_size > max_bytes:
            raise ValidationError(field, f"{name} is {st.st_size:,} bytes, over the bound of "
                                         f"{_size_text(max_bytes)}", read_bytes_bound)
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except OSError as err:
        raise ValidationError(field, f"cannot read {name} ({err.strerror or err})") from None
    except (zipfile.BadZipFile, EOFError, ValueError) as err:
        raise ValidationError(field, f"{name} is not a readable {kind} ({err})") from None
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise ValidationError(field, f"{name}: an archive member appears twice")
    for n in names:
        if not member.fullmatch(n):
            raise ValidationError(field, f"{name}: unknown archive member {n[:80]!r}")
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
        raise ValidationError(field, f"{name} inflates to {total:,} bytes, over the bound of "
                                     f"{_size_text(max_bytes)}", read_bytes_bound)
    try:
        with zipfile.ZipFile(path) as zf:
            for info in infos:
                if info.filename.endswith(".npy"):
                    _npy_fits(zf, info, field, name)
    except OSError as err:
        raise ValidationError(field, f"cannot read {name} ({err.strerror or err})") from None
    except (zipfile.BadZipFile, EOFError) as err:
        raise ValidationError(field, f"{name} is not a readable {kind} ({err})") from None
    return names


def _npy_fits(zf: zipfile.ZipFile, info: zipfile.ZipInfo, field: str, name: str) -> None:
    """Refuse an ``.npy`` member whose header declares more data than the member holds: numpy
    allocates the declared shape before it reads (a 200-byte member claiming 10^12 x 64 floats
    was a ``MemoryError``; one claiming a few GiB really takes them)."""
    from numpy.lib import format as npy  # (numpy, not ours: the module stays a leaf)

    with zf.open(info) as f:
        try:
            version = npy.read_magic(f)
            read = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f"unsupported .npy version {version}")
            shape, _, dtype = read(f)
        except ValueError as err:
            raise ValidationError(field, f"{name}: member {info.filename!r} has a bad .npy header "
                                         f"({str(err)[:120]})") from None
    need = math.prod(shape) * dtype.itemsize
    if need > info.file_size:
        raise ValidationError(field, f"{name}: member {info.filename!r} declares shape "
                                     f"{str(shape)[:80]} ({need:,} bytes) in {info.file_size:,} bytes",
                              "arrays whose data is in the file")
