"""Recovery from non-finite losses: roll back to the last checkpoint, cut the LR, and stop
after too many failures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mobile_lr.rules import Reason
from mobile_lr.validation import get_int, get_number

from .decisions import Rollback, Stop

__all__ = ["Recovery"]


class Recovery:
    """The checkpoint to return to, the LR cut so far and the rollback owed to the caller."""

    KEYS = ("nan_scale", "failures", "last_good_step", "pending_rollback")

    def __init__(self, lr_factor: float, max_failures: int) -> None:
        self.lr_factor, self.max_failures = lr_factor, max_failures
        self.nan_scale = 1.0
        self.failures = 0
        self.last_good_step = 0
        self.pending: Rollback | None = None

    def failed(self) -> Stop | None:
        """A non-finite loss: owe a rollback at a lower LR, or stop (too many failures)."""
        self.failures += 1
        if self.failures > self.max_failures:
            return Stop(Reason.DIVERGED, f"{self.failures} non-finite losses")
        self.nan_scale *= self.lr_factor
        self.pending = Rollback(self.last_good_step, self.nan_scale, self.failures,
                                "non-finite loss")
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
        rb = obj.get("pending_rollback")
        self.pending = None if rb is None else Rollback(**rb)
