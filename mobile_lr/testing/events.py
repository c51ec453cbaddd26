"""The phone events of the random manager traces (plug, unplug, ambient, idle, window).

One writer for the property tests that drive a :class:`~mobile_lr.device.SimulatedDevice` and a
:class:`~mobile_lr.manager.ScheduleManager` through drawn events, so the safety invariants and the
held-step tests see the same world.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EVENT_KINDS", "apply_event"]

EVENT_KINDS = ("plug", "unplug", "ambient", "idle", "window")


def apply_event(dev: Any, mgr: Any, kind: str, x: float) -> None:
    """Apply one drawn event: ``x`` is the ambient change in degrees C or the idle minutes."""
    if kind == "plug":
        dev.set_charging(True)
    elif kind == "unplug":
        dev.set_charging(False)
    elif kind == "ambient":
        dev.set_ambient(min(45.0, max(0.0, dev.ambient_c + x)))
    elif kind == "idle":
        dev.idle(abs(x) * 60.0)
    else:
        mgr.begin_window()
