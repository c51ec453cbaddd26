"""How the manager sizes the schedule's plan when the battery cuts the run: the total planned once
the first steps are measured is within a few % of the steps the run gets, and the last step of a
budget-cut run trains at a non-zero LR (it used to be one step past the plan's end, at the cool-
down's end LR 0). The gate, which keeps every step above the floor, is the pessimistic one still
(tests/test_manager_invariants.py)."""

from __future__ import annotations

import random

import pytest

from mobile_lr.device import DeviceState, SimulatedDevice, load_profile
from mobile_lr.manager import Run, ScheduleManager, Stop, recommended_setup

pytestmark = pytest.mark.core

NOMINAL = 300


def _run(level: float, *, power_factor: float = 1.0, jitter: float = 0.0, seed: int = 0,
         charging_until: int | None = None, profile: str = "mid-range"):
    """The recommended set-up's EMA flavour (a cool-down to LR 0) on a phone unplugged ``level``
    above the floor (or charging for the first ``charging_until`` steps); the true step costs
    ``power_factor`` x the profile's power, its time varies by ``± jitter``. Returns (LRs run,
    plan history, the final decision, the phone)."""
    p = load_profile(profile)
    setup = recommended_setup("ort", None, 0.01, NOMINAL, {"averaging": "ema"})
    floor = 0.2
    dev = SimulatedDevice(p, DeviceState.initial(p, floor + level, charging=charging_until is not None),
                          train_power_w=p.train_power_w * power_factor)
    mgr = ScheduleManager(setup.schedule, p, None, setup.config, dev.state)
    rng = random.Random(seed)
    lrs: list[float] = []
    while True:
        d = mgr.next()
        if not isinstance(d, Run):
            return lrs, list(mgr.plan_history), d, dev
        lrs.append(d.lr)
        r = dev.train_step(work_s=p.step_seconds * (1.0 + jitter * rng.uniform(-1.0, 1.0)))
        mgr.observe(1.0, r.seconds, r.energy_j)
        if charging_until is not None and len(lrs) == charging_until:
            dev.set_charging(False)
        mgr.update_device(dev.state)


def _total_at(history: list[tuple[int, int]], step: int) -> int:
    return [total for t, total in history if t <= step][-1]


LEVELS = [0.000011, 0.0000237, 0.000041, 0.0000663, 0.0001, 0.000173]  # 16 .. 280 steps


@pytest.mark.parametrize("level", LEVELS)
def test_the_last_step_of_a_budget_cut_run_is_not_at_lr_zero(level):
    lrs, history, stop, _ = _run(level)
    assert isinstance(stop, Stop) and stop.reason == "budget", stop
    assert 3 < len(lrs) < NOMINAL
    assert lrs[-1] > 0.0, history
    assert history[-1][1] == len(lrs)            # the last step was the last of the plan
    assert min(lrs) > 0.0


@pytest.mark.parametrize("level", LEVELS[:4])
def test_a_cut_learned_mid_run_ends_on_the_cool_down_too(level):
    lrs, history, stop, _ = _run(level, charging_until=20)
    assert isinstance(stop, Stop) and stop.reason == "budget", stop
    assert history[0] == (0, NOMINAL) and len(lrs) > 20
    assert lrs[-1] > 0.0 and history[-1][1] == len(lrs)


@pytest.mark.parametrize(("level", "power_factor", "jitter"), [
    (0.0000663, 1.0, 0.0), (0.000173, 1.0, 0.0), (0.0001, 1.0, 0.05), (0.000173, 1.0, 0.05),
    # the profile is off by 25 % / 20 %: the first plan is off, the measured one is not
    (0.0001, 1.25, 0.0), (0.000173, 1.25, 0.05), (0.000173, 0.8, 0.05)])
def test_the_plan_after_the_first_measurements_is_within_a_few_percent(level, power_factor, jitter):
    lrs, history, _, _ = _run(level, power_factor=power_factor, jitter=jitter, seed=3)
    final = len(lrs)
    assert final > 50
    # once min_observations (3) steps are measured the estimate replaces the prior
    for step in range(3, final):
        total = _total_at(history, step)
        assert abs(total - final) <= max(2, 0.04 * final), (step, total, final, history)
    if power_factor == 1.0:   # the profile is right: the first plan is already
        assert abs(history[0][1] - final) <= max(2, 0.04 * final), history
    # no creeping back over many small re-plans: in the first half at most the correction (and
    # one for the noise of the median of 15 jittered steps)
    assert len([t for t, _ in history if 0 < t < final // 2]) <= (1 if jitter == 0.0 else 2), history
    if jitter == 0.0:   # exact costs: the measured plan is the run's length to the step
        assert history[-1][1] == final and abs(_total_at(history, 3) - final) <= 1, history


def test_a_wrong_profile_is_corrected_once_not_crept_back():
    lrs, history, _, _ = _run(0.000173, power_factor=1.25)
    assert history[0][1] > 1.15 * len(lrs)       # the profile's first plan: too long
    assert len(history) <= 3, history             # corrected at the first measurements


@pytest.mark.parametrize("power_factor", [1.0, 1.33])
def test_sizing_on_the_estimate_keeps_the_gate_pessimistic(power_factor):
    """Every step still ends above the floor, also on a phone a third above the profile's power."""
    lrs, _, stop, dev = _run(0.0001, power_factor=power_factor, jitter=0.1, seed=1)
    assert isinstance(stop, Stop) and len(lrs) > 10
    assert dev.state.level >= 0.2
