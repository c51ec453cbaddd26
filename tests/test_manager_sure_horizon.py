"""``schedule_horizon: "battery"``: while the phone charges, the schedule follows the planned
totals capped at what the battery alone affords (the steps the run is sure of: the charger can go
at any step), so the recommended schedule-free warm-up does not spend a short budget warming up
for the charger's long plan. The plan history, the stops and the step counts do not change; on
battery the LRs are those of the plain plan bit for bit."""

from __future__ import annotations

import pytest

from mobile_lr.device import DeviceState, SimulatedDevice, load_profile
from mobile_lr.manager import Run, ScheduleManager, recommended_setup
from mobile_lr.validation import ValidationError

pytestmark = pytest.mark.core

NOMINAL = 200
PROFILE = load_profile("mid-range")


def _run(horizon: str, level: float, unplug_after: int | None, resume_at: int | None = None):
    """The recommended schedule-free set-up on a mid-range phone ``level`` above the floor,
    charging for the first ``unplug_after`` steps (None: on battery throughout); ``resume_at``:
    round-trip the manager through its JSON state there. Returns (LRs, plan history, manager)."""
    setup = recommended_setup("ort", None, 0.01, NOMINAL, {"sf_warmup_horizon": horizon})
    dev = SimulatedDevice(PROFILE, DeviceState.initial(PROFILE, 0.2 + level,
                                                       charging=unplug_after is not None))
    mgr = ScheduleManager(setup.schedule, PROFILE, None, setup.config, dev.state)
    lrs: list[float] = []
    while isinstance(d := mgr.next(), Run):
        lrs.append(d.lr)
        r = dev.train_step()
        mgr.observe(1.0, r.seconds, r.energy_j)
        if len(lrs) == unplug_after:
            dev.set_charging(False)
        mgr.update_device(dev.state)
        if len(lrs) == resume_at:
            mgr = ScheduleManager.from_state_dict(mgr.state_dict())
    return lrs, list(mgr.plan_history), mgr


LOW = 2e-5    # a battery that alone affords ~30 steps of the mid-range profile


def test_a_charging_run_on_a_low_battery_warms_up_for_the_steps_it_is_sure_of():
    plan_lrs, plan_hist, _ = _run("plan", LOW, unplug_after=15)
    sure_lrs, sure_hist, mgr = _run("battery", LOW, unplug_after=15)
    assert len(plan_lrs) == len(sure_lrs) > 15         # the same run: the same budget
    assert plan_hist == sure_hist and plan_hist[0] == (0, NOMINAL)
    peak = max(sure_lrs)
    # the charger's plan (200 steps) warms up over 20: still ramping when the charger goes
    assert plan_lrs[14] < 0.9 * peak
    # the battery alone carries ~30 steps: a warm-up of ~3, the peak long before the unplug
    assert all(lr == peak for lr in sure_lrs[4:])
    assert mgr.followed.entries[0][1] < 0.25 * NOMINAL
    assert mgr.followed.entries != mgr.history.entries


def test_on_battery_and_on_a_charged_phone_the_lrs_are_the_plain_plans():
    for level, unplug in ((LOW, None), (0.7, 15), (0.7, None)):
        a, ha, _ = _run("plan", level, unplug)
        b, hb, _ = _run("battery", level, unplug)
        assert a == b and ha == hb, (level, unplug)


def test_the_capped_plan_is_saved_and_a_resumed_run_goes_on_the_same():
    straight, _, mgr = _run("battery", LOW, unplug_after=15)
    resumed, _, again = _run("battery", LOW, unplug_after=15, resume_at=6)
    assert resumed == straight
    assert again.followed.entries == mgr.followed.entries
    state = mgr.state_dict()
    assert state["followed_plan"] == [list(e) for e in mgr.followed.entries]
    del state["followed_plan"]
    with pytest.raises(ValidationError, match="followed_plan"):
        ScheduleManager.from_state_dict(state)
    plain = _run("plan", LOW, unplug_after=15)[2].state_dict()
    assert "followed_plan" not in plain


def test_the_battery_horizon_needs_a_shape_that_holds_its_peak():
    from mobile_lr.manager import RecommendedSetup

    good = recommended_setup("ort", None, 0.01, NOMINAL)
    assert good.config.schedule_horizon == "battery"
    ema = recommended_setup("ort", None, 0.01, NOMINAL, {"averaging": "ema"})
    assert ema.config.schedule_horizon is None
    cfg = {**ema.config.to_dict(), "schedule_horizon": "battery"}
    with pytest.raises(ValidationError, match=r"schedule_horizon.*decays"):
        RecommendedSetup.from_dict({**ema.to_dict(), "config": cfg})
    with pytest.raises(ValidationError, match="schedule_horizon"):
        ScheduleManager(good.schedule, PROFILE, None, {**good.config.to_dict(),
                                                       "schedule_horizon": "charger"})
