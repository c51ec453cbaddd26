"""Drive an ONNX Runtime Training ``Optimizer`` with a mobile-lr schedule.

ONNX Runtime's only built-in scheduler is ``LinearLRScheduler``; its docs say a
custom schedule is applied with ``Optimizer.set_learning_rate`` before each
``Optimizer.step()``, which is what this driver does. It mirrors the ORT
scheduler's shape (construct, then ``step()`` after each optimizer step) and
PyTorch's convention: after construction the optimizer holds the LR of step 0,
after ``k`` calls of :meth:`step` the LR of step ``k``.
"""

from __future__ import annotations

from typing import Any, Protocol

from mobile_lr.schedules import Schedule


class LearningRateSetter(Protocol):
    """What the driver needs: ``onnxruntime.training.api.Optimizer`` has both methods."""

    def set_learning_rate(self, learning_rate: float) -> None: ...

    def get_learning_rate(self) -> float: ...


class OrtScheduleDriver:
    def __init__(self, optimizer: LearningRateSetter, schedule: Schedule,
                 total_steps: int | None = None, step: int = 0) -> None:
        self.optimizer = optimizer
        self.schedule = schedule
        total = total_steps if total_steps is not None else schedule.total_steps
        self.plan = schedule.plan_or_default(None if total is None else [(0, total)])
        self.step_count = step
        self.plateau: dict[str, Any] | None = schedule.plateau_start() if schedule.is_plateau else None
        self._apply()

    @property
    def lr(self) -> float:
        return self.schedule.lr(self.step_count, self.plan, self.plateau)

    def step(self) -> float:
        """Advance one step and set the new LR on the optimizer; returns it."""
        self.step_count += 1
        return self._apply()

    def replan(self, total_steps: int) -> None:
        self.plan = self.schedule.plan_or_default([*self.plan, (self.step_count, int(total_steps))])
        self._apply()

    def observe(self, metric: float) -> None:
        if self.plateau is not None:
            self.plateau = self.schedule.plateau_observe(self.plateau, metric)
            self._apply()

    def _apply(self) -> float:
        lr = self.lr
        self.optimizer.set_learning_rate(lr)
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"plan": [list(p) for p in self.plan], "step": self.step_count,
                "plateau": self.plateau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plan = self.schedule.plan_or_default([tuple(p) for p in state["plan"]])
        self.step_count = int(state["step"])
        self.plateau = state["plateau"]
        self._apply()
