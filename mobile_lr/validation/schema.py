"""Declare a file format once: each field's JSON name, bounds, allowed values, default and help.

A record is a dataclass deriving from :class:`Record` whose fields are made with
:func:`number`, :func:`integer`, :func:`boolean`, :func:`choice`, :func:`text`,
:func:`numbers`, :func:`nested`, :func:`records` or :func:`custom`. That one
declaration gives

* the constructor's validation: ``X(bad=...)`` raises the same
  :class:`~mobile_lr.validation.ValidationError` as ``X.from_dict({"bad": ...})``
  (fields named under the class's ``PATH``, or under ``from_dict``'s ``path``);
* :meth:`Record.from_dict`: unknown keys refused, missing ones named, nested
  objects (a dotted JSON name such as ``"battery.capacity_wh"`` puts a flat
  attribute inside a nested JSON object), the ``format`` tag;
* :meth:`Record.to_dict`, which :meth:`Record.from_dict` reads back to an equal record;
* :meth:`Record.json_schema`, a JSON Schema (draft 2020-12) of the same rules.

Rules that tie several fields together go into :meth:`Record.check`, which runs
after the fields are valid and raises with the JSON names of the fields.
The error wording is :mod:`mobile_lr.validation`'s, so Python and the Kotlin core
name the same field in the same words.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True, kw_only=True)
... class Battery(Record):
...     level: float = number(lo=0.0, hi=1.0, help="state of charge")
...     charging: bool = boolean(False, help="plugged in")
>>> Battery.from_dict({"level": 0.5})
Battery(level=0.5, charging=False)
>>> Battery(level=2)
Traceback (most recent call last):
...
mobile_lr.validation.ValidationError: level: 2 is out of range; allowed: a finite number in [0.0, 1.0]
>>> Battery.from_dict({"level": 0.5, "charge": True}, "start")
Traceback (most recent call last):
...
mobile_lr.validation.ValidationError: start.charge: unknown field; allowed: charging, level
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from . import ValidationError, _interval, check_int, check_keys, check_number, get_object, join

_R = TypeVar("_R", bound="Record")  # typing.Self is Python 3.11+

__all__ = [
    "NAME_ALLOWED",
    "NAME_PATTERN",
    "Decl",
    "Record",
    "boolean",
    "choice",
    "custom",
    "declarations",
    "integer",
    "is_required",
    "nested",
    "number",
    "numbers",
    "records",
    "text",
    "within",
]

REQUIRED: Any = dataclasses.MISSING
_META = "mobile_lr.schema"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def within(err: ValidationError, path: str) -> ValidationError:
    """The same error with its field moved under ``path`` (``"policy"`` + ``"window_s"``)."""
    if not path:
        return err
    field = path if err.field in ("", "<root>") else join(path, err.field)
    return ValidationError(field, err.problem, err.allowed)


@dataclasses.dataclass(frozen=True)
class Decl:
    """How one field is read, checked, written and described (made by :func:`number` etc.)."""

    kind: str
    help: str = ""
    key: str | None = None  # JSON name (dotted = inside nested objects); None: the attribute name
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    nullable: bool = False  # JSON null is a value (read and written as None)
    optional: bool = False  # the default is None: the key may be absent (null is refused unless nullable)
    choices: tuple[Any, ...] = ()
    record: type[Any] | None = None  # a Record, or any class with from_dict / to_dict
    length: int | None = None
    non_empty: bool = False
    pattern: str | None = None  # text: the whole value must match (Python's fullmatch, JSON Schema's ^...$)
    parse: Callable[[Any, str], Any] | None = None
    dump: Callable[[Any], Any] | None = None
    schema: Mapping[str, Any] | None = None
    tags: frozenset[str] = frozenset()

    # ---- checking
    def validate(self, value: Any, field: str, from_json: bool = False) -> Any:
        """The checked (and normalised: int -> float, list -> tuple) value, or an error naming ``field``.

        ``None`` passes where the field is nullable, and from the constructor where it is
        optional (its default); a JSON ``null`` for an optional field is refused as any wrong type.
        """
        if value is None and (self.nullable or (self.optional and not from_json)):
            return None
        check = getattr(self, f"_check_{self.kind}")
        return check(value, field)

    def _check_number(self, value: Any, field: str) -> float:
        return check_number(value, field, lo=self.lo, hi=self.hi, lo_open=self.lo_open,
                            hi_open=self.hi_open)

    def _check_integer(self, value: Any, field: str) -> int:
        return check_int(value, field, lo=_int_or_none(self.lo), hi=_int_or_none(self.hi))

    def _check_boolean(self, value: Any, field: str) -> bool:
        if not isinstance(value, bool):
            raise ValidationError(field, f"expected true or false, got {value!r}", "true, false")
        return value

    def _check_choice(self, value: Any, field: str) -> Any:
        if value not in self.choices:
            raise ValidationError(field, f"unknown value {value!r}", ", ".join(map(str, self.choices)))
        return value

    def _check_text(self, value: Any, field: str) -> str:
        if self.non_empty and (not isinstance(value, str) or not value):
            raise ValidationError(field, f"expected a non-empty string, got {value!r}"[:200])
        if not isinstance(value, str):
            raise ValidationError(field, "expected a string")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise ValidationError(field, f"{value[:60]!r} is not a plain name", NAME_ALLOWED)
        return value

    def _check_numbers(self, value: Any, field: str) -> tuple[float, ...]:
        if not isinstance(value, list | tuple) or (self.length is not None and len(value) != self.length):
            count = "numbers" if self.length is None else f"{self.length} numbers"
            raise ValidationError(field, f"expected a list of {count}, got {value!r}",
                                  _interval(self.lo, self.hi, self.lo_open, self.hi_open))
        return tuple(self._check_number(v, join(field, i)) for i, v in enumerate(value))

    def _check_record(self, value: Any, field: str) -> Any:
        assert self.record is not None
        if isinstance(value, self.record):
            return value
        return self.record.from_dict(value, field)

    def _check_records(self, value: Any, field: str) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise ValidationError(field, f"expected a list, got {type(value).__name__}",
                                  f"a list of {self.record.__name__ if self.record else 'objects'}")
        return tuple(self._check_record(v, join(field, i)) for i, v in enumerate(value))

    def _check_custom(self, value: Any, field: str) -> Any:
        assert self.parse is not None
        return self.parse(value, field)

    # ---- writing and describing
    def to_json(self, value: Any) -> Any:
        if value is None:
            return None
        if self.kind == "record":
            return value.to_dict()
        if self.kind == "records":
            return [v.to_dict() for v in value]
        if self.kind == "numbers":
            return list(value)
        if self.kind == "custom" and self.dump is not None:
            return self.dump(value)
        return value

    def json_schema(self, default: Any = REQUIRED) -> dict[str, Any]:
        value = self._value_schema()
        out: dict[str, Any] = {"description": self.help} if self.help else {}
        out.update({"anyOf": [value, {"type": "null"}]} if self.nullable else value)
        if default is not REQUIRED and self.kind not in ("record", "records") and (
                default is not None or self.nullable):
            out["default"] = self.to_json(default)
        return out

    def _value_schema(self) -> dict[str, Any]:
        if self.kind in ("number", "integer"):
            return {"type": self.kind, **_bounds_schema(self)}
        if self.kind == "boolean":
            return {"type": "boolean"}
        if self.kind == "choice":
            return {"enum": list(self.choices)}
        if self.kind == "text":
            out = {"type": "string", "minLength": 1} if self.non_empty else {"type": "string"}
            return out if self.pattern is None else {**out, "pattern": f"^{self.pattern}$"}
        if self.kind == "numbers":
            items = {"type": "array", "items": {"type": "number", **_bounds_schema(self)}}
            if self.length is not None:
                items.update(minItems=self.length, maxItems=self.length)
            return items
        if self.kind == "record":
            return _record_schema(self.record)
        if self.kind == "records":
            return {"type": "array", "items": _record_schema(self.record)}
        return dict(self.schema or {})


def _record_schema(cls: type[Any] | None) -> dict[str, Any]:
    """A nested record's object schema (a class not declared yet: any object)."""
    return cls.object_schema() if hasattr(cls, "object_schema") else {"type": "object"}


