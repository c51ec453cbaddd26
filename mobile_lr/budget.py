"""Budget planner: how many training steps a phone can afford from its state now.

:func:`plan` integrates the device model of :mod:`mobile_lr.device` forward one
training step at a time, so throttling that *will* happen is accounted for (a
step at thermal status ``s`` takes ``1/throughput[s]`` times longer, heats less,
and costs slightly more energy), and stops at the first step whose end would be
below the battery floor, above the allowed thermal status, past the time budget,
or past ``max_steps``. Runs of steps in which nothing changes (same thermal
status, same battery regime) are jumped over with the closed forms

    T_n = T_ss + (T_0 - T_ss)·q^n,  q = e^{-d/τ};   level_n = level_0 + n·δ

(or ``v_n = v_0 + n·λ·d`` in the CV taper), and the step at an event is taken
exactly with :func:`mobile_lr.device.advance`; a plan costs a few dozen exact
steps whatever its length.

:class:`CostEstimator` learns the real per-step time and power from observations
(median of the recent ones, normalised to full speed) and offers a pessimistic
cost whose factors shrink from the stated prior uncertainty to the observed
spread. :func:`sustained_rate` is the steps per second a phone can keep up under
the thermal limit, for plans that look beyond the current OS window.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from operator import mul, truediv
from pathlib import Path
from typing import Any, NamedTuple

from mobile_lr import physics
from mobile_lr.device import (
    STATUS_NAMES,
    DeviceProfile,
    DeviceState,
    ThermalStatus,
    advance,
    parse_thermal_status,
)
from mobile_lr.physics import (
    MAX_STEPS,
    SCALAR,
    Ops,
    Phone,
    Physics,
    jump,
    jump_bound,
    start_run,
    steps_below,
)
from mobile_lr.validation import (
    ValidationError,
    check_keys,
    check_number,
    get_int,
    get_number,
    get_object,
    join,
    read_json,
)
from mobile_lr.validation.schema import Record, boolean, choice, custom, number

__all__ = [
    "DETAILS",
    "LIMITING_FACTORS",
    "AmbientEstimator",
    "CostBand",
    "CostEstimator",
    "Forecast",
    "PhoneForecast",
    "Policy",
    "StepCost",
    "broken_limit",
    "effective_floor",
    "load_policy",
    "plan",
    "plan_phones",
    "sustained_rate",
]

POLICY_FORMAT = "mobile-lr.policy/1"
#: What ends a plan; :class:`PhoneForecast` carries the index (BATTERY .. NONE).
LIMITING_FACTORS = ("battery", "thermal", "time", "none")
BATTERY, THERMAL, TIME, NONE = range(4)
#: Why a plan affords nothing before stepping; :class:`PhoneForecast` carries the index.
DETAILS = ("", "not charging", "battery low", "below the floor", "thermal status above the policy",
           "no time left")
HORIZONS = ("session", "deadline")
MAX_PLAN_STEPS = MAX_STEPS
#: The longest span of device time a policy or scenario may name (a window, a gap, a deadline):
#: a year. 1e308 s was accepted, and a planner horizon of 10^300 s is no phone's.
MAX_SPAN_S = 366 * 86400.0
#: The largest thermal margin a policy may keep, in K (the whole range from a cold phone to
#: the throttling thresholds is some 50 K).
MAX_MARGIN_C = 100.0


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True, kw_only=True)
class Policy(Record):
    """What the user allows.

    * ``battery_floor``: no step may end below this level (fraction in [0, 1)).
    * ``max_thermal``: highest thermal status a step may end in.
    * ``window_s``: time budget of one session; None = the OS window of the
      profile (10 min on battery, 30 min on the charger).
    * ``deadline_s``: absolute device time by which the run must end (optional).
    * ``charging_only``: train only while plugged in.
    * ``thermal_margin_c``: the planner keeps the predicted temperature this far
      below the next status's threshold (covers an unknown ambient, sensor lag).
    * ``horizon``: ``"session"`` — the run ends with the current session (OS window),
      so the schedule anneals by its end; a thermal limit with time left in the window
      is a pause inside it; ``"deadline"`` — sessions (OS windows, thermal
      pauses) are interruptions of one run that ends at ``deadline_s``.
    * ``window_gap_s``: expected rest between two OS windows (horizon ``deadline``:
      the time after this session counts ``window / (window + gap)`` as training time).
    """

    FORMAT = POLICY_FORMAT

    battery_floor: float = number(0.2, lo=0.0, hi=1.0, hi_open=True,
                                  help="no step may end below this battery level")
    max_thermal: ThermalStatus = custom(
        parse_thermal_status, {"enum": [*STATUS_NAMES, *range(len(STATUS_NAMES))]},
        ThermalStatus.MODERATE, dump=lambda s: s.name,
        help="the highest thermal status a step may end in")
    window_s: float | None = number(None, lo=0.0, hi=MAX_SPAN_S, lo_open=True, nullable=True,
                                    help="time budget of one session (null: the OS window)")
    deadline_s: float | None = number(None, lo=-MAX_SPAN_S, hi=MAX_SPAN_S, nullable=True,
                                      help="device time by which the run must end")
    charging_only: bool = boolean(False, help="train only while plugged in")
    thermal_margin_c: float = number(1.0, lo=0.0, hi=MAX_MARGIN_C,
                                     help="keep the predicted temperature this far below "
                                          "the next status's threshold")
    horizon: str = choice(HORIZONS, "session",
                          help="session: the run ends with the OS window; deadline: at "
                               "deadline_s")
    window_gap_s: float = number(0.0, lo=0.0, hi=MAX_SPAN_S, help="expected rest between two OS windows")

    def check(self) -> None:
        if self.horizon == "deadline" and self.deadline_s is None:
            raise ValidationError("deadline_s", "missing: horizon 'deadline' needs a deadline",
                                  "a device time in seconds")

    def thermal_limit_c(self, profile: DeviceProfile) -> float:
        """Temperature a step's end must stay below: next status's threshold - margin."""
        return profile.threshold(int(self.max_thermal) + 1) - self.thermal_margin_c


def load_policy(source: str | Path | Mapping[str, Any]) -> Policy:
    """A policy from a JSON file or a dict."""
    if isinstance(source, Mapping):
        return Policy.from_dict(source)
    return Policy.from_dict(read_json(source, "policy"))


# --------------------------------------------------------------------------- cost and plan


@dataclass(frozen=True)
class StepCost(Record):
    """Cost of one training step at full speed: wall seconds and whole-device joules."""

    seconds: float = number(lo=0.0, lo_open=True, key="step_seconds",
                            help="wall seconds of one full-speed step")
    joules: float = number(lo=0.0, lo_open=True, key="step_joules",
                           help="whole-device joules of one full-speed step")

    def __post_init__(self) -> None:
        # The estimator makes two a step: pass the common case (two positive floats) cheaply
        # and let the declared validation normalise, or word the error, otherwise.
        if not (type(self.seconds) is float and type(self.joules) is float
                and 0.0 < self.seconds < math.inf and 0.0 < self.joules < math.inf):
            super().__post_init__()

    @property
    def power_w(self) -> float:
        return self.joules / self.seconds

    @classmethod
    def from_profile(cls, profile: DeviceProfile) -> StepCost:
        return cls(profile.step_seconds, profile.step_joules)


@dataclass(frozen=True)
class Forecast:
    """The planner's forecast: the steps affordable now, what stops them, and the predicted
    cost and end state. (The manager turns forecasts into the planned totals of the
    schedule's plan history: "plan" names only those.)"""

    steps: int
    limiting_factor: str
    energy_j: float
    seconds: float
    end_level: float
    end_temperature_c: float
    end_status: ThermalStatus
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "limiting_factor": self.limiting_factor,
                "energy_j": self.energy_j, "seconds": self.seconds, "end_level": self.end_level,
                "end_temperature_c": self.end_temperature_c,
                "end_status": self.end_status.name, "detail": self.detail}


