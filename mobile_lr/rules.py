"""The manager's rules after a plan, as pure functions: continue, pause or stop.

A plan (:func:`mobile_lr.budget.plan_phones`) says how many steps a phone can afford now and
what limits them. What a run does with it is decided here, once, for the schedule manager
(one phone, floats) and for the budget simulation of many phones (numpy arrays), through the
same back-ends as the physics (:mod:`mobile_lr.physics`):

* :func:`limit_reason`: the :class:`Reason` a plan's limit gives a pause (``thermal``,
  ``battery``, ``window`` for the end of the time budget, ``not-charging``, ...).
* :func:`resume_hint`: seconds of rest after which that reason may have cleared: the
  cool-down to ``resume_gap_c`` below the thermal limit, or the charge back up to the floor
  (inf where it depends on the user).
* :func:`later_steps`: steps the run can still expect after this session's plan, before it
  ends: until the deadline (horizon ``"deadline"``), or after a thermal pause in the same
  window (horizon ``"session"``), at the sustained rate, at most the battery spare.
* :func:`next_move`: :data:`RUN` while a step is affordable; else :data:`PAUSE` if more
  steps are expected later (or nothing ran yet); else the run's budget is spent:
  :data:`STOP_BUDGET` when the last step run was the last of its plan, :data:`STOP_CUT` when
  the budget vanished under it (unplugged just above the floor).

:class:`Reason` is the one list of why training pauses or ends, shared by the manager's
decisions, the simulated session, the budget fleet and the federated client.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

from mobile_lr import physics
from mobile_lr.budget import (
    NONE,
    THERMAL,
    TIME,
    Policy,
    StepCost,
    effective_floor,
    sustained_rate,
)
from mobile_lr.device import DeviceProfile
from mobile_lr.physics import Ops, Phone

__all__ = [
    "MOVES",
    "PAUSE",
    "REASONS",
    "RUN",
    "STOP_BUDGET",
    "STOP_CUT",
    "Reason",
    "later_steps",
    "limit_reason",
    "next_move",
    "paused",
    "resume_hint",
]


class Reason(str, Enum):
    """Why training pauses or ends; the value is the JSON word (``Pause.reason``,
    ``Stop.reason``, a session's ``stop_reason``, the fleet's ``stop_reasons``)."""

    # a plan's limit: why the manager pauses (and why a phone's day of training ended)
    DONE = "done"                    # the nominal steps are done
    WINDOW = "window"                # the OS window (the session's time) is over
    BATTERY = "battery"              # the floor
    THERMAL = "thermal"              # the thermal limit
    NOT_CHARGING = "not-charging"    # the policy or the job needs the charger
    BATTERY_LOW = "battery-low"      # the OS stops a "battery not low" job
    NO_WINDOW = "no-window"          # no OS window opened
    # the run's end: why the manager stops
    BUDGET = "budget"                # the budget is spent; the last step was its plan's last
    BUDGET_CUT = "budget-cut"        # the budget vanished within a step
    DEADLINE = "deadline"            # the policy's deadline has passed
    DIVERGED = "diverged"            # too many non-finite losses
    # the session's end: what the simulator (or the phone's OS) did
    SCENARIO_END = "scenario-end"    # the simulated day is over
    WINDOWS_OVER = "windows-over"    # no more OS windows
    CALLER = "caller"                # the caller's stop_when
    KILLED = "killed"                # the app was killed (its round's work is lost)
    UNPLUGGED = "unplugged"          # unplugged while the policy trains only on the charger

    # a reason reads, prints and formats as its word, as the plain strings before it did
    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return repr(self.value)

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


#: Reasons by integer code (arrays of phones carry the code).
REASONS: tuple[Reason, ...] = tuple(Reason)
_CODE = {r: i for i, r in enumerate(REASONS)}

# What a plan does next (integer codes, so arrays of phones select).
RUN, PAUSE, STOP_BUDGET, STOP_CUT = range(4)
MOVES = ("run", "pause", "stop-budget", "stop-cut")

# budget.DETAILS of the preconditions that name their own reason
_NOT_CHARGING, _BATTERY_LOW = 1, 2


def paused(reason: str) -> str:
    """Why a session ended while paused: ``"paused:<reason>"`` (a pause that outlasts it)."""
    return f"paused:{reason}"


def limit_reason(ops: Ops, factor: Any, detail: Any) -> Any:
    """The code (into :data:`REASONS`) of the reason a plan's limit gives a pause."""
    return ops.select(
        [detail == _NOT_CHARGING, detail == _BATTERY_LOW, factor == TIME, factor == NONE,
         factor == THERMAL],
        [_CODE[Reason.NOT_CHARGING], _CODE[Reason.BATTERY_LOW], _CODE[Reason.WINDOW],
         _CODE[Reason.DONE], _CODE[Reason.THERMAL]], _CODE[Reason.BATTERY])


