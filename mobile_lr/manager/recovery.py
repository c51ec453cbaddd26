"""Recovery from non-finite losses and from losses that climb and stay up (divergence without a
NaN): roll back to the last checkpoint, cut the LR, and stop after too many failures."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mobile_lr.rules import Reason
from mobile_lr.validation import ValidationError, check_number, get_int, get_number, get_object

from .config import DivergenceConfig
from .decisions import Rollback, Stop, load_saved

__all__ = ["LossWatch", "Recovery"]


class Recovery:
    """The checkpoint to return to, the LR cut so far and the rollback owed to the caller."""

    KEYS = ("nan_scale", "failures", "last_good_step", "pending_rollback")

    def __init__(self, lr_factor: float, max_failures: int) -> None:
        self.lr_factor, self.max_failures = lr_factor, max_failures
        self.nan_scale = 1.0
        self.failures = 0
        self.last_good_step = 0
        self.pending: Rollback | None = None

    def failed(self, reason: str = "non-finite loss", lr_factor: float | None = None
               ) -> Stop | None:
        """A non-finite loss: owe a rollback at a lower LR, or stop (too many failures). A
        diverging loss (``reason``, its own ``lr_factor``) the same, except that its last
        failure still owes the rollback before the stop: its weights are finite but bad, and
        the run should end at the checkpoint, not at them."""
        self.failures += 1
        if self.failures > self.max_failures:
            if reason == "non-finite loss":
                return Stop(Reason.DIVERGED, f"{self.failures} non-finite losses")
            self.pending = Rollback(self.last_good_step, self.nan_scale, self.failures, reason)
            return Stop(Reason.DIVERGED, f"{self.failures} failures ({reason})")
        self.nan_scale *= self.lr_factor if lr_factor is None else lr_factor
        self.pending = Rollback(self.last_good_step, self.nan_scale, self.failures, reason)
        return None

    def restart(self) -> None:
        """Owe a rollback to the initial weights (the LR range test is over)."""
        self.pending = Rollback(0, self.nan_scale, self.failures, "range-test")

    def take(self) -> Rollback:
        """The rollback owed, now given to the caller."""
        rb, self.pending = self.pending, None
        assert rb is not None
        return rb

    def state_dict(self) -> dict[str, Any]:
        return {"nan_scale": self.nan_scale, "failures": self.failures,
                "last_good_step": self.last_good_step,
                "pending_rollback": None if self.pending is None else self.pending.to_dict()}

    def load_state_dict(self, obj: Mapping[str, Any]) -> None:
        self.nan_scale = get_number(obj, "nan_scale", "", lo=0.0, lo_open=True)
        self.failures = get_int(obj, "failures", "", lo=0)
        self.last_good_step = get_int(obj, "last_good_step", "", lo=0)
        self.pending = load_saved(Rollback, obj.get("pending_rollback"), "pending_rollback")


class LossWatch:
    """Divergence without a NaN (:class:`~mobile_lr.manager.config.DivergenceConfig`): the
    debiased EMA of the training losses, its first value and running minimum, and the count of
    diverging steps in a row."""

    KEYS = ("loss_watch",)
    REASON = "loss diverged"

    def __init__(self, config: DivergenceConfig) -> None:
        self.config = config
        self.avg = 0.0          # the EMA, not debiased
        self.n = 0              # losses in it
        self.start = math.inf   # the first smoothed loss
        self.best = math.inf    # the running minimum of the smoothed loss
        self.streak = 0

    @property
    def healthy(self) -> bool:
        """No step is diverging now (a checkpoint taken now is one to return to)."""
        return self.streak == 0

    def observe(self, loss: float) -> bool:
        """One finite training loss; True when it completes ``patience`` diverging steps."""
        beta = self.config.smoothing
        self.n += 1
        self.avg = beta * self.avg + (1.0 - beta) * loss
        smooth = self.avg / (1.0 - beta ** self.n)
        if self.n == 1:
            self.start = smooth
        self.best = min(self.best, smooth)
        diverging = smooth > self.config.factor * self.best and smooth > self.start
        self.streak = self.streak + 1 if diverging else 0
        return self.streak >= self.config.patience

    def rolled_back(self) -> None:
        """The weights went back to a checkpoint: restart the average (the minimum and the
        start stand: they say what the task's loss can be)."""
        self.avg, self.n, self.streak = 0.0, 0, 0

    def state_dict(self) -> dict[str, object]:
        return {"loss_watch": {"avg": self.avg, "n": self.n, "start": _num(self.start),
                               "best": _num(self.best), "streak": self.streak}}

    def load_state_dict(self, obj: Mapping[str, Any]) -> None:
        w = obj.get("loss_watch")
        if w is None:
            raise ValidationError("loss_watch", "missing: the config has divergence detection")
        w = get_object(w, "loss_watch")
        self.avg = get_number(w, "avg", "loss_watch")
        self.n = get_int(w, "n", "loss_watch", lo=0)
        self.start = _inf(w.get("start"), "loss_watch.start")
        self.best = _inf(w.get("best"), "loss_watch.best")
        self.streak = get_int(w, "streak", "loss_watch", lo=0)


def _num(x: float) -> float | None:
    return None if math.isinf(x) else x   # JSON has no infinity


def _inf(x: Any, field: str) -> float:
    return math.inf if x is None else check_number(x, field)