def _int_or_none(x: float | None) -> int | None:
    return None if x is None else int(x)


def _bounds_schema(d: Decl) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if d.lo is not None:
        out["exclusiveMinimum" if d.lo_open else "minimum"] = d.lo
    if d.hi is not None:
        out["exclusiveMaximum" if d.hi_open else "maximum"] = d.hi
    return out


# --------------------------------------------------------------------------- field makers


def _field(default: Any, decl: Decl, factory: Callable[[], Any] | None = None) -> Any:
    if default is None:  # may be absent; JSON null only where the maker said nullable=True
        decl = dataclasses.replace(decl, optional=True)
    meta = {_META: decl}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def number(default: Any = REQUIRED, *, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, hi_open: bool = False, help: str = "", key: str | None = None,
           tags: Sequence[str] = (), nullable: bool = False) -> Any:
    """A finite real number (booleans refused) in ``[lo, hi]``, either end open.

    ``nullable``: JSON ``null`` is a value (every maker but ``boolean`` takes it).
    """
    return _field(default, Decl("number", help, key, lo, hi, lo_open, hi_open, nullable,
                                tags=frozenset(tags)))


def integer(default: Any = REQUIRED, *, lo: int | None = None, hi: int | None = None, help: str = "",
            key: str | None = None, tags: Sequence[str] = (), nullable: bool = False) -> Any:
    """An integer (``3.0`` reads as 3) in ``[lo, hi]``."""
    return _field(default, Decl("integer", help, key, lo, hi, nullable=nullable, tags=frozenset(tags)))


