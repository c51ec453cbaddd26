"""The manager's rules after a plan (mobile_lr.rules): one reason list, the same answers on one
phone (floats) and on many (arrays), and the manager's configuration checked where it is built."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mobile_lr import rules
from mobile_lr.budget import BATTERY, NONE, THERMAL, TIME, Policy, StepCost
from mobile_lr.device import DeviceState, cool_down_seconds, load_profile
from mobile_lr.device import ThermalStatus as ThermalStatusEnum
from mobile_lr.manager import ManagerConfig, Pause, RangeTestConfig, Stop
from mobile_lr.physics import ARRAY, SCALAR, Phone
from mobile_lr.rules import REASONS, Reason
from mobile_lr.validation import ValidationError

pytestmark = pytest.mark.core


def test_a_reason_reads_as_its_word():
    assert Reason.THERMAL == "thermal" and str(Reason.BUDGET) == "budget"
    assert f"{Reason.BUDGET_CUT}" == "budget-cut" and rules.paused(Reason.THERMAL) == "paused:thermal"
    assert json.dumps({"r": Reason.NOT_CHARGING}) == '{"r": "not-charging"}'
    assert repr(Stop(Reason.BUDGET, "battery")) == "Stop(reason='budget', detail='battery')"
    assert Pause(Reason.WINDOW) == Pause("window")
    assert len(set(REASONS)) == len(REASONS)


# (factor, detail) -> the pause reason; details: budget.DETAILS
LIMITS = [((BATTERY, 1), Reason.NOT_CHARGING), ((BATTERY, 2), Reason.BATTERY_LOW),
          ((BATTERY, 3), Reason.BATTERY), ((BATTERY, 0), Reason.BATTERY),
          ((THERMAL, 4), Reason.THERMAL), ((THERMAL, 0), Reason.THERMAL),
          ((TIME, 5), Reason.WINDOW), ((TIME, 0), Reason.WINDOW), ((NONE, 0), Reason.DONE)]


@pytest.mark.parametrize(("limit", "reason"), LIMITS)
def test_the_limit_of_a_plan_names_the_pause(limit, reason):
    assert REASONS[rules.limit_reason(SCALAR, *limit)] is reason


def test_the_limit_reasons_on_arrays_are_the_scalar_ones():
    factor = np.array([f for (f, _), _ in LIMITS])
    detail = np.array([d for (_, d), _ in LIMITS])
    got = rules.limit_reason(ARRAY, factor, detail)
    assert [REASONS[k] for k in got] == [r for _, r in LIMITS]


@pytest.mark.parametrize(("steps", "later", "ran", "final", "move"), [
    (3, 0, True, True, rules.RUN),
    (0, 5, True, True, rules.PAUSE),           # more steps expected later
    (0, 0, False, False, rules.PAUSE),         # nothing ran yet: wait for the limit to clear
    (0, 0, True, True, rules.STOP_BUDGET),     # the last Run was the last step of its plan
    (0, 0, True, False, rules.STOP_CUT),       # the budget vanished under it
])
def test_next_move(steps, later, ran, final, move):
    assert rules.next_move(SCALAR, steps, later, ran, final) == move
    got = rules.next_move(ARRAY, np.array([steps]), np.array([later]), np.array([ran]),
                          np.array([final]))
    assert got.tolist() == [move]


def _phones(p, rng, n):
    return Phone(rng.uniform(0.05, 1.0, n), rng.random(n) < 0.5, rng.uniform(20.0, 48.0, n),
                 rng.integers(0, 5, n), rng.uniform(10.0, 38.0, n), np.full(n, p.battery_j))


def _one(ph, i):
    return Phone(float(ph.level[i]), bool(ph.charging[i]), float(ph.temp[i]),
                 int(ph.status[i]), float(ph.ambient[i]), float(ph.battery_j[i]))


def test_resume_hints_are_the_cool_down_and_the_charge_to_the_floor():
    p = load_profile("flagship")
    policy = Policy(battery_floor=0.3)
    hot = DeviceState(0.5, False, 46.0, 4, ambient_c=25.0)
    phone = Phone(0.5, False, 46.0, 4, 25.0, p.battery_j)
    thermal = REASONS.index(Reason.THERMAL)
    want = cool_down_seconds(p, hot, policy.thermal_limit_c(p) - 1.0)
    assert rules.resume_hint(SCALAR, p, policy, 1.0, thermal, phone) == want > 0
    battery = REASONS.index(Reason.BATTERY)
    assert rules.resume_hint(SCALAR, p, policy, 1.0, battery, phone) == math.inf  # unplugged
    low = phone._replace(level=0.2, charging=True)
    rate = (p.charge_efficiency * p.charge_power_w - p.idle_power_w) / p.battery_j
    assert rules.resume_hint(SCALAR, p, policy, 1.0, battery, low) == pytest.approx(0.1 / rate)
    assert rules.resume_hint(SCALAR, p, policy, 1.0, REASONS.index(Reason.WINDOW), low) \
        == math.inf


@pytest.mark.parametrize("horizon", ["session", "deadline"])
def test_the_rules_on_arrays_are_the_scalar_rules(horizon):
    """What the budget fleet computes for many phones is what the manager computes for one."""
    rng = np.random.default_rng(7)
    p = load_profile("mid-range")
    n = 300
    policy = Policy(battery_floor=0.25, horizon=horizon, deadline_s=5000.0,
                    window_gap_s=600.0 if horizon == "deadline" else 0.0)
    cost = StepCost(p.step_seconds * 20, p.step_joules * 22)
    ph = _phones(p, rng, n)
    factor = rng.integers(0, 4, n)
    detail = np.where(rng.random(n) < 0.2, rng.integers(1, 6, n), 0)
    now = rng.uniform(0.0, 4000.0, n)
    window_end = np.where(rng.random(n) < 0.2, -math.inf, now + rng.uniform(0.0, 3000.0, n))
    reason = rules.limit_reason(ARRAY, factor, detail)
    hints = rules.resume_hint(ARRAY, p, policy, 1.0, reason, ph)
    later = rules.later_steps(ARRAY, p, policy, cost, 1.0, factor=factor, phone=ph, now_s=now,
                              seconds=0.0, window_end_s=window_end)
    for i in range(n):
        one = _one(ph, i)
        h = rules.resume_hint(SCALAR, p, policy, 1.0, int(reason[i]), one)
        assert hints[i] == pytest.approx(h, rel=1e-12), i
        steps = rules.later_steps(SCALAR, p, policy, cost, 1.0, factor=int(factor[i]), phone=one,
                                  now_s=float(now[i]), seconds=0.0,
                                  window_end_s=float(window_end[i]))
        assert abs(later[i] - steps) <= 1, i  # an ulp of exp/log may move a floor by one
    assert np.count_nonzero(later > 0) > n // 10 and np.count_nonzero(np.isfinite(hints)) > 10


def test_the_manager_config_is_checked_when_it_is_built():
    # it used to construct and fail at the second next() with a ZeroDivisionError
    with pytest.raises(ValidationError) as err:
        ManagerConfig(replan_tolerance=0)
    assert err.value.field == "config.replan_tolerance"
    with pytest.raises(ValidationError) as err:
        ManagerConfig(min_observations=5, estimator_window=3)
    assert err.value.field == "config.min_observations"
    assert "[1, 3]" in str(err.value)
    with pytest.raises(ValidationError) as err:
        RangeTestConfig(min_steps=10, max_steps=5)
    assert err.value.field == "range_test.max_steps"
    with pytest.raises(ValidationError) as err:
        ManagerConfig.from_dict({"range_test": {"start_factor": 2.0, "end_factor": 1.0}})
    assert err.value.field == "config.range_test.end_factor"
    cfg = ManagerConfig(nominal_steps=300, range_test=RangeTestConfig(fraction=0.1),
                        peak_lr={"type": "budget_power", "power": 0.3})
    assert ManagerConfig.from_dict(cfg.to_dict()) == cfg
    assert ManagerConfig().to_dict()["peak_lr"] == {"type": "none"}
    assert ManagerConfig().to_dict()["range_test"] is None


def test_the_device_records_are_checked_when_they_are_built():
    from dataclasses import replace

    from mobile_lr.device import DeviceProfile

    p = load_profile("mid-range")
    with pytest.raises(ValidationError) as err:
        replace(p, step_seconds=0.0)
    assert err.value.field == "compute.step_seconds"
    with pytest.raises(ValidationError) as err:
        replace(p, train_power_w=p.idle_power_w / 2)
    assert err.value.field == "power.train_w" and "below idle_w" in str(err.value)
    with pytest.raises(ValidationError) as err:
        replace(p, thresholds_c=(39.0, 38.0, 45.0, 47.0, 52.0, 55.0))
    assert err.value.field == "thermal.thresholds_c.MODERATE"
    assert DeviceProfile.from_dict(p.to_dict()) == p and p.sources  # sources kept, not compared
    with pytest.raises(ValidationError) as err:
        DeviceState(0.5, "yes", 30.0, 0)
    assert err.value.field == "charging"
    assert DeviceState(1, False, 30, 2).thermal_status is ThermalStatusEnum.MODERATE
    with pytest.raises(ValidationError) as err:
        StepCost(1.0, -2.0)
    assert err.value.field == "step_joules"
    with pytest.raises(ValidationError) as err:
        Policy(horizon="deadline")
    assert err.value.field == "deadline_s"
