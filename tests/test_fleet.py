"""Fleet mode (mobile_lr.sim.fleet): the vectorised planner and device model agree with the
scalar ones, a whole device-day agrees with the scalar planner driving a SimulatedDevice and
with a real ScheduleManager, no device ends a step below its floor, and the CLI.

Reference numbers come from the scalar code itself (mobile_lr.budget.plan,
mobile_lr.device.advance, SimulatedDevice, ScheduleManager), which has its own tests against
closed forms (tests/test_device_model.py, tests/test_budget_planner.py). The vectorised code
evaluates the same formulas with numpy's exp/log, which may differ from libm's in the last
bit, so a step count is allowed to differ by one step per plan; energies and levels must
agree to 1e-9 relative where the step counts agree.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from mobile_lr.budget import Policy, StepCost, effective_floor, plan
from mobile_lr.cli import main
from mobile_lr.device import (
    DeviceState,
    SimulatedDevice,
    ThermalStatus,
    advance,
    cool_down_seconds,
    load_profile,
)
from mobile_lr.manager import Pause, Run, ScheduleManager, Stop
from mobile_lr.sim.fleet import (
    FACTOR_NAMES,
    FLEET_SCENARIOS,
    FleetState,
    advance_arrays,
    make_day,
    plan_fleet,
    simulate_cell,
    simulate_fleet,
)

PROFILES = ("low-end", "mid-range", "flagship")


def _random_states(p, rng, n):
    level = rng.uniform(0.05, 1.0, n)
    level[: n // 10] = 1.0                       # full batteries on the charger
    charging = rng.random(n) < 0.5
    amb = rng.uniform(10.0, 38.0, n)
    temp = amb + rng.uniform(0.0, 14.0, n)
    soh = rng.uniform(0.8, 1.0, n)
    fs = FleetState.initial(p, level, charging, amb, p.battery_wh * 3600.0 * soh, temp)
    return fs, soh


@pytest.mark.parametrize("name", PROFILES)
def test_plan_fleet_matches_the_scalar_planner(name):
    rng = np.random.default_rng(11)
    p = load_profile(name)
    n = 400
    fs, soh = _random_states(p, rng, n)
    budget = rng.uniform(1.0, 4000.0, n)
    cap = np.where(rng.random(n) < 0.2, rng.integers(0, 500, n), 10**9)
    policy = Policy(battery_floor=0.25, thermal_margin_c=0.5)
    cost = StepCost(p.step_seconds * 40, p.step_joules * 40 * 1.1)
    got = plan_fleet(p, fs, policy, cost, budget, cap)
    exact = 0
    for i in range(n):
        pi = replace(p, state_of_health=float(soh[i]))
        st = DeviceState(float(fs.level[i]), bool(fs.charging[i]), float(fs.temp[i]),
                         ThermalStatus(int(fs.status[i])), 0.0, float(fs.ambient[i]))
        want = plan(pi, st, policy, cost, max_steps=int(cap[i]), time_budget_s=float(budget[i]))
        assert abs(int(got.steps[i]) - want.steps) <= 1, (i, want, got.steps[i])
        if int(got.steps[i]) == want.steps:
            exact += 1
            assert FACTOR_NAMES[got.factor[i]] == want.limiting_factor
            assert got.energy_j[i] == pytest.approx(want.energy_j, rel=1e-9, abs=1e-9)
            assert got.seconds[i] == pytest.approx(want.seconds, rel=1e-9, abs=1e-9)
            assert got.end_level[i] == pytest.approx(want.end_level, rel=1e-9)
            assert got.end_temp[i] == pytest.approx(want.end_temperature_c, rel=1e-9)
            assert got.end_status[i] == int(want.end_status)
    assert exact >= n - 2        # the ±1 allowance is for rare ulp ties, not a habit
    # the states span every outcome, so the comparison covers each branch
    assert set(got.factor.tolist()) == {0, 1, 2, 3}


def test_advance_arrays_matches_device_advance_across_battery_events():
    rng = np.random.default_rng(3)
    for name in PROFILES:
        p = load_profile(name)
        n = 300
        fs, soh = _random_states(p, rng, n)
        fs.level[:30] = rng.uniform(0.0, 0.002, 30)           # run empty on battery
        dt = rng.uniform(0.0, 20_000.0, n)                     # crosses knee and full
        load = rng.uniform(p.idle_power_w, p.train_power_w * 2, n)
        lv, tp, st, used = advance_arrays(p, fs.level, fs.charging, fs.temp, fs.status,
                                          fs.ambient, fs.battery_j, load, dt)
        for i in range(n):
            pi = replace(p, state_of_health=float(soh[i]))
            s0 = DeviceState(float(fs.level[i]), bool(fs.charging[i]), float(fs.temp[i]),
                             ThermalStatus(int(fs.status[i])), 0.0, float(fs.ambient[i]))
            s1, led = advance(pi, s0, float(load[i]), float(dt[i]))
            assert lv[i] == pytest.approx(s1.level, rel=1e-9, abs=1e-12)
            assert tp[i] == pytest.approx(s1.temperature_c, rel=1e-9)
            assert st[i] == int(s1.thermal_status)
            assert used[i] == pytest.approx(led.consumed_j, rel=1e-9, abs=1e-9)


def _scalar_day(p, day, i, policy, step_factor, resume_gap_c=1.0):
    """One phone's day with the scalar planner, the steps run one by one on a
    SimulatedDevice (the reference for simulate_cell). Returns (steps, lowest level at the end
    of a step, floor of that step)."""
    if day.floor is not None:
        policy = replace(policy, battery_floor=day.floor)
    cost = StepCost(p.step_seconds * step_factor, p.step_joules * step_factor)
    first = day.phases[0]
    dev = SimulatedDevice(p, DeviceState.initial(p, float(day.level[i]), bool(first.charging[i]),
                                                 ambient_c=float(first.ambient_c[i])),
                          ambient_c=float(first.ambient_c[i]), step_seconds=cost.seconds)
    total, margin = 0, math.inf
    window_end = -math.inf
    target = policy.thermal_limit_c(p) - resume_gap_c
    for ph in day.phases:
        dev.set_charging(bool(ph.charging[i]))
        dev.set_ambient(float(ph.ambient_c[i]))
        end = dev.state.time_s + float(ph.duration_s[i])
        if ph.train and ph.new_window:
            window_end = dev.state.time_s + p.window_for(dev.state.charging)
        while ph.train:
            limit = min(end, window_end)
            st = replace(dev.state, time_s=0.0)
            pl = plan(p, st, policy, cost, time_budget_s=limit - dev.state.time_s)
            floor = effective_floor(p, policy, dev.state.charging)
            for _ in range(pl.steps):
                dev.train_step()
                margin = min(margin, dev.state.level - floor)
            total += pl.steps
            hint = cool_down_seconds(p, dev.state, target)
            if pl.limiting_factor == "thermal" and hint > 0.0 and dev.state.time_s + hint < limit:
                dev.idle(hint)
                continue
            break
        if end > dev.state.time_s:
            dev.idle(end - dev.state.time_s)
    return total, margin


@pytest.mark.parametrize("scenario", list(FLEET_SCENARIOS))
def test_device_day_matches_scalar_planner_on_a_simulated_device(scenario):
    step_factor = 300.0       # steps of a few seconds: the scalar reference stays quick
    policy = Policy()
    for name in ("mid-range", "flagship"):
        p = load_profile(name)
        rng = np.random.default_rng(5)
        day = make_day(scenario, rng, 3)
        res = simulate_cell(p, day, policy, np.full(3, p.battery_j), step_factor=step_factor)
        assert int(res.floor_violations.sum()) == 0
        for i in range(3):
            want, margin = _scalar_day(p, day, i, policy, step_factor)
            assert margin >= 0.0      # no step on the SimulatedDevice ends below its floor
            # one step per plan at most (ulp ties); a day has a few dozen plans
            assert abs(int(res.steps[i]) - want) <= 2, (name, i, res.steps[i], want)
            assert want > 0


def test_fleet_agrees_with_a_real_schedule_manager():
    """The manager re-plans before every step with a pessimistic cost (×1.1 time, ×1.21
    energy once calibrated), so it stops a little short of each limit: it must never run more
    steps than the fleet counts, and at most a few steps per window fewer."""
    p = replace(load_profile("flagship"), step_seconds=load_profile("flagship").step_seconds * 300)
    rng = np.random.default_rng(2)
    day = make_day("hot-day", rng, 1)
    end_s = float(sum(ph.duration_s[0] for ph in day.phases))
    policy = Policy(horizon="deadline", deadline_s=end_s)
    fleet = simulate_cell(p, day, policy, np.full(1, p.battery_j))
    spec = {"format": "mobile-lr.schedule/1", "base_lr": 0.1,
            "shape": {"type": "linear", "start_factor": 1.0, "end_factor": 0.0}}
    first = day.phases[0]
    dev = SimulatedDevice(p, DeviceState.initial(p, float(day.level[0]), bool(first.charging[0]),
                                                 ambient_c=float(first.ambient_c[0])),
                          ambient_c=float(first.ambient_c[0]))
    mgr = ScheduleManager(spec, p, policy, {"nominal_steps": 10**6}, dev.state)
    runs = windows = 0
    for ph in day.phases:
        dev.set_charging(bool(ph.charging[0]))
        dev.set_ambient(float(ph.ambient_c[0]))
        end = dev.state.time_s + float(ph.duration_s[0])
        mgr.update_device(dev.state)
        if ph.train and ph.new_window:
            mgr.begin_window(dev.state.time_s)
            windows += 1
        while ph.train:
            d = mgr.next()
            if isinstance(d, Run):
                r = dev.train_step()
                mgr.observe(loss=1.0, step_seconds=r.seconds, energy_j=r.energy_j)
                mgr.update_device(dev.state)
                runs += 1
                continue
            assert not isinstance(d, Stop), d
            assert isinstance(d, Pause)
            if d.reason == "thermal" and d.resume_hint and \
                    dev.state.time_s + d.resume_hint < end:
                dev.idle(d.resume_hint)
                mgr.update_device(dev.state)
                continue
            break
        if end > dev.state.time_s:
            dev.idle(end - dev.state.time_s)
    steps = int(fleet.steps[0])
    assert int(fleet.thermal_pauses[0]) > 0          # the day exercises the thermal pauses
    assert runs <= steps
    assert steps - runs <= 3 * windows + 0.02 * steps, (runs, steps)


def test_no_device_ends_a_step_below_its_floor_in_a_large_fleet():
    out = simulate_fleet(list(PROFILES), list(FLEET_SCENARIOS), 2400, seed=4)
    tot = out["total"]
    assert tot["device_days"] == 2400
    assert tot["floor_violations"] == 0
    # the commute scenario's floor is 20 %, the policy's too: nothing trained below it
    assert tot["min_level"] >= 0.2
    # the fleet reaches each limit somewhere, so the invariant is not vacuous
    assert tot["stop_reasons"]["battery"] > 0 and tot["stop_reasons"]["thermal"] > 0
    cells = {(c["profile"], c["scenario"]): c for c in out["cells"]}
    assert len(cells) == 12
    # a hot day throttles the flagship: it pauses to cool, the low-end phone never does
    assert cells[("flagship", "hot-day")]["thermal_pauses"]["mean"] > 1.0
    assert cells[("low-end", "hot-day")]["thermal_pauses"]["max"] == 0.0


def test_fleet_is_seeded_and_nominal_steps_caps_the_day():
    a = simulate_fleet(["mid-range"], ["commute-low-battery"], 50, seed=9, nominal_steps=100,
                       step_factor=300.0)
    b = simulate_fleet(["mid-range"], ["commute-low-battery"], 50, seed=9, nominal_steps=100,
                       step_factor=300.0)
    assert a == b
    assert a["total"]["steps"]["max"] == 100
    assert a["total"]["stop_reasons"]["done"] > 0


def test_fleet_cli_json_and_errors(tmp_path, capsys):
    rc = main(["fleet", "--profiles", "low-end,flagship", "--scenarios", "hot-day",
               "--devices", "40", "--seed", "1", "--json", "--out", str(tmp_path)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"total", "cells", "config", "wall_seconds"}
    assert out["total"]["device_days"] == 40
    assert {"p5", "p50", "p95", "mean"} <= set(out["total"]["steps"])
    assert json.loads((tmp_path / "fleet.json").read_text())["config"]["seed"] == 1
    assert main(["fleet", "--scenarios", "beach"]) == 2
    assert "unknown scenario 'beach'" in capsys.readouterr().err
    assert main(["fleet", "--devices", "0"]) == 2
    assert main(["fleet", "--profiles", "tablet"]) == 2
