"""The schedule manager: the object a training loop talks to.

::

    decision = manager.next()        # Run(step, lr) | Pause(reason, resume_hint) | Stop(reason)
                                     # | Rollback(to_step, ...)
    loss = trainer.step(batch, lr=decision.lr)
    manager.observe(loss=loss, step_seconds=..., energy_j=...)
    manager.update_device(state)     # what the phone reads: battery, charger, temperature, status
    manager.state_dict() / ScheduleManager.from_state_dict(obj)   # plain JSON, exact resume

It combines a schedule (:mod:`mobile_lr.schedules`), the budget planner and the
user's policy. Before a step it plans (closed-form segments, tens of µs)
from the device state it was last told with a *pessimistic* per-step cost
(:meth:`mobile_lr.budget.CostEstimator.pessimistic`); it runs the step only if
the plan affords at least one, so it never starts a step whose predicted end is
below the battery floor or above the allowed thermal status. Between two such full plans
the plan in force *holds* (:mod:`.hold`): a closed-form envelope proves how many more steps
the gate would run while observed costs stay in the estimator's band, and those steps cost
one LR evaluation each (no planner); the full plan comes back when an observation leaves the
band, a report changes the charger or the status, a window begins, or the total is due for
its re-check. The planned total
``step + affordable`` is written into the schedule's plan history when it
differs from the one in force by more than ``remaining // replan_tolerance``
steps (any change near the end), so the schedule re-plans on real drift
(charger plugged or unplugged, throttling, a new OS window, a wrong profile
corrected by observations) and not on jitter, and the last step of a run that
ends because its budget ran out is the last step of the plan in force.

The decision logic uses integers and the planner's floats only; the Kotlin port
reproduces it from golden vectors. The manager is a small state machine
(:mod:`.machine`) over parts that own their state: the device belief (:mod:`.belief`),
the plan history (:mod:`.history`), the session's forecasts (:mod:`.planning`), the
LR range test (:mod:`.range_test`), the recovery from non-finite losses
(:mod:`.recovery`) and the peak-LR factor (:mod:`.peak`); its rules
after a forecast are the pure functions of :mod:`mobile_lr.rules`; its configuration is
declared once (:mod:`.config`); :mod:`.recommended` is the measured best set-up.
Decisions (reasons: :class:`mobile_lr.rules.Reason`):

* ``Run(step, lr, phase)``: ``phase`` is ``"train"`` or ``"range-test"``.
* ``Pause(reason, resume_hint)``: reasons ``not-charging``, ``battery-low``,
  ``battery``, ``thermal``, ``window``; the hint is seconds of rest
  after which the reason may have cleared (None if it depends on the user).
* ``Stop(reason, detail)``: ``done`` (the nominal steps are done), ``budget``
  (the run's budget is spent and the last Run was the last step of its plan),
  ``budget-cut`` (the budget vanished within one step, e.g. unplugged just
  above the floor), ``deadline``, ``diverged`` (too many non-finite losses).
* ``Rollback(to_step, lr_scale, failures, reason)``: restore the checkpoint the
  caller last reported with :meth:`ScheduleManager.mark_checkpoint` (or the
  initial weights for ``to_step == 0``), after a non-finite loss or at the end
  of the LR range test.

:func:`recommended_setup` gives the measured set-up (schedule, config, runtime options) as
one :class:`RecommendedSetup`.
"""

from .config import DivergenceConfig, ManagerConfig, RangeTestConfig
from .decisions import Decision, Pause, Rollback, Run, Stop
from .machine import STATE_FORMAT, ScheduleManager
from .peak import PEAK_LR_POLICIES, register_peak_lr_policy
from .range_test import pick_steepest
from .recommended import RECOMMENDED_AVERAGING, RecommendedSetup, SetupOptions, recommended_setup

__all__ = [
    "PEAK_LR_POLICIES",
    "RECOMMENDED_AVERAGING",
    "STATE_FORMAT",
    "Decision",
    "DivergenceConfig",
    "ManagerConfig",
    "Pause",
    "RangeTestConfig",
    "RecommendedSetup",
    "Rollback",
    "Run",
    "ScheduleManager",
    "SetupOptions",
    "Stop",
    "pick_steepest",
    "recommended_setup",
    "register_peak_lr_policy",
]
