"""Golden vectors: the Python reference's answers, for the Kotlin core to match.

``mobile-lr schedule golden --out FILE`` writes them; the Kotlin tests read the
file and must agree on every learning rate (1e-12 relative) and every refused
spec's field. The test command regenerates the file and compares it with the
committed copy, so the two sides cannot drift. Output is a pure function of the
code: fixed seeds, no clock, no machine-dependent ordering.
"""

from __future__ import annotations

import random
from typing import Any

from mobile_lr.schedules import parse_spec
from mobile_lr.testing.golden_cases import json_safe, manager_cases, planner_cases
from mobile_lr.testing.specs import EXAMPLES, INVALID_EXAMPLES, random_plan, random_spec
from mobile_lr.validation import ValidationError

FORMAT = "mobile-lr.golden/1"
N_RANDOM_SPECS = 240
SEED = 20261122


def _steps_to_check(plan: list[list[int]]) -> list[int]:
    """Every early step, a stride through the run, and both sides of each re-plan and end."""
    horizon = max(total for _, total in plan) + 12
    steps = set(range(0, min(horizon, 40)))
    steps.update(range(0, horizon, 7))
    for t0, total in plan:
        steps.update(x for x in (t0 - 1, t0, t0 + 1, total - 1, total, total + 1) if x >= 0)
    return sorted(steps)


def _metrics(rng: random.Random, n: int) -> list[float]:
    """A noisy, mostly decreasing loss curve with plateaus (drives the plateau shape)."""
    out, level = [], 2.0
    for _ in range(n):
        if rng.random() < 0.3:
            level *= rng.uniform(0.7, 0.99)
        out.append(round(level * rng.uniform(0.97, 1.03), 6))
    return out


def schedule_case(name: str, spec: dict[str, Any], plan: list[list[int]],
                  rng: random.Random) -> dict[str, Any]:
    sched = parse_spec(spec)
    steps = _steps_to_check(plan)
    case: dict[str, Any] = {"name": name, "spec": spec, "plan": plan, "steps": steps}
    if sched.is_plateau:
        metrics = _metrics(rng, steps[-1] + 1)
        states = [sched.plateau_start()]
        for m in metrics:
            states.append(sched.plateau_observe(states[-1], m))
        case["metrics"] = metrics  # lr at step t is taken after the first t metrics
        case["lr"] = [sched.lr(t, plan, states[t]) for t in steps]
    else:
        case["lr"] = [sched.lr(t, plan) for t in steps]
    return case


def build() -> dict[str, Any]:
    rng = random.Random(SEED)
    cases = []
    plans = {"one plan": [[0, 300]], "shrink": [[0, 300], [100, 160]],
             "grow": [[0, 120], [60, 300]], "three re-plans": [[0, 300], [50, 200], [120, 400],
                                                               [250, 260]],
             "spent": [[0, 200], [80, 80]]}
    for kind, spec in EXAMPLES.items():
        for label, plan in plans.items():
            cases.append(schedule_case(f"{kind} / {label}", spec, plan, rng))
    for i in range(N_RANDOM_SPECS):
        spec = random_spec(rng)
        plan = random_plan(rng)
        cases.append(schedule_case(f"random {i}", spec, plan, rng))
    invalid = []
    for spec, field in INVALID_EXAMPLES:
        try:
            parse_spec(spec)
        except ValidationError as err:
            assert err.field == field, (spec, err)
            invalid.append({"spec": json_safe(spec), "field": err.field, "message": str(err)})
        else:  # pragma: no cover - INVALID_EXAMPLES is tested to be refused
            raise AssertionError(f"invalid example accepted: {spec}")
    return {"format": FORMAT, "schedules": cases, "invalid_specs": invalid,
            "planner": planner_cases(), "manager": manager_cases()}
