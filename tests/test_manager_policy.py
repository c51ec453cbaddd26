"""The recommended set-up for a fine-tune the battery cuts short (bench/README.md "Quality under a
cut budget"): the EMA flavour's schedule holds the peak and cools down over the end of the budget in
force, the schedule-free flavour holds the peak, the peak-LR rule raises the peak for a short
first plan, the runtime options build a real runtime, and on a simulated phone whose charger is
pulled half-way an EMA run still ends annealed. Expected values are worked out from the formulas in
``mobile_lr.manager.recommended_setup``, not read back from the code; mismatched halves of a
set-up are refused naming both."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mobile_lr.device import DeviceState, SimulatedDevice, load_profile
from mobile_lr.manager import (
    PEAK_LR_POLICIES,
    RECOMMENDED_AVERAGING,
    ManagerConfig,
    Pause,
    RecommendedSetup,
    Run,
    ScheduleManager,
    SetupOptions,
    Stop,
    recommended_setup,
)
from mobile_lr.schedules import parse_spec
from mobile_lr.validation import ValidationError

pytestmark = pytest.mark.core


BASE = 0.01


def recommended_schedule(base_lr, averaging="ema"):
    """The schedule half of the set-up of that flavour (runtime: any that runs both)."""
    return recommended_setup("torch", None, base_lr, 300, {"averaging": averaging}).schedule


EMA_SETUP = recommended_setup("ort", None, BASE, 300, {"averaging": "ema"})
SF = SetupOptions().sf_lr_factor   # the schedule-free LR over the bundle's base LR


def test_schedule_warms_up_holds_and_cools_down_over_the_last_fifth():
    s = parse_spec(recommended_schedule(BASE))
    plan = [(0, 300)]
    # warm-up: min(2 steps, 5 % of 300) = 2 steps from 0.3 x base
    assert s.lr(0, plan) == pytest.approx(0.3 * BASE)
    assert s.lr(1, plan) == pytest.approx((0.3 + 0.7 / 2) * BASE)
    # the peak is held until the cool-down: the last 20 % of the 298 steps after the warm-up,
    # int(0.2 * 298) = 59 steps from t = 2 + 239 = 241, linear to 0
    assert s.lr(2, plan) == pytest.approx(BASE)
    assert s.lr(241, plan) == pytest.approx(BASE)
    assert s.lr(270, plan) == pytest.approx(BASE * (1 - 29 / 59))
    assert s.lr(300, plan) == 0.0


def test_a_tiny_first_plan_is_not_spent_warming_up():
    s = parse_spec(recommended_schedule(BASE))
    # 5 % of a 30-step plan is 1 step: one step at 0.3 x base, then the peak
    assert s.lr(0, [(0, 30)]) == pytest.approx(0.3 * BASE)
    assert s.lr(1, [(0, 30)]) == pytest.approx(BASE)


def test_a_cut_learned_mid_run_moves_the_cool_down_and_never_re_decays_held_steps():
    s = parse_spec(recommended_schedule(BASE))
    plan = [(0, 300), (100, 150)]        # at step 100 the battery says: 50 steps left
    assert s.lr(99, plan) == pytest.approx(BASE)   # held at the peak until then
    # the cool-down is now the last int(0.2 * 148) = 29 steps of the 148 after the warm-up,
    # from t = 2 + 119 = 121
    assert s.lr(121, plan) == pytest.approx(BASE)
    assert s.lr(135, plan) == pytest.approx(BASE * (1 - 14 / 29))
    assert s.lr(150, plan) == 0.0


@pytest.mark.parametrize(("planned", "factor"), [
    (300, 1.0),                 # the whole plan: the base LR
    (400, 1.0),                 # more than nominal: never below the base LR
    (150, 2 ** 0.3),            # half: 1.23x
    (30, 10 ** 0.3),            # a tenth: 1.995x
    (3, 2.5),                   # 100^0.3 = 3.98, capped at 2.5
])
def test_peak_lr_rule_rises_for_a_short_first_plan(planned, factor):
    rule = dict(EMA_SETUP.config.peak_lr)
    fn = PEAK_LR_POLICIES[rule.pop("type")]
    assert fn(planned, 300, rule) == pytest.approx(factor)


def test_the_manager_applies_it_to_its_first_plan():
    p = replace(load_profile("mid-range"), step_seconds=0.011)
    # unplugged, a few dozen steps above the 20 % floor: the first plan is short
    mgr = ScheduleManager(EMA_SETUP.schedule, p, None, EMA_SETUP.config,
                          DeviceState.initial(p, 0.20003))
    d = mgr.next()
    assert isinstance(d, Run)
    first = mgr.plan_history[0][1]
    assert 10 < first < 100
    assert mgr.peak_factor == pytest.approx((300 / first) ** 0.3)
    # step 0 is the warm-up's start: 0.3 x the raised peak
    assert d.lr == pytest.approx(0.3 * BASE * (300 / first) ** 0.3)


def test_schedule_free_gets_no_peak_factor_by_default():
    p = replace(load_profile("mid-range"), step_seconds=0.011)
    sf = recommended_setup("ort", None, BASE, 300)
    assert sf.config.peak_lr == {"type": "none"}
    mgr = ScheduleManager(sf.schedule, p, None, sf.config, DeviceState.initial(p, 0.20003))
    d = mgr.next()
    assert 10 < mgr.plan_history[0][1] < 100 and mgr.peak_factor == 1.0
    assert d.lr == pytest.approx(0.6 * SF * BASE)   # the plan-following warm-up's first LR
    raised = recommended_setup("ort", None, BASE, 300, {"sf_peak_power": 0.3})
    assert raised.config.peak_lr == {"type": "budget_power", "power": 0.3, "max_factor": 2.5}


def test_schedule_free_flavour_holds_the_peak_whatever_the_budget_does():
    s = parse_spec(recommended_schedule(BASE, "schedulefree"))
    assert s.lr(0, [(0, 300)]) == pytest.approx(0.6 * SF * BASE)
    for plan in ([(0, 300)], [(0, 300), (100, 150)], [(0, 30)]):
        last = plan[-1][1]
        assert [s.lr(t, plan) for t in (30, last - 1, last)] == pytest.approx([SF * BASE] * 3)
    # the step warm-up instead (sf_warmup_fraction 0): 2 steps from 0.3 x
    steps = parse_spec(recommended_setup("ort", None, BASE, 300, {"sf_warmup_fraction": 0.0}).schedule)
    want = [0.3 * SF * BASE, SF * BASE, SF * BASE]
    assert [steps.lr(t, [(0, 300)]) for t in (0, 2, 299)] == pytest.approx(want)


def test_runtime_options_per_flavour_build_a_real_runtime():
    pytest.importorskip("torch")  # outside the core install
    from mobile_lr.recipes import load_recipe
    from mobile_lr.runtime.torch_rt import TorchRuntime

    assert set(RECOMMENDED_AVERAGING) == {"torch", "ort", "executorch"}
    assert EMA_SETUP.runtime_options == {"ema": 0.9}
    sf = recommended_setup("torch", None, BASE, 300)
    assert sf.averaging == RECOMMENDED_AVERAGING["torch"] == "schedulefree"
    assert RECOMMENDED_AVERAGING["ort"] == RECOMMENDED_AVERAGING["executorch"] == "schedulefree"
    assert sf.runtime_options == {"optimizer": "schedulefree", "sf_r": 1.0}
    assert recommended_setup("torch", None, BASE, 300, {"sf_r": 0.0}).runtime_options == {
        "optimizer": "schedulefree"}
    recipe = load_recipe("digits-mlp")
    x, y = recipe.example_input.numpy(), np.arange(len(recipe.example_input)) % 10
    for setup in (sf, EMA_SETUP):
        rt = TorchRuntime(recipe, **setup.runtime_options)
        assert np.isfinite(rt.step(x, y, 0.01))
    with pytest.raises(ValidationError) as err:
        recommended_setup("ort", None, BASE, 300, {"averaging": "swa"})
    assert err.value.field == "options.averaging"
    with pytest.raises(ValidationError) as err:
        recommended_setup("phone", None, BASE, 300)
    assert err.value.field == "runtime"


def test_the_set_up_carries_its_nominal_steps_and_one_base_lr_convention():
    """config.nominal_steps is the caller's; the schedule-free LR is the bundle's base LR times
    the stated factor, the EMA flavour's is the base LR itself."""
    assert EMA_SETUP.config.nominal_steps == 300
    assert EMA_SETUP.schedule["base_lr"] == BASE
    sf = recommended_setup("torch", None, BASE, 120, {"sf_lr_factor": 2.5})
    assert sf.config.nominal_steps == 120
    assert sf.schedule["base_lr"] == pytest.approx(2.5 * BASE)
    # the ManagerConfig builds a manager as it stands
    mgr = ScheduleManager(sf.schedule, "mid-range", None, sf.config)
    assert mgr.nominal_steps == 120
    assert RecommendedSetup.from_dict(sf.to_dict()) == sf


