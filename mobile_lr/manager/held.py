"""A held step's calls at the cost of a scheduler's ``step()``: the shortcuts of ``next``,
``observe`` and ``update_device`` while the plan in force holds (:mod:`.hold` proves the steps),
each taken only when it provably leaves everything as the full way would, else the full way
(:class:`~.machine.ScheduleManager`'s ``_next``, ``_observe``, ``_update_device``):

* ``next()``: the Runs of the next held steps are made ahead, 256 at a time (:class:`HeldRuns`),
  so a held ``next()`` is an index and a bound check; it leaves the Run itself as pending (the
  :class:`~.decisions.PendingRun` is made only if read);
* ``observe()``: two comparisons with the band's last floats (``PlanHold.seconds_keep``,
  ``power_keep``), then the observation is deferred (``DeviceBelief.deferred``: folded in order
  when the estimator, the believed state or the totals are read, at the latest with the next
  Runs made ahead);
* ``update_device()``: a report with the ambient known is the planner's view itself, so it is
  compared with the envelope in place (``PlanHold.keeps``) and only replaces the belief's state.
"""

from __future__ import annotations

import math
from itertools import repeat
from typing import Any

from mobile_lr.device import DeviceState

from .decisions import Decision, PendingRun, Run

__all__ = ["HeldRuns", "HeldSteps"]

_TRAIN = "train"
# ``Run(*fields)`` / ``PendingRun(*fields)`` without the named tuples' Python-level ``__new__``
_new = tuple.__new__
_isfinite = math.isfinite


class HeldRuns:
    """``runs[i]`` is the Run of step ``at + i`` for ``i < n``, at the LR
    ``lr_fn(step) * scale`` bit for bit (``lr_fn.table``: one vectorised pass at the scalar
    path's bits, :meth:`~mobile_lr.schedules.Schedule.lr_function`), as a Run made on the spot.
    Valid for one LR function and scale: the manager clears it whenever one of them can change
    (a full plan arms a new hold, a plateau metric moves the LR function, a state is loaded)."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.at = self.n = 0
        self.runs: list[Run] = []

    def fill(self, lr_fn: Any, scale: float, step: int, count: int) -> None:
        """The next ``count`` steps from ``step`` (``lr_fn``: a ``Schedule.lr_function``)."""
        steps = range(step, step + count)
        # the LRs in one vectorised pass at the scalar path's bits (Schedule.lr_function's
        # table), the named tuples built in C from zipped fields (a Python-level loop cost as
        # much as the LR itself)
        lrs = lr_fn.table(step, count, scale)
        self.runs = list(map(_new, repeat(Run), zip(steps, lrs, repeat(_TRAIN))))
        self.at, self.n = step, count


class HeldSteps:
    """The per-step calls of :class:`~.machine.ScheduleManager` (see the module doc); the
    attributes are the manager's."""

    #: held steps made ahead at a time (HeldRuns); 0: every held step on the spot
    TABLE_CHUNK = 256

    hold: Any
    belief: Any
    step: int
    _table: HeldRuns
    _deferred: list[float | None]
    _pending: PendingRun | Run | None
    _fast: bool
    _lr_fn: Any

    def update_device(self, state: DeviceState) -> None:
        """The device state the caller just read (simulator, or BatteryManager + PowerManager)."""
        hold = self.hold
        # held, the ambient known (the report is the planner's view) and inside the envelope:
        # the hold stays as it is, the report only replaces the belief's state
        if (hold.left > 0 and type(state) is DeviceState and state.ambient_c is not None
                and hold.keeps(state, self._pending is not None)):
            self.belief.update(state)
            return
        self._update_device(state)

    def observe(self, loss: float | None = None, step_seconds: float | None = None,
                energy_j: float | None = None) -> None:
        """Report the outcome of the Run just issued."""
        hold = self.hold
        # held, and the observation leaves the hold as it is (PlanHold.seconds_keep): the
        # estimator, the dead reckoning and the totals take it when next read (belief.fold)
        if (hold.left > 0 and self._pending is not None and step_seconds is not None
                and 0.0 < step_seconds <= hold.seconds_keep
                and (energy_j is None or energy_j / step_seconds <= hold.power_keep)
                and (loss is None or _isfinite(loss))):
            self._pending = None
            self.step += 1
            self._deferred += step_seconds, energy_j, hold.throttle   # (flat: belief.fold)
            return
        self._observe(loss, step_seconds, energy_j)

    def next(self) -> Decision:
        """The next decision; see the package doc."""
        hold = self.hold
        if hold.left > 0:   # held, and the step's Run made ahead (the same as _held_run's)
            table = self._table
            i = self.step - table.at
            if 0 <= i < table.n:
                hold.left -= 1
                hold.stride -= 1
                self._fast = True
                run = self._pending = table.runs[i]   # (its PendingRun made if read: pending)
                return run
        return self._next()

    def _held_run(self) -> Run:
        """A held step's Run made on the spot, and the next ones made ahead; the deferred
        observations are folded here too, so they stay at most a chunk."""
        hold = self.hold
        hold.left -= 1
        hold.stride -= 1
        self._fast = True
        step = self.step
        lr = self._lr_fn(step) * hold.scale
        self._pending = _new(PendingRun, (_TRAIN, step, lr, hold.status))
        self._table.fill(self._lr_fn, hold.scale, step + 1, min(self.TABLE_CHUNK, hold.left))
        self.belief.fold()
        return _new(Run, (step, lr, _TRAIN))

    @property
    def pending(self) -> PendingRun | None:
        """The Run issued and not observed yet, with the status it started at. A held
        ``next()`` leaves the Run itself here; its record is made when someone reads it (the
        status is the hold's: it cannot change while a Run is pending without a new one)."""
        p = self._pending
        if p.__class__ is Run:
            p = self._pending = _new(PendingRun, (_TRAIN, p.step, p.lr, self.hold.status))
        return p  # type: ignore[return-value]

    @pending.setter
    def pending(self, value: PendingRun | None) -> None:
        self._pending = value
