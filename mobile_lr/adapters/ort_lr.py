"""Drive an ONNX Runtime Training ``Optimizer`` with a mobile-lr schedule.

ONNX Runtime's only built-in scheduler is ``LinearLRScheduler``; its docs say a
custom schedule is applied with ``Optimizer.set_learning_rate`` before each
``Optimizer.step()``, which is what this driver does. It mirrors the ORT
scheduler's shape (construct, then ``step()`` after each optimizer step) and
PyTorch's convention: after construction the optimizer holds the LR of step 0,
after ``k`` calls of :meth:`step` the LR of step ``k``. It takes the schedule
as :class:`~mobile_lr.adapters.torch_lr.SpecLR` does (a spec dict, a spec file's
path or a parsed ``Schedule``), and its ``state_dict`` holds the spec too.
"""

from __future__ import annotations

from typing import Any, Protocol

from mobile_lr.adapters.planned import PlannedSchedule, ScheduleLike, SchedulePlanView
from mobile_lr.validation import check_int

__all__ = ["LearningRateSetter", "OrtScheduleDriver"]


class LearningRateSetter(Protocol):
    """What the driver needs: ``onnxruntime.training.api.Optimizer`` has both methods."""

    def set_learning_rate(self, learning_rate: float) -> None: ...

    def get_learning_rate(self) -> float: ...


class OrtScheduleDriver(SchedulePlanView):
    def __init__(self, optimizer: LearningRateSetter, schedule: ScheduleLike,
                 total_steps: int | None = None, step: int = 0) -> None:
        self.optimizer = optimizer
        self._planned = PlannedSchedule(schedule, total_steps)
        self.step_count = check_int(step, "step", lo=0)
        self._apply()

    @property
    def lr(self) -> float:
        return self._planned.lr(self.step_count)

    def step(self, metrics: float | None = None) -> float:
        """Advance one step and set the new LR on the optimizer; returns it.

        ``metrics`` (a ``plateau`` spec only) is seen first, as ``ReduceLROnPlateau.step`` does.
        """
        if metrics is not None:
            self._planned.require_plateau("OrtScheduleDriver.step(metrics)")
            self._planned.observe(metrics)
        self.step_count += 1
        return self._apply()

    def replan(self, total_steps: int) -> None:
        """The budget changed: the schedule now ends at ``total_steps`` (from this step on)."""
        self._planned.replan(self.step_count, total_steps)
        self._apply()

    def observe(self, metric: float) -> None:
        """Feed a metric to a ``plateau`` schedule without advancing the step (no-op for others)."""
        self._planned.observe(metric)
        self._apply()

    def _apply(self) -> float:
        lr = self.lr
        self.optimizer.set_learning_rate(lr)
        return lr

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON: the spec, the plan history, the plateau state and the step."""
        return {**self._planned.state_dict(), "step": self.step_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._planned.load_state_dict(state)
        self.step_count = check_int(state["step"], "step", lo=0)
        self._apply()
