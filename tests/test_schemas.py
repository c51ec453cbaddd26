"""schemas/*.json: generated from the declarations, never stale, and true to the parsers."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import jsonschema
import pytest

from mobile_lr import schemas
from mobile_lr.budget import Policy
from mobile_lr.device import BUILTIN_PROFILES, load_profile
from mobile_lr.sim.scenario import builtin_scenarios, load_scenario
from mobile_lr.testing.specs import EXAMPLES, INVALID_EXAMPLES, random_spec

ROOT = Path(__file__).resolve().parents[1] / "schemas"


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((ROOT / name).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schemas_are_what_the_declarations_give(tmp_path, capsys):
    assert schemas.main(["--check", "--out", str(ROOT)]) == 0, \
        "stale: regenerate with python -m mobile_lr.schemas --out schemas"
    assert sorted(p.name for p in ROOT.glob("*.json")) == sorted(schemas.SCHEMAS)
    copy = tmp_path / "schemas"
    shutil.copytree(ROOT, copy)
    (copy / "schedule.json").write_text("{}\n", encoding="utf-8")
    assert schemas.main(["--check", "--out", str(copy)]) == 1
    assert "schedule.json" in capsys.readouterr().err


def test_schedule_schema_accepts_every_valid_spec_and_refuses_bad_fields():
    v = _validator("schedule.json")
    rng = random.Random(7)
    for spec in [*EXAMPLES.values(), *(random_spec(rng) for _ in range(200))]:
        errors = list(v.iter_errors(spec))
        assert not errors, (spec, errors[0].message)
    refused = [field for spec, field in INVALID_EXAMPLES if not v.is_valid(spec)]
    # What a JSON Schema can state (types, bounds, names, choices) it refuses; cross-field
    # rules (eta_min <= base_lr, increasing milestones, wsd budgets) are the parser's alone.
    assert {"format", "base_lr", "total_steps", "colour", "shape.type", "shape.T_max", "shape.tmax",
            "shape.cycle", "shape.anneal_strategy", "shape.mode", "warmup.steps",
            "warmup.max_fraction", "budget.decay_fraction", "shape.gamma"} <= set(refused)
    assert len(refused) >= 35


def test_profile_policy_and_scenario_files_validate():
    device, policy, scenario = (_validator(n) for n in ("device.json", "policy.json", "scenario.json"))
    for name in BUILTIN_PROFILES:
        device.validate(load_profile(name).to_dict())
    policy.validate(Policy().to_dict())
    policy.validate(Policy(horizon="deadline", deadline_s=100.0, window_s=60.0).to_dict())
    for name in builtin_scenarios():
        scenario.validate(load_scenario(name).to_dict())
    hot = load_scenario("hot-day").to_dict()
    for bad in ({**hot, "colour": 1}, {**hot, "events": [{"at_s": 5, "type": "ambient"}]},
                {**hot, "events": [{"at_s": 5, "type": "plug", "ambient_c": 30}]}):
        with pytest.raises(jsonschema.ValidationError):
            scenario.validate(bad)
    scenario.validate({**hot, "events": [{"at_s": 5, "type": "ambient", "ambient_c": 30}]})
