"""The plan history of one run: which total the schedule plans for, from which step on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mobile_lr.schedules.plan import check_plan
from mobile_lr.validation import check_int

__all__ = ["PlanHistory"]


class PlanHistory:
    """``(step, planned total)`` entries, the schedule's input (``Schedule.lr(t, history)``).

    A new planned total is recorded when it differs from the one in force by more than
    ``remaining // tolerance`` steps (any change near the end), so the schedule re-plans on
    real drift and not on jitter. ``last_run_total`` is the total in force at the last Run:
    when the budget ends, it tells whether that Run was the last step of its plan.
    """

    KEYS = ("plan_history", "last_run_total")

    def __init__(self, tolerance: int) -> None:
        self.tolerance = tolerance
        self.entries: list[tuple[int, int]] = []
        self.last_run_total: int | None = None

    @property
    def total(self) -> int | None:
        """The planned total in force (None before the first plan)."""
        return self.entries[-1][1] if self.entries else None

    def record(self, step: int, total: int) -> None:
        """Write ``total`` at ``step`` if it moved beyond the tolerance."""
        if not self.entries:
            self.entries.append((0, total))  # a plan history starts at step 0
            return
        remaining = max(0, total - step)
        if abs(total - self.entries[-1][1]) <= remaining // self.tolerance:
            return
        if self.entries[-1][0] == step:
            # no step ran under the entry in force: amend it (same meaning, shorter history)
            self.entries[-1] = (step, total)
        else:
            self.entries.append((step, total))

    def rolled_back(self, to_step: int) -> None:
        """Forget the entries after ``to_step`` (and the last Run, if none is left)."""
        self.entries = [(t, total) for t, total in self.entries if t <= to_step]
        if not self.entries:
            self.last_run_total = None

    def state_dict(self) -> dict[str, Any]:
        return {"plan_history": [list(e) for e in self.entries],
                "last_run_total": self.last_run_total}

    def load_state_dict(self, obj: Mapping[str, Any], field: str = "plan_history") -> None:
        raw = obj.get("plan_history")
        self.entries = [] if raw is None or raw == [] else check_plan(raw, field)
        last = obj.get("last_run_total")
        self.last_run_total = None if last is None else check_int(last, "last_run_total", lo=0)
