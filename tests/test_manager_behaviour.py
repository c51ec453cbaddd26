"""Manager behaviour: NaN rollback and give-up, the LR range test, several OS windows in one
run, charging extends the plan, a wrong profile is corrected, plateau, the peak-LR hook,
and clear errors for bad configurations."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from mobile_lr.budget import Policy
from mobile_lr.device import DeviceState, SimulatedDevice, ThermalStatus, load_profile
from mobile_lr.manager import (
    ManagerConfig,
    Pause,
    Rollback,
    Run,
    ScheduleManager,
    Stop,
    pick_steepest,
    register_peak_lr_policy,
)
from mobile_lr.validation import ValidationError

pytestmark = pytest.mark.core


LINEAR = {"format": "mobile-lr.schedule/1", "base_lr": 0.1, "total_steps": 100,
          "shape": {"type": "linear", "start_factor": 1.0, "end_factor": 0.0}}


def world(profile="mid-range", level=0.9, charging=False, **overrides):
    p = replace(load_profile(profile), step_seconds=1.0, **overrides)
    return p, SimulatedDevice(p, DeviceState.initial(p, level, charging))


def step(mgr, dev, loss=1.0):
    """One loop iteration: tell, decide, act. Returns the decision."""
    mgr.update_device(dev.state)
    d = mgr.next()
    if isinstance(d, Run):
        r = dev.train_step()
        mgr.observe(loss=loss, step_seconds=r.seconds, energy_j=r.energy_j)
    elif isinstance(d, Pause):
        dev.idle(d.resume_hint or 60.0)
        if d.reason == "window":
            mgr.begin_window()
    return d


def test_nan_loss_rolls_back_lowers_the_lr_and_gives_up():
    p, dev = world()
    mgr = ScheduleManager(LINEAR, p, Policy(window_s=3600),
                          {"nan_lr_factor": 0.5, "max_failures": 2})
    for _ in range(10):
        step(mgr, dev)
    mgr.mark_checkpoint()                 # the model after 10 steps is saved
    for _ in range(5):
        step(mgr, dev)
    lr_before = mgr.lr_at(15)
    step(mgr, dev, loss=math.nan)         # step 15 blows up
    d = mgr.next()
    assert d == Rollback(to_step=10, lr_scale=0.5, failures=1, reason="non-finite loss")
    d = step(mgr, dev)
    assert isinstance(d, Run) and d.step == 10
    assert d.lr == pytest.approx(0.5 * LINEAR["base_lr"] * (1 - 10 / 100), rel=1e-12)
    assert mgr.lr_at(15) == pytest.approx(0.5 * lr_before, rel=1e-12)
    step(mgr, dev, loss=math.inf)
    assert isinstance(mgr.next(), Rollback)
    step(mgr, dev, loss=math.nan)         # the third failure > max_failures = 2
    assert mgr.next() == Stop("diverged", "3 non-finite losses")
    assert mgr.next() == Stop("diverged", "3 non-finite losses")  # sticky


def test_range_test_picks_the_steepest_descent_and_stops_on_divergence():
    """A loss that falls fastest at lr = 1e-2 and explodes above 0.2 (Smith's test)."""
    p, dev = world("flagship", level=1.0, charging=True)
    spec = {**LINEAR, "total_steps": 2000}
    cfg = {"range_test": {"fraction": 0.05, "min_steps": 10, "max_steps": 100,
                          "start_factor": 1e-3, "end_factor": 10.0, "smoothing": 0.7}}
    mgr = ScheduleManager(spec, p, Policy(max_thermal=ThermalStatus.SEVERE, window_s=7200), cfg)
    lrs = []
    while True:
        mgr.update_device(dev.state)
        d = mgr.next()
        if isinstance(d, Rollback):
            break
        assert isinstance(d, Run) and d.phase == "range-test"
        lrs.append(d.lr)
        loss = 100.0 if d.lr > 0.2 else 2.0 - math.tanh(math.log10(d.lr / 1e-2))
        r = dev.train_step()
        mgr.observe(loss=loss, step_seconds=r.seconds, energy_j=r.energy_j)
    assert d == Rollback(0, 1.0, 0, "range-test")  # restore the weights from before the sweep
    rt = mgr.range_test
    assert rt.how == "diverged" and rt.points < 100
    # exponential sweep from base·1e-3
    assert lrs[0] == pytest.approx(1e-4) and lrs[1] / lrs[0] == pytest.approx(lrs[2] / lrs[1])
    # the smoothed loss lags the raw one by a few points: the pick is within ×3 of 1e-2
    assert 1e-2 / 3 < rt.chosen_lr < 1e-2 * 3
    d = step(mgr, dev)
    assert isinstance(d, Run) and d.phase == "train" and d.step == 0
    assert d.lr == pytest.approx(rt.chosen_lr, rel=1e-12)  # base_lr is now the pick


def test_pick_steepest():
    assert pick_steepest([5, 4, 3, 1, 0.5, 0.4], 0.0) == 2  # (1 - 4)/2 is the steepest
    assert pick_steepest([1, 2], 0.1) is None                # too short
    assert pick_steepest([1, 2, 3, 4, 5], 0.1) is None       # never descends


def test_overnight_windows_are_one_run():
    """Charging overnight in 10-minute Worker windows: the step counter and the plan carry
    on across windows, and the run completes its nominal steps with the LR at its end."""
    p, dev = world("low-end", level=0.5, charging=True)
    spec = {**LINEAR, "total_steps": 1500}
    policy = Policy(horizon="deadline", deadline_s=8 * 3600, window_s=600, window_gap_s=300)
    mgr = ScheduleManager(spec, p, policy)
    windows, last = 0, None
    for _ in range(5000):
        d = step(mgr, dev)
        if isinstance(d, Pause):
            assert d.reason == "window"
            dev.idle(300.0)
            windows += 1
        elif isinstance(d, Stop):
            break
        else:
            last = d
    assert d == Stop("done")
    assert windows >= 2 and last.step == 1499
    assert mgr.plan_history[-1][1] == 1500
    assert last.lr == pytest.approx(mgr.lr_at(1499)) and last.lr < 0.1 / 1000 * 1.01


def test_charging_extends_the_plan():
    p, dev = world("mid-range", level=0.33, battery_wh=2.0)
    policy = Policy(battery_floor=0.3, window_s=3600)
    mgr = ScheduleManager({**LINEAR, "total_steps": 5000}, p, policy)
    for _ in range(10):
        step(mgr, dev)
    before = mgr.planned_total
    dev.set_charging(True)
    step(mgr, dev)
    assert mgr.planned_total > 3 * before
    assert mgr.plan_history[-1][0] == 11 or mgr.plan_history[-1][0] == 10


def test_wrong_profile_is_corrected_by_observations():
    """The profile says 1 s and 3.5 W per step; the phone needs 3 s and 5 W. After a few
    dozen steps the manager's estimate is right and its plan matches the planner's plan at
    the true cost."""
    p, _ = world()
    dev = SimulatedDevice(p, DeviceState.initial(p, 0.9), step_seconds=3.0, train_power_w=5.0)
    mgr = ScheduleManager({**LINEAR, "total_steps": 100000}, p,
                          Policy(battery_floor=0.3, window_s=100000))
    totals = []
    for _ in range(40):
        step(mgr, dev)
        totals.append(mgr.planned_total)
    est = mgr.estimator.estimate()
    assert est.seconds == pytest.approx(3.0, rel=1e-6) and est.power_w == pytest.approx(5.0)
    assert totals[0] > 1.5 * totals[-1]  # the first plan trusted the wrong profile
    assert max(totals[20:]) - min(totals[20:]) <= totals[-1] // 20 + 1  # settled


def test_thermal_pause_with_a_cool_down_hint():
    p, dev = world("flagship", level=0.9)
    policy = Policy(max_thermal=ThermalStatus.NONE, horizon="deadline", deadline_s=36000,
                    window_s=36000)
    mgr = ScheduleManager({**LINEAR, "total_steps": 100000}, p, policy)
    for _ in range(2000):
        mgr.update_device(dev.state)
        d = mgr.next()
        if isinstance(d, Pause):
            break
        r = dev.train_step()
        mgr.observe(loss=1.0, step_seconds=r.seconds, energy_j=r.energy_j)
    assert d.reason == "thermal" and d.resume_hint > 0
    assert dev.state.temperature_c < 39.0 - 1.0  # never ran into LIGHT - margin
    dev.idle(d.resume_hint)
    mgr.update_device(dev.state)
    assert isinstance(mgr.next(), Run)


def test_charging_only_and_not_started():
    p, dev = world()
    mgr = ScheduleManager(LINEAR, p, Policy(charging_only=True))
    assert step(mgr, dev) == Pause("not-charging", None)
    dev.set_charging(True)
    assert isinstance(step(mgr, dev), Run)


def test_plateau_schedule_follows_eval_metrics():
    p, dev = world()
    spec = {"format": "mobile-lr.schedule/1", "base_lr": 0.1, "total_steps": 50,
            "shape": {"type": "plateau", "factor": 0.5, "patience": 1}}
    mgr = ScheduleManager(spec, p, Policy(window_s=3600))
    assert step(mgr, dev).lr == 0.1
    for metric in (1.0, 1.0, 1.0):
        mgr.observe_eval(metric)
    assert step(mgr, dev).lr == pytest.approx(0.05)


def test_peak_lr_hook():
    register_peak_lr_policy("double", lambda planned, nominal, params: 2.0)
    p, dev = world()
    mgr = ScheduleManager(LINEAR, p, Policy(window_s=3600), {"peak_lr": {"type": "double"}})
    assert step(mgr, dev).lr == pytest.approx(0.2)
    # the built-in rule: a budget cut to a quarter of nominal gets sqrt(4) = 2x the peak
    p2, dev2 = world(level=0.33, battery_wh=0.5)
    mgr2 = ScheduleManager({**LINEAR, "total_steps": 10**6}, p2,
                           Policy(battery_floor=0.3, window_s=3600),
                           {"peak_lr": {"type": "budget_power", "power": 0.5, "max_factor": 3}})
    step(mgr2, dev2)
    assert mgr2.peak_factor == 3.0


@pytest.mark.parametrize(("cfg", "field"), [
    ({"peak_lr": {"type": "magic"}}, "config.peak_lr.type"),
    ({"range_test": {"fraction": 0.9}}, "config.range_test.fraction"),
    ({"nan_lr_factor": 0}, "config.nan_lr_factor"),
    ({"max_failures": -1}, "config.max_failures"),
    ({"replan_tolerance": 0}, "config.replan_tolerance"),
    ({"safety": 2}, "config.safety"),
])
def test_bad_config_names_the_field(cfg, field):
    with pytest.raises(ValidationError) as err:
        ManagerConfig.from_dict(cfg)
    assert err.value.field == field


def test_bad_state_and_missing_length_are_refused():
    p, _ = world()
    spec = {k: v for k, v in LINEAR.items() if k != "total_steps"}
    with pytest.raises(ValidationError, match="nominal_steps"):
        ScheduleManager(spec, p)
    mgr = ScheduleManager(LINEAR, p)
    with pytest.raises(ValidationError, match="format"):
        mgr.load_state_dict({"format": "something/2"})
    with pytest.raises(ValueError, match="without a Run"):
        mgr.observe(loss=1.0)


@pytest.mark.parametrize(("level", "ends_by"), [(0.9, "time"), (0.3, "battery")])
def test_session_horizon_pauses_to_cool_and_goes_on_in_the_same_window(level, ends_by):
    """Horizon "session" (the default) on a hot flagship (30 °C ambient) with a 30-minute
    window: the first thermal limit comes after a few hundred steps, but the window has a
    lot of time left, so the manager pauses to cool and goes on (it used to stop there with
    Stop("budget")). The run ends by the window's end (level 0.9) or the battery floor (0.3)
    with the LR annealed, having run well over twice the steps before the first limit, and
    no step ends below the floor or at the thermal limit."""
    window_s = 1800.0
    p = replace(load_profile("flagship"), step_seconds=1.0, ambient_c=30.0)
    dev = SimulatedDevice(p, DeviceState.initial(p, level, ambient_c=30.0), ambient_c=30.0)
    policy = Policy(window_s=window_s)
    assert policy.horizon == "session"
    mgr = ScheduleManager({**LINEAR, "total_steps": 100000}, p, policy)
    mgr.update_device(dev.state)
    mgr.begin_window(0.0, window_s)
    theta = policy.thermal_limit_c(p)
    first_limit, pauses, last, d = None, 0, None, None
    for _ in range(5000):
        mgr.update_device(dev.state)
        d = mgr.next()
        if isinstance(d, Run):
            last = d
            r = dev.train_step()
            mgr.observe(loss=1.0, step_seconds=r.seconds, energy_j=r.energy_j)
            assert dev.state.level >= policy.battery_floor
            assert dev.state.temperature_c < theta
            assert dev.state.thermal_status <= policy.max_thermal
        elif isinstance(d, Pause):
            assert d.reason == "thermal" and d.resume_hint is not None and d.resume_hint > 0
            if first_limit is None:
                first_limit = mgr.step
            pauses += 1
            dev.idle(min(d.resume_hint, window_s - dev.state.time_s))
        else:
            break
    assert first_limit is not None and pauses >= 2
    assert d == Stop("budget", ends_by)
    assert dev.state.time_s <= window_s
    assert mgr.step > 2 * first_limit
    # the last step run is the last step of the plan in force: the LR has annealed
    assert last.step + 1 == mgr.step == mgr.plan_history[-1][1]
    assert last.lr == pytest.approx(mgr.lr_at(last.step)) and last.lr < 0.1 * 1e-3