class PhoneForecast(NamedTuple):
    """What :func:`plan_phones` finds, per phone (floats, or arrays with one element per phone):
    the affordable steps, the limit that stops them (a code into :data:`LIMITING_FACTORS`),
    why nothing is affordable before stepping (a code into :data:`DETAILS`), and the
    predicted cost and end state."""

    steps: Any
    factor: Any
    detail: Any
    energy_j: Any
    seconds: Any
    level: Any
    temp: Any
    status: Any


class _Progress(NamedTuple):
    """The planner's loop state of every phone still planning."""

    level: Any
    temp: Any
    status: Any
    steps: Any
    elapsed: Any
    energy: Any
    factor: Any        # a code into LIMITING_FACTORS once the plan ends, -1 before


class _Fixed(NamedTuple):
    """What the planner's loop reads of a phone and does not change."""

    charging: Any
    ambient: Any
    battery_j: Any
    floor: Any
    budget: Any        # seconds this session may take
    cap: Any           # steps at most


class _Limits(NamedTuple):
    theta: float       # a step must end below this temperature
    max_thermal: int
    step_s: float      # full-speed step time of the cost
    full_w: float      # full-speed power of the cost (at least the idle power)


def plan_phones(ops: Ops, profile: DeviceProfile, phone: Phone, now_s: Any, policy: Policy,
                cost: StepCost, time_budget_s: Any, cap: Any) -> PhoneForecast:
    """The planner, for one phone (``ops`` = :data:`~mobile_lr.physics.SCALAR`) or many
    (:data:`~mobile_lr.physics.ARRAY`): :func:`plan` is its front-end for a
    :class:`DeviceState`, the budget simulation of many phones calls it on arrays.

    First the preconditions (not charging, battery low, below the floor, status above the
    policy, no time); then every phone still planning either jumps over a run of identical
    steps in closed form (:func:`mobile_lr.physics.jump`) or takes one exact step
    (:func:`mobile_lr.physics.advance`) and checks it against the floor, the thermal limit
    and its time budget (cut at the policy's deadline), until a limit or ``cap`` steps.
    """
    p = profile
    if policy.deadline_s is not None:
        time_budget_s = ops.minimum(time_budget_s, policy.deadline_s - now_s)
    unplugged = ops.not_(phone.charging)
    blocked = [unplugged & (policy.charging_only or p.requires_charging),
               unplugged & p.battery_not_low & (phone.level <= p.low_battery_level),
               phone.level < policy.battery_floor,   # even a charging phone waits
               phone.status > int(policy.max_thermal),
               time_budget_s <= 0.0]
    factor = ops.select(blocked, [BATTERY, BATTERY, BATTERY, THERMAL, TIME], -1)
    detail = ops.select(blocked, [1, 2, 3, 4, 5], 0)
    floor = effective_floor(p, policy, phone.charging, ops=ops)
    limits = _Limits(policy.thermal_limit_c(p), int(policy.max_thermal), cost.seconds,
                     max(cost.power_w, p.idle_power_w))
    c = p.physics
    end = ops.until(lambda s, f: _search_step(ops, c, limits, s, f),
                    _Progress(phone.level, phone.temp, phone.status, 0.0, 0.0, 0.0, factor),
                    _Fixed(phone.charging, phone.ambient, phone.battery_j, floor, time_budget_s,
                           cap),
                    lambda s, f: (s.factor >= 0) | (s.steps >= f.cap))
    return PhoneForecast(end.steps, ops.where(end.factor < 0, NONE, end.factor), detail, end.energy,
                   end.elapsed, end.level, end.temp, end.status)


