"""One phone's local work in a round: the schedule manager's loop, or a fixed number of epochs.

:func:`train_planned` is what a mobile-lr phone does: the
:class:`~mobile_lr.manager.ScheduleManager` decides every step from the
simulated device (re-planning as the battery, the charger and the heat change),
the runtime trains on the user's digits, and the round ends when the nominal
steps are done or the budget is spent; the work done is kept.

:func:`train_fixed` is the client of Flower's default FedAvg: ``E`` epochs at a
constant LR, no planning. The phone's OS (and the user's floor, enforced as a
watchdog) stops the job when a limit is crossed, and that round's work is lost.

Both end early when the simulated app is killed (``kill_at_step``): the round's
work is lost, nothing else.

Note for merging: ``mobile_lr.sim.session.run_session`` (being written) runs the
same manager loop for the single-phone simulator. :func:`train_planned` keeps the
same inputs (runtime, manager, device, data, batch size, seed, events) and
result fields so that it can be replaced by it once it exists.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mobile_lr.budget import Policy, effective_floor
from mobile_lr.device import SimulatedDevice
from mobile_lr.manager import Pause, Rollback, Run, ScheduleManager, Stop
from mobile_lr.runtime.base import TrainingRuntime

__all__ = ["LocalResult", "batches", "train_fixed", "train_planned"]


@dataclass
class LocalResult:
    """What a phone did in one round. ``killed`` rounds lose their work (``steps`` still
    counts the steps run, and ``energy_j`` what they cost)."""

    steps: int = 0
    sim_seconds: float = 0.0
    energy_j: float = 0.0
    battery_start: float = 0.0
    battery_end: float = 0.0
    battery_min: float = 1.0
    max_thermal: int = 0
    max_temperature_c: float = 0.0
    stop_reason: str = ""
    final_loss: float = math.nan
    killed: bool = False

    def to_metrics(self) -> dict[str, float]:
        return {"steps": float(self.steps), "sim-seconds": self.sim_seconds, "energy-j": self.energy_j,
                "battery-start": self.battery_start, "battery-end": self.battery_end,
                "battery-min": self.battery_min, "max-thermal": float(self.max_thermal),
                "max-temperature-c": self.max_temperature_c,
                "final-loss": self.final_loss if math.isfinite(self.final_loss) else -1.0}


def batches(n: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Index batches over ``n`` samples, reshuffled every epoch (seeded), the last one short."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n)
        for i in range(0, n, batch_size):
            yield order[i:i + batch_size]


class _Tracker:
    def __init__(self, device: SimulatedDevice) -> None:
        self.device = device
        s = device.state
        self.result = LocalResult(battery_start=s.level, battery_end=s.level, battery_min=s.level,
                                  max_thermal=int(s.thermal_status), max_temperature_c=s.temperature_c)
        self.t0 = s.time_s
        self.e0 = device.ledger.consumed_j

    def seen(self) -> None:
        s, r = self.device.state, self.result
        r.battery_end = s.level
        r.battery_min = min(r.battery_min, s.level)
        r.max_thermal = max(r.max_thermal, int(s.thermal_status))
        r.max_temperature_c = max(r.max_temperature_c, s.temperature_c)
        r.sim_seconds = s.time_s - self.t0
        r.energy_j = self.device.ledger.consumed_j - self.e0


def _apply_events(device: SimulatedDevice, events: list[Mapping[str, Any]]) -> None:
    """Apply (and remove) the events whose time has come."""
    while events and events[0]["at_s"] <= device.state.time_s:
        ev = events.pop(0)
        if ev["type"] in ("plug", "unplug"):
            device.set_charging(ev["type"] == "plug")
        elif ev["type"] == "ambient":
            device.set_ambient(float(ev["value_c"]))


def _idle(device: SimulatedDevice, seconds: float, events: list[Mapping[str, Any]]) -> None:
    """Rest ``seconds``, applying events at their times."""
    end = device.state.time_s + seconds
    while True:
        stop = min(end, events[0]["at_s"] if events else math.inf)
        if stop > device.state.time_s:
            device.idle(stop - device.state.time_s)
        _apply_events(device, events)
        if stop >= end:
            return


def train_planned(runtime: TrainingRuntime, manager: ScheduleManager, device: SimulatedDevice,
                  data: tuple[np.ndarray, np.ndarray], *, batch_size: int = 32, seed: int = 0,
                  events: Sequence[Mapping[str, Any]] = (), deadline_s: float | None = None,
                  kill_at_step: int | None = None,
                  restart: Mapping[str, np.ndarray] | None = None) -> LocalResult:
    """Train under the manager until it stops, pauses past the deadline, or the app is killed.

    ``deadline_s`` (device time) ends the round: the manager's window is set to end
    there, and a pause whose resume hint falls after it ends the round. A rollback
    (non-finite loss) restores ``restart`` (the round's starting weights).
    """
    x, y = data
    pending = sorted((dict(e) for e in events), key=lambda e: e["at_s"])
    track = _Tracker(device)
    order = batches(len(y), batch_size, seed)
    now = device.state.time_s
    manager.update_device(device.state)
    if deadline_s is not None:
        manager.begin_window(now, max(0.0, deadline_s - now))
    while True:
        d = manager.next()
        if isinstance(d, Run):
            if kill_at_step is not None and track.result.steps >= kill_at_step:
                track.result.killed, track.result.stop_reason = True, "killed"
                break
            idx = next(order)
            loss = runtime.step(x[idx], y[idx], d.lr)
            r = device.train_step()
            manager.observe(loss=loss, step_seconds=r.seconds, energy_j=r.energy_j)
            track.result.steps += 1
            track.result.final_loss = loss
            _apply_events(device, pending)
            manager.update_device(device.state)
            track.seen()
        elif isinstance(d, Pause):
            left = math.inf if deadline_s is None else deadline_s - device.state.time_s
            if d.resume_hint is None or d.resume_hint >= left:
                track.result.stop_reason = f"pause:{d.reason}"
                break
            _idle(device, max(d.resume_hint, 1.0), pending)
            manager.update_device(device.state)
            track.seen()
        elif isinstance(d, Rollback):
            if restart is not None:
                runtime.set_parameters(restart)
        else:
            assert isinstance(d, Stop)
            track.result.stop_reason = d.reason
            break
    track.seen()
    return track.result


def train_fixed(runtime: TrainingRuntime, device: SimulatedDevice, data: tuple[np.ndarray, np.ndarray],
                policy: Policy, *, steps: int, lr: float, batch_size: int = 32, seed: int = 0,
                events: Sequence[Mapping[str, Any]] = (), deadline_s: float | None = None,
                kill_at_step: int | None = None) -> LocalResult:
    """``steps`` steps at a constant ``lr``; the OS watchdog kills the job (``killed``,
    ``stop_reason`` = what was crossed) after a step that ends below the user's floor,
    above the allowed thermal status, past the deadline, or unplugged when the job
    requires the charger."""
    x, y = data
    pending = sorted((dict(e) for e in events), key=lambda e: e["at_s"])
    track = _Tracker(device)
    order = batches(len(y), batch_size, seed)
    profile = device.profile
    for _ in range(steps):
        if kill_at_step is not None and track.result.steps >= kill_at_step:
            track.result.killed, track.result.stop_reason = True, "killed"
            return track.result
        idx = next(order)
        track.result.final_loss = runtime.step(x[idx], y[idx], lr)
        device.train_step()
        track.result.steps += 1
        _apply_events(device, pending)
        track.seen()
        s = device.state
        crossed = None
        if s.level < effective_floor(profile, policy, s.charging):
            crossed = "battery"
        elif s.thermal_status > policy.max_thermal:
            crossed = "thermal"
        elif deadline_s is not None and s.time_s > deadline_s:
            crossed = "window"
        elif policy.charging_only and not s.charging:
            crossed = "unplugged"
        if crossed is not None:
            track.result.killed, track.result.stop_reason = True, crossed
            return track.result
    track.result.stop_reason = "done"
    return track.result
