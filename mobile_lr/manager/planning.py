"""The manager's forecasts of a session, from what it believes about the phone: the gate
forecast before every step, the steps the run can still expect, and the pause when none is
affordable (the rules after a forecast are :mod:`mobile_lr.rules`)."""

from __future__ import annotations

import math

from mobile_lr import rules
from mobile_lr.budget import DETAILS, LIMITING_FACTORS, Forecast, Policy, StepCost, plan
from mobile_lr.device import DeviceProfile, DeviceState
from mobile_lr.physics import SCALAR, Phone
from mobile_lr.rules import REASONS, Reason

from .belief import DeviceBelief
from .config import ManagerConfig
from .decisions import Pause, Stop

__all__ = ["TOO_HOT", "SessionForecasts", "budget_stop"]

TOO_HOT = "thermal: too hot at rest for an unmeasured step"  # the detail of that stop


class SessionForecasts:
    """Forecasts from the believed state. ``last`` is the last gate forecast,
    ``predicted_end`` the predicted end of the step it allowed (None when it allowed none)."""

    def __init__(self, profile: DeviceProfile, policy: Policy, config: ManagerConfig,
                 belief: DeviceBelief) -> None:
        self.profile, self.policy, self.config, self.belief = profile, policy, config, belief
        self.last: Forecast | None = None
        self.predicted_end: DeviceState | None = None
        self.cost: StepCost | None = None   # the gate's pessimistic cost (the estimator's now)

    def gate(self, max_steps: int) -> Forecast:
        """The forecast at the pessimistic cost: a step runs only if it affords one, so no step
        starts whose predicted end is below the floor or above the allowed status."""
        self.cost = cost = self.belief.estimator.pessimistic()
        view = self.belief.view()
        self.last = self._forecast(max_steps, cost, view)
        self.predicted_end = self.belief.step_end(cost, view) if self.last.steps >= 1 else None
        return self.last

    def expected(self, session: Forecast, max_steps: int) -> int:
        """Steps the run can still expect: this session's plus those after it (deadline, or
        after a thermal pause in the same window).

        Sized on the estimated cost, not the gate's pessimistic one: the gate lets a step run
        only if it would fit at the pessimistic cost, but the steps it lets through cost what
        they cost, so the session lasts while, after the steps at the estimate, one more at the
        pessimistic cost still fits. Sizing the schedule on the pessimistic cost planned ~17 %
        too few steps (its margin, 1.1 x time and 1.1 x power), the cool-down started early and
        the plan crept back by re-plans; and the last of its steps was followed by one more
        that fitted after all, a step past the plan's end at the schedule's end LR (0)."""
        if session.steps == 0:
            return session.steps + self._later_steps(session)
        view = self.belief.view()
        sizing = self._forecast(max_steps, self.belief.estimator.estimate(), view)
        steps = max(sizing.steps, session.steps)
        if steps > session.steps and sizing.limiting_factor != "none":
            # the last step runs only if it fits at the pessimistic cost after the others:
            # counted exactly near the end (where any change of the total is recorded), else
            # taken as one step less (the same within the re-plan tolerance, two forecasts fewer)
            near = steps <= self.config.replan_tolerance
            steps -= 1 if not near else not self._last_fits(steps, view)
        return max(steps + self._later_steps(sizing), 1)

    def sure(self, max_steps: int) -> int:
        """Steps the battery alone affords from the believed state (at most ``max_steps``), at
        the estimated cost and in an unplugged OS window: what a charging run is sure of, since
        the charger can go at any step (:attr:`ManagerConfig.schedule_horizon` ``"battery"``)."""
        v = self.belief.view()
        unplugged = DeviceState(v.level, False, v.temperature_c, v.thermal_status, v.time_s,
                                v.ambient_c)
        return plan(self.profile, unplugged, self.policy, self.belief.estimator.estimate(),
                    max_steps=max_steps).steps

    def _last_fits(self, steps: int, view: DeviceState) -> bool:
        """After ``steps - 1`` steps at the estimated cost, does one at the gate's cost fit?"""
        est = self._forecast(steps - 1, self.belief.estimator.estimate(), view)
        then = DeviceState(est.end_level, view.charging, est.end_temperature_c,
                           est.end_status, view.time_s + est.seconds, view.ambient_c)
        end = self.belief.window_end_s
        last = plan(self.profile, then, self.policy, self.cost or self.belief.estimator.pessimistic(),
                    max_steps=1, time_budget_s=None if end is None else end - then.time_s)
        return last.steps >= 1

    def stalled(self, session: Forecast, spent: bool) -> Stop | None:
        """The stop when no step is safe under the unmeasured cost and the phone cannot cool
        any further at rest: without a step the estimate never improves, so waiting would
        stall forever (``spent``: the last Run was the last step of its plan)."""
        if session.steps == 0 and self.prior_blocks(session):
            return Stop(Reason.BUDGET if spent else Reason.BUDGET_CUT, TOO_HOT)
        return None

    def prior_blocks(self, session: Forecast) -> bool:
        """Only the uncalibrated prior keeps the run from its steps, for good: the estimator is
        cold, the forecast stops at the thermal limit, and the resume temperature is out of reach at
        rest (no resume hint)."""
        return not self.belief.estimator.warm and self.pause(session) == Pause(Reason.THERMAL, None)

    def pause(self, session: Forecast) -> Pause:
        """Nothing is affordable now: rest, with a hint of how long."""
        code = rules.limit_reason(SCALAR, LIMITING_FACTORS.index(session.limiting_factor),
                                  DETAILS.index(session.detail))
        view = self.belief.view()
        phone = Phone(view.level, view.charging, view.temperature_c, int(view.thermal_status),
                      view.ambient_c, self.profile.battery_j)
        hint = rules.resume_hint(SCALAR, self.profile, self.policy, self.config.resume_gap_c,
                                 code, phone)
        return Pause(REASONS[code], hint if math.isfinite(hint) else None)

    def _forecast(self, max_steps: int, cost: StepCost, view: DeviceState) -> Forecast:
        end = self.belief.window_end_s
        return plan(self.profile, view, self.policy, cost, max_steps=max_steps,
                    time_budget_s=None if end is None else end - self.belief.device.time_s)

    def _later_steps(self, session: Forecast) -> int:
        view, end = self.belief.view(), self.belief.window_end_s
        phone = Phone(session.end_level, self.belief.device.charging, session.end_temperature_c,
                      int(session.end_status), view.ambient_c, self.profile.battery_j)
        return int(rules.later_steps(
            SCALAR, self.profile, self.policy, self.cost,
            self.config.resume_gap_c, factor=LIMITING_FACTORS.index(session.limiting_factor),
            phone=phone, now_s=self.belief.device.time_s, seconds=session.seconds,
            window_end_s=-math.inf if end is None else end))


def budget_stop(move: int, session: Forecast) -> Stop:
    """The run's budget is spent (``move`` is :data:`~mobile_lr.rules.STOP_BUDGET`: the last
    Run was the last step of its plan) or it vanished within a step (``STOP_CUT``); the
    detail says what limited it."""
    if move == rules.STOP_BUDGET:
        return Stop(Reason.BUDGET, session.limiting_factor)
    return Stop(Reason.BUDGET_CUT, session.detail or session.limiting_factor)