def _search_step(ops: Ops, c: Physics, k: _Limits, s: _Progress, f: _Fixed) -> _Progress:
    """One iteration for every phone still planning (below its cap): a closed-form jump over
    a run of identical steps where it is safe, else one exact step, checked."""
    m = ops.lookup(c.profile.throughput, s.status)
    d = k.step_s / m
    load = c.profile.load_power(m, k.full_w)
    ph = Phone(s.level, f.charging, s.temp, s.status, f.ambient, f.battery_j)
    run = start_run(ops, c, ph, load, d)
    n = ops.minimum(ops.minimum(jump_bound(ops, c, ph, run, k.theta, f.floor),
                                steps_below(ops, (f.budget - s.elapsed) / d)), f.cap - s.steps)
    level_j, temp_j, ok = ops.switch(n >= 2.0, (
        lambda: (s.level, s.temp, False),
        lambda: jump(ops, c, ph, run, n, k.theta, f.floor)))

    def step() -> _Progress:
        level, temp, status, used, _ = physics.advance(ops, c, ph, load, ops.where(ok, 0.0, d))
        factor = broken_limit(ops, level, temp, status, f.floor, k.theta, k.max_thermal,
                              s.elapsed + d > f.budget)
        return ops.switch(factor >= 0, (
            lambda: _Progress(level, temp, status, s.steps + 1.0, s.elapsed + d,
                              s.energy + used, factor),
            lambda: s._replace(factor=factor)))

    return ops.switch(ok, (
        step,
        lambda: _Progress(level_j, temp_j, s.status, s.steps + n, s.elapsed + n * d,
                          s.energy + n * load * d, s.factor)))


