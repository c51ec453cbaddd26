"""What both adapters hold: a schedule, its plan history and its plateau state, checked once.

:class:`~mobile_lr.adapters.torch_lr.SpecLR` (a PyTorch ``LRScheduler``) and
:class:`~mobile_lr.adapters.ort_lr.OrtScheduleDriver` (an ONNX Runtime Training optimizer's
LR every step) differ only in where the LR goes; the schedule side is this class. It imports
no framework.

>>> p = PlannedSchedule({"format": "mobile-lr.schedule/1", "base_lr": 1.0,
...                      "shape": {"type": "linear", "start_factor": 1.0, "end_factor": 0.0}}, 10)
>>> p.lr(5), p.replan(5, 6), p.lr(6)
(0.5, None, 0.0)
>>> p.replan(6, 2.7)
Traceback (most recent call last):
    ...
mobile_lr.validation.ValidationError: total_steps: expected an integer, got 2.7; allowed: an integer >= 1
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mobile_lr.schedules import Schedule, load_spec, parse_spec
from mobile_lr.validation import check_int

__all__ = ["PlannedSchedule", "ScheduleLike", "SchedulePlanView", "as_schedule"]

ScheduleLike = Schedule | Mapping[str, Any] | str | os.PathLike[str]


def as_schedule(schedule: ScheduleLike) -> Schedule:
    """A parsed :class:`Schedule` from itself, a spec dict or the path of a spec file."""
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, Mapping):
        return parse_spec(dict(schedule))
    return load_spec(schedule)


class PlannedSchedule:
    """A schedule with its plan history ``[(step, total), ...]`` and its plateau state."""

    def __init__(self, schedule: ScheduleLike, total_steps: int | None = None) -> None:
        self.schedule = as_schedule(schedule)
        total = self.schedule.total_steps if total_steps is None else _total(total_steps)
        self.plan: list[tuple[int, int]] = self.schedule.plan_or_default(
            None if total is None else [(0, total)])
        self.plateau: dict[str, Any] | None = (
            self.schedule.plateau_start() if self.schedule.is_plateau else None)

    def lr(self, step: int) -> float:
        return self.schedule.lr(step, self.plan, self.plateau)

    def replan(self, step: int, total_steps: int) -> None:
        """From ``step`` on, the schedule ends at ``total_steps`` (an integer >= 1)."""
        self.plan = self.schedule.plan_or_default([*self.plan, (step, _total(total_steps))])

    def observe(self, metric: float) -> None:
        """One metric for a ``plateau`` shape; other shapes ignore it (their LR follows the step)."""
        if self.plateau is not None:
            self.plateau = self.schedule.plateau_observe(self.plateau, metric)

    def require_plateau(self, caller: str) -> None:
        """``caller`` passes a metric, which only a plateau schedule can use: refuse it loudly."""
        if self.plateau is None:
            shape = self.schedule.to_dict()["shape"]["type"]
            raise ValueError(f"{caller} takes a metric for a 'plateau' schedule; this one's shape is "
                             f"{shape!r}, whose LR follows the step alone: call it without the metric")

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON: the spec, the plan history and the plateau state."""
        return {"spec": self.schedule.to_dict(), "plan": [list(p) for p in self.plan],
                "plateau": self.plateau}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "spec" in state:
            self.schedule = parse_spec(state["spec"])
        self.plan = self.schedule.plan_or_default([tuple(p) for p in state["plan"]])
        self.plateau = None if state.get("plateau") is None else dict(state["plateau"])


class SchedulePlanView:
    """The read-only attributes an adapter shows of its :class:`PlannedSchedule` (``self._planned``)."""

    _planned: PlannedSchedule

    @property
    def schedule(self) -> Schedule:
        return self._planned.schedule

    @property
    def plan(self) -> list[tuple[int, int]]:
        """The plan history ``[(step, total), ...]``."""
        return self._planned.plan

    @property
    def plateau(self) -> dict[str, Any] | None:
        """The ``plateau`` shape's state (``None`` for the other shapes)."""
        return self._planned.plateau


def _total(total_steps: Any) -> int:
    return check_int(total_steps, "total_steps", lo=1)
