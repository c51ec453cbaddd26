"""Re-planning: the schedule follows a budget that changes (SPEC section 2).

Properties checked: the LR is continuous at a re-plan (no jump beyond one
step's change of the shape), the shape's end value is reached exactly at the
new total, growing, shrinking and repeated re-plans, ``fixed`` mode ignores
re-plans, absolute-step shapes ignore them, and ``wsd`` mode holds the peak
until the remaining budget reaches the decay fraction.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobile_lr.schedules import parse_spec
from mobile_lr.testing.specs import EXAMPLES, random_plan, random_spec

pytestmark = pytest.mark.core


FORMAT = "mobile-lr.schedule/1"
PROGRESS_SHAPES = [
    {"type": "cosine", "eta_min": 0.001},
    {"type": "linear", "start_factor": 1.0, "end_factor": 0.0},
    {"type": "polynomial", "power": 2.0, "end_learning_rate": 0.002},
    {"type": "rex", "eta_min": 0.0005},
    {"type": "wsd", "decay_fraction": 0.3, "decay_shape": "cosine"},
    {"type": "onecycle", "pct_start": 0.25},
    {"type": "multistep", "milestones": [0.3, 0.6], "gamma": 0.5},
]
PURE_PROGRESS = ("cosine", "linear", "polynomial", "rex")  # lr depends on u/T only


def sched(shape, mode="replan", **extra):
    return parse_spec({"format": FORMAT, "base_lr": 0.1, "shape": shape,
                       "budget": {"mode": mode}, **extra})


def max_step_change(values: np.ndarray) -> float:
    return float(np.max(np.abs(np.diff(values)))) if len(values) > 1 else 0.0


@pytest.mark.parametrize("shape", PROGRESS_SHAPES, ids=lambda s: s["type"])
@settings(max_examples=40, deadline=None)
@given(t_old=st.integers(20, 400), frac=st.floats(0.05, 0.95), t_new_frac=st.floats(0.05, 3.0))
def test_continuity_and_exact_end(shape, t_old, frac, t_new_frac):
    s = sched(shape)
    t0 = int(frac * t_old)
    t_new = max(t0 + 1, int(t_new_frac * t_old))
    before = s.lrs(np.arange(t_old + 1), [(0, t_old)])
    plan = [(0, t_old), (t0, t_new)]
    after = s.lrs(np.arange(t0, t_new + 1), plan)
    # Continuous at t0: the step into the re-plan is no bigger than a step of either curve
    # (pure progress shapes: the value at t0 is unchanged, up to rounding).
    jump = abs(after[0] - before[t0])
    if shape["type"] in PURE_PROGRESS:
        assert jump <= 1e-12 * 0.1
    else:
        bound = max(max_step_change(before[max(t0 - 1, 0):t0 + 2]), max_step_change(after[:2]))
        if shape["type"] == "onecycle":
            # PyTorch puts OneCycleLR's phase ends at pct*T - 1 and T - 1: a one-step offset that
            # does not scale with T, so the same progress sits up to one step off in the new
            # plan's phases. Allow one warm-up step of the new plan (max_lr / (pct * T_new)).
            bound += 0.1 / (shape["pct_start"] * t_new)
        assert jump <= bound + 1e-12
    # The end value of the shape is reached exactly at the new total.
    end_value = s.lr(t_new, [(0, t_new)])
    assert s.lr(t_new, plan) == pytest.approx(end_value, rel=1e-12, abs=1e-15)
    assert s.end_lr(plan) == pytest.approx(end_value, rel=1e-12, abs=1e-15)


@settings(max_examples=60, deadline=None)
@given(totals=st.lists(st.integers(1, 600), min_size=2, max_size=6), data=st.data())
def test_several_replans_in_a_row_decreasing_shape_stays_monotone(totals, data):
    """Cosine never goes back up, whatever the budget does; it ends at eta_min at the last total."""
    s = sched({"type": "cosine", "eta_min": 0.001})
    plan, t = [(0, totals[0])], 0
    for total in totals[1:]:
        t = data.draw(st.integers(t, max(t, plan[-1][1])))
        plan.append((t, total))
    end = max(plan[-1][1], plan[-1][0])
    lrs = s.lrs(np.arange(end + 5), plan)
    assert np.all(np.diff(lrs) <= 1e-15)
    assert lrs[end] == pytest.approx(0.001, rel=1e-12)


def test_growing_and_shrinking_budget_examples():
    s = sched({"type": "linear", "start_factor": 1.0, "end_factor": 0.0})
    # Half-way through 100 steps (lr 0.05), the budget grows to 200: the remaining half of the
    # decay is spread over 150 steps.
    assert s.lr(50, [(0, 100), (50, 200)]) == pytest.approx(0.05)
    assert s.lr(125, [(0, 100), (50, 200)]) == pytest.approx(0.025)
    assert s.lr(200, [(0, 100), (50, 200)]) == 0.0
    # It shrinks to 60: the remaining half is spent in 10 steps.
    assert s.lr(55, [(0, 100), (50, 60)]) == pytest.approx(0.025)
    assert s.lr(60, [(0, 100), (50, 60)]) == 0.0
    # A total at or below the current step means "stop now": the end value.
    assert s.lr(50, [(0, 100), (50, 50)]) == 0.0


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_fixed_mode_ignores_replans(name):
    spec = {**EXAMPLES[name], "budget": {"mode": "fixed"}}
    s = parse_spec(spec)
    steps = np.arange(400)
    np.testing.assert_array_equal(s.lrs(steps, [(0, 300)]),
                                  s.lrs(steps, [(0, 300), (40, 90), (80, 500)]))


@pytest.mark.parametrize("shape", [
    {"type": "step", "step_size": 10, "gamma": 0.5},
    {"type": "multistep", "milestones": [30, 60]},
    {"type": "exponential", "gamma": 0.98},
    {"type": "cyclic", "max_lr": 1.0, "step_size_up": 7},
    {"type": "cosine", "T_max": 77},
    {"type": "piecewise_constant", "boundaries": [10, 50], "values": [0.1, 0.05, 0.01]},
], ids=lambda s: s["type"])
def test_absolute_shapes_are_unaffected_by_replans(shape):
    s = sched(shape)
    steps = np.arange(300)
    np.testing.assert_array_equal(s.lrs(steps, [(0, 300)]), s.lrs(steps, [(0, 300), (40, 90)]))
    assert not s.follows_plan


def test_wsd_mode_holds_the_peak_then_cools_down_over_the_remaining_fraction():
    s = parse_spec({"format": FORMAT, "base_lr": 0.1, "shape": {"type": "linear", "start_factor": 1.0,
                    "end_factor": 0.0}, "budget": {"mode": "wsd", "decay_fraction": 0.2}})
    # One plan of 100: hold 80 steps, then linear to zero over the last 20.
    lrs = s.lrs(np.arange(101), [(0, 100)])
    assert np.all(lrs[:81] == 0.1)
    assert lrs[90] == pytest.approx(0.05)
    assert lrs[100] == 0.0
    # The budget shrinks at step 50 to 60: 10 steps left <= 0.2 * 60, the cool-down starts now.
    plan = [(0, 100), (50, 60)]
    assert s.lr(50, plan) == 0.1
    assert s.lr(55, plan) == pytest.approx(0.05)
    assert s.lr(60, plan) == 0.0
    # It grows during the cool-down: what is left of the cool-down stretches, never back up.
    plan = [(0, 100), (90, 200)]
    lrs = s.lrs(np.arange(201), plan)
    assert lrs[90] == pytest.approx(0.05)
    assert np.all(np.diff(lrs[80:]) <= 0)
    assert lrs[200] == 0.0


def test_warmup_is_capped_at_a_fraction_of_the_total():
    s = parse_spec({"format": FORMAT, "base_lr": 1.0, "shape": {"type": "constant"},
                    "warmup": {"steps": 50, "start_factor": 0.0, "max_fraction": 0.1}})
    assert s.lr(5, [(0, 1000)]) == pytest.approx(0.1)  # 50-step warm-up
    assert s.lr(5, [(0, 30)]) == 1.0  # capped at 3 steps for a 30-step budget
    assert s.lr(2, [(0, 30)]) == pytest.approx(2 / 3)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_valid_spec_never_yields_nan_inf_or_negative(seed):
    rng = random.Random(seed)
    s, plan, state = _random_case(rng)
    horizon = max(total for _, total in plan) + 50
    lrs = s.lrs(np.arange(horizon), plan, state)
    assert np.all(np.isfinite(lrs)) and np.all(lrs >= 0)
    scalar = np.array([s.lr(t, plan, state) for t in range(0, horizon, 13)])
    np.testing.assert_allclose(lrs[::13], scalar, rtol=1e-13, atol=1e-300)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_the_lr_table_is_the_scalar_path_bit_for_bit(seed):
    """``lr_function(...).table`` (a manager's held steps' LRs made ahead in one numpy pass)
    gives ``f(t) * scale`` to the last bit for every shape, warm-up, budget mode and plan, also
    when numpy's own ``cos``/``pow``/``log`` round differently from libm's (made one ulp off
    here: the table must not use them)."""
    from mobile_lr.schedules import _ops, spec

    def off(f):
        return staticmethod(lambda *a: np.nextafter(f(*a), np.inf))

    with pytest.MonkeyPatch.context() as mp:
        for name in ("cos", "pow", "log"):
            mp.setattr(_ops._ArrayOps, name, off(getattr(_ops._ArrayOps, name)))
        _check_table(random.Random(seed), spec.TABLE_MIN)


def _check_table(rng, table_min):
    s, plan, state = _random_case(rng)
    f = s.lr_function(plan, state)
    scale = rng.choice([1.0, 0.37, 3.0 ** -0.5])
    start = rng.randint(0, max(total for _, total in plan) + 20)
    for count in (1, table_min - 1, table_min, 64, 257):
        got = f.table(start, count, scale)
        assert [x.hex() for x in got] == [(f(t) * scale).hex() for t in range(start, start + count)]


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_no_steps_give_no_lrs(name):
    """An empty range of steps is an empty array on every shape (the progress map's shortcut
    for steps all in its last piece reads their minimum only when there is one)."""
    s = parse_spec(EXAMPLES[name])
    assert s.lrs([], [(0, 300), (40, 90)]).shape == (0,)
    assert s.lrs(np.zeros((0, 2)), [(0, 300)]).shape == (0, 2)


def _random_case(rng):
    """A random valid spec, plan and (for a plateau) a state after up to 40 observed losses."""
    s = parse_spec(random_spec(rng))
    plan = random_plan(rng)
    state = s.plateau_start() if s.is_plateau else None
    if state is not None:
        for _ in range(rng.randint(0, 40)):
            state = s.plateau_observe(state, rng.uniform(-10, 10))
    return s, plan, state
