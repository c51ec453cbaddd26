"""One simulated training session: a real runtime, the schedule manager and a simulated phone.

The loop is what the Android worker does, with the phone replaced by
:class:`mobile_lr.device.SimulatedDevice`::

    manager.update_device(device.state)      # battery, charger, temperature, status
    decision = manager.next()
    Run      -> loss = runtime.step(x, y, lr); the device advances by one step's
                time and energy (longer and hotter when throttled); manager.observe
    Pause    -> the device rests (cools, charges) until the hint, the next event
                or the next OS window
    Rollback -> the runtime reloads the last checkpoint the manager was told of
    Stop     -> the session ends

Scenario events (charger plugged or pulled, ambient changes) are applied at the
first decision at or after their time. Every step's numbers go into ``rows``
(the run directory's CSV). The manager never sees the simulator: only the states
a phone would read and the time and energy of the steps it ran.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobile_lr.device import SimulatedDevice, ThermalStatus
from mobile_lr.manager import Pause, Rollback, Run, ScheduleManager, Stop
from mobile_lr.runtime import TrainingRuntime
from mobile_lr.sim.scenario import Event, Window

__all__ = ["LOG_COLUMNS", "SessionResult", "apply_due_events", "batch_indices", "run_session"]

LOG_COLUMNS = ("kind", "step", "time_s", "lr", "loss", "level", "temperature_c", "thermal_status",
               "charging", "planned_total", "seconds", "energy_j", "note")
MIN_REST_S = 1.0  # a pause always rests at least this long, so a zero hint cannot spin


@dataclass
class SessionResult:
    """What one session did; ``summary()`` is the stable JSON view (docs/SIMULATION.md documents its keys)."""

    steps: int
    sim_seconds: float
    energy_j: float          # drawn by training steps (J)
    energy_total_j: float    # drawn by the phone over the whole session, rest included (J)
    battery_j: float         # the battery's capacity (J), for percentages
    battery_start: float
    battery_end: float
    battery_min: float
    battery_floor: float
    max_thermal: str
    stop_reason: str
    final_loss: float | None
    accuracy_before: float | None
    accuracy: float | None
    rollbacks: int
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    plan_history: list[tuple[int, int]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "sim_minutes": self.sim_seconds / 60.0,
            "energy_j": self.energy_j,
            "energy_pct_battery": 100.0 * self.energy_j / self.battery_j,
            "energy_total_j": self.energy_total_j,
            "battery_start": self.battery_start,
            "battery_end": self.battery_end,
            "battery_min": self.battery_min,
            "battery_floor": self.battery_floor,
            "max_thermal": self.max_thermal,
            "stop_reason": self.stop_reason,
            "final_loss": self.final_loss,
            "accuracy_before": self.accuracy_before,
            "accuracy": self.accuracy,
            "rollbacks": self.rollbacks,
            "replans": max(len(self.plan_history) - 1, 0),
        }


def batch_indices(n: int, batch_size: int, seed: int, *, drop_last: bool = True) -> Iterator[np.ndarray]:
    """Shuffled mini-batch indices, epoch after epoch (seeded: the same stream for every policy).

    ``drop_last`` skips an epoch's short final batch (every step sees ``batch_size`` samples);
    without it the short batch is kept, as a plain epoch loop does.
    """
    rng = np.random.default_rng(seed)
    size = min(batch_size, n)
    last = n - size + 1 if drop_last else n
    while True:
        perm = rng.permutation(n)
        for i in range(0, last, size):
            yield perm[i:i + size]


def apply_due_events(device: SimulatedDevice, pending: list[Event]) -> list[Event]:
    """Apply to ``device`` (and remove from the time-sorted ``pending``) the events whose time
    has come; returns them, in order."""
    done = []
    while pending and pending[0].at_s <= device.state.time_s:
        ev = pending.pop(0)
        if ev.type in ("plug", "unplug"):
            device.set_charging(ev.type == "plug")
        else:
            device.set_ambient(float(ev.ambient_c))  # type: ignore[arg-type]
        done.append(ev)
    return done


def run_session(runtime: TrainingRuntime, manager: ScheduleManager, device: SimulatedDevice,
                data: tuple[np.ndarray, np.ndarray], *, batch_size: int = 32, seed: int = 0,
                eval_data: tuple[np.ndarray, np.ndarray] | None = None,
                windows: Sequence[Window] | None = None, events: Sequence[Event] = (),
                end_s: float | None = None, checkpoint_dir: str | Path | None = None,
                checkpoint_every: int = 50, max_sim_s: float | None = None,
                on_step: Callable[[Run, float], None] | None = None,
                stop_when: Callable[[ScheduleManager], bool] | None = None) -> SessionResult:
    """Train ``runtime`` on ``data`` as ``manager`` decides, on the simulated ``device``.

    ``windows`` are the OS windows (default: one, opening now, of the policy's or
    profile's length); ``end_s`` ends the simulated day (default: the last
    window's end, or ``max_sim_s`` after the start). Checkpoints (the runtime's
    atomic ones) go to ``checkpoint_dir`` (a temporary directory by default) every
    ``checkpoint_every`` steps; the manager rolls back to the last one after a
    non-finite loss. ``stop_when(manager)``, checked before every decision, ends the
    session early (``stop_reason`` ``"caller"``). Returns a :class:`SessionResult`.
    """
    x, y = data
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"data: {len(x)} inputs and {len(y)} labels; need the same, non-zero count")
    start = device.state
    t0 = start.time_s
    if windows is None:
        length = manager.policy.window_s if manager.policy.window_s is not None else \
            device.profile.window_for(start.charging)
        windows = [Window(t0, length)]
    windows = sorted(windows, key=lambda w: w.start_s)
    if end_s is None:
        end_s = windows[-1].end_s if windows else t0 + (max_sim_s or 3600.0)
    if max_sim_s is not None:
        end_s = min(end_s, t0 + max_sim_s)
    pending_events = sorted(events, key=lambda e: e.at_s)
    batches = batch_indices(len(x), batch_size, seed)
    rows: list[dict[str, Any]] = []
    floor = manager.policy.battery_floor
    acc_before = runtime.evaluate(*eval_data).get("accuracy") if eval_data is not None else None
    battery_min = start.level
    max_status = int(start.thermal_status)
    energy = 0.0
    consumed0 = device.ledger.consumed_j
    losses: list[float] = []
    rollbacks = 0
    stop_reason = "scenario-end"

    def log(kind: str, note: str = "", **values: Any) -> None:
        st = device.state
        rows.append({"kind": kind, "step": manager.step, "time_s": st.time_s - t0, "lr": None,
                     "loss": None, "level": st.level, "temperature_c": st.temperature_c,
                     "thermal_status": st.thermal_status.name, "charging": st.charging,
                     "planned_total": manager.planned_total, "seconds": None, "energy_j": None,
                     "note": note, **values})

    def apply_events() -> None:
        for ev in apply_due_events(device, pending_events):
            log("event", ev.type if ev.ambient_c is None else f"ambient {ev.ambient_c:g} C")

    def rest(until: float, note: str) -> None:
        nonlocal battery_min, max_status
        dt = max(until - device.state.time_s, 0.0)
        if dt > 0.0:
            log("pause", note)
            device.idle(dt)
            battery_min = min(battery_min, device.state.level)
            max_status = max(max_status, int(device.state.thermal_status))
            log("resume", note)

    tmp = None
    if checkpoint_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mobile-lr-session-")
        checkpoint_dir = tmp.name
    ckpt_dir = Path(checkpoint_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    initial_ckpt, last_ckpt = ckpt_dir / "initial.ckpt", ckpt_dir / "last.ckpt"
    runtime.save(initial_ckpt, {"manager": manager.state_dict()})
    try:
        # Before the first window opens, the phone just lives its day.
        win_iter = iter(windows)
        window = next(win_iter, None)
        if window is None:
            stop_reason = "no-window"
        else:
            rest(window.start_s, "waiting for the OS window")
            apply_events()
            manager.begin_window(window.start_s, window.length_s)
        while window is not None:
            if stop_when is not None and stop_when(manager):
                stop_reason = "caller"
                break
            apply_events()
            manager.update_device(device.state)
            decision = manager.next()
            if isinstance(decision, Run):
                xb = next(batches)
                loss = float(runtime.step(x[xb], y[xb], decision.lr))
                res = device.train_step()
                manager.observe(loss=loss, step_seconds=res.seconds, energy_j=res.energy_j)
                energy += res.energy_j
                battery_min = min(battery_min, device.state.level)
                max_status = max(max_status, int(device.state.thermal_status))
                if math.isfinite(loss) and decision.phase == "train":
                    losses.append(loss)
                log("step", decision.phase, lr=decision.lr, loss=loss, seconds=res.seconds,
                    energy_j=res.energy_j, step=decision.step)
                if on_step is not None:
                    on_step(decision, loss)
                if (decision.phase == "train" and manager.pending_rollback is None
                        and manager.step % checkpoint_every == 0 and manager.step > 0):
                    runtime.save(last_ckpt, {"manager": manager.state_dict()})
                    manager.mark_checkpoint()
                if device.state.time_s >= end_s:
                    stop_reason = "scenario-end"
                    break
            elif isinstance(decision, Rollback):
                rollbacks += 1
                runtime.load(initial_ckpt if decision.to_step == 0 or not last_ckpt.exists()
                             else last_ckpt)
                log("rollback", decision.reason)
            elif isinstance(decision, Pause):
                now = device.state.time_s
                nxt_event = pending_events[0].at_s if pending_events else math.inf
                if decision.reason == "window" or now >= window.end_s:
                    window = next(win_iter, None)
                    if window is None:
                        stop_reason = "windows-over"
                        log("stop", "no more OS windows")
                        break
                    wake = min(window.start_s, end_s)
                    rest(wake, decision.reason)
                    if wake >= end_s:
                        stop_reason = "scenario-end"
                        break
                    manager.begin_window(window.start_s, window.length_s)
                    continue
                hint = now + max(decision.resume_hint, MIN_REST_S) \
                    if decision.resume_hint is not None else math.inf
                wake = min(hint, nxt_event, window.end_s, end_s)
                if not math.isfinite(wake) or wake <= now:
                    stop_reason = f"paused:{decision.reason}"
                    break
                rest(wake, decision.reason)
                if device.state.time_s >= end_s:
                    stop_reason = "scenario-end"
                    break
            else:
                assert isinstance(decision, Stop)
                stop_reason = decision.reason
                log("stop", f"{decision.reason}: {decision.detail}" if decision.detail else decision.reason)
                break
        acc = runtime.evaluate(*eval_data).get("accuracy") if eval_data is not None else None
    finally:
        if tmp is not None:
            tmp.cleanup()
    tail = losses[-10:]
    return SessionResult(
        steps=manager.step, sim_seconds=device.state.time_s - t0, energy_j=energy,
        energy_total_j=device.ledger.consumed_j - consumed0, battery_j=device.profile.battery_j,
        battery_start=start.level, battery_end=device.state.level, battery_min=battery_min,
        battery_floor=floor, max_thermal=ThermalStatus(max_status).name, stop_reason=stop_reason,
        final_loss=float(np.mean(tail)) if tail else None, accuracy_before=acc_before, accuracy=acc,
        rollbacks=rollbacks, rows=rows, plan_history=list(manager.plan_history))
