"""Budget planner: the closed-form segment jumps agree with step-by-step integration, the
plan holds on the simulated phone, throttling and charging change it the right way, the
cost estimator corrects a wrong profile, and bad policies are refused."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobile_lr.budget import (
    CostEstimator,
    Policy,
    StepCost,
    effective_floor,
    load_policy,
    plan,
    sustained_rate,
)
from mobile_lr.device import (
    BUILTIN_PROFILES,
    DeviceState,
    SimulatedDevice,
    ThermalStatus,
    advance,
    load_profile,
)
from mobile_lr.validation import ValidationError

pytestmark = pytest.mark.core


def brute_force(profile, state, policy, cost, time_budget, cap=10**6):
    """The plan's definition, one exact step at a time (no closed-form jumps)."""
    theta = policy.thermal_limit_c(profile)
    floor = effective_floor(profile, policy, state.charging)
    p_full = max(cost.power_w, profile.idle_power_w)
    n, elapsed = 0, 0.0
    while n < cap:
        m = profile.throughput[state.thermal_status]
        d = cost.seconds / m
        new, _ = advance(profile, state, profile.idle_power_w
                         + (p_full - profile.idle_power_w) * m, d)
        if new.level < floor or new.level <= 0.0:
            return n, "battery"
        if new.temperature_c >= theta or new.thermal_status > policy.max_thermal:
            return n, "thermal"
        if elapsed + d > time_budget:
            return n, "time"
        state, n, elapsed = new, n + 1, elapsed + d
    return n, "none"


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(BUILTIN_PROFILES), level=st.floats(0.05, 1.0),
       charging=st.booleans(), temp=st.floats(15.0, 46.0), ambient=st.floats(5.0, 40.0),
       floor=st.floats(0.0, 0.6), max_thermal=st.integers(0, 4),
       window=st.floats(10.0, 3000.0), seconds=st.floats(0.3, 20.0), power=st.floats(0.3, 15.0),
       charge_w=st.floats(0.0, 45.0), cap=st.integers(0, 3000))
def test_jumps_agree_with_step_by_step(name, level, charging, temp, ambient, floor, max_thermal,
                                       window, seconds, power, charge_w, cap):
    profile = replace(load_profile(name), charge_power_w=charge_w)
    state = DeviceState(level, charging, temp, profile.status_for(temp), 0.0, ambient)
    policy = Policy(battery_floor=floor, max_thermal=max_thermal)
    cost = StepCost(seconds, seconds * power)
    got = plan(profile, state, policy, cost, max_steps=cap, time_budget_s=window)
    if got.detail:  # refused before any step (below the floor, low battery, too hot)
        assert got.steps == 0
        return
    want = brute_force(profile, state, policy, cost, window, cap)
    # Closed forms and repeated steps may differ in the last bits: at most one step apart,
    # and then only at a boundary.
    assert abs(got.steps - want[0]) <= 1
    if got.steps == want[0]:
        assert got.limiting_factor == want[1]


def test_plan_holds_on_the_simulated_phone():
    """Run exactly the planned steps on the simulator: every limit holds, one more step breaks one."""
    for name in BUILTIN_PROFILES:
        p = load_profile(name)
        policy = Policy(battery_floor=0.3, max_thermal=ThermalStatus.LIGHT, window_s=3600)
        for level, charging in ((0.45, False), (0.31, False), (0.5, True)):
            state = DeviceState.initial(p, level, charging, temperature_c=33.0)
            cost = StepCost(2.0, 2.0 * p.train_power_w)
            result = plan(p, state, policy, cost)
            dev = SimulatedDevice(p, state, step_seconds=2.0)
            for _ in range(result.steps):
                dev.train_step()
                assert dev.state.level >= policy.battery_floor
                assert dev.state.temperature_c < policy.thermal_limit_c(p)
                assert dev.state.thermal_status <= policy.max_thermal
            assert dev.state.level == pytest.approx(result.end_level, abs=1e-9)
            assert dev.state.temperature_c == pytest.approx(result.end_temperature_c, abs=1e-6)
            assert dev.ledger.consumed_j == pytest.approx(result.energy_j, rel=1e-9)
            dev.train_step()
            broke = {"battery": dev.state.level < policy.battery_floor,
                     "thermal": dev.state.temperature_c >= policy.thermal_limit_c(p),
                     "time": dev.state.time_s - state.time_s > 3600}
            assert broke[result.limiting_factor], (name, level, charging, result)


