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
from typing import Any

__all__ = ["PlateauRule"]


@dataclass(frozen=True)
class PlateauRule:
    mode: str = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    min_lr: float = 0.0
    eps: float = 1e-8

    def start(self, lr: float) -> dict[str, Any]:
        """The state before any metric: ``best`` is ``None`` (PyTorch's +/-inf)."""
        return {"lr": lr, "best": None, "num_bad_epochs": 0, "cooldown_counter": 0,
                "last_epoch": 0}

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
