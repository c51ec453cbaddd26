"""When the plan in force still holds: the manager's O(1) step between two full plans.

A full plan (the gate forecast at the pessimistic cost, the run's budget, the plan history's
record) costs tens of microseconds; a training step's decision should cost what a scheduler's
``step()`` does. Between two full plans the manager runs on a *certificate*: a number of steps
that provably pass the gate, so the decision is ``Run(step, lr)`` with the total in force.

The certificate is an envelope in closed form, valid for any steps whose observed costs stay in
the estimator's band (:meth:`mobile_lr.budget.CostEstimator.band`): every step (observed, hence
dead-reckoned, or the next one the gate would check at the pessimistic cost) takes at most
``D = cap_seconds / m`` seconds at a load of at most ``P = P_idle + (P_cap - P_idle)·m``
(``m`` the throughput of the status at the anchor), so after ``k`` steps from the anchor state

* the time is at most ``t0 + k·D``: the window, the deadline;
* the level is at least ``L0 - k·P·D / E`` (a charger only adds; the load is served first):
  the floor, the OS's low level;
* the temperature is at most ``max(T0, U(k·D))`` with ``U`` the RC path at the largest heat
  (``P`` plus the charger's loss, or its loss of carrying the load when full), and at least
  ``min(T0, A + (T0 - A)·e^{-k·D/τ})`` (no heat at all): the thermal limit, and the status
  stays the anchor's (so does the throttle ``m`` the bounds assume).

If all of these hold for ``k`` steps, the gate's first step from the believed state after
``k - 1`` steps ends inside every limit, so the gate affords one and the manager would run it:
safety is exact, not approximate (the bounds carry margins far above the rounding). What the
certificate does not decide is the planned total: the full plan re-checks it every
``remaining // (2·replan_tolerance)`` steps (half the steps the tolerance allows the total to
drift by; near the plan's end, every step), and at once when a device report changes
the charger or the status, an observation leaves the band, a window begins, or the envelope
runs out. A device report that changes neither re-anchors the envelope at the reported state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

from mobile_lr.budget import CostBand, Policy, effective_floor
from mobile_lr.device import DeviceProfile, DeviceState
from mobile_lr.physics import MAX_STEPS
from mobile_lr.validation import check_bool, check_fields, check_int, check_number

__all__ = ["BAND_WIDEN", "Envelope", "Limits", "PlanHold", "certified_steps", "envelope"]

#: Observations may exceed the window's largest by this factor and stay in the band.
BAND_WIDEN = 1.25
_REL = 1e-9      # relative margin on the step time and the load (covers rounding of sums)
_LEVEL = 1e-9    # battery margin (fraction)
_TEMP = 1e-7     # temperature margin (K)


class Limits(NamedTuple):
    """What the envelope reads of a profile and a policy, derived once (a report re-anchors the
    envelope, which should cost little): per status, the temperature a step must stay below
    (the thermal limit or the next status's edge) and above (this status's edge down)."""

    profile: DeviceProfile
    max_thermal: int
    needs_charger: bool          # unplugged, the gate blocks
    floors: tuple[float, float]  # the effective floor unplugged, plugged in
    tops: tuple[float, ...]
    downs: tuple[float, ...]
    heat_when_plugged: tuple[float, float]   # the charger's loss, its heat per W when full

    @classmethod
    def of(cls, p: DeviceProfile, policy: Policy) -> Limits:
        c = p.physics
        theta = policy.thermal_limit_c(p)
        return cls(p, int(policy.max_thermal), policy.charging_only or p.requires_charging,
                   (float(effective_floor(p, policy, False)), float(effective_floor(p, policy, True))),
                   tuple(min(theta, c.edges[s + 1]) - _TEMP for s in range(len(p.throughput))),
                   tuple(-math.inf if s == 0 else c.thresholds_down[s - 1] + _TEMP
                         for s in range(len(p.throughput))), (c.loss_w, c.full_heat))


class Envelope(NamedTuple):
    """The bounds of the module doc from one anchor state: each step at most ``d`` seconds at a
    load of at most ``load`` W, heating toward at most ``steady`` (cooling toward ``ambient``)."""

    time_s: float
    level: float
    temperature_c: float
    ambient_c: float
    status: int
    charging: bool
    d: float
    load: float
    battery_j: float
    steady: float
    tau: float

    def steps(self, k: Limits, end_s: float) -> int:
        """Steps from the anchor that provably each end inside every limit (the certificate)."""
        d, t0, amb, tau = self.d, self.temperature_c, self.ambient_c, self.tau
        n = (end_s - self.time_s) / d
        n = min(n, (self.level - k.floors[self.charging] - _LEVEL) * self.battery_j
                / (self.load * d))
        top = k.tops[self.status]
        if not t0 < top:
            return 0
        steady = self.steady
        if steady > top:
            n = min(n, tau * math.log((steady - t0) / (steady - top)) / d)
        if self.status >= 1:
            down = k.downs[self.status]
            if not t0 >= down:
                return 0
            if amb < down:
                n = min(n, tau * math.log((t0 - amb) / (down - amb)) / d)
        # one spare step for the rounding of the bounds themselves; NaN gives none
        return int(min(float(MAX_STEPS), n)) - 1 if n >= 2.0 else 0

    def contains(self, steps: int, state: DeviceState) -> bool:
        """Whether ``state`` (a report, at the anchor's status and charger) is no worse in any
        bound than the envelope after ``steps`` steps from the anchor: then every step the
        certificate allows after those stays inside the limits from ``state`` too (the bounds
        are monotone in the start state and compose: ``k`` steps then ``j`` are ``k + j``)."""
        # (one unpacking instead of a read per field, and no exp when the report is no warmer
        # than the anchor at status 0: every call of a phone reporting each step comes here)
        time_s, level, t0, amb0, status, _, d, load, battery_j, steady, tau = self
        amb = state.ambient_c
        kd = steps * d
        if not (state.time_s <= time_s + kd and amb is not None and amb <= amb0
                and (level - state.level) * battery_j <= steps * load * d):
            return False
        temp = state.temperature_c
        if status == 0 and temp <= t0:
            return True
        e = math.exp(-kd / tau)
        hot = steady + (t0 - steady) * e
        if not temp <= (hot if hot > t0 else t0):    # max(t0, hot)
            return False
        cold = amb + (t0 - amb) * e
        return status == 0 or (amb == amb0 and temp >= (cold if cold < t0 else t0))  # min


def envelope(k: Limits, view: DeviceState, band: CostBand) -> Envelope | None:
    """The envelope from ``view`` while the costs stay in ``band`` (None: no step is allowed:
    above the allowed status, or unplugged where the charger is required)."""
    p = k.profile
    s0 = int(view.thermal_status)
    charging = view.charging
    if s0 > k.max_thermal or (not charging and k.needs_charger):
        return None
    m = p.throughput[s0]
    d = band.cap_seconds / m * (1.0 + _REL)
    load = p.load_power(m, max(band.cap_power_w, band.max_load_power_w, p.idle_power_w)) \
        * (1.0 + _REL)
    loss, full_heat = k.heat_when_plugged
    heat = load + (max(loss, full_heat * load) if charging else 0.0)
    amb = view.ambient_c
    assert amb is not None   # the belief's view carries the estimated ambient
    return Envelope(view.time_s, view.level, view.temperature_c, amb, s0, charging, d, load,
                    p.battery_j, amb + heat * p.thermal_resistance_k_per_w, p.tau_s)


def certified_steps(k: Limits, view: DeviceState, band: CostBand, end_s: float) -> int:
    """Steps from ``view`` that provably each end inside every limit while the costs stay in
    ``band`` (see the module doc); ``end_s`` is the end of the time budget (window, deadline)."""
    env = envelope(k, view, band)
    return 0 if env is None else env.steps(k, end_s)


def largest_within(f: Callable[[float], float], y: float, guess: float) -> float:
    """The largest float ``x`` with ``f(x) <= y`` for a non-decreasing ``f``, searched ulp by
    ulp from ``guess`` (a value just below the true one, or -inf, when rounding puts it more than
    64 ulps away: a threshold that is too low only sends more observations the full way)."""
    x = guess
    for _ in range(64):
        if f(x) <= y:
            break
        x = math.nextafter(x, -math.inf)
    else:
        return -math.inf
    for _ in range(64):
        up = math.nextafter(x, math.inf)
        if not f(up) <= y:
            break
        x = up
    return x


class PlanHold:
    """The certificate in force: ``left`` more Runs without a full plan, while observations stay
    at most ``max_seconds`` (full speed) and ``max_power_w``, and at most ``energies_left`` more
    carry an energy. ``status`` is the thermal status the envelope keeps (the steps' throttle).

    ``seconds_keep`` and ``power_keep`` are the same band in the caller's terms (a step's raw
    seconds at ``throttle``, its joules per second): the largest values :meth:`observed` leaves
    the hold exactly as it is for (not even ``widened``), found in floats by
    :func:`largest_within` through the estimator's own normalisation (``full_power``), so the
    manager's held ``observe`` is two comparisons with the same outcome as the full path.
    ``power_keep`` is NaN (no energy passes) while energies are counted, and ``seconds_keep``
    -inf when ``deferrable`` is off (a loss watch must see each loss)."""

    KEYS = ("hold",)

    def __init__(self, profile: DeviceProfile, policy: Policy, tolerance: int,
                 full_power: Callable[[float, float], float], deferrable: bool = True) -> None:
        self.limits, self.tolerance = Limits.of(profile, policy), tolerance
        self.full_power, self.deferrable = full_power, deferrable
        self.throttle = 1.0
        self.seconds_keep, self.power_keep = -math.inf, math.nan
        self._keep_key: tuple[float, ...] = ()
        self.left = 0          # Runs allowed without a full plan
        self.stride = 0        # ... of which the plan's re-check allows
        self.status = 0
        self.charging = False
        self.max_seconds = self.max_power_w = self.energies_left = 0.0
        self.scale = 1.0       # the manager's LR factor at the full plan (fixed until the next)
        self.envelope: Envelope | None = None   # the bounds from the anchor state
        self._base = 0
        self.widened = False   # an observation since the anchor widened the estimator's band

    def arm(self, view: DeviceState, band: CostBand | None, end_s: float, remaining: int,
            scale: float) -> None:
        """After a full plan that issued a Run from ``view`` (``remaining`` = planned total -
        step): the Runs that may follow it without one."""
        self.stride = max(0, remaining // (2 * self.tolerance) - 1)
        self.scale = scale
        self._anchor(view, band, end_s, pending=1)

    def reanchor(self, state: DeviceState, band: CostBand | None, end_s: float,
                 pending: bool) -> None:
        """A device report: re-anchor the envelope there, or end the hold if the charger or the
        status changed (the budget may have moved far: plan again)."""
        if self.left <= 0:
            return
        if state.charging != self.charging or int(state.thermal_status) != self.status:
            self.left = 0
            return
        self._anchor(state, band, end_s, pending=int(pending))

    def _anchor(self, view: DeviceState, band: CostBand | None, end_s: float,
                pending: int) -> None:
        self.status, self.charging = int(view.thermal_status), view.charging
        if band is None:
            self.left = 0
            return
        self.max_seconds, self.max_power_w = band.max_seconds, band.max_power_w
        self.energies_left = float(band.energies_left)
        self._keeps()
        env = self.envelope = envelope(self.limits, view, band)
        self.left = min(self.stride, (0 if env is None else env.steps(self.limits, end_s))
                        - pending)
        self._base = pending + self.left   # steps since the anchor = _base - left - pending now
        self.widened = False

    def _keeps(self) -> None:
        """``throttle``, ``seconds_keep`` and ``power_keep`` for the band in force (the same
        band as the last anchor's: the thresholds stand)."""
        m = self.limits.profile.throughput[self.status]
        key = (self.max_seconds, self.max_power_w, m, self.energies_left == math.inf)
        if key == self._keep_key:
            return
        self._keep_key, self.throttle = key, m
        max_s, max_p, full_power = self.max_seconds, self.max_power_w, self.full_power
        self.seconds_keep = -math.inf if not self.deferrable else largest_within(
            lambda s: s * m * BAND_WIDEN, max_s, max_s / BAND_WIDEN / m)
        idle = self.limits.profile.idle_power_w   # (the guess only: the inverse, in reals)
        self.power_keep = math.nan if self.energies_left != math.inf else largest_within(
            lambda r: full_power(r, m) * BAND_WIDEN, max_p, idle + (max_p / BAND_WIDEN - idle) * m)

    def keeps(self, state: DeviceState, pending: bool) -> bool:
        """Whether a device report leaves the Runs left as a re-anchor there would: the
        re-check's stride, not the certificate, bounds them (``left == stride``), no observation
        since the anchor widened the estimator's band, and the report is inside the envelope
        after the steps run since the anchor, so a certificate from it allows at least the
        steps left (a few comparisons and one ``exp`` instead of the band and a certificate).
        The hold keeps the anchor's band, which proves it safe; a re-anchor would read the
        window's band, narrower once the anchor's largest observation has left the window."""
        env = self.envelope
        left = self.left
        # (thermal_status is a ThermalStatus, an int: == compares as int() would)
        return (env is not None and not self.widened and left == self.stride
                and state.charging == self.charging and state.thermal_status == self.status
                and env.contains(self._base - left - pending, state))

    def take(self) -> bool:
        """Whether the next Run may skip the full plan (and count it)."""
        if self.left > 0:
            self.left -= 1
            self.stride -= 1
            return True
        return False

    def observed(self, recorded: tuple[float, float | None] | None) -> None:
        """What the estimator recorded of a step: outside the band, the hold ends."""
        if recorded is None or self.left <= 0:
            return
        full_s, full_p = recorded
        if full_s > self.max_seconds:
            self.left = 0
            return
        # above the anchor window's largest: the band a re-anchor would read is wider
        if full_s * BAND_WIDEN > self.max_seconds:
            self.widened = True
        if full_p is not None:
            self.energies_left -= 1.0
            if full_p > self.max_power_w or self.energies_left < 0.0:
                self.left = 0
            elif full_p * BAND_WIDEN > self.max_power_w and self.energies_left == math.inf:
                self.widened = True   # (before enough energies the cap is the prior's)

    def drop(self) -> None:
        self.left = 0

    def state_dict(self) -> dict[str, Any]:
        if self.left <= 0:
            return {"hold": None}
        return {"hold": {"left": self.left, "stride": self.stride, "status": self.status,
                         "charging": self.charging, "max_seconds": self.max_seconds,
                         "max_power_w": self.max_power_w,
                         "energies_left": None if math.isinf(self.energies_left)
                         else self.energies_left,
                         "scale": self.scale}}

    def load_state_dict(self, obj: Mapping[str, Any]) -> None:
        h = obj.get("hold")
        self.envelope = None   # not saved: the first report re-anchors (to the same hold)
        if h is None:
            self.left = 0
            return
        h = check_fields(h, "hold", _SAVED)
        self.left, self.stride, self.status = h["left"], h["stride"], h["status"]
        self.charging, self.scale = h["charging"], h["scale"]
        self.max_seconds, self.max_power_w = h["max_seconds"], h["max_power_w"]
        self.energies_left = math.inf if h["energies_left"] is None else h["energies_left"]
        self._keeps()


_steps = partial(check_int, lo=1, hi=MAX_STEPS)
_positive = partial(check_number, lo=0.0, lo_open=True)
#: A saved hold's fields (``left`` > 0: a state without a hold saves null).
_SAVED: dict[str, Callable[[Any, str], Any]] = {
    "left": _steps, "stride": _steps, "status": partial(check_int, lo=0, hi=6),  # a ThermalStatus
    "charging": check_bool, "max_seconds": partial(check_number, lo=0.0),
    "max_power_w": partial(check_number, lo=0.0),
    "energies_left": lambda v, f: None if v is None else check_number(v, f), "scale": _positive}