def test_throttling_during_the_plan_is_accounted_for():
    """The flagship heats into LIGHT (0.9×) and MODERATE (0.75×) within a 30-min window: the
    plan's duration is longer than steps × full-speed time, and a plan that ignored the
    throttling (same state, no status change) would promise more steps."""
    p = load_profile("flagship")
    policy = Policy(battery_floor=0.1, max_thermal=ThermalStatus.MODERATE, window_s=1800)
    state = DeviceState.initial(p, 0.95)
    cost = StepCost(1.0, p.train_power_w)
    result = plan(p, state, policy, cost)
    assert result.seconds > result.steps * 1.0 * 1.05
    assert result.end_status >= ThermalStatus.LIGHT
    never = replace(p, throughput=(1.0,) * 7)
    naive = plan(never, state, policy, cost)
    assert naive.steps != result.steps
    # and the thermal limit binds where the RC model says: SEVERE at 45 °C - 1 K margin
    tight = Policy(battery_floor=0.1, max_thermal=ThermalStatus.NONE, window_s=1800)
    r = plan(p, state, tight, cost)
    assert r.limiting_factor == "thermal"
    expected = -p.tau_s * math.log(1 - (39.0 - 1.0 - 25.0) / (p.train_power_w * 3.5))
    assert r.seconds == pytest.approx(expected, abs=1.0)


def test_charging_extends_the_plan():
    p = load_profile("mid-range")
    policy = Policy(battery_floor=0.3, max_thermal=ThermalStatus.SEVERE, window_s=1800)
    cost = StepCost(1.0, 3.5)
    off = plan(p, DeviceState.initial(p, 0.35), policy, cost)
    on = plan(p, DeviceState.initial(p, 0.35, charging=True), policy, cost)
    assert off.limiting_factor == "battery"
    assert on.steps > off.steps
    assert on.end_level > 0.35  # the charger out-supplies the training load


def test_policy_refusals():
    p = load_profile("low-end")
    cost = StepCost(1.0, 2.0)
    assert plan(p, DeviceState.initial(p, 0.9), Policy(charging_only=True), cost).detail \
        == "not charging"
    assert plan(p, DeviceState.initial(p, 0.12), Policy(battery_floor=0.0), cost).detail \
        == "battery low"
    assert plan(p, DeviceState.initial(p, 0.25, charging=True), Policy(battery_floor=0.3),
                cost).detail == "below the floor"
    hot = DeviceState(0.9, False, 45.5, ThermalStatus.SEVERE)
    assert plan(p, hot, Policy(), cost).limiting_factor == "thermal"
    deadline = Policy(deadline_s=100.0)
    assert plan(p, DeviceState.initial(p, 0.9, time_s=40.0), deadline, cost).seconds <= 60.0


def test_planner_is_fast_enough_to_run_every_step(monkeypatch):
    """A 30-minute window of 0.05 s steps is 36 000 steps; the plan takes a few exact steps."""
    import mobile_lr.budget as budget
    calls = []
    original = budget.advance
    monkeypatch.setattr(budget, "advance", lambda *a, **k: calls.append(1) or original(*a, **k))
    p = load_profile("low-end")
    result = plan(p, DeviceState.initial(p, 0.9, charging=True),
                  Policy(max_thermal=ThermalStatus.SEVERE), StepCost(0.05, 0.1))
    assert result.limiting_factor == "time" and result.steps == 36000
    assert len(calls) < 50