def test_schedule_free_end_decay_is_a_short_cool_down_over_the_budget_in_force():
    sf = recommended_setup("torch", None, BASE, 300, {"sf_cooldown_fraction": 0.1, "sf_warmup_fraction": 0.0})
    s = parse_spec(sf.schedule)
    # 298 steps after the 2-step warm-up: the last int(0.1 * 298) = 29, from t = 2 + 269 = 271
    assert s.lr(270, [(0, 300)]) == pytest.approx(SF * BASE)
    assert s.lr(285, [(0, 300)]) == pytest.approx(SF * BASE * (1 - 14 / 29))
    assert s.lr(300, [(0, 300)]) == 0.0


def test_schedule_free_plan_warmup_follows_the_plan_in_force():
    """``sf_warmup_fraction``: OneCycleLR's linear first phase over that share of the plan in
    force, then the peak held; a re-plan re-times it, so a cut learnt mid-warm-up ends it."""
    sf = recommended_setup("ort", None, BASE, 200, {"sf_warmup_fraction": 0.1, "sf_r": 1.0})
    assert "warmup" not in sf.schedule and sf.schedule["budget"] == {"mode": "replan"}
    assert sf.runtime_options == {"optimizer": "schedulefree", "sf_r": 1.0}
    s, peak = parse_spec(sf.schedule), SF * BASE
    assert s.lr(0, [(0, 200)]) == pytest.approx(0.6 * peak)
    assert s.lr(10, [(0, 200)]) == pytest.approx(peak * (0.6 + 0.4 * 10 / 19))
    assert [s.lr(t, [(0, 200)]) for t in (19, 100, 199)] == pytest.approx([peak] * 3)
    # the battery tells at step 5 that 10 steps is all: the warm-up (1 step of 10) is over
    assert s.lr(5, [(0, 200), (5, 10)]) == pytest.approx(peak)
    assert RecommendedSetup.from_dict(sf.to_dict()) == sf
    with pytest.raises(ValidationError) as err:
        recommended_setup("ort", None, BASE, 200, {"sf_warmup_fraction": 0.1, "sf_cooldown_fraction": 0.1})
    assert err.value.field == "options.sf_warmup_fraction"
    # a ramp that decays after its peak is still a re-planned decaying curve, and it would cool
    # down for the battery's steps while the charger carries the run (schedule_horizon battery)
    decaying = {**sf.schedule, "shape": {**sf.schedule["shape"], "final_div_factor": 10.0}}
    with pytest.raises(ValidationError, match="'battery' does not go with a schedule shape"):
        replace(sf, schedule=decaying)
    plan = recommended_setup("ort", None, BASE, 200, {"sf_warmup_horizon": "plan"})
    assert plan.config.schedule_horizon is None and plan.schedule == sf.schedule
    with pytest.raises(ValidationError, match="'replan'"):
        replace(plan, schedule=decaying)