def broken_limit(ops: Ops, level: Any, temp: Any, status: Any, floor: Any, theta: float,
                 max_thermal: int, late: Any) -> Any:
    """The limit the end of a step breaks (a code into :data:`LIMITING_FACTORS`; -1: none),
    checked in the order battery, thermal, time: below the floor (or empty), at or above the
    temperature ``theta`` or above the allowed status, ``late``."""
    return ops.select([(level < floor) | (level <= 0.0),
                       (temp >= theta) | (status > max_thermal), late],
                      [BATTERY, THERMAL, TIME], -1)


def plan(profile: DeviceProfile, state: DeviceState, policy: Policy, cost: StepCost, *,
         max_steps: int | None = None, time_budget_s: float | None = None) -> Forecast:
    """Steps affordable from ``state`` under ``policy`` at per-step ``cost``.

    ``time_budget_s`` is the time left in the current session (default: the
    policy's window, else the profile's OS window for the charging state); it is
    cut at the policy's deadline. ``max_steps`` caps the count (limiting factor
    ``"none"`` when reached). ``cost`` is the full-speed cost; pass a pessimistic
    one (:meth:`CostEstimator.pessimistic`) to get a plan that holds for any true
    cost below it.
    """
    cap = MAX_PLAN_STEPS if max_steps is None else max(0, int(max_steps))
    if time_budget_s is None:
        time_budget_s = policy.window_s if policy.window_s is not None \
            else profile.window_for(state.charging)
    amb = state.ambient_c if state.ambient_c is not None else profile.ambient_c
    phone = Phone(state.level, state.charging, state.temperature_c, int(state.thermal_status),
                  amb, profile.battery_j)
    r = plan_phones(SCALAR, profile, phone, state.time_s, policy, cost, time_budget_s,
                    float(cap))
    return Forecast(int(r.steps), LIMITING_FACTORS[r.factor], r.energy_j, r.seconds, r.level,
                r.temp, ThermalStatus(r.status), DETAILS[r.detail])


def effective_floor(profile: DeviceProfile, policy: Policy, charging: Any, *,
                    ops: Ops = SCALAR) -> Any:
    """The policy's floor, raised above the OS low-battery level for a job that requires
    "battery not low" and runs unplugged (the OS stops it at ``level <= low``, docs/DEVICES.md
    §1.3). ``charging`` is a bool, or an array with ``ops`` = ARRAY."""
    raised = max(policy.battery_floor, math.nextafter(profile.low_battery_level, math.inf))
    return ops.where(ops.not_(charging) & profile.battery_not_low, raised, policy.battery_floor)


def sustained_rate(profile: DeviceProfile, policy: Policy, cost: StepCost, *, charging: Any,
                   ambient_c: Any = None, ops: Ops = SCALAR) -> Any:
    """Steps per second a phone can keep up for hours under the thermal limit (``charging``
    and ``ambient_c`` are floats, or arrays with ``ops`` = ARRAY).

    The average heat it may dissipate is ``(T_limit - T_amb)/R`` minus the
    charger's loss; training at full speed for a fraction ``duty`` of the time
    (cooling pauses in between) puts out ``P_idle + duty·(P_full - P_idle)``.
    """
    amb = profile.ambient_c if ambient_c is None else ambient_c
    p_idle = profile.idle_power_w
    p_full = max(cost.power_w, p_idle)
    # an infinite limit (no thermal status is too hot) allows any heat
    allowed = (policy.thermal_limit_c(profile) - amb) / profile.thermal_resistance_k_per_w \
        - ops.where(charging, profile.physics.loss_w, 0.0)
    kind = ops.select([allowed >= p_full, allowed <= p_idle], [0, 1], 2)
    return ops.switch(kind, (lambda: 1.0 / cost.seconds, lambda: 0.0,
                             lambda: (allowed - p_idle) / (p_full - p_idle) / cost.seconds))


# --------------------------------------------------------------------------- estimator


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


class CostBand(NamedTuple):
    """What :meth:`CostEstimator.band` guarantees: while every observation's full-speed
    seconds stay at most ``max_seconds`` and its full-speed power at most ``max_power_w``,
    and at most ``energies_left`` more of them carry an energy, the pessimistic cost's seconds
    stay at most ``cap_seconds`` and its power at most ``cap_power_w``, and the full-speed
    power a step is dead-reckoned at (observed, or estimated) at most ``max_load_power_w``."""

    cap_seconds: float
    cap_power_w: float
    max_seconds: float
    max_power_w: float
    max_load_power_w: float
    energies_left: float


