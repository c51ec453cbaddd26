"""The held step's shortcuts change nothing: a manager with them (Runs made ahead in a table,
observations deferred behind a band check, reports compared with the envelope in place) and one
that takes the full way at every call (``FullWay``: each held Run made on the spot, each
observation recorded at once, each report through the belief) give the same decisions bit for
bit, the same hold after every call and the same state, on random phones and callers (reports
every few steps, NaN losses, missing or invalid times and energies, a loss watch, resumes); and
a held Run is the Run a full plan forced at that step gives (its LR bit for bit when that plan
keeps the total in force)."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobile_lr.budget import Policy
from mobile_lr.device import BUILTIN_PROFILES, DeviceState, SimulatedDevice, load_profile
from mobile_lr.manager import Pause, Rollback, Run, ScheduleManager, Stop
from mobile_lr.testing.events import EVENT_KINDS, apply_event

pytestmark = pytest.mark.core


class FullWay(ScheduleManager):
    """The reference: no Run made ahead, no observation deferred, no report shortcut."""

    TABLE_CHUNK = 0

    def observe(self, loss=None, step_seconds=None, energy_j=None):
        self._observe(loss, step_seconds, energy_j)

    def update_device(self, state):
        self._update_device(state)


@st.composite
def cases(draw):
    base = load_profile(draw(st.sampled_from(BUILTIN_PROFILES)))
    profile = replace(base, battery_wh=base.battery_wh * draw(st.floats(0.002, 0.05)),
                      heat_capacity_j_per_k=base.heat_capacity_j_per_k * draw(st.floats(0.05, 1.0)),
                      step_seconds=draw(st.floats(0.2, 5.0)))
    temp = profile.ambient_c + draw(st.floats(0.0, 15.0))
    state = DeviceState(level=draw(st.floats(0.1, 1.0)), charging=draw(st.booleans()),
                        temperature_c=temp, thermal_status=profile.status_for(temp),
                        ambient_c=profile.ambient_c)
    policy = Policy(battery_floor=draw(st.floats(0.0, 0.5)), max_thermal=draw(st.integers(0, 3)),
                    window_s=draw(st.one_of(st.none(), st.floats(120.0, 5000.0))))
    spec = {"format": "mobile-lr.schedule/1", "base_lr": 0.1,
            "shape": {"type": draw(st.sampled_from(["cosine", "linear", "rex"]))}}
    config = {"nominal_steps": draw(st.integers(100, 2000)),
              "replan_tolerance": draw(st.integers(1, 20)),
              "min_observations": draw(st.integers(1, 5))}
    if draw(st.booleans()):
        config["divergence"] = {}
    return profile, state, policy, spec, config, draw(st.integers(0, 2**31))


def _same(a: ScheduleManager, b: ScheduleManager, what: str) -> None:
    assert a.hold.left == b.hold.left and a.hold.stride == b.hold.stride, what
    assert a.hold.widened == b.hold.widened and a._fast == b._fast, what
    assert a.step == b.step and a.pending == b.pending, what


def drive(profile, state, policy, spec, config, seed, iters=500, report_every=None,
          tell_ambient=None):
    rng = random.Random(seed)
    truth = {"step_seconds": profile.step_seconds * rng.uniform(0.5, 2.0),
             "train_power_w": profile.train_power_w * rng.uniform(0.5, 1.5)}
    dev = SimulatedDevice(profile, state, **truth)
    fast = ScheduleManager(spec, profile, policy, config, state)
    full = FullWay(spec, profile, policy, config, state)
    if report_every is None:
        report_every = rng.choice([0, 1, 2, 5, 23])
    measured = rng.random() < 0.8
    if tell_ambient is None:
        tell_ambient = rng.random() < 0.7
    held = runs = deferred = forced = 0
    for it in range(iters):
        if rng.random() < 0.01:
            kind = rng.choice(EVENT_KINDS)
            apply_event(dev, fast, kind, rng.uniform(-10.0, 10.0))
            if kind == "window":
                full.begin_window()
        if report_every and it % report_every == 0:
            s = dev.state if tell_ambient else replace(dev.state, ambient_c=None)
            fast.update_device(s)
            full.update_device(s)
            _same(fast, full, f"report {it}")
        if rng.random() < 0.005:   # resume both mid-run (a held state included)
            fast = ScheduleManager.from_state_dict(fast.state_dict())
            full = FullWay.from_state_dict(full.state_dict())
        # now and then a twin forced into a full plan: a held Run is the Run the full plan
        # gives (the same step; the same LR bits unless that plan records a new total)
        twin = ScheduleManager.from_state_dict(fast.state_dict()) if rng.random() < 0.03 \
            else None
        a, b = fast.next(), full.next()
        assert repr(a) == repr(b), it
        if twin is not None and fast._fast:
            twin.hold.drop()
            t = twin.next()
            assert isinstance(t, Run) and t.step == a.step and not twin._fast, (t, a)
            if twin.planned_total == fast.planned_total:
                assert t.lr.hex() == a.lr.hex(), (t, a)
                forced += 1
        _same(fast, full, f"next {it}")
        if isinstance(a, Stop):
            break
        if isinstance(a, Pause):
            dev.idle(min(max(a.resume_hint or 60.0, 1.0), 600.0))
            if a.reason == "window":
                fast.begin_window()
                full.begin_window()
            continue
        if isinstance(a, Rollback):
            continue
        assert isinstance(a, Run)
        held += fast._fast
        runs += 1
        dev.step_seconds = truth["step_seconds"] * rng.uniform(0.9, 1.1)
        r = dev.train_step()
        u = rng.random()
        loss = math.nan if u < 0.003 else None if u < 0.05 else 1.0 + rng.random()
        seconds = None if u > 0.99 else -1.0 if u > 0.985 else r.seconds
        energy = r.energy_j if measured and u < 0.97 else None if u < 0.98 else 0.0
        fast.observe(loss=loss, step_seconds=seconds, energy_j=energy)
        full.observe(loss=loss, step_seconds=seconds, energy_j=energy)
        _same(fast, full, f"observe {it}")
        deferred = max(deferred, len(fast.belief.deferred) // 3)   # (flat: 3 a step)
        if rng.random() < 0.02:   # reading the state folds what was deferred: the same state
            assert fast.state_dict() == full.state_dict(), it
    assert fast.state_dict() == full.state_dict()
    assert fast.estimator.state_dict() == full.estimator.state_dict()
    return held, runs, deferred, forced


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_the_shortcuts_give_the_full_way_s_decisions_and_state(case):
    drive(*case)


def test_a_steady_run_takes_the_shortcuts():
    """Most steps of a steady run reporting every step are held (so the property above
    compares shortcuts, not two full paths), and the held observations are deferred."""
    p = replace(load_profile("mid-range"), step_seconds=0.5)
    state = DeviceState.initial(p, 0.9, ambient_c=22.0)
    held, runs, deferred, forced = drive(p, state, Policy(window_s=3600.0), {"format": "mobile-lr.schedule/1",
                 "base_lr": 0.1, "shape": {"type": "cosine"}}, {"nominal_steps": 5000}, 5,
                 iters=2000, report_every=1, tell_ambient=True)
    assert runs > 500 and held > 0.75 * runs and deferred > 10 and forced > 5


def _ulps_from(target: float, s: float) -> float:
    """Joules ``e`` with ``e / s == target`` exactly (a few ulps from ``target * s``)."""
    e = target * s
    for _ in range(8):
        r = e / s
        if r == target:
            return e
        e = math.nextafter(e, math.inf if r < target else -math.inf)
    raise AssertionError("no such joules")


@pytest.mark.parametrize("which", ["seconds", "power"])
def test_the_band_check_is_exact_at_its_last_float(which):
    """An observation at the held band's last float leaves the hold as it is on both ways, one
    ulp above it changes it on both (a band one ulp too wide would defer a widening)."""
    p = replace(load_profile("mid-range"), step_seconds=0.5)
    mgr = ScheduleManager({"format": "mobile-lr.schedule/1", "base_lr": 0.1,
                           "shape": {"type": "cosine"}}, p, Policy(window_s=3600.0),
                          {"nominal_steps": 5000}, DeviceState.initial(p, 0.9, ambient_c=22.0))
    for _ in range(30):
        mgr.next()
        mgr.observe(loss=1.0, step_seconds=p.step_seconds, energy_j=p.step_joules)
    state = mgr.state_dict()
    keep = ScheduleManager.from_state_dict(state).hold
    assert keep.left > 0 and math.isfinite(keep.seconds_keep) and math.isfinite(keep.power_keep)
    changed = []
    for up in (False, True):
        fast, full = ScheduleManager.from_state_dict(state), FullWay.from_state_dict(state)
        s, target = p.step_seconds, keep.power_keep
        if which == "seconds":
            s = math.nextafter(keep.seconds_keep, math.inf) if up else keep.seconds_keep
        elif up:
            target = math.nextafter(target, math.inf)
        e = _ulps_from(target, s)
        for m in (fast, full):
            m.next()
            m.observe(loss=1.0, step_seconds=s, energy_j=e)
        _same(fast, full, f"up={up}")
        assert fast.state_dict() == full.state_dict()
        changed.append(full.hold.widened or full.hold.left == 0)
    assert changed == [False, True]
