"""The declared records (mobile_lr.validation.schema): one declaration, four uses.

The constructor and ``from_dict`` refuse the same values naming the same field,
``to_dict`` reads back to an equal record, and the JSON Schema made from the
declaration accepts what ``from_dict`` accepts and refuses what it refuses.
"""

from __future__ import annotations

from dataclasses import dataclass

import jsonschema
import pytest

from mobile_lr.recipes import OptimizerSpec
from mobile_lr.sim.scenario import Scenario, builtin_scenarios, load_scenario
from mobile_lr.validation import ValidationError
from mobile_lr.validation.schema import Record, boolean, choice, integer, nested, number, records, text


@dataclass(frozen=True, kw_only=True)
class Part(Record):
    weight: float = number(lo=0.0, lo_open=True, help="kg")
    label: str = text("", help="name")


@dataclass(frozen=True, kw_only=True)
class Thing(Record):
    FORMAT = "test.thing/1"

    count: int = integer(1, lo=1, hi=9)
    mode: str = choice(("a", "b"), "a")
    flag: bool = boolean(False, key="inner.flag")
    size: float | None = number(None, lo=0.0, key="inner.size")
    part: Part = nested(Part, None)
    parts: tuple[Part, ...] = records(Part, ())
    note: str | None = text(None, nullable=True)

    def check(self) -> None:
        if self.mode == "b" and self.size is None:
            raise ValidationError("inner.size", "missing: mode 'b' needs a size")


@pytest.mark.parametrize("kwargs, obj, field", [
    ({"count": 0}, {"count": 0}, "count"),
    ({"count": 2.5}, {"count": 2.5}, "count"),
    ({"mode": "c"}, {"mode": "c"}, "mode"),
    ({"flag": 1}, {"inner": {"flag": 1}}, "inner.flag"),
    ({"size": -1.0}, {"inner": {"size": -1.0}}, "inner.size"),
    ({"size": True}, {"inner": {"size": True}}, "inner.size"),
    ({"mode": "b"}, {"mode": "b"}, "inner.size"),
    ({"part": {"weight": 0}}, {"part": {"weight": 0}}, "part.weight"),
    ({"parts": [{"weight": 1}, {}]}, {"parts": [{"weight": 1}, {}]}, "parts[1].weight"),
])
def test_constructor_and_from_dict_refuse_alike(kwargs, obj, field):
    with pytest.raises(ValidationError) as by_ctor:
        Thing(**kwargs)
    with pytest.raises(ValidationError) as by_dict:
        Thing.from_dict(obj, "thing")
    assert by_ctor.value.field == field
    assert by_dict.value.field == f"thing.{field}"
    assert by_dict.value.problem == by_ctor.value.problem
    assert not jsonschema.Draft202012Validator(Thing.json_schema()).is_valid(obj) or field == "inner.size"


def test_keys_format_and_round_trip():
    for obj, field in [({"colour": 1}, "colour"), ({"inner": {"flag": True, "x": 1}}, "inner.x"),
                       ({"format": "test.thing/2"}, "format"), ({"inner": 3}, "inner")]:
        with pytest.raises(ValidationError) as err:
            Thing.from_dict(obj)
        assert err.value.field == field
    t = Thing.from_dict({"count": 3.0, "inner": {"size": 2}, "part": {"weight": 1},
                         "parts": [{"weight": 2, "label": "x"}]})
    assert (t.count, t.size, t.part, t.parts[0].label) == (3, 2.0, Part(weight=1.0), "x")
    assert isinstance(t.count, int) and isinstance(t.size, float)
    assert Thing.from_dict(t.to_dict()) == t
    jsonschema.validate(t.to_dict(), Thing.json_schema())
    with pytest.raises(ValidationError, match=r"part\.weight: missing required field"):
        Thing.from_dict({"part": {}})


def test_optional_is_not_nullable_unless_declared():
    """A default of None means "may be absent": JSON null is refused there (as the Kotlin core
    refuses it), accepted and written back only where the field says nullable."""
    assert Thing(part=None, size=None).part is None
    for obj, field in [({"part": None}, "part"), ({"inner": {"size": None}}, "inner.size")]:
        with pytest.raises(ValidationError) as err:
            Thing.from_dict(obj)
        assert err.value.field == field
    t = Thing.from_dict({"note": None})
    assert "part" not in t.to_dict() and "size" not in t.to_dict()["inner"]
    assert t.to_dict()["note"] is None and Thing.from_dict(t.to_dict()) == t
    schema = jsonschema.Draft202012Validator(Thing.json_schema())
    assert schema.is_valid({"note": None}) and not schema.is_valid({"part": None})


def test_scenarios_and_optimizers_round_trip_through_their_schema():
    schema = Scenario.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    for name in builtin_scenarios():
        sc = load_scenario(name)
        assert Scenario.from_dict(sc.to_dict()) == sc
        jsonschema.validate(sc.to_dict(), schema)
    for spec in (OptimizerSpec(), OptimizerSpec("sgd", momentum=0.9, nesterov=True)):
        assert OptimizerSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValidationError, match=r"^optimizer\.momentum: unknown field"):
        OptimizerSpec.from_dict({"type": "adamw", "momentum": 0.9})
    with pytest.raises(ValidationError, match=r"^optimizer\.betas\[1\]: 1\.0 is out of range"):
        OptimizerSpec.from_dict({"type": "adamw", "betas": [0.9, 1.0]})
