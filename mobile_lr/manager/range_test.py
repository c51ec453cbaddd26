"""Smith's LR range test, run once before the schedule starts (see ``RangeTestConfig``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from mobile_lr.validation import (
    ValidationError,
    check_fields,
    check_int,
    check_list,
    check_number,
    check_text,
    get_number,
    get_object,
)

from .config import RangeTestConfig

__all__ = ["RangeTest", "pick_steepest"]

STATUSES = ("off", "pending", "running", "skipped", "done")


@dataclass
class RangeTest:
    """The sweep's state: ``status`` is ``off`` (no test), ``pending`` (sized by the first
    plan), ``running`` (``n`` points, the LRs tried and their smoothed losses), ``skipped``
    (the budget was too short for ``min_steps``) or ``done`` (``how`` it ended, the chosen
    point, and ``scale``: the chosen LR over the base LR, a factor on the schedule)."""

    config: RangeTestConfig | None
    status: str = "off"
    n: int = 0                        # points of the sweep (skipped: the steps it would take)
    lrs: list[float] = field(default_factory=list)
    smooth: list[float] = field(default_factory=list)
    avg: float = 0.0                  # the EMA before debiasing
    best: float | None = None
    how: str = ""                     # complete, diverged or budget
    points: int = 0                   # points run when it ended
    chosen_index: int | None = None
    chosen_lr: float | None = None
    scale: float = 1.0

    KEYS = ("range_scale", "range_test")

    def __post_init__(self) -> None:
        if self.config is not None and self.status == "off":
            self.status = "pending"

    @property
    def active(self) -> bool:
        return self.status in ("pending", "running")

    def next(self, affordable: int, budget: int, nominal: int, base_lr: float
             ) -> tuple[int, float] | bool:
        """The next point ``(index, lr)`` to run; else True to wait (nothing affordable yet)
        or False when the test is over (skipped, or ended by the budget: :meth:`finished`)."""
        rt = self.config
        assert rt is not None
        if self.status == "pending":
            n = min(rt.max_steps, math.floor(rt.fraction * min(budget, nominal)))
            if n < rt.min_steps:
                if affordable == 0:
                    return True
                self.status, self.n = "skipped", n
                return False
            self.status, self.n = "running", n
        i = len(self.smooth)
        if affordable == 0:
            if i >= rt.min_steps:
                self._finish("budget", base_lr)
                return False
            return True
        lr = base_lr * rt.start_factor * (rt.end_factor / rt.start_factor) ** (i / (self.n - 1))
        self.lrs = [*self.lrs[:i], lr]
        return i, lr

    def observe(self, loss: float, base_lr: float) -> bool:
        """The loss at the point just run; True when that ended the test."""
        rt = self.config
        assert rt is not None
        if not math.isfinite(loss):
            self.lrs.pop()
            self._finish("diverged", base_lr)
            return True
        beta = rt.smoothing
        self.avg = beta * self.avg + (1.0 - beta) * loss
        smooth = self.avg / (1.0 - beta ** (len(self.smooth) + 1))
        self.smooth.append(smooth)
        if self.best is None or smooth < self.best:
            self.best = smooth
        if smooth > rt.diverge_factor * self.best:
            self._finish("diverged", base_lr)
        elif len(self.smooth) >= self.n:
            self._finish("complete", base_lr)
        return self.status == "done"

    def _finish(self, how: str, base_lr: float) -> None:
        assert self.config is not None
        self.chosen_index = pick_steepest(self.smooth, self.config.skip_start)
        self.chosen_lr = None if self.chosen_index is None else self.lrs[self.chosen_index]
        self.scale = 1.0 if self.chosen_lr is None else self.chosen_lr / base_lr
        self.status, self.how, self.points = "done", how, len(self.smooth)

    # ---- state (the JSON of earlier versions: one object whose keys depend on the status)
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"status": self.status}
        if self.status == "skipped":
            state["steps"] = self.n
        elif self.status == "running":
            state.update(n=self.n, lrs=list(self.lrs), smooth=list(self.smooth), avg=self.avg,
                         best=self.best)
        elif self.status == "done":
            state.update(how=self.how, points=self.points, chosen_index=self.chosen_index,
                         chosen_lr=self.chosen_lr, scale=self.scale)
        return {"range_scale": self.scale, "range_test": state}

    def load_state_dict(self, obj: Mapping[str, Any]) -> None:
        """Every field checked against the status and the config (a hostile state must end in
        a ValidationError here, not in a ZeroDivisionError or IndexError steps later)."""
        state = get_object(obj.get("range_test"), "range_test")
        status = state.get("status")
        if status not in STATUSES:
            raise ValidationError("range_test.status", f"unknown value {status!r}",
                                  ", ".join(STATUSES))
        if (status == "off") != (self.config is None):
            raise ValidationError("range_test.status", f"{status!r} does not match the config",
                                  "off exactly when the config has no range test")
        got = check_fields(state, "range_test", {"status": check_text, **_SAVED[status]})
        scale = get_number(obj, "range_scale", "", lo=0.0, lo_open=True)
        lrs, smooth = got.get("lrs", []), got.get("smooth", [])
        n = got.get("n", got.get("steps", 0))
        if status == "running" and not (len(smooth) < n and len(lrs) in (len(smooth), len(smooth) + 1)):
            raise ValidationError("range_test", f"{len(lrs)} LRs and {len(smooth)} losses of {n} points",
                                  "fewer losses than points, as many LRs or one more")
        index = got.get("chosen_index")
        if index is not None and index >= got["points"]:
            raise ValidationError("range_test.chosen_index", f"{index} is not one of the "
                                  f"{got['points']} points", f"an integer < {got['points']}")
        self.status, self.scale, self.n, self.lrs, self.smooth = status, scale, n, lrs, smooth
        self.avg, self.best = got.get("avg", 0.0), got.get("best")
        self.how, self.points = got.get("how", ""), got.get("points", 0)
        self.chosen_index, self.chosen_lr = index, got.get("chosen_lr")


def _or_none(check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    return lambda value, field: None if value is None else check(value, field)


_count = partial(check_int, lo=0)
_positive = partial(check_number, lo=0.0, lo_open=True)
#: The fields a saved state has beside ``status``, by status.
_SAVED: dict[str, dict[str, Callable[[Any, str], Any]]] = {
    "off": {}, "pending": {}, "skipped": {"steps": _count},
    "running": {"n": partial(check_int, lo=2), "lrs": partial(check_list, item=_positive),
                "smooth": partial(check_list, item=check_number), "avg": check_number,
                "best": _or_none(check_number)},
    "done": {"how": check_text, "points": _count, "chosen_index": _or_none(_count),
             "chosen_lr": _or_none(_positive), "scale": _positive},
}


def pick_steepest(smooth: list[float], skip_start: float) -> int | None:
    """Index of the steepest descent of a smoothed loss curve (None if too short).

    Central differences inside, one-sided at the ends (``numpy.gradient``);
    the first ``floor(skip_start · n)`` points (at least one) are skipped; ties
    go to the lowest index, so the Kotlin port picks the same point.
    """
    n = len(smooth)
    skip = max(1, math.floor(skip_start * n))
    if n - skip < 3:
        return None
    best_i, best_g = None, math.inf
    for i in range(skip, n):
        g = smooth[i] - smooth[i - 1] if i == n - 1 else (smooth[i + 1] - smooth[i - 1]) / 2.0
        if g < best_g:
            best_i, best_g = i, g
    return best_i if best_g < 0.0 else None