def boolean(default: Any = REQUIRED, *, help: str = "", key: str | None = None) -> Any:
    return _field(default, Decl("boolean", help, key))


def choice(choices: Sequence[Any], default: Any = REQUIRED, *, help: str = "",
           key: str | None = None, nullable: bool = False) -> Any:
    """One of ``choices`` (strings, compared exactly)."""
    return _field(default, Decl("choice", help, key, nullable=nullable, choices=tuple(choices)))


def text(default: Any = REQUIRED, *, non_empty: bool = False, help: str = "",
         key: str | None = None, nullable: bool = False, pattern: str | None = None) -> Any:
    """A string; ``pattern`` (e.g. :data:`NAME_PATTERN`) must match it whole."""
    return _field(default, Decl("text", help, key, nullable=nullable, non_empty=non_empty, pattern=pattern))


#: A name that becomes a path component (a profile's or a scenario's: ``runs/<profile>-<scenario>``,
#: ``<out>/<profile>/<scenario>/``): a scenario named ``../../x`` wrote its run outside ``--out``.
NAME_PATTERN = r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
NAME_ALLOWED = "1-64 letters, digits, '_', '-', '.', starting with a letter or digit, no '..'"


def numbers(default: Any = REQUIRED, *, length: int | None = None, lo: float | None = None,
            hi: float | None = None, lo_open: bool = False, hi_open: bool = False, help: str = "",
            key: str | None = None, tags: Sequence[str] = (), nullable: bool = False) -> Any:
    """A list of numbers (stored as a tuple), each within the bounds; ``length`` fixes the count."""
    return _field(default, Decl("numbers", help, key, lo, hi, lo_open, hi_open, nullable,
                                length=length, tags=frozenset(tags)))


def nested(record: type[Any], default: Any = REQUIRED, *, help: str = "",
           key: str | None = None, nullable: bool = False) -> Any:
    """Another record, written as a JSON object; ``default=record`` means ``record()``."""
    factory = record if default is record else None
    return _field(REQUIRED if factory else default,
                  Decl("record", help, key, nullable=nullable, record=record), factory)


def records(record: type[Any], default: Any = REQUIRED, *, help: str = "",
            key: str | None = None) -> Any:
    """A list of records (stored as a tuple); ``default=()`` for an optional empty list."""
    return _field(default, Decl("records", help, key, record=record))


def custom(parse: Callable[[Any, str], Any], schema: Mapping[str, Any], default: Any = REQUIRED, *,
           dump: Callable[[Any], Any] | None = None, help: str = "", key: str | None = None,
           factory: Callable[[], Any] | None = None, nullable: bool = False) -> Any:
    """Anything else: ``parse(value, field)`` checks and converts, ``dump`` writes JSON back,
    ``schema`` is its JSON Schema. ``parse`` must accept its own output (the constructor runs it)."""
    return _field(default, Decl("custom", help, key, nullable=nullable, parse=parse, dump=dump,
                                schema=schema), factory)


def declarations(cls: type) -> Iterator[tuple[dataclasses.Field[Any], Decl, tuple[str, ...]]]:
    """``(dataclass field, declaration, JSON key path)`` of every declared field, in order."""
    for f in dataclasses.fields(cls):
        decl = f.metadata.get(_META)
        if decl is not None:
            yield f, decl, tuple((decl.key or f.name).split("."))


def is_required(f: dataclasses.Field[Any]) -> bool:
    """Whether the field has no default (its JSON key must be there)."""
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return REQUIRED


# --------------------------------------------------------------------------- records


