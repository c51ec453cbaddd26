"""ReduceLROnPlateau as a pure state transition.

The one stateful shape: its LR depends on the metrics seen so far, not on the
step. The state is a small JSON-able dict the manager owns (so it survives a
checkpoint like the rest of the manager's state); ``observe`` returns a new
dict and never mutates its input. The rules are PyTorch's, transcribed from
``torch.optim.lr_scheduler.ReduceLROnPlateau`` (2.13): "better" is
``a < best * (1 - threshold)`` (min, rel) and its three siblings; the LR is
cut after ``patience + 1`` bad observations; cool-down observations never
count as bad; a cut smaller than ``eps`` is skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

from mobile_lr.validation import check_fields, check_int, check_number
from mobile_lr.validation.schema import choice, integer, number

from .shapes import LR, Constant, Shape, ShapeArgs, _lr_bound, register

__all__ = ["PlateauRule"]


@register("plateau")
@dataclass(frozen=True, kw_only=True)
class PlateauRule(ShapeArgs):
    """The ``plateau`` shape's fields, with PyTorch's defaults; the LR starts at ``base_lr``."""

    mode: str = choice(("min", "max"), "min", help="whether the metric should fall (loss) or rise")
    factor: float = number(0.1, lo=0.0, hi=1.0, hi_open=True, help="LR multiplier at each cut")
    patience: int = integer(10, lo=0, help="bad observations tolerated before a cut")
    threshold: float = number(1e-4, lo=0.0, help="how much better counts as better")
    threshold_mode: str = choice(("rel", "abs"), "rel", help="threshold relative to the best, or absolute")
    cooldown: int = integer(0, lo=0, help="observations after a cut that never count as bad")
    min_lr: float = number(0.0, lo=0.0, tags=LR, help="lowest LR (at most base_lr)")
    eps: float = number(1e-8, lo=0.0, help="a cut smaller than this is skipped")

    def build(self, base_lr: float) -> Shape:
        """The LR is the state's (see :meth:`observe`); the shape is a constant ``base_lr``."""
        _lr_bound(self.min_lr, base_lr, "min_lr")
        return Constant().build(base_lr)

    def start(self, lr: float) -> dict[str, Any]:
        """The state before any metric: ``best`` is ``None`` (PyTorch's +/-inf)."""
        return {"lr": lr, "best": None, "num_bad_epochs": 0, "cooldown_counter": 0,
                "last_epoch": 0}

    def check_state(self, value: Any, path: str) -> dict[str, Any]:
        """A saved state (a manager's ``plateau_state``), checked: a hostile one must not reach
        :meth:`observe` as a ``KeyError`` or ``TypeError``."""
        count = partial(check_int, lo=0)
        return check_fields(value, path, {
            "lr": partial(check_number, lo=0.0), "num_bad_epochs": count,
            "best": lambda v, f: None if v is None else check_number(v, f),
            "cooldown_counter": count, "last_epoch": count})

    def _is_better(self, a: float, best: float | None) -> bool:
        if best is None:
            best = math.inf if self.mode == "min" else -math.inf
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def observe(self, state: dict[str, Any], metric: float) -> dict[str, Any]:
        """The state after one metric (for example an eval loss)."""
        current = float(metric)
        new = dict(state)
        new["last_epoch"] = state["last_epoch"] + 1
        if self._is_better(current, state["best"]):
            new["best"] = current
            new["num_bad_epochs"] = 0
        else:
            new["num_bad_epochs"] = state["num_bad_epochs"] + 1
        if new["cooldown_counter"] > 0:
            new["cooldown_counter"] -= 1
            new["num_bad_epochs"] = 0
        if new["num_bad_epochs"] > self.patience:
            old_lr = float(new["lr"])
            new_lr = max(old_lr * self.factor, self.min_lr)
            if old_lr - new_lr > self.eps:
                new["lr"] = new_lr
            new["cooldown_counter"] = self.cooldown
            new["num_bad_epochs"] = 0
        return new