class CostEstimator:
    """Robust running estimate of the full-speed step time and power.

    Each observation is normalised to full speed with the throughput of the
    status the step ran at (``seconds·m``; power ``P_idle + (P - P_idle)/m``).
    The estimate is the median of the last ``window`` observations once there are
    ``min_observations`` of them, the profile's prior before. The pessimistic
    cost multiplies time and power by factors ``κ``: ``prior_factor`` before
    enough observations (the profile may be off by that much), then
    ``(1 + margin)·max(recent)/median`` clamped to ``[1 + margin, prior_factor]``.
    Without energy observations the power keeps its prior and the factor
    ``unobserved_power_factor``.
    """

    def __init__(self, prior: StepCost, *, idle_power_w: float, window: int = 15,
                 min_observations: int = 3, prior_factor: float = 3.0, margin: float = 0.1,
                 unobserved_power_factor: float = 1.5):
        if window < 1 or min_observations < 1 or min_observations > window:
            raise ValidationError("estimator.window", "need 1 <= min_observations <= window")
        check_number(prior_factor, "estimator.prior_factor", lo=1.0)
        check_number(margin, "estimator.margin", lo=0.0)
        check_number(unobserved_power_factor, "estimator.unobserved_power_factor", lo=1.0)
        self.prior = prior
        self.idle_power_w = idle_power_w
        self.window = window
        self.min_observations = min_observations
        self.prior_factor = prior_factor
        self.margin = margin
        self.unobserved_power_factor = unobserved_power_factor
        self.seconds: deque[float] = deque(maxlen=window)   # the last observations
        self.powers: deque[float] = deque(maxlen=window)
        self.count = 0

    def observe(self, seconds: float, energy_j: float | None = None, throttle: float = 1.0
                ) -> tuple[float, float | None] | None:
        """Record one step; non-finite or non-positive values are ignored. Returns what was
        recorded: (full-speed seconds, full-speed power or None), None if nothing."""
        # (chained comparisons: finite and positive, NaN fails; the manager calls this per step)
        if not (0.0 < seconds < math.inf and 0.0 < throttle <= 1.0):
            return None
        self.count += 1
        full_s = seconds * throttle
        self.seconds.append(full_s)   # a deque of the last ``window``
        if energy_j is not None and 0.0 < energy_j < math.inf:
            full = self.full_power(energy_j / seconds, throttle)
            self.powers.append(full)
            return full_s, full
        return full_s, None

    def observe_all(self, seconds: Sequence[float], energies: Sequence[float],
                    throttles: Sequence[float]) -> None:
        """:meth:`observe` of each step in order, every one valid (positive finite seconds and
        joules, ``0 < throttle <= 1``: the caller checked): only the last ``window`` can stay
        in the window, so only they are normalised (the manager folds a held run's
        observations 64 at a time)."""
        self.count += len(seconds)
        w = self.window
        s, e, m = seconds[-w:], energies[-w:], throttles[-w:]
        self.seconds.extend(map(mul, s, m))
        self.powers.extend(map(self.full_power, map(truediv, e, s), m))

    def full_power(self, power_w: float, throttle: float) -> float:
        """A step's mean power at ``throttle`` normalised to full speed, as :meth:`observe`
        records it (one place: the manager's held step compares observations in these terms)."""
        idle = self.idle_power_w
        full = idle + (power_w - idle) / throttle
        if full < 1e-9:       # max(full, 1e-9) (full is finite here)
            full = 1e-9
        return full

    @property
    def warm(self) -> bool:
        """Enough observations for the estimate to replace the prior."""
        return len(self.seconds) >= self.min_observations

    def _seconds(self) -> tuple[float, float]:
        if len(self.seconds) < self.min_observations:
            return self.prior.seconds, self.prior_factor
        med = _median(self.seconds)
        return med, self._factor(self.seconds, med)

    def _power(self) -> tuple[float, float]:
        if len(self.powers) < self.min_observations:
            factor = self.prior_factor if len(self.seconds) < self.min_observations \
                else self.unobserved_power_factor
            return self.prior.power_w, factor
        med = _median(self.powers)
        return med, self._factor(self.powers, med)

    def _factor(self, xs: Sequence[float], med: float) -> float:
        lo = 1.0 + self.margin
        return min(self.prior_factor, max(lo, lo * max(xs) / med))

    def estimate(self) -> StepCost:
        s, _ = self._seconds()
        p, _ = self._power()
        return StepCost(s, s * p)

    def pessimistic(self) -> StepCost:
        s, ks = self._seconds()
        p, kp = self._power()
        return StepCost(s * ks, s * ks * p * kp)

    def band(self, widen: float) -> CostBand | None:
        """How far observations may go before :meth:`pessimistic` can exceed a cap (None
        while the estimate still uses the prior for the step time).

        The pessimistic seconds are ``min(prior_factor·median, (1 + margin)·max)`` of the
        window, so at most ``(1 + margin)·max``; the same for the power once
        ``min_observations`` energies are in, and the prior power times
        ``unobserved_power_factor`` before. Observations at most ``widen`` times the window's
        maximum (the power prior, before) keep the pessimistic cost below the cap; the
        ``min_observations``-th energy ends the band (the power then leaves its prior)."""
        if not self.warm:
            return None
        lo = (1.0 + self.margin) * (1.0 + 1e-12)   # covers the rounding of med·factor
        max_s = max(self.seconds) * widen
        if len(self.powers) >= self.min_observations:
            max_p, left = max(self.powers) * widen, math.inf
            cap_p = lo * max_p
        else:
            max_p = self.prior.power_w * self.unobserved_power_factor * (1.0 + 1e-12)
            cap_p, left = max_p, self.min_observations - len(self.powers) - 1
        return CostBand(lo * max_s, cap_p, max_s, max_p, max(max_p, self.prior.power_w), left)

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": list(self.seconds), "powers": list(self.powers), "count": self.count}

    def load_state_dict(self, obj: Mapping[str, Any], path: str = "estimator") -> None:
        obj = get_object(obj, path)
        check_keys(obj, path, ("seconds", "powers", "count"), required=("seconds", "powers"))
        for key in ("seconds", "powers"):
            vals = obj[key]
            if not isinstance(vals, list):
                raise ValidationError(join(path, key), "expected a list of numbers")
            for i, v in enumerate(vals):
                check_number(v, join(join(path, key), i), lo=0.0, lo_open=True)
        self.seconds = deque((float(v) for v in obj["seconds"]), maxlen=self.window)
        self.powers = deque((float(v) for v in obj["powers"]), maxlen=self.window)
        self.count = get_int(obj, "count", path, default=len(self.seconds), lo=0)


