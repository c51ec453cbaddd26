"""Property tests of the schedule manager over random phones, states, policies, schedules and
event traces (plug/unplug, ambient changes, idle gaps, new OS windows, NaN losses, a profile
whose per-step time and power are wrong by up to 3x each):

* it never starts a step whose predicted end is below the battery floor or above the
  allowed thermal status, and the simulated phone's truth agrees (the prediction uses the
  pessimistic cost, which covers any true cost within the stated prior factor);
* it never returns a non-finite or negative LR;
* when it stops because the budget ran out (``Stop("budget")``), the schedule's planned
  total equals the steps actually run, the last Run's LR is the schedule's value at
  ``T_final - 1`` of that plan, and that value is within one step of the final plan segment
  of the shape's end value:
  ``|lr_last - end| <= C · k · (base - end) / (T_final - max(t_k, w))`` where
  ``(t_k, T_final)`` is the last plan entry, ``w`` the warm-up length, ``k`` the manager's
  LR factor and ``C`` the shape's slope bound at the end (1 linear, π/2 cosine, 2 REX).
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobile_lr.budget import Policy
from mobile_lr.device import BUILTIN_PROFILES, DeviceState, SimulatedDevice, load_profile
from mobile_lr.manager import Pause, Rollback, Run, ScheduleManager, Stop
from mobile_lr.testing.events import EVENT_KINDS, apply_event

pytestmark = pytest.mark.core


SHAPES = {
    "linear": ({"type": "linear", "start_factor": 1.0, "end_factor": 0.0}, 1.0),
    "cosine": ({"type": "cosine"}, math.pi / 2),
    "rex": ({"type": "rex"}, 2.0),
}


@st.composite
def scenarios(draw):
    name = draw(st.sampled_from(BUILTIN_PROFILES))
    base = load_profile(name)
    step_s = draw(st.floats(0.5, 10.0))
    profile = replace(
        base,
        battery_wh=base.battery_wh * draw(st.floats(0.005, 0.2)),
        thermal_resistance_k_per_w=base.thermal_resistance_k_per_w * draw(st.floats(0.7, 1.5)),
        heat_capacity_j_per_k=base.heat_capacity_j_per_k * draw(st.floats(0.5, 1.5)),
        charge_power_w=draw(st.floats(0.0, 30.0)),
        ambient_c=draw(st.floats(15.0, 35.0)),
        step_seconds=step_s,
    )
    truth = {
        "step_seconds": step_s * draw(st.floats(1 / 3, 3.0)),
        "train_power_w": max(profile.idle_power_w * 1.01,
                             profile.train_power_w * draw(st.floats(1 / 3, 3.0))),
        "ambient_c": profile.ambient_c + draw(st.floats(-8.0, 8.0)),
    }
    amb = truth["ambient_c"]
    state = DeviceState(level=draw(st.floats(0.05, 1.0)), charging=draw(st.booleans()),
                        temperature_c=amb + draw(st.floats(0.0, 18.0)),
                        thermal_status=0, ambient_c=amb)
    state = replace(state, thermal_status=profile.status_for(state.temperature_c))
    horizon = draw(st.sampled_from(["session", "deadline"]))
    policy = Policy(
        battery_floor=draw(st.floats(0.0, 0.8)),
        max_thermal=draw(st.integers(0, 3)),
        window_s=draw(st.one_of(st.none(), st.floats(60.0, 3000.0))),
        deadline_s=draw(st.floats(600.0, 20000.0)) if horizon == "deadline" else None,
        charging_only=draw(st.booleans()) and draw(st.booleans()),
        thermal_margin_c=draw(st.floats(0.5, 2.0)),
        horizon=horizon,
        window_gap_s=120.0 if horizon == "deadline" else 0.0,  # what the driver idles
    )
    shape = draw(st.sampled_from(sorted(SHAPES)))
    spec = {"format": "mobile-lr.schedule/1", "base_lr": draw(st.floats(1e-4, 1.0)),
            "total_steps": draw(st.integers(5, 250)), "shape": SHAPES[shape][0]}
    if draw(st.booleans()):
        spec["warmup"] = {"steps": draw(st.integers(1, 20))}
    if shape == "cosine" and draw(st.booleans()):
        spec["budget"] = {"mode": draw(st.sampled_from(["wsd", "fixed"]))}
    config = {}
    if draw(st.booleans()) and draw(st.booleans()):
        config["range_test"] = {"fraction": 0.2, "min_steps": 4, "max_steps": 12}
    if draw(st.booleans()):
        config["peak_lr"] = {"type": "budget_power", "power": 0.5, "max_factor": 3.0}
    events = draw(st.lists(st.tuples(
        st.integers(0, 400),
        st.sampled_from(EVENT_KINDS),
        st.floats(-12.0, 12.0)), max_size=6))
    nan_every = draw(st.sampled_from([0, 0, 0, 37]))
    tell_ambient = draw(st.booleans())
    return profile, truth, state, policy, spec, shape, config, events, nan_every, tell_ambient


def run_scenario(profile, truth, state, policy, spec, shape, config, events, nan_every,
                 tell_ambient, max_iters=800):
    dev = SimulatedDevice(profile, state, ambient_c=truth["ambient_c"],
                          train_power_w=truth["train_power_w"], step_seconds=truth["step_seconds"])
    mgr = ScheduleManager(spec, profile, policy, config)
    by_iter: dict[int, list] = {}
    for it, kind, x in events:
        by_iter.setdefault(it, []).append((kind, x))
    limit_next = profile.threshold(int(policy.max_thermal) + 1)
    theta = policy.thermal_limit_c(profile)
    runs: list[Run] = []
    stop = None
    for it in range(max_iters):
        for kind, x in by_iter.get(it, []):
            apply_event(dev, mgr, kind, x)
        seen = dev.state if tell_ambient else replace(dev.state, ambient_c=None)
        mgr.update_device(seen)
        decision = mgr.next()
        if isinstance(decision, Stop):
            stop = decision
            break
        if isinstance(decision, Rollback):
            continue
        if isinstance(decision, Pause):
            wait = decision.resume_hint if decision.resume_hint is not None else 120.0
            dev.idle(min(max(wait, 1.0), 1800.0))
            if decision.reason == "window":
                mgr.begin_window()
            if decision.reason in ("not-charging", "battery-low", "battery") and it % 7 == 0:
                dev.set_charging(True)  # the user plugs in, eventually
            continue
        assert isinstance(decision, Run)
        assert math.isfinite(decision.lr) and decision.lr >= 0.0
        # the manager's own prediction of this step's end
        pred = mgr.predicted_end
        assert pred is not None
        assert pred.level >= policy.battery_floor
        assert pred.temperature_c < theta
        assert pred.thermal_status <= policy.max_thermal
        # the truth on the simulated phone
        before = dev.state
        result = dev.train_step()
        after = dev.state
        assert after.level >= policy.battery_floor, (before, after)
        if profile.battery_not_low and not before.charging:
            assert after.level > profile.low_battery_level  # the OS would stop the job
        slack = 0.0
        if not tell_ambient:
            mismatch = abs(dev.ambient_c - profile.ambient_c)
            slack = max(0.0, mismatch * (1 - math.exp(-result.seconds / profile.tau_s))
                        - policy.thermal_margin_c)
        assert after.temperature_c < limit_next + slack, (before, after, slack)
        if slack == 0.0:
            assert after.thermal_status <= policy.max_thermal
        if decision.phase == "train":
            runs.append(decision)
        loss = math.nan if nan_every and (it + 1) % nan_every == 0 else 1.0 / (1 + it)
        mgr.observe(loss=loss, step_seconds=result.seconds, energy_j=result.energy_j)
    return mgr, runs, stop


def check_budget_stop(mgr: ScheduleManager, runs: list[Run], stop: Stop | None, shape: str,
                      spec: dict) -> None:
    if stop is None or stop.reason not in ("budget", "done") or not runs:
        return
    hist = mgr.plan_history
    last = runs[-1]
    # the plan entry in force at the last Run (a later entry at the final step only says
    # "spent": (T, T))
    t_k, total = [(t, tot) for t, tot in hist if t <= last.step][-1]
    assert total == mgr.step == last.step + 1
    assert hist[-1][1] == total
    assert last.lr == mgr.lr_at(last.step)
    sched = mgr.schedule
    warm = sched.warmup.length(hist[0][1]) if sched.warmup else 0
    if sched.budget_mode != "replan" or last.step < warm:
        return
    k = mgr.lr_scale
    end = sched.end_lr(hist) * k
    # the shape runs after the warm-up, on the plan shifted by it
    bound = SHAPES[shape][1] * k * (sched.base_lr - sched.end_lr(hist)) / (total - max(t_k, warm))
    assert abs(last.lr - end) <= bound * (1 + 1e-9) + 1e-15


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_manager_never_crosses_the_floor_or_the_thermal_limit(case):
    profile, truth, state, policy, spec, shape, config, events, nan_every, tell = case
    mgr, runs, stop = run_scenario(profile, truth, state, policy, spec, shape, config, events,
                                   nan_every, tell)
    check_budget_stop(mgr, runs, stop, shape, spec)


def test_budget_stops_happen_and_end_at_the_end_value():
    """A battery-limited commute: the run stops for budget with the LR at its end value."""
    p = replace(load_profile("mid-range"), battery_wh=2.0, step_seconds=2.0)
    spec = {"format": "mobile-lr.schedule/1", "base_lr": 0.1, "total_steps": 1000,
            "shape": SHAPES["linear"][0]}
    state = DeviceState.initial(p, 0.6)
    truth = {"step_seconds": 3.0, "train_power_w": 4.0, "ambient_c": 25.0}
    mgr, runs, stop = run_scenario(p, truth, state, Policy(battery_floor=0.3, window_s=3600),
                                   spec, "linear", {}, [], 0, True)
    assert stop == Stop("budget", "battery")
    assert 100 < len(runs) < 1000
    check_budget_stop(mgr, runs, stop, "linear", spec)
    assert runs[-1].lr < 0.1 * 0.05  # within the last few percent of the decay