def resume_target_c(profile: DeviceProfile, policy: Policy, resume_gap_c: float) -> float:
    """After a thermal pause, resume once the temperature is this low."""
    return policy.thermal_limit_c(profile) - resume_gap_c


def resume_hint(ops: Ops, profile: DeviceProfile, policy: Policy, resume_gap_c: float,
                reason: Any, phone: Phone) -> Any:
    """Seconds of rest after which ``reason`` (a code) may have cleared, inf when it depends
    on the user: cool down to ``resume_gap_c`` below the thermal limit; on the charger, charge
    back up to the floor."""
    c = profile.physics

    def cool() -> Any:
        return physics.cool_down(ops, c, phone.temp, physics.rest_heat(ops, c, phone.charging),
                                 phone.ambient, resume_target_c(profile, policy, resume_gap_c))

    def charge() -> Any:
        rate = (c.charge_in_w - profile.idle_power_w) / phone.battery_j
        return ops.when(phone.charging & (rate > 0.0), lambda: ops.maximum(
            0.0, (policy.battery_floor - phone.level) / rate), math.inf)

    kind = ops.select([reason == _CODE[Reason.THERMAL], reason == _CODE[Reason.BATTERY]],
                      [0, 1], 2)
    return ops.switch(kind, (cool, charge, lambda: math.inf))


def later_steps(ops: Ops, profile: DeviceProfile, policy: Policy, cost: StepCost,
                resume_gap_c: float, *, factor: Any, phone: Phone, now_s: Any, seconds: Any,
                window_end_s: Any) -> Any:
    """Steps expected after a session's plan (which ends after ``seconds``, in the state
    ``phone``, because of ``factor``), before the run ends; 0 when it ends with the plan.

    Horizon ``"deadline"``: until the deadline, the time after this session counting
    ``window / (window + gap)``. Horizon ``"session"``, when the plan stops at the thermal
    limit and a window is open (``window_end_s`` not -inf): until the end of that window (or
    the deadline if earlier), after the cool-down from the plan's end to the resume
    temperature, so a phone that may pause to cool and go on in the same window is not
    stopped (and its schedule anneals by then). Both: at the sustained rate, at most the
    battery spare above the floor. A charging-only policy counts the later sessions as
    charging.
    """
    p = profile
    charging = phone.charging | policy.charging_only
    deadline = math.inf if policy.deadline_s is None else policy.deadline_s

    def to_deadline() -> Any:
        window = ops.where(charging, p.window_charging_s, p.window_s) \
            if policy.window_s is None else policy.window_s
        return (deadline - now_s - seconds) * (window / (window + policy.window_gap_s))

    def after_cooling() -> Any:
        return ops.minimum(window_end_s, deadline) - now_s - seconds - resume_hint(
            ops, p, policy, resume_gap_c, _CODE[Reason.THERMAL], phone)

    kind = ops.select([factor == NONE,
                       policy.horizon == "deadline" and policy.deadline_s is not None,
                       (factor == THERMAL) & (window_end_s > -math.inf)], [0, 1, 2], 0)
    left = ops.switch(kind, (lambda: -math.inf, to_deadline, after_cooling))

    def at_rate() -> Any:
        rate = sustained_rate(p, policy, cost, charging=charging, ambient_c=phone.ambient, ops=ops)
        by_time = ops.floor(ops.maximum(0.0, left) * rate)
        # battery drained per step: the whole step's energy, less what a charger delivers
        drain = cost.joules - ops.where(charging, p.physics.charge_in_w * cost.seconds, 0.0)
        spare = (phone.level - effective_floor(p, policy, charging, ops=ops)) * phone.battery_j
        return ops.when(drain > 0.0, lambda: ops.minimum(
            by_time, ops.floor(ops.maximum(0.0, spare) / drain)), by_time)

    return ops.when(kind != 0, at_rate, 0.0)


def next_move(ops: Ops, steps_now: Any, expected_later: Any, ran_before: Any,
              last_run_was_final: Any) -> Any:
    """What a run does after a plan of ``steps_now`` steps: the code :data:`RUN`,
    :data:`PAUSE`, :data:`STOP_BUDGET` or :data:`STOP_CUT` (see the module doc)."""
    return ops.select([steps_now > 0, (expected_later > 0) | ops.not_(ran_before),
                       last_run_was_final], [RUN, PAUSE, STOP_BUDGET], STOP_CUT)