class Record:
    """Base of a declared record (the subclass is a ``@dataclass``; frozen ones work).

    ``FORMAT`` names the ``format`` tag the JSON may carry (``FORMAT_REQUIRED``:
    must carry); a different value is refused with ``FORMAT_PROBLEM``.
    """

    FORMAT: ClassVar[str | None] = None
    FORMAT_REQUIRED: ClassVar[bool] = False
    FORMAT_PROBLEM: ClassVar[str] = "unknown format"
    PATH: ClassVar[str] = ""  # where the record sits in its file: names the constructor's errors
    # What check() enforces, as far as JSON Schema can say it (if/then, oneOf): merged into the schema.
    SCHEMA_RULES: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        self._validate(self.PATH)

    def _validate(self, path: str) -> None:
        for f, decl, keys in declarations(type(self)):
            value = decl.validate(getattr(self, f.name), join(path, ".".join(keys)))
            object.__setattr__(self, f.name, value)
        try:
            self.check()
        except ValidationError as err:
            raise within(err, path) from None

    def check(self) -> None:
        """Rules across fields; raise :class:`ValidationError` naming the JSON field.

        It runs after every field is valid, from the constructor and from
        :meth:`from_dict` alike (which does not call ``__init__``: normalise here).
        """

    # ---- JSON
    @classmethod
    def from_dict(cls: type[_R], obj: Any, path: str | None = None) -> _R:
        """Read a JSON object; errors name the field's dotted path under ``path`` (default ``PATH``)."""
        path = cls.PATH if path is None else path
        obj = get_object(obj, path)
        values: dict[str, Any] = {}
        _read(_tree(cls), obj, path, values, cls)
        out = object.__new__(cls)
        for f in dataclasses.fields(cls):
            value = values[f.name] if f.name in values else _default(f)
            if value is REQUIRED:  # pragma: no cover - _read refuses a missing required key
                raise ValidationError(join(path, f.name), "missing required field")
            object.__setattr__(out, f.name, value)
        out._validate(path)
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.FORMAT} if self.FORMAT else {}
        for f, decl, keys in declarations(type(self)):
            value = getattr(self, f.name)
            if value is None and not decl.nullable:
                continue  # absent: JSON null would not read back
            node = out
            for k in keys[:-1]:
                node = node.setdefault(k, {})
            node[keys[-1]] = decl.to_json(value)
        return out

    @classmethod
    def object_schema(cls) -> dict[str, Any]:
        """The JSON Schema of one such object (no ``$schema`` header: it nests)."""
        return {**_object_schema(_tree(cls), cls), **cls.SCHEMA_RULES}

    @classmethod
    def json_schema(cls, schema_id: str | None = None) -> dict[str, Any]:
        """A standalone JSON Schema document (draft 2020-12) of this record's JSON."""
        head: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT}
        if schema_id:
            head["$id"] = schema_id
        head["title"] = cls.FORMAT or cls.__name__
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        if doc:
            head["description"] = " ".join(doc.split())
        return {**head, **cls.object_schema()}


# A layout tree: JSON key -> (field, decl) for a leaf, or a nested dict for a JSON sub-object.
_Tree = dict[str, Any]


def _tree(cls: type) -> _Tree:
    root: _Tree = {}
    for f, decl, keys in declarations(cls):
        node = root
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = (f, decl)
    return root


def _required(node: Any) -> bool:
    if isinstance(node, tuple):
        return is_required(node[0])
    return any(_required(child) for child in node.values())


def _read(tree: _Tree, obj: Mapping[str, Any], path: str, values: dict[str, Any],
          cls: type[Record] | None) -> None:
    """Check keys level by level and collect raw values by attribute (nested records parsed)."""
    allowed = list(tree)
    if cls is not None and cls.FORMAT:
        allowed.insert(0, "format")
    required = [k for k, node in tree.items() if _required(node)]
    if cls is not None and cls.FORMAT and cls.FORMAT_REQUIRED:
        required.insert(0, "format")
    check_keys(obj, path, allowed, required=required)
    if cls is not None and cls.FORMAT and obj.get("format", cls.FORMAT) != cls.FORMAT:
        raise ValidationError(join(path, "format"), f"{cls.FORMAT_PROBLEM} {obj['format']!r}",
                              cls.FORMAT)
    for key, node in tree.items():
        here = join(path, key)
        if isinstance(node, dict):
            _read(node, get_object(obj.get(key, {}), here), here, values, None)
        elif key in obj:
            f, decl = node
            raw = obj[key]
            nested = decl.kind in ("record", "records") or raw is None
            values[f.name] = decl.validate(raw, here, from_json=True) if nested else raw


def _object_schema(tree: _Tree, cls: type[Record] | None) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if cls is not None and cls.FORMAT:
        props["format"] = {"const": cls.FORMAT}
    for key, node in tree.items():
        if isinstance(node, dict):
            props[key] = _object_schema(node, None)
        else:
            f, decl = node
            props[key] = decl.json_schema(_default(f))
    out: dict[str, Any] = {"type": "object", "properties": props}
    required = [k for k, node in tree.items() if _required(node)]
    if cls is not None and cls.FORMAT and cls.FORMAT_REQUIRED:
        required.insert(0, "format")
    if required:
        out["required"] = required
    out["additionalProperties"] = False
    return out
