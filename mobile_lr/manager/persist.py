"""The manager's state as plain JSON: its inputs, its own counters and its parts' state, so a
run resumes exactly after the process is killed (the parts own their keys)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from typing import Any

from mobile_lr.budget import Policy
from mobile_lr.device import DeviceProfile
from mobile_lr.schedules import parse_spec
from mobile_lr.validation import (
    ValidationError,
    check_fields,
    check_int,
    check_keys,
    check_number,
    get_int,
    get_object,
)

from .belief import DeviceBelief
from .config import ManagerConfig
from .decisions import PendingRun, Stop, load_saved
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
        if self.followed is not self.history:
            state[FOLLOWED] = [list(e) for e in self.followed.entries]
        return json.loads(json.dumps(state))

    def load_state_dict(self, obj: Mapping[str, Any]) -> None:
        """Restore the mutable state saved by :meth:`state_dict` (same inputs assumed).

        A state that does not check (a wrong key, type or range: a ValidationError naming the
        field) changes nothing: the manager's own state, saved first, is put back."""
        obj = get_object(obj, "")
        check_keys(obj, "", STATE_KEYS)
        if obj.get("format") != STATE_FORMAT:
            raise ValidationError("format", f"unknown manager state {obj.get('format')!r}",
                                  STATE_FORMAT)
        before = self.state_dict()
        try:
            self._load(obj)
        except ValidationError:
            self._load(before)
            raise

    def _load(self, obj: Mapping[str, Any]) -> None:
        self.step = get_int(obj, "step", "", lo=0)
        self.pending = load_saved(PendingRun, obj.get("pending"), "pending")
        self.stopped = load_saved(Stop, obj.get("stopped"), "stopped")
        self.plateau_state = self.schedule.plateau_load(obj.get("plateau_state"), "plateau_state")
        self.spent = check_fields(obj.get("spent"), "spent", SPENT)
        for part in self._parts():
            part.load_state_dict(obj)
        if self.followed is not self.history:
            if FOLLOWED not in obj:
                raise ValidationError(FOLLOWED, "missing: the config's schedule_horizon is "
                                      "'battery'", "the capped plan history")
            self.followed.load_state_dict({"plan_history": obj[FOLLOWED]}, FOLLOWED)
        for name, hist in (("plan_history", self.history), (FOLLOWED, self.followed)):
            if hist.entries and hist.entries[-1][0] > self.step:
                raise ValidationError("step", f"{self.step} is before the last plan's step "
                                      f"{hist.entries[-1][0]}", f"a step >= every {name} step")
        self._fast = False
        self._table.clear()
        if self.hold.left > 0:
            self.lr_at(self.step)   # prepares the LR function the held steps use

    @classmethod
    def from_state_dict(cls, obj: Mapping[str, Any]) -> Any:
        """A manager rebuilt entirely from :meth:`state_dict` (schedule, profile, policy too)."""
        obj = get_object(obj, "")
        check_keys(obj, "", STATE_KEYS, ("schedule", "profile", "policy", "config"))
        mgr = cls(parse_spec(obj["schedule"]), DeviceProfile.from_dict(obj["profile"], "profile"),
                  Policy.from_dict(obj["policy"], "policy"),
                  ManagerConfig.from_dict(obj["config"], "config"))
        mgr.load_state_dict(obj)
        return mgr


_count = partial(check_number, lo=0.0)
#: What a run has spent (``ScheduleManager.spent``).
SPENT = {"energy_j": _count, "seconds": _count, "steps": partial(check_int, lo=0)}

#: The key of the capped plan history the schedule follows (schedule_horizon "battery").
FOLLOWED = "followed_plan"
#: The keys of a manager's state: its inputs, its own, its parts'.
STATE_KEYS = ("format", "schedule", "profile", "policy", "config", "step", "pending", "stopped",
              "plateau_state", "spent", *PlanHistory.KEYS, FOLLOWED, *Recovery.KEYS,
              *RangeTest.KEYS, *PeakLr.KEYS, *DeviceBelief.KEYS, *PlanHold.KEYS, *LossWatch.KEYS)
