"""The manager's state as plain JSON: its inputs, its own counters and its parts' state, so a
run resumes exactly after the process is killed (the parts own their keys)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mobile_lr.budget import Policy
from mobile_lr.device import DeviceProfile
from mobile_lr.schedules import parse_spec
from mobile_lr.validation import ValidationError, check_keys, get_int, get_object

from .belief import DeviceBelief
from .config import ManagerConfig
from .decisions import PendingRun, Stop
from .history import PlanHistory
from .hold import PlanHold
from .peak import PeakLr
from .range_test import RangeTest
from .recovery import LossWatch, Recovery

__all__ = ["STATE_FORMAT", "STATE_KEYS", "ManagerState"]

STATE_FORMAT = "mobile-lr.manager-state/1"


class ManagerState:
    """``state_dict`` / ``load_state_dict`` / ``from_state_dict`` of
    :class:`~mobile_lr.manager.ScheduleManager` (the attributes it sets in ``__init__``)."""

    def _parts(self) -> tuple[Any, ...]:
        parts = (self.history, self.recovery, self.range_test, self.peak, self.belief, self.hold)
        return parts if self.loss_watch is None else (*parts, self.loss_watch)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly, as plain JSON (with the inputs)."""
        own = {"step": self.step, "pending": None if self.pending is None
               else self.pending.to_dict(),
               "stopped": None if self.stopped is None else self.stopped.to_dict(),
               "plateau_state": self.plateau_state, "spent": self.spent}
        state = {"format": STATE_FORMAT, "schedule": self.schedule.to_dict(),
                 "profile": self.profile.to_dict(), "policy": self.policy.to_dict(),
                 "config": self.config.to_dict(), **own}
        for part in self._parts():
            state.update(part.state_dict())
        return json.loads(json.dumps(state))

    def load_state_dict(self, obj: Mapping[str, Any]) -> None:
        """Restore the mutable state saved by :meth:`state_dict` (same inputs assumed)."""
        obj = get_object(obj, "")
        if obj.get("format") != STATE_FORMAT:
            raise ValidationError("format", f"unknown manager state {obj.get('format')!r}",
                                  STATE_FORMAT)
        self.step = get_int(obj, "step", "", lo=0)
        pending = obj.get("pending")
        self.pending = None if pending is None else PendingRun(**pending)
        stopped = obj.get("stopped")
        self.stopped = None if stopped is None else Stop(**stopped)
        self.plateau_state = obj.get("plateau_state")
        self.spent = dict(obj["spent"])
        for part in self._parts():
            part.load_state_dict(obj)
        self._fast = False
        self._table.clear()
        if self.hold.left > 0:
            self.lr_at(self.step)   # prepares the LR function the held steps use

    @classmethod
    def from_state_dict(cls, obj: Mapping[str, Any]) -> Any:
        """A manager rebuilt entirely from :meth:`state_dict` (schedule, profile, policy too)."""
        obj = get_object(obj, "")
        check_keys(obj, "", STATE_KEYS)
        mgr = cls(parse_spec(obj["schedule"]), DeviceProfile.from_dict(obj["profile"], "profile"),
                  Policy.from_dict(obj["policy"], "policy"),
                  ManagerConfig.from_dict(obj["config"], "config"))
        mgr.load_state_dict(obj)
        return mgr


#: The keys of a manager's state: its inputs, its own, its parts'.
STATE_KEYS = ("format", "schedule", "profile", "policy", "config", "step", "pending", "stopped",
              "plateau_state", "spent", *PlanHistory.KEYS, *Recovery.KEYS, *RangeTest.KEYS,
              *PeakLr.KEYS, *DeviceBelief.KEYS, *PlanHold.KEYS, *LossWatch.KEYS)
