"""The manager's loop as a trainer's callbacks need it, with no trainer imported.

A trainer owns the loop; the manager decides each step. :class:`ManagerDriver` is the part
both integrations share: before a step it asks the manager for a decision (telling it the
phone's state first), rests the phone through a ``Pause`` the way the app's worker does, and
after the step reports its time and energy. The trainer-specific callbacks only move the LR
into the optimizer, stop the trainer, and put :meth:`ManagerDriver.state_dict` into its
checkpoints.

The phone is anything with the three methods of :class:`Phone`; :class:`SimulatedPhone`
is :class:`mobile_lr.device.SimulatedDevice` behind them (a desktop run, or a test).

A ``Pause`` whose hint is at most ``max_wait_s`` is waited out in place (``phone.rest``):
the app's worker does the same when it stays in the foreground. A longer one, or one that
depends on the user (no hint: plug the charger in), ends the run as the app's worker ends
and is started again by the OS later: the trainer saves a checkpoint, and resuming from it
continues exactly where the manager stopped. ``Rollback`` needs the trainer to restore its
weights, which neither trainer lets a callback do, so the driver refuses the one
configuration that asks for it on purpose (the LR range test) and passes no loss to the
manager (the trainers guard against non-finite losses themselves).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any, Protocol

from mobile_lr.device import DeviceState, SimulatedDevice, ThermalStatus
from mobile_lr.manager import Pause, Rollback, Run, ScheduleManager, Stop
from mobile_lr.validation import ValidationError, check_number

__all__ = ["DRIVER_FORMAT", "ManagerDriver", "Phone", "SimulatedPhone"]

DRIVER_FORMAT = "mobile-lr.trainer-driver/1"
MIN_REST_S = 1.0  # a pause rests at least this long, so a zero hint cannot spin


class Phone(Protocol):
    """What the driver needs from the device training runs on."""

    def read(self) -> DeviceState:
        """The state now: battery level, charger, temperature, thermal status, clock."""
        ...

    def step_done(self, wall_seconds: float) -> tuple[float, float | None]:
        """A training step just ended after ``wall_seconds``: its (seconds, energy in J or None)."""
        ...

    def rest(self, seconds: float) -> None:
        """Stay idle ``seconds`` (cool down, charge)."""
        ...


class SimulatedPhone:
    """A :class:`SimulatedDevice` as a :class:`Phone`: every step costs the simulated time and energy."""

    def __init__(self, device: SimulatedDevice) -> None:
        self.device = device

    def read(self) -> DeviceState:
        return self.device.state

    def step_done(self, wall_seconds: float) -> tuple[float, float | None]:
        result = self.device.train_step()
        return result.seconds, result.energy_j

    def rest(self, seconds: float) -> None:
        self.device.idle(seconds)

    def state_dict(self) -> dict[str, Any]:
        return {k: (int(v) if isinstance(v, ThermalStatus) else v)
                for k, v in dataclasses.asdict(self.device.state).items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.device.state = DeviceState(**{**state, "thermal_status": ThermalStatus(state["thermal_status"])})


class ManagerDriver:
    """Decisions before each step, observations after it; see the module doc."""

    def __init__(self, manager: ScheduleManager, phone: Phone, *, max_wait_s: float = 600.0) -> None:
        if manager.config.range_test is not None:
            raise ValidationError("config.range_test", "the LR range test rolls the weights back, which "
                                  "a trainer callback cannot do", "null (run it with mobile-lr lr-find)")
        self.manager = manager
        self.phone = phone
        self.max_wait_s = check_number(max_wait_s, "max_wait_s", lo=0.0)
        self.lr: float | None = None        # the LR of the step about to run
        self.stop_reason: str | None = None
        self.pauses = 0
        self.rested_s = 0.0
        self.idle_steps = 0                 # trainer steps run after the run ended (at LR 0)
        self._started: float | None = None
        self._ratios: list[float] | None = None

    def apply_lr(self, optimizer: Any) -> None:
        """Put the decided LR in every param group of a torch optimizer (0 once the run has ended).

        Groups keep the ratio of their first LR to the first group's (``initial_lr`` when a
        scheduler recorded it), read once: a trainer's groups usually share one LR.
        """
        groups = optimizer.param_groups
        if self._ratios is None or len(self._ratios) != len(groups):
            starts = [float(g.get("initial_lr", g["lr"])) for g in groups]
            self._ratios = [s / starts[0] if starts[0] > 0 else 1.0 for s in starts]
        lr = 0.0 if self.lr is None else self.lr
        for group, ratio in zip(groups, self._ratios, strict=True):
            group["lr"] = lr * ratio

    def decide(self) -> float | None:
        """The LR of the next step, or ``None`` when the run ends (``stop_reason`` says why)."""
        m = self.manager
        while True:
            m.update_device(self.phone.read())
            decision = m.next()
            if isinstance(decision, Run):
                self.lr = decision.lr
                return self.lr
            if isinstance(decision, Pause):
                hint = decision.resume_hint
                if hint is None or hint > self.max_wait_s:
                    return self._end(f"paused:{decision.reason}")
                wait = max(hint, MIN_REST_S)
                self.phone.rest(wait)
                self.pauses += 1
                self.rested_s += wait
                continue
            if isinstance(decision, Rollback):  # refused at construction; a NaN loss is never passed
                raise RuntimeError(f"unexpected Rollback ({decision.reason}) in a trainer callback")
            assert isinstance(decision, Stop)
            return self._end(decision.reason)

    def _end(self, reason: str) -> None:
        self.lr, self.stop_reason = None, reason
        return None

    @property
    def trainer_steps(self) -> int:
        """Optimizer steps the trainer has run: the manager's, and the LR-0 ones after an end."""
        return self.manager.step + self.idle_steps

    def step_started(self) -> None:
        self._started = time.perf_counter()

    def step_done(self) -> None:
        """The step decided last has run: report its time and energy to the manager."""
        if self.lr is None:
            self.idle_steps += 1  # a step the trainer ran after the run ended (at LR 0): not the manager's
            return
        wall = 0.0 if self._started is None else time.perf_counter() - self._started
        seconds, energy = self.phone.step_done(wall)
        self.manager.observe(loss=None, step_seconds=seconds, energy_j=energy)
        self.lr = None

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON: the manager's state, the phone's when it has one, the driver's counters."""
        out: dict[str, Any] = {"format": DRIVER_FORMAT, "manager": self.manager.state_dict(),
                               "stop_reason": self.stop_reason, "pauses": self.pauses,
                               "rested_s": self.rested_s, "idle_steps": self.idle_steps}
        if hasattr(self.phone, "state_dict"):
            out["phone"] = self.phone.state_dict()
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != DRIVER_FORMAT:
            raise ValidationError("format", f"unknown driver state {state.get('format')!r}", DRIVER_FORMAT)
        self.manager.load_state_dict(state["manager"])
        if "phone" in state and hasattr(self.phone, "load_state_dict"):
            self.phone.load_state_dict(state["phone"])
        self.stop_reason = None  # a resumed run asks the manager again
        self.pauses, self.rested_s = int(state["pauses"]), float(state["rested_s"])
        self.idle_steps = int(state.get("idle_steps", 0))
        self.lr = None
