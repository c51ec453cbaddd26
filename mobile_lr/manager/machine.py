"""The decision machine: :class:`ScheduleManager` (see the package doc)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mobile_lr import rules
from mobile_lr.budget import Forecast, Policy
from mobile_lr.device import DeviceProfile, DeviceState, load_profile
from mobile_lr.physics import SCALAR
from mobile_lr.rules import Reason
from mobile_lr.schedules import Schedule, parse_spec
from mobile_lr.validation import ValidationError

from .belief import DeviceBelief
from .config import ManagerConfig
from .decisions import Decision, PendingRun, Rollback, Run, Stop
from .held import HeldRuns, HeldSteps
from .history import PlanHistory
from .hold import BAND_WIDEN, PlanHold
from .peak import PeakLr
from .persist import STATE_FORMAT, STATE_KEYS, ManagerState
from .planning import SessionForecasts, budget_stop
from .range_test import RangeTest
from .recovery import LossWatch, Recovery

__all__ = ["STATE_FORMAT", "STATE_KEYS", "ScheduleManager"]


class ScheduleManager(HeldSteps, ManagerState):
    """Schedule + planner + policy, driven one decision at a time (see the package doc), over
    parts that own their state: ``belief``, ``forecasts``, ``history``, ``range_test``,
    ``recovery``, ``peak``; the rules after a forecast are :mod:`mobile_lr.rules`. The calls
    a training loop makes every step (``next``, ``observe``, ``update_device``) are
    :class:`~.held.HeldSteps`: a held step's shortcut, else the full way here."""

    def __init__(self, schedule: Schedule | Mapping[str, Any], profile: DeviceProfile | str,
                 policy: Policy | Mapping[str, Any] | None = None,
                 config: ManagerConfig | Mapping[str, Any] | None = None,
                 state: DeviceState | None = None):
        self.schedule, self.profile, self.policy, self.config = _inputs(schedule, profile,
                                                                        policy, config)
        c = self.config
        nominal = c.nominal_steps or self.schedule.total_steps
        if nominal is None:
            raise ValidationError("config.nominal_steps", "the run's length is unknown",
                                  "nominal_steps in the config or total_steps in the schedule")
        self.nominal_steps: int = int(nominal)
        self.belief = DeviceBelief(self.profile, c, state)
        self.history = PlanHistory(c.replan_tolerance)
        # the totals the schedule follows: the plan history, or (schedule_horizon "battery")
        # its own history of the planned totals capped by what the battery alone affords
        self.followed = self.history if c.schedule_horizon != "battery" \
            else PlanHistory(c.replan_tolerance)
        self.range_test = RangeTest(c.range_test)
        self.recovery = Recovery(c.nan_lr_factor, c.max_failures)
        self.loss_watch = None if c.divergence is None else LossWatch(c.divergence)
        self.peak = PeakLr(c.peak_lr)
        self.step = 0                         # training steps done (the schedule's t)
        self.pending = None                   # the Run issued, until observed (held.py)
        self.stopped: Stop | None = None
        self.plateau_state = self.schedule.plateau_start() if self.schedule.is_plateau else None
        self.forecasts = SessionForecasts(self.profile, self.policy, c, self.belief)
        self.hold = PlanHold(self.profile, self.policy, c.replan_tolerance,
                             self.belief.estimator.full_power, self.loss_watch is None)
        self._fast = False                      # the last Run skipped the full plan
        self._lr_key: tuple[Any, ...] = ()      # (plan history, plateau state) of ``_lr_fn``
        self._lr_fn: Any = None
        self._table = HeldRuns()                # the held steps' Runs, made ahead
        self._deferred = self.belief.deferred   # held steps' observations, folded when read

    # ------------------------------------------------------------------ caller inputs
    def _update_device(self, state: DeviceState) -> None:
        """:meth:`update_device` the full way."""
        belief = self.belief
        belief.update(state)
        hold = self.hold
        if hold.left > 0:
            view, pending = belief.view(), self.pending is not None
            if not hold.keeps(view, pending):   # else a re-anchor would leave the hold as it is
                hold.reanchor(view, belief.estimator.band(BAND_WIDEN), belief.end_s(self.policy),
                              pending)

    def begin_window(self, now_s: float | None = None, length_s: float | None = None) -> None:
        """A new OS window (a Worker started): the session's time budget restarts."""
        self.belief.begin_window(self.policy, now_s, length_s)
        self.hold.drop()

    def mark_checkpoint(self) -> None:
        """The caller saved the model as it is after ``step`` training steps (call it between
        ``observe`` and the next step); a rollback returns there."""
        if self.recovery.pending is None and self.range_test.status != "running" and (
                self.loss_watch is None or self.loss_watch.healthy):
            self.recovery.last_good_step = self.step

    def _observe(self, loss: float | None, step_seconds: float | None,
                 energy_j: float | None) -> None:
        """:meth:`observe` the full way: every observation could take it (the held one only
        saves the work it proves changes nothing now)."""
        if self.pending is None:
            raise ValueError("observe() without a Run to observe")
        run, self.pending = self.pending, None
        self.hold.observed(self.belief.record(step_seconds, energy_j,
                                              self.profile.throughput[run.status]))
        if run.phase == "range-test":
            if self.range_test.observe(math.nan if loss is None else loss,
                                       self.schedule.base_lr):
                self.recovery.restart()
        elif loss is None or math.isfinite(loss):
            self.step += 1
            if self.loss_watch is not None and loss is not None and self.loss_watch.observe(loss):
                self.hold.drop()
                self.stopped = self.recovery.failed(LossWatch.REASON,
                                                    self.loss_watch.config.lr_factor)
        else:
            self.hold.drop()
            self.stopped = self.recovery.failed()

    def observe_eval(self, metric: float) -> None:
        """An evaluation metric for a ``plateau`` schedule (ignored by other shapes)."""
        if self.plateau_state is not None and math.isfinite(metric):
            self.plateau_state = self.schedule.plateau_observe(self.plateau_state, metric)
            if self.hold.left > 0:
                self._lr_fn = self.schedule.lr_function(self.followed.entries,
                                                        self.plateau_state)
                self._lr_key = (list(self.followed.entries), self.plateau_state)
                self._table.clear()

    # ------------------------------------------------------------------ decisions
    @property
    def lr_scale(self) -> float:
        """Factor on the schedule's LRs: range test × peak-LR policy × NaN cuts."""
        return self.range_test.scale * (self.peak.factor or 1.0) * self.recovery.nan_scale

    # what callers read of the parts
    spent = property(lambda self: self.belief.spent,
                     lambda self, value: setattr(self.belief, "spent", value),
                     doc="steps, seconds and joules observed so far")
    planned_total = property(lambda self: self.history.total, doc="the total in force")
    plan_history = property(lambda self: self.history.entries, doc="(step, total) entries")
    window_end_s = property(lambda self: self.belief.window_end_s, doc="end of the OS window")
    device = property(lambda self: self.belief.device, doc="the believed device state")
    estimator = property(lambda self: self.belief.estimator, doc="the step-cost estimator")
    peak_factor = property(lambda self: self.peak.factor, doc="the peak-LR factor (once set)")
    pending_rollback = property(lambda self: self.recovery.pending, doc="the rollback owed")
    last_forecast = property(lambda self: self.forecasts.last, doc="the last gate forecast")

    @property
    def predicted_end(self) -> DeviceState | None:
        """The predicted end (at the pessimistic cost) of the step the last decision ran: the
        gate's, or on a step that skipped the full plan the same prediction made when asked
        (ask before ``observe``)."""
        if self._fast:
            return None if self.pending is None else \
                self.belief.step_end(self.belief.estimator.pessimistic())
        return self.forecasts.predicted_end

    def lr_at(self, t: int) -> float:
        """The LR the current plan history gives step ``t`` (no side effects)."""
        hist = self.followed.entries or [(0, self.nominal_steps)]
        if self._lr_key != (hist, self.plateau_state):   # re-planned: prepare the LR once
            self._lr_key = (list(hist), self.plateau_state)
            self._lr_fn = self.schedule.lr_function(hist, self.plateau_state)
            self._table.clear()
        return self._lr_fn(t) * self.lr_scale

    def _next(self) -> Decision:
        """:meth:`next` the full way (a held step's Run made on the spot)."""
        if self.hold.left > 0:   # the plan in force holds (mobile_lr.manager.hold): no full plan
            # (a hold implies no rollback owed, no stop and step < nominal_steps: whatever sets
            # one drops the hold, and the hold is shorter than the plan's remaining steps)
            return self._held_run()
        self.forecasts.predicted_end = None
        self._fast = False
        if self.recovery.pending is not None:   # before a stop: a diverged run ends restored
            return self._roll_back()
        if self.stopped is not None:
            return self.stopped
        if self.step >= self.nominal_steps:
            return self._stop(Stop(Reason.DONE))
        deadline = self.policy.deadline_s
        if deadline is not None and self.belief.device.time_s >= deadline:
            return self._stop(Stop(Reason.DEADLINE))
        if self.belief.window_end_s is None:
            self.begin_window()
        session = self.forecasts.gate(self.nominal_steps - self.step)
        stalled = self.forecasts.stalled(session, self.history.last_run_total in (None, self.step))
        if stalled is not None:
            return self._stop(stalled)
        budget = self.forecasts.expected(session, self.nominal_steps - self.step)
        if self.range_test.active:
            decision = self._range_next(session, budget)
            if decision is not None:
                return decision
        planned = self.step + min(budget, self.nominal_steps - self.step)
        self.history.record(self.step, planned)
        if self.followed is not self.history:
            self.followed.record(self.step, self._sure_total(planned))
        move = rules.next_move(SCALAR, session.steps, budget, self.history.last_run_total
                               is not None, self.history.last_run_total == self.step)
        if move == rules.PAUSE:
            return self.forecasts.pause(session)
        if move != rules.RUN:
            return self._stop(budget_stop(move, session))
        self.peak.settle(self.planned_total or 1, self.nominal_steps)
        lr = self.lr_at(self.step)
        if not (math.isfinite(lr) and lr >= 0.0):  # a valid spec never yields this
            return self._stop(Stop(Reason.DIVERGED, f"schedule gave LR {lr!r}"))
        self.history.last_run_total = self.planned_total
        view = self.belief.view()
        self.pending = PendingRun("train", self.step, lr, int(view.thermal_status))
        self.hold.arm(view, self.belief.estimator.band(BAND_WIDEN), self.belief.end_s(self.policy),
                      self.planned_total - self.step, self.lr_scale)
        self._table.clear()
        return Run(self.step, lr)

    def _sure_total(self, planned: int) -> int:
        """``planned`` capped, while the phone charges, at the step after those its battery
        alone affords (at least one: the step about to run)."""
        if planned <= self.step or not self.belief.view().charging:
            return planned
        return self.step + max(1, self.forecasts.sure(planned - self.step))

    def _stop(self, stop: Stop) -> Stop:
        self.stopped = stop
        return stop

    def _roll_back(self) -> Rollback:
        rb = self.recovery.take()
        self.hold.drop()
        self.step = rb.to_step
        if self.loss_watch is not None:
            self.loss_watch.rolled_back()
        self.history.rolled_back(rb.to_step)
        self.followed.rolled_back(rb.to_step)
        return rb

    def _range_next(self, session: Forecast, budget: int) -> Decision | None:
        """The LR range test's decision while it runs (None: it is over, train)."""
        move = self.range_test.next(session.steps, budget, self.nominal_steps,
                                    self.schedule.base_lr)
        if move is True:
            return self.forecasts.pause(session)
        if move is False:
            if self.range_test.status != "done":
                return None               # skipped: the budget is too short for a sweep
            self.recovery.restart()       # ended by the budget: back to the initial weights
            return self._roll_back()
        i, lr = move
        self.pending = PendingRun("range-test", i, lr, int(self.belief.device.thermal_status))
        return Run(i, lr, "range-test")


def _inputs(schedule: Schedule | Mapping[str, Any], profile: DeviceProfile | str,
            policy: Policy | Mapping[str, Any] | None,
            config: ManagerConfig | Mapping[str, Any] | None
            ) -> tuple[Schedule, DeviceProfile, Policy, ManagerConfig]:
    """The manager's inputs, parsed from JSON (or a profile's name) where they are not
    objects yet."""
    return (schedule if isinstance(schedule, Schedule) else parse_spec(schedule),
            profile if isinstance(profile, DeviceProfile) else load_profile(profile),
            policy if isinstance(policy, Policy) else (
                Policy() if policy is None else Policy.from_dict(policy)),
            config if isinstance(config, ManagerConfig) else (
                ManagerConfig() if config is None else ManagerConfig.from_dict(config)))