class AmbientEstimator:
    """Least-squares estimate of the ambient temperature a phone cannot measure.

    Over any interval the RC model gives ``T1 = amb·x + f(T0, heat)`` with
    ``x = 1 - e^{-Δt/τ}`` whatever the pieces of constant heat inside it, so every
    reported interval (the steps observed in it, idle for the rest) is one linear
    observation ``y = T1 - f = amb·x``. The estimate is ``Σλxy / Σλx²`` with a
    forgetting factor ``λ = e^{-Δt/forget_s}`` per interval, seeded by the profile's
    ambient with weight ``prior_weight`` (the information of one interval of about
    ``0.1·τ``). Model errors (a wrong R or C) are absorbed into an effective ambient
    that makes the predictions right, which is what the planner needs.
    """

    def __init__(self, profile: DeviceProfile, *, forget_s: float = 1800.0,
                 prior_weight: float = 0.01):
        self.profile = profile
        self.forget_s = forget_s
        self.sxx = prior_weight
        self.sxy = prior_weight * profile.ambient_c

    @property
    def value(self) -> float:
        return min(80.0, max(-50.0, self.sxy / self.sxx))

    def observe(self, start: DeviceState, end: DeviceState,
                steps: list[tuple[float, float]]) -> None:
        """One reported interval: ``steps`` are (load W, seconds) of the steps run in it."""
        dt = end.time_s - start.time_s
        if not dt > 0.0:
            return
        sim = replace(start, ambient_c=0.0, time_s=0.0)
        busy = 0.0
        for load, seconds in steps:
            sim, _ = advance(self.profile, sim, load, seconds)
            busy += seconds
        if dt > busy:
            sim, _ = advance(self.profile, sim, self.profile.idle_power_w, dt - busy)
        x = 1.0 - math.exp(-dt / self.profile.tau_s)
        y = end.temperature_c - sim.temperature_c
        lam = math.exp(-dt / self.forget_s)
        self.sxx = lam * self.sxx + x * x
        self.sxy = lam * self.sxy + x * y

    def state_dict(self) -> dict[str, float]:
        return {"sxx": self.sxx, "sxy": self.sxy}

    def load_state_dict(self, obj: Mapping[str, Any], path: str = "ambient") -> None:
        obj = get_object(obj, path)
        check_keys(obj, path, ("sxx", "sxy"), required=("sxx", "sxy"))
        self.sxx = get_number(obj, "sxx", path, lo=0.0, lo_open=True)
        self.sxy = get_number(obj, "sxy", path)
