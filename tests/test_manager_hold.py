"""The manager's O(1) step (:mod:`mobile_lr.manager.hold`): while the plan in force holds,
``next()`` runs steps without a full plan; these tests check on random long runs that such a
step is exactly as safe as a planned one:

* the gate, run anyway at the step's own state and cost, would afford the step (so a held
  step is one the full plan would also run), and its predicted end is inside every limit;
* on the simulated phone no step ends below the floor or above the allowed thermal status
  (the truth's cost is within the prior factor of the profile and varies from step to step
  by less than the pessimistic margin);
* a held step's LR is the schedule's value under the plan history in force;
* a state saved mid-hold resumes to the same decisions;
* on a steady long run most steps are held (the O(1) path is the common one).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mobile_lr.budget import Policy, plan
from mobile_lr.device import BUILTIN_PROFILES, DeviceState, SimulatedDevice, load_profile
from mobile_lr.manager import Pause, Rollback, Run, ScheduleManager, Stop
from mobile_lr.manager.hold import BAND_WIDEN, certified_steps
from mobile_lr.testing.events import EVENT_KINDS, apply_event

pytestmark = pytest.mark.core


@st.composite
def long_runs(draw):
    base = load_profile(draw(st.sampled_from(BUILTIN_PROFILES)))
    profile = replace(
        base,
        battery_wh=base.battery_wh * draw(st.floats(0.002, 0.05)),
        heat_capacity_j_per_k=base.heat_capacity_j_per_k * draw(st.floats(0.05, 1.0)),
        charge_power_w=draw(st.floats(0.0, 30.0)),
        ambient_c=draw(st.floats(15.0, 35.0)),
        step_seconds=draw(st.floats(0.2, 5.0)),
    )
    measure_energy = draw(st.booleans())
    # unmeasured energy: the pessimistic power is the profile's x 1.5 (the guarantee's premise)
    power_factor = draw(st.floats(1 / 3, 3.0 if measure_energy else 1.4))
    truth = {"step_seconds": profile.step_seconds * draw(st.floats(1 / 3, 3.0)),
             "train_power_w": max(profile.idle_power_w * 1.01,
                                  profile.train_power_w * power_factor),
             "ambient_c": profile.ambient_c + draw(st.floats(-5.0, 5.0))}
    amb = truth["ambient_c"]
    temp = amb + draw(st.floats(0.0, 15.0))
    state = DeviceState(level=draw(st.floats(0.1, 1.0)), charging=draw(st.booleans()),
                        temperature_c=temp, thermal_status=profile.status_for(temp), ambient_c=amb)
    deadline = draw(st.booleans())
    policy = Policy(battery_floor=draw(st.floats(0.0, 0.6)), max_thermal=draw(st.integers(0, 3)),
                    window_s=draw(st.one_of(st.none(), st.floats(120.0, 5000.0))),
                    deadline_s=draw(st.floats(600.0, 20000.0)) if deadline else None,
                    thermal_margin_c=draw(st.floats(0.3, 2.0)),
                    horizon="deadline" if deadline else "session")
    spec = {"format": "mobile-lr.schedule/1", "base_lr": 0.1,
            "shape": {"type": draw(st.sampled_from(["cosine", "linear", "rex"]))}}
    config = {"nominal_steps": draw(st.integers(100, 3000)),
              "replan_tolerance": draw(st.integers(1, 20)),
              "min_observations": draw(st.integers(1, 5))}
    events = draw(st.lists(st.tuples(st.integers(0, 600),
                                     st.sampled_from(EVENT_KINDS),
                                     st.floats(-10.0, 10.0)), max_size=5))
    # 0: the caller never reports; without energies the dead reckoning uses the estimated power,
    # so the truth must be reported every step (the guarantee's premise)
    report_every = draw(st.sampled_from([0, 1, 3, 17])) if measure_energy else 1
    tell_ambient = draw(st.booleans())
    seed = draw(st.integers(0, 2**31))
    return (profile, truth, state, policy, spec, config, events, report_every, tell_ambient,
            measure_energy, seed)


def run_long(profile, truth, state, policy, spec, config, events, report_every, tell_ambient,
             measure_energy, seed, max_iters=600):
    rng = random.Random(seed)
    dev = SimulatedDevice(profile, state, ambient_c=truth["ambient_c"],
                          train_power_w=truth["train_power_w"], step_seconds=truth["step_seconds"])
    mgr = ScheduleManager(spec, profile, policy, config, state)
    by_iter: dict[int, list] = {}
    for it, kind, x in events:
        by_iter.setdefault(it, []).append((kind, x))
    theta = policy.thermal_limit_c(profile)
    limit_next = profile.threshold(int(policy.max_thermal) + 1)
    held = runs = kept = 0
    reported_at = dev.state.time_s   # the manager's believed state is exact at a report

    def report() -> None:
        nonlocal reported_at, kept
        hold = mgr.hold
        before = hold.envelope
        mgr.update_device(dev.state if tell_ambient else replace(dev.state, ambient_c=None))
        reported_at = dev.state.time_s
        if hold.left > 0:   # the report kept the hold, or re-anchored it: the same either way
            band = mgr.estimator.band(BAND_WIDEN)
            assert band is not None
            fresh = certified_steps(hold.limits, mgr.belief.view(), band,
                                    mgr.belief.end_s(policy)) - (mgr.pending is not None)
            assert hold.left == min(hold.stride, fresh), (hold.left, hold.stride, fresh)
            kept += before is not None and hold.envelope is before

    for it in range(max_iters):
        for kind, x in by_iter.get(it, []):
            apply_event(dev, mgr, kind, x)
            report()
        if report_every and it % report_every == 0:
            report()
        d = mgr.next()
        if isinstance(d, Stop):
            break
        if isinstance(d, Rollback):
            continue
        if isinstance(d, Pause):
            dev.idle(min(max(d.resume_hint or 120.0, 1.0), 1800.0))
            report()
            if d.reason == "window":
                mgr.begin_window()
            continue
        assert isinstance(d, Run)
        runs += 1
        pred = mgr.predicted_end
        assert pred is not None
        assert pred.level >= policy.battery_floor and pred.temperature_c < theta
        assert pred.thermal_status <= policy.max_thermal
        if mgr._fast:
            held += 1
            assert d.lr == mgr.lr_at(d.step)
            if held % 5 == 1:   # the gate, run anyway, affords the held step
                end = mgr.window_end_s
                gate = plan(profile, mgr.belief.view(), policy, mgr.estimator.pessimistic(),
                            max_steps=mgr.nominal_steps - mgr.step,
                            time_budget_s=end - mgr.device.time_s)
                assert gate.steps >= 1, (gate, mgr.hold.state_dict())
        # the truth varies by less than the pessimistic margin (10 %) around its mean, so it
        # stays below the pessimistic cost the manager learns from exact observations
        dev.step_seconds = truth["step_seconds"] * rng.uniform(0.96, 1.04)
        dev.train_power_w = truth["train_power_w"] * rng.uniform(0.96, 1.04)
        before = dev.state
        result = dev.train_step()
        after = dev.state
        assert after.level >= policy.battery_floor, (before, after)
        slack = 0.0
        if not tell_ambient:
            # an ambient the phone cannot measure (the manager's estimate starts at the
            # profile's and moves with the reports): the dead-reckoned temperature drifts from
            # the truth by up to the mismatch's RC response since the last report, beyond what
            # the margin covers (an ambient event can move the truth away from the estimate)
            mismatch = max(abs(dev.ambient_c - profile.ambient_c),
                           abs(dev.ambient_c - mgr.belief.ambient.value))
            slack = max(0.0, mismatch * (1 - math.exp(-(after.time_s - reported_at)
                                                       / profile.tau_s))
                        - policy.thermal_margin_c)
        assert after.temperature_c < limit_next + slack, (before, after, slack)
        mgr.observe(loss=1.0, step_seconds=result.seconds,
                    energy_j=result.energy_j if measure_energy else None)
    return mgr, runs, held, kept


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(long_runs())
def test_held_steps_are_steps_the_gate_would_run_and_the_phone_stays_safe(case):
    _, runs, held, kept = run_long(*case)
    event(f"held steps: {'none' if held == 0 else 'some' if held < runs // 2 else 'most'}")
    event(f"reports that kept the hold: {'none' if kept == 0 else 'some'}")


def _steady(**kw):
    p = replace(load_profile("mid-range"), step_seconds=0.5)
    state = DeviceState.initial(p, 0.9, ambient_c=22.0)
    mgr = ScheduleManager({"format": "mobile-lr.schedule/1", "base_lr": 0.1,
                           "shape": {"type": "cosine"}}, p, Policy(window_s=3600.0),
                          {"nominal_steps": 5000, **kw}, state)
    return mgr, p


def test_a_steady_run_is_mostly_held_and_resumes_exactly():
    mgr, p = _steady()
    rng = random.Random(3)
    decisions = []
    for i in range(3000):
        d = mgr.next()
        decisions.append((d, mgr._fast))
        assert isinstance(d, Run)
        if i == 1500:
            assert mgr.hold.left > 0
            twin = ScheduleManager.from_state_dict(mgr.state_dict())
            j = rng.uniform(0.9, 1.1)
            rest = [rng.uniform(0.9, 1.1) for _ in range(400)]
            for m in (mgr, twin):
                m.observe(loss=1.0, step_seconds=p.step_seconds * j, energy_j=p.step_joules * j)
            for k in rest:
                a, b = mgr.next(), twin.next()
                assert a == b and mgr._fast == twin._fast
                for m in (mgr, twin):
                    m.observe(loss=1.0, step_seconds=p.step_seconds * k, energy_j=p.step_joules * k)
            assert mgr.state_dict() == twin.state_dict()
            break
        j = rng.uniform(0.9, 1.1)
        mgr.observe(loss=1.0, step_seconds=p.step_seconds * j, energy_j=p.step_joules * j)
    held = sum(fast for _, fast in decisions)
    assert held > 0.9 * len(decisions)
    # the LRs of held and planned steps follow one schedule (no jump at a full plan)
    lrs = [d.lr for d, _ in decisions]
    assert all(b <= a for a, b in itertools.pairwise(lrs))


def test_a_report_that_changes_the_charger_or_the_status_ends_the_hold():
    mgr, p = _steady()
    for _ in range(50):
        mgr.next()
        mgr.observe(loss=1.0, step_seconds=p.step_seconds, energy_j=p.step_joules)
    assert mgr.hold.left > 0
    dev = mgr.device
    mgr.update_device(replace(dev, level=dev.level - 1e-4))   # a report inside the envelope
    assert mgr.hold.left > 0
    mgr.update_device(replace(mgr.device, charging=True))
    assert mgr.hold.left == 0
    mgr.next()
    assert not mgr._fast
    mgr.observe(loss=1.0, step_seconds=p.step_seconds, energy_j=p.step_joules)
    mgr.next()
    assert mgr._fast
    mgr.observe(loss=1.0, step_seconds=p.step_seconds * 3, energy_j=p.step_joules * 3)
    assert mgr.hold.left == 0    # far outside the band: plan again


def test_a_report_inside_the_envelope_keeps_the_hold_and_one_past_a_bound_re_anchors():
    mgr, p = _steady()
    for _ in range(50):
        mgr.next()
        mgr.observe(loss=1.0, step_seconds=p.step_seconds, energy_j=p.step_joules)
    hold = mgr.hold
    env = hold.envelope
    assert env is not None and hold.left == hold.stride > 0
    k = hold._base - hold.left          # the steps run since the anchor (none in flight)
    dev = mgr.device
    assert env.contains(k, dev)         # the dead-reckoned truth is inside
    mgr.update_device(dev)
    assert hold.envelope is env and hold.left == hold.stride   # kept: no new certificate
    # past one bound at a time: the battery, the clock, the heat, a warmer ambient
    drained = env.level - (k + 1) * env.load * env.d / env.battery_j
    for worse in (replace(dev, level=drained), replace(dev, time_s=env.time_s + (k + 1) * env.d),
                  replace(dev, temperature_c=env.steady + 1.0),
                  replace(dev, ambient_c=env.ambient_c + 0.5)):
        assert not env.contains(k, worse), worse
    mgr.update_device(replace(dev, level=drained))
    assert hold.envelope is not env          # re-anchored at the report
    assert hold.left == hold.stride > 0