def test_sustained_rate():
    p = load_profile("flagship")
    policy = Policy(max_thermal=ThermalStatus.MODERATE, thermal_margin_c=1.0)
    cost = StepCost(1.0, p.train_power_w)
    rate = sustained_rate(p, policy, cost, charging=False)
    allowed = (45.0 - 1.0 - 25.0) / 3.5  # W the skin may dissipate below SEVERE - margin
    assert rate == pytest.approx((allowed - p.idle_power_w) / (p.train_power_w - p.idle_power_w))
    assert sustained_rate(load_profile("low-end"), policy, StepCost(1.0, 2.0),
                          charging=False) == 1.0


# ----------------------------------------------------------------------------- estimator


@pytest.mark.parametrize("wrong", [1 / 3, 0.5, 2.0, 3.0])
def test_estimator_corrects_a_wrong_profile(wrong):
    """The profile says 1 s and 3.5 W per step; the phone really needs `wrong` times that
    (noisy, with a throttled stretch and an outlier). Within a few dozen steps the estimate
    is within 5 %, and the pessimistic cost covers the truth from the first step on."""
    import random
    rng = random.Random(7)
    p = load_profile("mid-range")
    est = CostEstimator(StepCost(1.0, 3.5), idle_power_w=p.idle_power_w)
    true_s, true_p = 1.0 * wrong, 3.5 * wrong
    assert est.pessimistic().seconds >= true_s and est.pessimistic().power_w >= true_p * 0.999
    for i in range(40):
        m = 0.75 if 10 <= i < 20 else 1.0
        s = true_s * rng.uniform(0.95, 1.05) / m
        load = p.idle_power_w + (true_p - p.idle_power_w) * m
        if i == 25:
            s *= 10  # one outlier (a GC pause)
        est.observe(s, load * s, throttle=m)
    e = est.estimate()
    assert e.seconds == pytest.approx(true_s, rel=0.05)
    assert e.power_w == pytest.approx(true_p, rel=0.05)
    assert est.pessimistic().seconds >= true_s


def test_estimator_state_round_trip_and_garbage():
    est = CostEstimator(StepCost(1.0, 2.0), idle_power_w=0.1)
    for s in (1.0, float("nan"), -1.0, 2.0, 3.0):
        est.observe(s, 2.0 * s)
    assert est.count == 3
    other = CostEstimator(StepCost(1.0, 2.0), idle_power_w=0.1)
    other.load_state_dict(est.state_dict())
    assert other.estimate() == est.estimate() and other.pessimistic() == est.pessimistic()
    with pytest.raises(ValidationError, match=r"estimator.seconds\[0\]"):
        other.load_state_dict({"seconds": [-1.0], "powers": []})


# ----------------------------------------------------------------------------- policy


@pytest.mark.parametrize(("obj", "field"), [
    ({"battery_floor": 1.0}, "battery_floor"),
    ({"battery_floor": -0.1}, "battery_floor"),
    ({"max_thermal": "TOASTY"}, "max_thermal"),
    ({"max_thermal": 9}, "max_thermal"),
    ({"window_s": 0}, "window_s"),
    ({"horizon": "forever"}, "horizon"),
    ({"horizon": "deadline"}, "deadline_s"),
    ({"charging_only": "yes"}, "charging_only"),
    ({"floor": 0.2}, "floor"),
])
def test_invalid_policies_name_the_field(obj, field):
    with pytest.raises(ValidationError) as err:
        Policy.from_dict(obj)
    assert err.value.field == field


def test_policy_json_round_trip(tmp_path):
    pol = Policy(battery_floor=0.35, max_thermal=ThermalStatus.LIGHT, window_s=900,
                 deadline_s=28800, charging_only=True, horizon="deadline")
    path = tmp_path / "policy.json"
    import json
    path.write_text(json.dumps(pol.to_dict()))
    assert load_policy(path) == pol
    with pytest.raises(ValidationError, match="battery_floor"):
        Policy(battery_floor=1.5)
    with pytest.raises(ValidationError, match="step_seconds"):
        StepCost(0.0, 1.0)
