"""A PyTorch ``LRScheduler`` driven by a mobile-lr schedule spec.

Drop-in for any PyTorch loop (``optimizer.step(); scheduler.step()``), with the
two things PyTorch's schedulers lack: :meth:`SpecLR.replan` when the budget
changes, and a JSON-able ``state_dict`` (spec, plan history, step) so a run
resumes exactly, even in another process. A ``plateau`` spec takes its metric
the way ``ReduceLROnPlateau`` does: ``scheduler.step(val_loss)``.

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

import math
import warnings
from typing import Any

from mobile_lr.adapters.planned import PlannedSchedule, ScheduleLike, SchedulePlanView
from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler


__all__ = ["SpecLR"]


class SpecLR(SchedulePlanView, LRScheduler):
    """Set each param group's LR from a schedule spec every ``step()``.

    ``schedule`` is a spec dict, the path of a spec file or a parsed :class:`Schedule`;
    ``total_steps`` (an integer >= 1) is the planned total when the spec has none.
    A group whose initial LR differs from the spec's ``base_lr`` keeps its
    ratio (``lr_group = schedule_lr * group_initial_lr / base_lr``), the way
    PyTorch's schedulers scale every group from its own ``initial_lr``; when no
    group starts at ``base_lr`` a ``UserWarning`` says so, since one of the two
    numbers was then probably not meant.
    """

    def __init__(self, optimizer: Optimizer, schedule: ScheduleLike,
                 total_steps: int | None = None, last_epoch: int = -1) -> None:
        self._planned = PlannedSchedule(schedule, total_steps)
        base = self._planned.schedule.base_lr
        starts = [float(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]
        if last_epoch == -1 and not any(math.isclose(lr, base, rel_tol=1e-9) for lr in starts):
            warnings.warn(f"SpecLR: the optimizer's lr {starts[0]:g} is not the spec's base_lr {base:g}; "
                          f"each group's LR is the schedule scaled by its lr / base_lr "
                          f"({starts[0] / base:g} here). Give the optimizer lr={base:g} to run the "
                          "spec as written.", UserWarning, stacklevel=2)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        ratio = self._planned.lr(max(self.last_epoch, 0)) / self.schedule.base_lr
        return [base * ratio for base in self.base_lrs]

    def step(self, metrics: float | None = None, epoch: int | None = None) -> None:
        """Advance one step; with ``metrics`` (a ``plateau`` spec only) feed it first.

        ``scheduler.step(val_loss)`` is ``ReduceLROnPlateau``'s call: the metric is seen, then the
        step advances. ``epoch`` is PyTorch's deprecated explicit step, passed through unchanged.
        """
        if metrics is not None:
            self._planned.require_plateau("SpecLR.step(metrics)")
            self._planned.observe(metrics)
        if epoch is None:
            super().step()
        else:
            super().step(epoch)

    def replan(self, total_steps: int) -> None:
        """The budget changed: the schedule now ends at ``total_steps`` (from this step on)."""
        self._planned.replan(max(self.last_epoch, 0), total_steps)
        self._refresh()

    def observe(self, metric: float) -> None:
        """Feed an eval metric to a ``plateau`` schedule without advancing the step (no-op for others)."""
        self._planned.observe(metric)
        self._refresh()

    def _refresh(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON: the spec, the plan history, the plateau state and the step."""
        return {**self._planned.state_dict(), "last_epoch": self.last_epoch,
                "base_lrs": list(self.base_lrs), "_step_count": self._step_count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._planned.load_state_dict(state_dict)
        self.last_epoch = state_dict["last_epoch"]
        self.base_lrs = list(state_dict["base_lrs"])
        self._step_count = state_dict["_step_count"]
        self._refresh()
