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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mobile_lr.device import SimulatedDevice, ThermalStatus
from mobile_lr.manager import Pause, Rollback, Run, ScheduleManager, Stop
from mobile_lr.rules import Reason, paused
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
    t0 = device.state.time_s
    if windows is None:
        length = manager.policy.window_s if manager.policy.window_s is not None else \
            device.profile.window_for(device.state.charging)
        windows = [Window(t0, length)]
    windows = sorted(windows, key=lambda w: w.start_s)
    if end_s is None:
        end_s = windows[-1].end_s if windows else t0 + (max_sim_s or 3600.0)
    if max_sim_s is not None:
        end_s = min(end_s, t0 + max_sim_s)
    acc_before = runtime.evaluate(*eval_data).get("accuracy") if eval_data is not None else None
    with _checkpoints(checkpoint_dir) as ckpt_dir:
        session = _Session(runtime, manager, device, data, ckpt_dir, end_s=end_s,
                           events=events, batches=batch_indices(len(x), batch_size, seed),
                           checkpoint_every=checkpoint_every, on_step=on_step)
        stop_reason = session.live(windows, stop_when)
        acc = runtime.evaluate(*eval_data).get("accuracy") if eval_data is not None else None
    return session.result(stop_reason, acc_before, acc)


@contextmanager
def _checkpoints(checkpoint_dir: str | Path | None) -> Iterator[Path]:
    """The session's checkpoint directory (a temporary one, removed after, by default)."""
    if checkpoint_dir is not None:
        path = Path(checkpoint_dir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="mobile-lr-session-") as tmp:
        yield Path(tmp)