@pytest.mark.parametrize(("change", "field", "words"), [
    # the schedule-free runtime option with the EMA-evaluated schedule
    ({"runtime_options": {"optimizer": "schedulefree"}}, "setup.runtime_options.optimizer",
     ("'schedulefree'", "averaging 'ema'")),
    ({"runtime_options": {}}, "setup.runtime_options.ema", ("averaging 'ema'",)),
    # schedule-free's averaging weight with the EMA
    ({"runtime_options": {"ema": 0.9, "sf_r": 1.0}}, "setup.runtime_options.sf_r", ("averaging 'ema'",)),
    ({"runtime_options": {"ema": 0.9, "sf_r": -1.0}}, "setup.runtime_options.sf_r", ("out of range",)),
    ({"schedule": {"format": "mobile-lr.schedule/1", "base_lr": BASE,
                   "shape": {"type": "constant"}, "budget": {"mode": "fixed"}}},
     "setup.schedule.budget.mode", ("'fixed'", "averaging 'ema'")),
    # the schedule-free flavour's plan-following warm-up never cools down
    ({"schedule": recommended_setup("ort", None, BASE, 300).schedule}, "setup.schedule.shape",
     ("holds its peak", "averaging 'ema'")),
    ({"averaging": "schedulefree"}, "setup.runtime_options.optimizer",
     ("'recipe'", "averaging 'schedulefree'")),
    ({"averaging": "schedulefree", "runtime_options": {"optimizer": "schedulefree", "ema": 0.9}},
     "setup.runtime_options.ema", ("averaging 'schedulefree'",)),
    ({"averaging": "schedulefree", "runtime_options": {"optimizer": "schedulefree"},
      "schedule": {"format": "mobile-lr.schedule/1", "base_lr": BASE, "shape": {"type": "cosine"}}},
     "setup.schedule.budget.mode", ("'replan'", "averaging 'schedulefree'")),
    ({"config": ManagerConfig()}, "setup.config.nominal_steps", ("nominal",)),
    ({"runtime_options": {"ema": 0.9, "lr": 1}}, "setup.runtime_options.lr", ("unknown",)),
])
def test_a_mismatched_combination_is_refused_naming_both_halves(change, field, words):
    with pytest.raises(ValidationError) as err:
        replace(EMA_SETUP, **change)
    assert err.value.field == field
    for w in words:
        assert w in str(err.value)
    # the same from JSON
    with pytest.raises(ValidationError) as err:
        RecommendedSetup.from_dict({**EMA_SETUP.to_dict(), **{
            k: v.to_dict() if isinstance(v, ManagerConfig) else v for k, v in change.items()}})
    assert err.value.field == field


