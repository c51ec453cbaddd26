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

:func:`train_planned` is the simulator's own session loop
(:func:`mobile_lr.sim.session.run_session`) with the round as its one OS window
and the app kill as its ``stop_when``: a phone of the fleet trains exactly as a
phone of ``mobile-lr simulate`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mobile_lr.budget import Policy, broken_limit, effective_floor
from mobile_lr.device import SimulatedDevice, ThermalStatus
from mobile_lr.manager import ScheduleManager
from mobile_lr.physics import SCALAR
from mobile_lr.rules import REASONS, Reason, limit_reason
from mobile_lr.runtime.base import TrainingRuntime
from mobile_lr.sim.scenario import Event, Window
from mobile_lr.sim.session import apply_due_events, batch_indices, run_session

__all__ = ["LocalResult", "train_fixed", "train_planned"]


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
    stop_reason: str = ""
    final_loss: float = math.nan
    killed: bool = False

    def to_metrics(self) -> dict[str, float]:
        return {"steps": float(self.steps), "sim-seconds": self.sim_seconds, "energy-j": self.energy_j,
                "battery-start": self.battery_start, "battery-end": self.battery_end,
                "battery-min": self.battery_min, "max-thermal": float(self.max_thermal),
                "final-loss": self.final_loss if math.isfinite(self.final_loss) else -1.0}


class _Tracker:
    def __init__(self, device: SimulatedDevice) -> None:
        self.device = device
        s = device.state
        self.result = LocalResult(battery_start=s.level, battery_end=s.level, battery_min=s.level,
                                  max_thermal=int(s.thermal_status))
        self.t0 = s.time_s
        self.e0 = device.ledger.consumed_j

    def seen(self) -> None:
        s, r = self.device.state, self.result
        r.battery_end = s.level
        r.battery_min = min(r.battery_min, s.level)
        r.max_thermal = max(r.max_thermal, int(s.thermal_status))
        r.sim_seconds = s.time_s - self.t0
        r.energy_j = self.device.ledger.consumed_j - self.e0


def train_planned(runtime: TrainingRuntime, manager: ScheduleManager, device: SimulatedDevice,
                  data: tuple[np.ndarray, np.ndarray], *, batch_size: int = 32, seed: int = 0,
                  events: Sequence[Event] = (), deadline_s: float, kill_at_step: int | None = None
                  ) -> LocalResult:
    """Train under the manager from now until ``deadline_s`` (device time), the round's one
    window, or until the app is killed after ``kill_at_step`` steps (the round's work lost)."""
    now = device.state.time_s
    stop = None if kill_at_step is None else (lambda m: m.step >= kill_at_step)
    res = run_session(runtime, manager, device, data, batch_size=batch_size, seed=seed,
                      windows=[Window(now, max(deadline_s - now, 0.0))], events=events, end_s=deadline_s,
                      stop_when=stop)
    killed = res.stop_reason == Reason.CALLER
    return LocalResult(steps=res.steps, sim_seconds=res.sim_seconds, energy_j=res.energy_j,
                       battery_start=res.battery_start, battery_end=res.battery_end,
                       battery_min=res.battery_min, max_thermal=int(ThermalStatus[res.max_thermal]),
                       stop_reason=Reason.KILLED.value if killed else res.stop_reason,
                       final_loss=math.nan if res.final_loss is None else res.final_loss, killed=killed)


def train_fixed(runtime: TrainingRuntime, device: SimulatedDevice, data: tuple[np.ndarray, np.ndarray],
                policy: Policy, *, steps: int, lr: float, batch_size: int = 32, seed: int = 0,
                events: Sequence[Event] = (), deadline_s: float | None = None,
                kill_at_step: int | None = None) -> LocalResult:
    """``steps`` steps at a constant ``lr``; the OS watchdog kills the job (``killed``,
    ``stop_reason`` = what was crossed) after a step that ends below the user's floor,
    above the allowed thermal status, past the deadline, or unplugged when the job
    requires the charger."""
    x, y = data
    pending = sorted(events, key=lambda e: e.at_s)
    track = _Tracker(device)
    order = batch_indices(len(y), batch_size, seed, drop_last=False)
    for _ in range(steps):
        if kill_at_step is not None and track.result.steps >= kill_at_step:
            track.result.killed, track.result.stop_reason = True, Reason.KILLED.value
            return track.result
        idx = next(order)
        track.result.final_loss = runtime.step(x[idx], y[idx], lr)
        device.train_step()
        track.result.steps += 1
        apply_due_events(device, pending)
        track.seen()
        crossed = _watchdog(device, policy, deadline_s)
        if crossed is not None:
            track.result.killed, track.result.stop_reason = True, crossed
            return track.result
    track.result.stop_reason = Reason.DONE.value
    return track.result


def _watchdog(device: SimulatedDevice, policy: Policy, deadline_s: float | None) -> str | None:
    """What the OS (and the user's floor) stops a job for after a step: the limit the
    planner would have kept the step inside (the floor, the allowed status; the OS does not
    know the planner's thermal margin), the deadline, or the charger pulled."""
    s, p = device.state, device.profile
    late = deadline_s is not None and s.time_s > deadline_s
    factor = broken_limit(SCALAR, s.level, s.temperature_c, int(s.thermal_status),
                          effective_floor(p, policy, s.charging), math.inf,
                          int(policy.max_thermal), late)
    if factor >= 0:
        return REASONS[limit_reason(SCALAR, factor, 0)].value
    return Reason.UNPLUGGED.value if policy.charging_only and not s.charging else None
