"""Budgets of many phones: the step budgets of N phones over a device-day, as numpy arrays.

No training happens here. A device-day is one of the named scenarios that
``mobile-lr simulate`` runs (``mobile_lr/data/scenarios``: OS windows, charger
plugged or pulled, ambient temperature, the workload's step cost and background
draw, the user's policy), lived by many phones at once: each phone's start level,
ambient temperature and event times are spread around the scenario's values with
a seeded generator, and its battery's state of health is drawn from its class's
range. The scenario's windows and events cut the day into *phases*. In every phase
with an open OS window the simulation does what the schedule manager does on one
phone: plan the affordable steps from the device state (the planner itself,
:func:`mobile_lr.budget.plan_phones`, on arrays), run them, and then follow the
manager's own rules (:mod:`mobile_lr.rules`, on arrays): the plan's limit names the
pause (:func:`~mobile_lr.rules.limit_reason`); if steps are still expected later
(:func:`~mobile_lr.rules.later_steps`: after a thermal pause in the same window with
horizon ``"session"``, until the deadline with ``"deadline"``) or none ran yet, the phone
rests as long as the pause's hint says (cool down ``resume_gap_c`` below the limit,
charge back above the floor) if that ends inside the window, and plans again;
otherwise its run has spent its budget and ends (``Stop("budget")``). The nominal step
count, when capped, ends the run (``Stop("done")``). Between windows the phone rests or
charges (:func:`mobile_lr.physics.advance` on arrays, the exact battery/RC model of
:func:`mobile_lr.device.advance`).

Why it is fast: the planner jumps over runs of identical steps in closed form
and takes single exact steps only at events (a thermal status change, the CV
knee, the floor), so a plan costs a few dozen array operations whatever its
length; every operation runs over all still-active devices at once. The cost
per device-day is a constant (the number of plan iterations, thermal pauses and
phases does not depend on N), so the total grows linearly with N once the
arrays are long enough to amortise numpy's per-call overhead
(``bench/budgets.py`` measures it).

Agreement with one phone: the planner and the device model are the same code as
:func:`mobile_lr.budget.plan` and :func:`mobile_lr.device.advance`, run on numpy
arrays instead of floats, so they agree up to the last bits of ``exp``/``log``
(numpy's and libm's can differ by an ulp, which can move a boundary by one step);
``tests/test_budgets.py`` checks it on random states, and checks a whole device-day
against the scalar planner driving a :class:`mobile_lr.device.SimulatedDevice`.

The executed steps are the plan's steps at the profile's cost: a manager that
has calibrated its cost on the phone (the estimator is warm) plans with that
cost times a small margin and re-plans as it goes, so it runs within a
step or two of this count (it stops one pessimistic step short of each limit).
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mobile_lr import physics, rules
from mobile_lr.budget import (
    LIMITING_FACTORS,
    MAX_PLAN_STEPS,
    NONE,
    TIME,
    PhoneForecast,
    Policy,
    StepCost,
    effective_floor,
    plan_phones,
)
from mobile_lr.device import BUILTIN_PROFILES, DeviceProfile, load_profile
from mobile_lr.physics import ARRAY, Phone
from mobile_lr.rules import REASONS, Reason
from mobile_lr.sim.scenario import Scenario, builtin_scenarios, load_scenario
from mobile_lr.validation import ValidationError

__all__ = [
    "STOP_REASONS",
    "Phase",
    "Phones",
    "ScenarioDay",
    "make_day",
    "simulate_budgets",
    "simulate_cell",
    "summarise",
    "workload_profile",
]

# Why a device-day's training ended: the limit of its last plan (the reason the manager
# pauses or stops for), or no OS window. Their codes are rules.REASONS indices.
STOP_REASONS = tuple(r.value for r in (Reason.DONE, Reason.WINDOW, Reason.BATTERY,
                                        Reason.THERMAL, Reason.NOT_CHARGING, Reason.BATTERY_LOW,
                                        Reason.NO_WINDOW))
_SOH_RANGE = {"low-end": (0.80, 0.95), "mid-range": (0.85, 1.0), "flagship": (0.90, 1.0)}


# --------------------------------------------------------------------------- state


@dataclass
class Phones:
    """The state of N phones of one profile as arrays (the fields of ``DeviceState``)."""

    level: np.ndarray
    charging: np.ndarray
    temp: np.ndarray
    status: np.ndarray
    ambient: np.ndarray
    battery_j: np.ndarray          # usable energy per phone (state of health varies)
    time_s: np.ndarray

    @classmethod
    def initial(cls, profile: DeviceProfile, level: np.ndarray, charging: np.ndarray,
                ambient: np.ndarray, battery_j: np.ndarray | None = None,
                temp: np.ndarray | None = None) -> Phones:
        n = len(level)
        amb = np.broadcast_to(np.asarray(ambient, float), (n,)).copy()
        t = amb.copy() if temp is None else np.asarray(temp, float).copy()
        e = np.full(n, profile.battery_j) if battery_j is None else np.asarray(battery_j, float)
        return cls(np.asarray(level, float).copy(), np.asarray(charging, bool).copy(), t,
                   physics.status_for(ARRAY, profile.physics, t, np.zeros(n, int)), amb,
                   e.copy(), np.zeros(n))

    def __len__(self) -> int:
        return len(self.level)

    def phones(self, idx: np.ndarray) -> Phone:
        """The phones ``idx`` as :mod:`mobile_lr.physics` reads them."""
        return Phone(self.level[idx], self.charging[idx], self.temp[idx], self.status[idx],
                     self.ambient[idx], self.battery_j[idx])

    def rest(self, profile: DeviceProfile, idx: np.ndarray, seconds: np.ndarray) -> None:
        """The phones ``idx`` rest (or charge) for ``seconds`` each."""
        level, temp, status, _, _ = physics.advance(ARRAY, profile.physics, self.phones(idx),
                                                    profile.idle_power_w, seconds)
        self.level[idx], self.temp[idx], self.status[idx] = level, temp, status
        self.time_s[idx] = self.time_s[idx] + seconds


# --------------------------------------------------------------------------- scenarios


@dataclass
class Phase:
    """A stretch of a device-day: per-phone duration, charger and ambient; ``train`` says an
    OS window is open; ``window_end_s`` (per phone) is set when a window starts at the phase's
    start (otherwise the window in force continues, e.g. when the charger is pulled)."""

    duration_s: np.ndarray
    charging: np.ndarray
    ambient_c: np.ndarray
    train: bool
    window_end_s: np.ndarray | None = None


@dataclass
class ScenarioDay:
    """A sampled device-day of one scenario for N phones of one profile."""

    name: str
    profile: DeviceProfile        # the workload applied: step time x step_factor, background
    policy: Policy
    level: np.ndarray
    temp: np.ndarray
    phases: list[Phase]
    nominal_steps: int


# Per-phone spread around a scenario's nominal values (seeded): the simulation is many phones
# living the same kind of day, not one phone many times.
LEVEL_SPREAD = 0.10          # start level ± this (clipped to [0.01, 1])
AMBIENT_SPREAD_C = 3.0       # ambient (and a given start temperature) ± this
EVENT_SPREAD = 0.5           # event times x U(1 - s, 1 + s), kept between their neighbours


def workload_profile(profile: DeviceProfile, scenario: Scenario) -> DeviceProfile:
    """The profile as the scenario's workload runs on it: step time x ``step_factor``; the
    background draw (screen, radio) added to the idle and the training power, which is how
    :class:`~mobile_lr.device.SimulatedDevice` draws it (on top of every load), so the
    planner, which learns the whole-phone power from observed steps, sees the same numbers."""
    bg = scenario.background_w
    return replace(profile, step_seconds=profile.step_seconds * scenario.step_factor,
                   idle_power_w=profile.idle_power_w + bg,
                   train_power_w=profile.train_power_w + bg)


def make_day(scenario: str | Scenario, profile: DeviceProfile, rng: np.random.Generator,
             n: int) -> ScenarioDay:
    """A seeded device-day of a named scenario (``mobile_lr/data/scenarios``) or a scenario
    file for ``n`` phones: the scenario's windows and events cut the day into phases; the
    start level, the ambient and the event times are spread per phone."""
    scen = load_scenario(scenario)
    prof = workload_profile(profile, scen)
    windows = scen.windows(prof)
    level = np.clip(scen.level + rng.uniform(-LEVEL_SPREAD, LEVEL_SPREAD, n), 0.01, 1.0)
    offset = rng.uniform(-AMBIENT_SPREAD_C, AMBIENT_SPREAD_C, n)
    amb0 = (profile.ambient_c if scen.ambient_c is None else scen.ambient_c) + offset
    temp = amb0.copy() if scen.temperature_c is None else scen.temperature_c + offset
    fixed = sorted({0.0, scen.end_s, *(w.start_s for w in windows), *(w.end_s for w in windows)})
    # boundaries: fixed ones (window edges, the end) and events, each a per-phone time
    bounds: list[tuple[float, np.ndarray, Any]] = [(t, np.full(n, t), None) for t in fixed]
    for ev in scen.events:
        lo = max([t for t in fixed if t <= ev.at_s], default=0.0)
        hi = min([t for t in fixed if t > ev.at_s], default=scen.end_s)
        at = ev.at_s * rng.uniform(1.0 - EVENT_SPREAD, 1.0 + EVENT_SPREAD, n)
        at = np.clip(at, lo + 1e-3 * (hi - lo), hi - 1e-3 * (hi - lo))
        bounds.append((ev.at_s, at, ev))
    bounds.sort(key=lambda b: (b[0], b[2] is not None))
    charging = np.full(n, scen.charging)
    ambient = amb0.copy()
    phases: list[Phase] = []
    for (t0, at0, ev), (_, at1, _) in itertools.pairwise(bounds):
        if ev is not None:
            if ev.type in ("plug", "unplug"):
                charging = np.full(n, ev.type == "plug")
            else:
                ambient = ev.ambient_c + offset
        inside = [w for w in windows if w.start_s <= t0 < w.end_s]
        starts = [w for w in inside if w.start_s == t0 and ev is None]
        dur = at1 - at0
        if not np.any(dur > 0.0):
            continue
        phases.append(Phase(dur, charging.copy(), ambient.copy(), train=bool(inside),
                            window_end_s=np.full(n, starts[0].end_s) if starts else None))
    return ScenarioDay(scen.name, prof, scen.policy, level, temp, phases, scen.nominal_steps)


# --------------------------------------------------------------------------- device-day


@dataclass
class CellResult:
    """Per-device outcome of one (profile, scenario) cell of the simulation."""

    profile: str
    scenario: str
    steps: np.ndarray
    train_seconds: np.ndarray
    energy_j: np.ndarray            # consumed by training steps
    battery_j: np.ndarray
    start_level: np.ndarray
    end_level: np.ndarray
    min_level: np.ndarray           # lowest level at the end of a training step (inf: none)
    floor_violations: np.ndarray    # plans whose last step ended below the floor (must be 0)
    max_status: np.ndarray          # highest thermal status at the end of a training run
    thermal_pauses: np.ndarray
    windows_used: np.ndarray
    stop_reason: np.ndarray         # codes into rules.REASONS (one of STOP_REASONS)
    nominal_steps: int = 0
    limiting: dict[str, int] = field(default_factory=dict)   # plan ends by factor (all plans)
    plans: int = 0


def simulate_cell(day: ScenarioDay, battery_j: np.ndarray, *, policy: Policy | None = None,
                  cap_nominal: bool = False, resume_gap_c: float = 1.0,
                  max_pauses: int = 10_000) -> CellResult:
    """Run one sampled device-day for every phone; see the module doc.

    ``policy`` replaces the scenario's; with ``cap_nominal`` a phone stops once it has run
    the scenario's nominal steps (the manager's ``Stop("done")``), otherwise the steps are
    the affordable ones.
    """
    run = _CellRun(day, battery_j, day.policy if policy is None else policy, cap_nominal,
                   resume_gap_c)
    for ph in day.phases:
        run.live(ph, max_pauses)
    return run.result()


class _CellRun:
    """The phones of one cell through their day: per-phone outcome arrays, and the manager's
    part (plan, run the affordable steps, follow :mod:`mobile_lr.rules`) in every window."""

    def __init__(self, day: ScenarioDay, battery_j: np.ndarray, policy: Policy,
                 cap_nominal: bool, resume_gap_c: float) -> None:
        self.day, self.policy, self.resume_gap_c = day, policy, resume_gap_c
        self.p = p = day.profile
        self.cost = StepCost.from_profile(p)
        self.nominal_steps = day.nominal_steps if cap_nominal else None
        n = len(day.level)
        first = day.phases[0]
        self.fs = Phones.initial(p, day.level, first.charging, first.ambient_c, battery_j,
                                     day.temp)
        self.steps = np.zeros(n, np.int64)
        self.train_s, self.energy = np.zeros(n), np.zeros(n)
        self.min_level = np.full(n, np.inf)
        self.violations = np.zeros(n, np.int64)
        self.max_status = self.fs.status.copy()
        self.pauses, self.windows = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.stop = np.full(n, REASONS.index(Reason.NO_WINDOW))
        self.limiting = dict.fromkeys(LIMITING_FACTORS, 0)
        self.plans = 0
        self.window_end = np.full(n, -np.inf)
        self.finished = np.zeros(n, bool)

    def live(self, ph: Phase, max_pauses: int) -> None:
        """One phase: train (plan, run, pause as the rules say) if a window is open, then rest
        (or charge) until the phase ends."""
        fs = self.fs
        fs.charging = np.asarray(ph.charging, bool).copy()
        fs.ambient = np.asarray(ph.ambient_c, float).copy()
        phase_end = fs.time_s + ph.duration_s
        if ph.window_end_s is not None:
            self.window_end = ph.window_end_s.copy()
        if ph.train:
            act = np.nonzero(~self.finished)[0]
            used_window = np.zeros(len(fs), bool)
            for _ in range(max_pauses):
                if act.size == 0:
                    break
                act = self._plan_and_run(act, phase_end, used_window)
            self.windows += used_window
        fs.rest(self.p, np.arange(len(fs)), np.maximum(0.0, phase_end - fs.time_s))

    def _plan_and_run(self, act: np.ndarray, phase_end: np.ndarray, used_window: np.ndarray
                      ) -> np.ndarray:
        """Plan for the phones ``act``, run the affordable steps, then apply the manager's
        rules: stop, or rest as a pause says when its hint ends before the phase; returns the
        phones that rested (they plan again)."""
        p, fs, policy = self.p, self.fs, self.policy
        now = fs.time_s[act]
        limit = np.minimum(phase_end[act], self.window_end[act])
        cap = float(MAX_PLAN_STEPS) if self.nominal_steps is None \
            else np.maximum(0.0, self.nominal_steps - self.steps[act])
        pl = plan_phones(ARRAY, p, fs.phones(act), now, policy, self.cost, limit - now, cap)
        self._account(act, pl, used_window)
        fs.level[act], fs.temp[act], fs.status[act] = pl.level, pl.temp, pl.status
        fs.time_s[act] = now = now + pl.seconds
        # the manager's rules, at the end of the plan's steps (nothing more is affordable)
        phones = fs.phones(act)
        reason = rules.limit_reason(ARRAY, pl.factor, pl.detail)
        later = rules.later_steps(ARRAY, p, policy, self.cost, self.resume_gap_c,
                                  factor=pl.factor, phone=phones, now_s=now, seconds=0.0,
                                  window_end_s=self.window_end[act])
        move = rules.next_move(ARRAY, 0, later, self.steps[act] > 0, True)
        hint = rules.resume_hint(ARRAY, p, policy, self.resume_gap_c, reason, phones)
        # a plan cut at the end of the phase (charger pulled, ambient change) while the window
        # goes on is no limit of the manager's: the next phase continues
        real = ~((pl.factor == TIME) & (phase_end[act] < self.window_end[act]))
        self.stop[act] = np.where(real, reason, self.stop[act])
        end = real & ((pl.factor == NONE) | (move != rules.PAUSE))
        self.finished[act[end]] = True
        wait = ~end & (hint > 0.0) & (now + hint < limit)
        idx = act[wait]
        if idx.size:
            self.pauses[idx] += reason[wait] == REASONS.index(Reason.THERMAL)
            fs.rest(p, idx, hint[wait])
        return idx

    def _account(self, act: np.ndarray, pl: PhoneForecast, used_window: np.ndarray) -> None:
        self.plans += act.size
        for code, name in enumerate(LIMITING_FACTORS):
            self.limiting[name] += int(np.count_nonzero(pl.factor == code))
        ran = pl.steps > 0
        used_window[act[ran]] = True
        self.steps[act] += pl.steps.astype(np.int64)
        self.train_s[act] += pl.seconds
        self.energy[act] += pl.energy_j
        floor = effective_floor(self.p, self.policy, self.fs.charging[act], ops=ARRAY)
        self.violations[act] += ran & (pl.level < floor)
        self.min_level[act] = np.where(ran, np.minimum(self.min_level[act], pl.level),
                                       self.min_level[act])
        self.max_status[act] = np.where(ran, np.maximum(self.max_status[act], pl.status),
                                        self.max_status[act])

    def result(self) -> CellResult:
        return CellResult(self.p.name, self.day.name, self.steps, self.train_s, self.energy,
                          self.fs.battery_j, self.day.level, self.fs.level.copy(),
                          self.min_level, self.violations, self.max_status, self.pauses,
                          self.windows, self.stop, self.day.nominal_steps, self.limiting,
                          self.plans)


# --------------------------------------------------------------------------- many cells


PERCENTILES = (5, 25, 50, 75, 95)


def _dist(x: np.ndarray) -> dict[str, float]:
    if x.size == 0:
        return {}
    q = np.percentile(x, PERCENTILES)
    out = {f"p{k}": float(v) for k, v in zip(PERCENTILES, q, strict=True)}
    out.update(mean=float(x.mean()), min=float(x.min()), max=float(x.max()))
    return out


def _finite_min(x: np.ndarray) -> float | None:
    """Lowest finite value (None when no phone trained)."""
    x = x[np.isfinite(x)]
    return float(x.min()) if x.size else None


def summarise(cells: Sequence[CellResult]) -> dict[str, Any]:
    """Distributions of steps, energy and battery used; stop reasons; floor violations. Parts
    of one (profile, scenario) cell (chunks of its phones, days) are summarised together, and
    each statistic concatenates its parts only while it is computed."""
    def cat(cs: Sequence[CellResult], name: str) -> np.ndarray:
        return np.concatenate([getattr(c, name) for c in cs])

    def block(cs: Sequence[CellResult]) -> dict[str, Any]:
        steps = cat(cs, "steps").astype(float)
        energy = cat(cs, "energy_j")
        pct = np.concatenate([100.0 * c.energy_j / c.battery_j for c in cs])
        secs = cat(cs, "train_seconds")
        stop = cat(cs, "stop_reason")
        status = cat(cs, "max_status")
        limiting = dict.fromkeys(LIMITING_FACTORS, 0)
        for c in cs:
            for key, val in c.limiting.items():
                limiting[key] += val
        return {
            "device_days": int(steps.size),
            "steps": _dist(steps),
            "energy_j": _dist(energy),
            "energy_pct_of_battery": _dist(pct),
            "train_minutes": _dist(secs / 60.0),
            "end_level": _dist(cat(cs, "end_level")),
            "min_level": _finite_min(cat(cs, "min_level")),
            "thermal_pauses": _dist(cat(cs, "thermal_pauses").astype(float)),
            "max_status": {name: int(np.count_nonzero(status == k)) for k, name in enumerate(
                ("NONE", "LIGHT", "MODERATE", "SEVERE", "CRITICAL", "EMERGENCY", "SHUTDOWN"))},
            "stop_reasons": {name: int(np.count_nonzero(stop == k))
                             for name in STOP_REASONS
                             for k in [REASONS.index(Reason(name))]},
            "limiting_factors": limiting,
            "plans": int(sum(c.plans for c in cs)),
            "floor_violations": int(sum(int(c.floor_violations.sum()) for c in cs)),
            "reached_nominal": int(sum(int(np.count_nonzero(c.steps >= c.nominal_steps))
                                       for c in cs)),
        }

    groups: dict[tuple[str, str], list[CellResult]] = {}
    for c in cells:
        groups.setdefault((c.profile, c.scenario), []).append(c)
    out: dict[str, Any] = {"total": block(cells), "cells": []}
    for (profile, scenario), cs in groups.items():
        out["cells"].append({"profile": profile, "scenario": scenario,
                             "nominal_steps": cs[0].nominal_steps, **block(cs)})
    return out


#: Phones per task: a task's arrays are its working set (memory bounded by the chunk, not by
#: the fleet), long enough that numpy's per-call overhead is amortised (bench/budgets.py).
CHUNK = 20_000


def simulate_budgets(profiles: Sequence[str | DeviceProfile], scenarios: Sequence[str | Scenario],
                   devices: int, seed: int, *, days: int = 1, policy: Policy | None = None,
                   cap_nominal: bool = False,
                   progress: Callable[[int], None] | None = None,
                   workers: int = 1) -> dict[str, Any]:
    """Simulate ``devices`` phones for ``days`` days each, spread evenly over every
    (profile, scenario) cell (phone ``i`` goes to cell ``i mod cells``); each phone keeps
    its battery's state of health (drawn from the profile class's range, docs/DEVICES.md §6)
    and draws a fresh day of its scenario every day. ``policy`` replaces every scenario's
    own. Returns :func:`summarise`'s dict with the configuration.

    The phones of a cell run in chunks of :data:`CHUNK`, each with its own generator seeded by
    ``(seed, cell, chunk)``, so the result does not depend on ``workers``: the number of
    processes the chunks are spread over (1: this one)."""
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValidationError("--devices", f"{devices} is not a positive count", "an int >= 1")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValidationError("--days", f"{days} is not a positive count", "an int >= 1")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValidationError("--workers", f"{workers} is not a positive count", "an int >= 1")
    if not profiles:
        raise ValidationError("--profiles", "empty list", ", ".join(BUILTIN_PROFILES))
    if not scenarios:
        raise ValidationError("--scenarios", "empty list", ", ".join(builtin_scenarios()))
    profs = [pr if isinstance(pr, DeviceProfile) else load_profile(pr) for pr in profiles]
    scens = [load_scenario(sc) for sc in scenarios]
    cells_def = [(pr, sc) for pr in profs for sc in scens]
    counts = [len(range(i, devices, len(cells_def))) for i in range(len(cells_def))]
    tasks = [_Task(k, j, min(CHUNK, count - j * CHUNK), cells_def[k], seed, days, policy,
                   cap_nominal)
             for k, count in enumerate(counts) for j in range(-(-count // CHUNK))]
    parts: list[list[CellResult]] = [[] for _ in cells_def]
    for k, res in _run_tasks(tasks, workers):
        parts[k].extend(res)
        if progress is not None:
            progress(sum(len(r.steps) for r in res))
    out = summarise([r for ps in parts for r in ps])
    out["config"] = {"profiles": [pr.name for pr in profs], "scenarios": [sc.name for sc in scens],
                     "devices": devices, "days": days, "seed": seed, "cap_nominal": cap_nominal,
                     "policy": None if policy is None else policy.to_dict(),
                     "spread": {"level": LEVEL_SPREAD, "ambient_c": AMBIENT_SPREAD_C,
                                "event_time_factor": EVENT_SPREAD}, "chunk": CHUNK}
    return out


@dataclass(frozen=True)
class _Task:
    """One chunk of one cell: ``count`` phones, their generator seeded by (seed, cell, chunk)."""

    cell: int
    chunk: int
    count: int
    spec: tuple[DeviceProfile, Scenario]
    seed: int
    days: int
    policy: Policy | None
    cap_nominal: bool

    def __call__(self) -> tuple[int, list[CellResult]]:
        pr, sc = self.spec
        rng = np.random.default_rng([self.seed, self.cell, self.chunk])
        lo, hi = _SOH_RANGE.get(pr.name, (pr.state_of_health, pr.state_of_health))
        battery_j = pr.battery_wh * 3600.0 * rng.uniform(lo, hi, self.count)
        return self.cell, [_compact(simulate_cell(make_day(sc, pr, rng, self.count), battery_j,
                                                  policy=self.policy,
                                                  cap_nominal=self.cap_nominal))
                           for _ in range(self.days)]


def _compact(r: CellResult) -> CellResult:
    """The outcome kept per device-day (what :func:`summarise` reads), its counts in small
    integers: about 60 bytes a device-day where the simulation's arrays are chunk-sized."""
    return replace(r, steps=r.steps.astype(np.int32), floor_violations=r.floor_violations.astype(
        np.int32), max_status=r.max_status.astype(np.int8), thermal_pauses=r.thermal_pauses.astype(
        np.int32), windows_used=r.windows_used.astype(np.int16), stop_reason=r.stop_reason.astype(
        np.int8))


def _call(task: _Task) -> tuple[int, list[CellResult]]:
    return task()


def _run_tasks(tasks: Sequence[_Task], workers: int) -> Iterator[tuple[int, list[CellResult]]]:
    """The tasks' results in order, computed here or by ``workers`` processes (forked where the
    platform can: the children inherit the imported code instead of importing it again)."""
    workers = min(workers, len(tasks))
    if workers <= 1:
        yield from map(_call, tasks)
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ctx.Pool(workers) as pool:
        yield from pool.imap(_call, tasks)
