"""What happened in one simulated run, read back from its log rows: the report's raw material.

A :class:`Timeline` is the run's rows (``mobile_lr.sim.session.LOG_COLUMNS``) turned
into what a person asks of it: the training steps on simulated time, the spans the
phone waited for an OS window or the manager paused (and why), the scenario's
events (charger plugged or pulled, ambient changes), the manager's re-plans placed
at the time they happened, and the stop. No plotting here, so the extraction is
tested on its own and the figures and the text read the same facts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["WINDOW_REASONS", "Mark", "Span", "Timeline", "event_label", "timeline"]

#: Pause reasons that mean "the OS window is closed", not a decision of the manager.
WINDOW_REASONS = ("window", "waiting for the OS window")

_EVENT_LABELS = {"plug": "charger plugged", "unplug": "charger pulled"}


@dataclass(frozen=True)
class Span:
    """A rest of the phone from ``start_s`` to ``end_s`` (simulated seconds from the run's start)."""

    start_s: float
    end_s: float
    reason: str

    @property
    def os_window(self) -> bool:
        """True when the phone waited for the OS (no window open), False for a manager pause."""
        return self.reason in WINDOW_REASONS


@dataclass(frozen=True)
class Mark:
    """Something that happened at one instant: an event, a re-plan, the stop."""

    time_s: float
    label: str
    step: int | None = None


@dataclass
class Timeline:
    """One run's story; arrays are per training step (phase ``train``), in order."""

    policy: str
    time_s: np.ndarray            # end of each training step
    step: np.ndarray
    lr: np.ndarray
    loss: np.ndarray
    device_time_s: np.ndarray     # every logged row: steps, pauses, events
    level: np.ndarray             # battery level 0..1 at those times
    temperature_c: np.ndarray
    pauses: list[Span] = field(default_factory=list)
    events: list[Mark] = field(default_factory=list)
    replans: list[Mark] = field(default_factory=list)   # label: the new planned total
    stop: Mark | None = None
    end_s: float = 0.0
    first_plan: int | None = None

    @property
    def manager_pauses(self) -> list[Span]:
        """The pauses the manager decided (thermal, battery), not the OS's closed windows."""
        return [p for p in self.pauses if not p.os_window]

    def step_gaps(self, min_s: float = 0.0) -> np.ndarray:
        """Indices ``i`` after which a rest of at least ``min_s`` separates step ``i`` from step
        ``i + 1`` (a line drawn through the steps should break there)."""
        if len(self.time_s) < 2:
            return np.zeros(0, dtype=int)
        starts = [p.end_s for p in self.pauses if p.end_s - p.start_s >= min_s]
        idx = np.searchsorted(self.time_s, starts, side="right") - 1
        return np.unique(idx[(idx >= 0) & (idx < len(self.time_s) - 1)])


def event_label(note: str) -> str:
    """``"unplug"`` -> ``"charger pulled"``, ``"ambient 35 C"`` -> ``"ambient 35 °C"``."""
    if note in _EVENT_LABELS:
        return _EVENT_LABELS[note]
    return note.replace(" C", " °C") if note.startswith("ambient") else note


def _floats(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows], dtype=float)


def timeline(policy: str, rows: Sequence[Mapping[str, Any]], plan_history: Sequence[Sequence[int]],
             stop_reason: str) -> Timeline:
    """The :class:`Timeline` of a run from its log ``rows``, ``plan_history`` [(step, total)]
    and ``stop_reason`` (a run that ended without a ``stop`` row stops at its last row)."""
    steps = [r for r in rows if r["kind"] == "step" and r["note"] == "train"]
    timed = [r for r in rows if r.get("time_s") is not None]
    tl = Timeline(policy, _floats(steps, "time_s"), np.array([int(r["step"]) for r in steps], dtype=int),
                  _floats(steps, "lr"), _floats(steps, "loss"), _floats(timed, "time_s"),
                  _floats(timed, "level"), _floats(timed, "temperature_c"))
    tl.end_s = float(tl.device_time_s[-1]) if len(timed) else 0.0
    start: Mapping[str, Any] | None = None
    for r in rows:
        if r["kind"] == "pause":
            start = r
        elif r["kind"] == "resume" and start is not None:
            tl.pauses.append(Span(float(start["time_s"]), float(r["time_s"]), str(start["note"])))
            start = None
        elif r["kind"] == "event":
            tl.events.append(Mark(float(r["time_s"]), event_label(str(r["note"]))))
        elif r["kind"] == "stop":
            tl.stop = Mark(float(r["time_s"]), str(r["note"]) or stop_reason, int(r["step"]))
    if tl.stop is None:
        tl.stop = Mark(tl.end_s, stop_reason, int(tl.step[-1]) + 1 if len(tl.step) else 0)
    # A plan entry (s, total) is made before step s runs: it happened when step s started.
    step_start = {int(r["step"]): float(r["time_s"]) - float(r["seconds"] or 0.0) for r in steps}
    if plan_history:
        tl.first_plan = int(plan_history[0][1])
    for s, total in list(plan_history)[1:]:
        t = step_start.get(int(s), tl.end_s)
        tl.replans.append(Mark(t, str(int(total)), int(s)))
    return tl
