"""A mobile-lr schedule spec as a Keras 3 ``LearningRateSchedule``.

::

    schedule = SpecSchedule("spec.json", total_steps=1000)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=schedule), loss=...)
    ...
    schedule.replan(600, step=int(model.optimizer.iterations))   # the budget changed

Keras calls the schedule with the optimizer's ``iterations`` before every update; the LR is
the spec's at that step, the same numbers as :class:`mobile_lr.adapters.SpecLR` gives PyTorch.
Importing this module before Keras makes torch Keras's backend unless ``KERAS_BACKEND`` says
otherwise (the ``[keras]`` extra brings torch, not TensorFlow or JAX).
The step is read as a number, so the schedule runs on Keras's eager backends (torch, numpy;
TensorFlow and JAX outside ``tf.function`` / ``jit``), which is what a phone-side or desktop
fine-tuning loop uses. ``get_config`` holds the spec and the plan history, so a saved model
reloads with the schedule where it was (``keras.saving`` knows the class).
"""

from __future__ import annotations

import os
from typing import Any

from mobile_lr.adapters.planned import PlannedSchedule, ScheduleLike, SchedulePlanView
from mobile_lr.extras import optional_imports

os.environ.setdefault("KERAS_BACKEND", "torch")  # read once, when keras is first imported

with optional_imports(__name__):
    import keras

__all__ = ["SpecSchedule"]


@keras.saving.register_keras_serializable(package="mobile_lr")
class SpecSchedule(SchedulePlanView, keras.optimizers.schedules.LearningRateSchedule):
    """The LR of a schedule spec at Keras's step; see the module doc."""

    def __init__(self, schedule: ScheduleLike, total_steps: int | None = None) -> None:
        self._planned = PlannedSchedule(schedule, total_steps)

    def __call__(self, step: Any) -> float:
        return self._planned.lr(int(keras.ops.convert_to_numpy(step)))

    def replan(self, total_steps: int, step: int) -> None:
        """The budget changed at ``step`` (the optimizer's ``iterations``): the schedule now ends at
        ``total_steps``."""
        self._planned.replan(int(step), total_steps)

    def observe(self, metric: float) -> None:
        """An eval metric for a ``plateau`` spec (other shapes ignore it)."""
        self._planned.observe(metric)

    def get_config(self) -> dict[str, Any]:
        return {"schedule": self.schedule.to_dict(), "state": self._planned.state_dict()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SpecSchedule:
        state = config["state"]
        out = cls(config["schedule"], total_steps=state["plan"][0][1])
        out._planned.load_state_dict(state)
        return out