class _Session:
    """One session: the phone lives its day, the manager decides, the runtime trains; every
    step, pause, event and stop goes into ``rows``."""

    def __init__(self, runtime: TrainingRuntime, manager: ScheduleManager,
                 device: SimulatedDevice, data: tuple[np.ndarray, np.ndarray], ckpt_dir: Path, *,
                 end_s: float, events: Sequence[Event], batches: Iterator[np.ndarray],
                 checkpoint_every: int, on_step: Callable[[Run, float], None] | None) -> None:
        self.runtime, self.manager, self.device, self.data = runtime, manager, device, data
        self.end_s, self.batches, self.on_step = end_s, batches, on_step
        self.checkpoint_every = checkpoint_every
        self.pending_events = sorted(events, key=lambda e: e.at_s)
        self.start = device.state
        self.consumed0 = device.ledger.consumed_j
        self.rows: list[dict[str, Any]] = []
        self.battery_min = self.start.level
        self.max_status = int(self.start.thermal_status)
        self.energy = 0.0
        self.losses: list[float] = []
        self.rollbacks = 0
        self.initial_ckpt, self.last_ckpt = ckpt_dir / "initial.ckpt", ckpt_dir / "last.ckpt"
        runtime.save(self.initial_ckpt, {"manager": manager.state_dict()})

    def live(self, windows: Sequence[Window], stop_when: Callable[[ScheduleManager], bool] | None
             ) -> str:
        """Decide and act until the session ends; returns why (a :class:`Reason` value, or
        ``"paused:<reason>"`` when a pause would outlast the day)."""
        self.windows = iter(windows)
        self.window = next(self.windows, None)
        if self.window is None:
            return Reason.NO_WINDOW
        # Before the first window opens, the phone just lives its day.
        self.rest(self.window.start_s, "waiting for the OS window")
        self.apply_events()
        self.manager.begin_window(self.window.start_s, self.window.length_s)
        while True:
            if stop_when is not None and stop_when(self.manager):
                return Reason.CALLER
            self.apply_events()
            self.manager.update_device(self.device.state)
            decision = self.manager.next()
            if isinstance(decision, Run):
                ended = self.run(decision)
            elif isinstance(decision, Rollback):
                ended = self.roll_back(decision)
            elif isinstance(decision, Pause):
                ended = self.pause(decision)
            else:
                assert isinstance(decision, Stop)
                self.log("stop", f"{decision.reason}: {decision.detail}" if decision.detail
                         else decision.reason)
                ended = decision.reason
            if ended is not None:
                return ended

    def run(self, decision: Run) -> str | None:
        """One training step on the runtime and the simulated phone."""
        x, y = self.data
        xb = next(self.batches)
        loss = float(self.runtime.step(x[xb], y[xb], decision.lr))
        res = self.device.train_step()
        m = self.manager
        m.observe(loss=loss, step_seconds=res.seconds, energy_j=res.energy_j)
        self.energy += res.energy_j
        self.seen()
        if math.isfinite(loss) and decision.phase == "train":
            self.losses.append(loss)
        self.log("step", decision.phase, lr=decision.lr, loss=loss, seconds=res.seconds,
                 energy_j=res.energy_j, step=decision.step)
        if self.on_step is not None:
            self.on_step(decision, loss)
        if (decision.phase == "train" and m.pending_rollback is None
                and m.step % self.checkpoint_every == 0 and m.step > 0):
            self.runtime.save(self.last_ckpt, {"manager": m.state_dict()})
            m.mark_checkpoint()
        return Reason.SCENARIO_END if self.device.state.time_s >= self.end_s else None

    def roll_back(self, decision: Rollback) -> None:
        self.rollbacks += 1
        self.runtime.load(self.initial_ckpt if decision.to_step == 0 or not self.last_ckpt.exists()
                          else self.last_ckpt)
        self.log("rollback", decision.reason)

    def pause(self, decision: Pause) -> str | None:
        """Rest until the hint, the next event or the window's end; after the window, wait for
        the next one."""
        now = self.device.state.time_s
        assert self.window is not None
        if decision.reason == Reason.WINDOW or now >= self.window.end_s:
            self.window = next(self.windows, None)
            if self.window is None:
                self.log("stop", "no more OS windows")
                return Reason.WINDOWS_OVER
            wake = min(self.window.start_s, self.end_s)
            self.rest(wake, decision.reason)
            if wake >= self.end_s:
                return Reason.SCENARIO_END
            self.manager.begin_window(self.window.start_s, self.window.length_s)
            return None
        hint = now + max(decision.resume_hint, MIN_REST_S) \
            if decision.resume_hint is not None else math.inf
        next_event = self.pending_events[0].at_s if self.pending_events else math.inf
        wake = min(hint, next_event, self.window.end_s, self.end_s)
        if not math.isfinite(wake) or wake <= now:
            return paused(decision.reason)
        self.rest(wake, decision.reason)
        return Reason.SCENARIO_END if self.device.state.time_s >= self.end_s else None

    def rest(self, until: float, note: str) -> None:
        dt = max(until - self.device.state.time_s, 0.0)
        if dt > 0.0:
            self.log("pause", note)
            self.device.idle(dt)
            self.seen()
            self.log("resume", note)

    def apply_events(self) -> None:
        for ev in apply_due_events(self.device, self.pending_events):
            self.log("event", ev.type if ev.ambient_c is None else f"ambient {ev.ambient_c:g} C")

    def seen(self) -> None:
        st = self.device.state
        self.battery_min = min(self.battery_min, st.level)
        self.max_status = max(self.max_status, int(st.thermal_status))

    def log(self, kind: str, note: str = "", **values: Any) -> None:
        st, m = self.device.state, self.manager
        self.rows.append({"kind": kind, "step": m.step, "time_s": st.time_s - self.start.time_s,
                          "lr": None, "loss": None, "level": st.level,
                          "temperature_c": st.temperature_c,
                          "thermal_status": st.thermal_status.name, "charging": st.charging,
                          "planned_total": m.planned_total, "seconds": None, "energy_j": None,
                          "note": str(note), **values})

    def result(self, stop_reason: str, acc_before: float | None, acc: float | None
               ) -> SessionResult:
        st, tail = self.device.state, self.losses[-10:]
        return SessionResult(
            steps=self.manager.step, sim_seconds=st.time_s - self.start.time_s,
            energy_j=self.energy, energy_total_j=self.device.ledger.consumed_j - self.consumed0,
            battery_j=self.device.profile.battery_j, battery_start=self.start.level,
            battery_end=st.level, battery_min=self.battery_min,
            battery_floor=self.manager.policy.battery_floor,
            max_thermal=ThermalStatus(self.max_status).name, stop_reason=str(stop_reason),
            final_loss=float(np.mean(tail)) if tail else None, accuracy_before=acc_before,
            accuracy=acc, rollbacks=self.rollbacks, rows=self.rows,
            plan_history=list(self.manager.plan_history))
