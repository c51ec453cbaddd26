"""The schedule spec: bad specs are refused with the field named; good ones round-trip."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from mobile_lr.schedules import parse_spec
from mobile_lr.testing.specs import EXAMPLES, INVALID_EXAMPLES
from mobile_lr.validation import ValidationError

pytestmark = pytest.mark.core


@pytest.mark.parametrize(("spec", "field"), INVALID_EXAMPLES,
                         ids=[f for _, f in INVALID_EXAMPLES])
def test_invalid_specs_are_refused_naming_the_field(spec, field):
    with pytest.raises(ValidationError) as err:
        parse_spec(spec)
    assert err.value.field == field
    assert str(err.value).startswith(field + ":")


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_examples_are_valid_and_to_dict_round_trips(name):
    s = parse_spec(EXAMPLES[name])
    again = parse_spec(json.loads(json.dumps(s.to_dict())))
    np.testing.assert_array_equal(s.lrs(np.arange(350), [(0, 300)]),
                                  again.lrs(np.arange(350), [(0, 300)]))


@pytest.mark.parametrize("name", [n for n in EXAMPLES if n != "plateau"])
def test_scaled_multiplies_every_lr(name):
    s = parse_spec(EXAMPLES[name])
    steps = np.arange(320)
    plan = [(0, 300), (100, 200)]
    np.testing.assert_allclose(s.scaled(3.0).lrs(steps, plan), 3.0 * s.lrs(steps, plan),
                               rtol=1e-12, atol=1e-18)


def test_scaled_refuses_non_positive():
    with pytest.raises(ValidationError):
        parse_spec(EXAMPLES["cosine"]).scaled(0.0)


def test_missing_total_is_a_clear_error():
    s = parse_spec(EXAMPLES["cosine"])
    with pytest.raises(ValidationError, match="total_steps"):
        s.lr(3)
    assert parse_spec({**EXAMPLES["cosine"], "total_steps": 10}).lr(10) == pytest.approx(1e-4)


@pytest.mark.parametrize(("plan", "field"), [
    ([], "plan"), ([[1, 10]], "plan[0]"), ([[0, 10], [5, -1]], "plan[1]"),
    ([[0, 10], [5, 20], [4, 30]], "plan[2]"), ([[0, 10.5]], "plan[0]"),
])
def test_bad_plans_are_refused(plan, field):
    with pytest.raises(ValidationError) as err:
        parse_spec(EXAMPLES["cosine"]).lr(0, plan)
    assert err.value.field == field


def test_nan_and_infinity_in_json_are_refused():
    text = '{"format": "mobile-lr.schedule/1", "base_lr": NaN, "shape": {"type": "cosine"}}'
    with pytest.raises(ValidationError, match="base_lr"):
        parse_spec(json.loads(text))
    assert math.isnan(json.loads(text)["base_lr"])  # Python's json does accept it: we must refuse


def test_schedule_module_imports_no_framework():
    """The schedule math imports nothing heavy: no torch, no onnxruntime, no manager."""
    code = ("import sys, mobile_lr.schedules; "
            "bad = [m for m in ('torch', 'onnxruntime', 'executorch', 'mobile_lr.manager', "
            "'mobile_lr.runtime') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