def test_on_a_phone_unplugged_half_way_the_run_ends_annealed():
    """A 5 W charger covers the 3.5 W of training, so the first plan is the nominal 300; it is
    pulled at step 40 with charge for a few dozen more steps. The manager learns the cut then,
    keeps the peak it had, and its last step is on the cool-down's tail."""
    p = replace(load_profile("mid-range"), charge_power_w=5.0)
    dev = SimulatedDevice(p, DeviceState.initial(p, 0.20004, charging=True))
    mgr = ScheduleManager(EMA_SETUP.schedule, p, None, EMA_SETUP.config, dev.state)
    lrs = []
    while True:
        d = mgr.next()
        if not isinstance(d, Run):
            break
        lrs.append(d.lr)
        r = dev.train_step()
        mgr.observe(1.0, r.seconds, r.energy_j)
        if len(lrs) == 40:
            dev.set_charging(False)
        mgr.update_device(dev.state)
    assert isinstance(d, Stop | Pause)
    n = len(lrs)
    assert 40 < n < 300                         # the unplug cut the run short
    assert mgr.plan_history[0] == (0, 300)      # it did not know before the unplug
    assert mgr.peak_factor == 1.0               # the first plan was the whole one
    assert lrs[39] == pytest.approx(BASE)       # still at the peak when the cut came
    assert lrs[-1] < 0.1 * BASE                 # and it ended at the bottom of the cool-down
