"""A PyTorch ``LRScheduler`` driven by a mobile-lr schedule spec.

Drop-in for any PyTorch loop (``optimizer.step(); scheduler.step()``), with the
two things PyTorch's schedulers lack: :meth:`SpecLR.replan` when the budget
changes, and a JSON-able ``state_dict`` (spec, plan history, step) so a run
resumes exactly, even in another process.

>>> import torch
>>> p = torch.nn.Parameter(torch.zeros(1))
>>> opt = torch.optim.SGD([p], lr=0.1)
>>> spec = {"format": "mobile-lr.schedule/1", "base_lr": 0.1,
...         "shape": {"type": "linear", "start_factor": 1.0, "end_factor": 0.0}}
>>> sched = SpecLR(opt, spec, total_steps=10)
>>> for _ in range(5):
...     opt.step(); sched.step()
>>> round(sched.get_last_lr()[0], 6)
0.05
>>> sched.replan(6)   # only one step left: the LR anneals to zero by then
>>> opt.step(); sched.step(); sched.get_last_lr()
[0.0]
"""

from __future__ import annotations

import os
from typing import Any

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler

from mobile_lr.schedules import Schedule, load_spec, parse_spec


def _as_schedule(schedule: Schedule | dict[str, Any] | str | os.PathLike[str]) -> Schedule:
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, dict):
        return parse_spec(schedule)
    return load_spec(schedule)


class SpecLR(LRScheduler):
    """Set each param group's LR from a schedule spec every ``step()``.

    A group whose initial LR differs from the spec's ``base_lr`` keeps its
    ratio (``lr_group = schedule_lr * group_initial_lr / base_lr``), the way
    PyTorch's schedulers scale every group from its own ``initial_lr``.
    """

    def __init__(self, optimizer: Optimizer, schedule: Schedule | dict[str, Any] | str,
                 total_steps: int | None = None, last_epoch: int = -1) -> None:
        self.schedule = _as_schedule(schedule)
        total = total_steps if total_steps is not None else self.schedule.total_steps
        self.plan: list[tuple[int, int]] = self.schedule.plan_or_default(
            None if total is None else [(0, total)])
        self.plateau = self.schedule.plateau_start() if self.schedule.is_plateau else None
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lr = self.schedule.lr(max(self.last_epoch, 0), self.plan, self.plateau)
        ratio = lr / self.schedule.base_lr
        return [base * ratio for base in self.base_lrs]

    def replan(self, total_steps: int) -> None:
        """The budget changed: the schedule now ends at ``total_steps`` (from this step on)."""
        self.plan = self.schedule.plan_or_default([*self.plan, (max(self.last_epoch, 0),
                                                                int(total_steps))])
        self._refresh()

    def observe(self, metric: float) -> None:
        """Feed an eval metric to a ``plateau`` schedule (no-op for others)."""
        if self.plateau is not None:
            self.plateau = self.schedule.plateau_observe(self.plateau, metric)
            self._refresh()

    def _refresh(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON: the spec, the plan history, the plateau state and the step."""
        return {"spec": self.schedule.to_dict(), "plan": [list(p) for p in self.plan],
                "plateau": self.plateau, "last_epoch": self.last_epoch,
                "base_lrs": list(self.base_lrs), "_step_count": self._step_count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.schedule = parse_spec(state_dict["spec"])
        self.plan = self.schedule.plan_or_default([tuple(p) for p in state_dict["plan"]])
        self.plateau = state_dict["plateau"]
        self.last_epoch = state_dict["last_epoch"]
        self.base_lrs = list(state_dict["base_lrs"])
        self._step_count = state_dict["_step_count"]
        self._refresh()
