"""What the manager believes about the phone: its state, the ambient, the cost of a step and
the OS window, from what the caller reports and the steps run since."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import partial, reduce
from operator import add, truediv
from typing import Any

from mobile_lr.budget import AmbientEstimator, CostEstimator, Policy, StepCost
from mobile_lr.device import DeviceProfile, DeviceState, advance
from mobile_lr.validation import ValidationError, check_list, check_number

from .config import ManagerConfig

__all__ = ["DeviceBelief"]


#: One saved (load W, seconds) interval since the last report.
_SINCE = partial(check_list, item=partial(check_number, lo=0.0), length=2)


class DeviceBelief:
    """The believed device state: the last report, advanced by the steps run since (dead
    reckoning), with an ambient estimated where the phone cannot measure it; the learnt cost
    of a step; what the steps spent; the end of the OS window in force.

    A held step's observation is only appended to ``deferred`` (raw and flat: seconds, joules,
    throttle, three items a step, so that a fold splits them by slicing): the manager has
    checked that it leaves the hold as it is, so nothing reads its effect until someone asks
    for the estimator, the believed state or the spent totals; those fold the deferred
    observations first (:meth:`_fold`), the same operations in the same order as eager
    observations, so the same bits. A report replaces the dead reckoning: the observations
    deferred before it (the first ``_stale`` steps) are then still counted and learnt, in
    order, but not reckoned (their reckoning would be discarded)."""

    KEYS = ("window_end_s", "estimator", "ambient", "reported", "since", "device", "base")

    def __init__(self, profile: DeviceProfile, config: ManagerConfig,
                 state: DeviceState | None = None) -> None:
        self.profile = profile
        self._estimator = CostEstimator(
            StepCost.from_profile(profile), idle_power_w=profile.idle_power_w,
            window=config.estimator_window, min_observations=config.min_observations,
            prior_factor=config.prior_factor, margin=config.margin,
            unobserved_power_factor=config.unobserved_power_factor)
        self.deferred: list[float | None] = []   # held steps' observations, flat
        self._stale = 0   # steps of which were observed before the last report
        self._spent: dict[str, Any] = {"steps": 0, "seconds": 0.0, "energy_j": 0.0}
        # dead reckoning: the last report (or the initial state) advanced by the steps since as
        # one interval at their mean load, so the believed state costs one advance however many
        # steps ran without a report
        self._base = state if state is not None else DeviceState.initial(profile, 1.0)
        self._load = self._busy = 0.0     # mean load (W) and seconds of the steps since
        self._device: DeviceState | None = self._base   # the folded state (None: stale)
        self.ambient = AmbientEstimator(profile)
        self.reported: DeviceState | None = None     # the last state the caller reported
        self.window_end_s: float | None = None

    def fold(self) -> None:
        """Record the deferred observations, in order (see the class doc)."""
        deferred = self.deferred
        if deferred:
            items, stale = deferred.copy(), self._stale
            deferred.clear()
            self._stale = 0
            self._fold(items, stale)

    @property
    def estimator(self) -> CostEstimator:
        """The learnt cost of a step (with every observation recorded)."""
        if self.deferred:
            self.fold()
        return self._estimator

    @property
    def spent(self) -> dict[str, Any]:
        """Steps, seconds and joules observed so far (the manager's ``spent``)."""
        if self.deferred:
            self.fold()
        return self._spent

    @spent.setter
    def spent(self, value: dict[str, Any]) -> None:
        self.fold()
        self._spent = value

    @property
    def since(self) -> list[tuple[float, float]]:
        """The steps since the last report as (mean load W, seconds): one interval, or none."""
        if self.deferred:
            self.fold()
        return [(self._load, self._busy)] if self._busy > 0.0 else []

    @property
    def device(self) -> DeviceState:
        """The believed state: the last report advanced by the steps since (one interval at
        their mean load), folded when asked for."""
        if self.deferred:
            self.fold()
        if self._device is None:
            base = self._base
            end, _ = advance(self.profile, self._view(base), self._load, self._busy)
            self._device = DeviceState(end.level, end.charging, end.temperature_c,
                                       end.thermal_status, end.time_s, base.ambient_c)
        return self._device

    def update(self, state: DeviceState) -> None:
        """The device state the caller just read."""
        if not isinstance(state, DeviceState):
            raise ValidationError("state", f"expected a DeviceState, got {type(state).__name__}")
        if state.ambient_c is None and self.reported is not None:
            self.ambient.observe(self.reported, state, self.since)   # (since folds)
        self._stale = len(self.deferred) // 3
        self.reported = self._base = self._device = state
        self._load = self._busy = 0.0

    def view(self) -> DeviceState:
        """The state the planner uses: the ambient, when unknown, is the estimated one."""
        return self._view(self.device)

    def _view(self, d: DeviceState) -> DeviceState:
        if d.ambient_c is not None:
            return d
        return DeviceState(d.level, d.charging, d.temperature_c, d.thermal_status, d.time_s,
                           self.ambient.value)

    def begin_window(self, policy: Policy, now_s: float | None, length_s: float | None) -> None:
        now = self.device.time_s if now_s is None else float(now_s)
        if length_s is None:
            length_s = policy.window_s if policy.window_s is not None \
                else self.profile.window_for(self.device.charging)
        self.window_end_s = now + float(length_s)

    def step_end(self, cost: StepCost, view: DeviceState | None = None) -> DeviceState:
        """The predicted end of the next step at ``cost``, throttled by the status now."""
        p = self.profile
        m = p.throughput[self.device.thermal_status]
        end, _ = advance(p, view or self.view(), p.load_power(m, max(cost.power_w, p.idle_power_w)),
                         cost.seconds / m)
        return end

    def record(self, seconds: float | None, energy_j: float | None, throttle: float
               ) -> tuple[float, float | None] | None:
        """A step ran (after the deferred ones): count what it spent, learn its cost, and
        advance the believed state by it until the caller reports again. Returns what the
        estimator recorded (None: nothing, the step had no valid time, and the believed state
        does not move)."""
        if self.deferred:
            self.fold()
        return self._record(((seconds, energy_j, throttle),), 0)

    def _fold(self, items: list[Any], stale: int) -> None:
        """:meth:`_record` of held steps' observations (``items`` flat, as ``deferred``), in
        C-level passes where every step carries a valid energy (the common batch: then no
        step's load reads the estimate, so no pass depends on another): the totals are
        sequential sums (``reduce``: the same adds in the same order as the loop), the
        estimator takes the batch at once (:meth:`CostEstimator.observe_all`), and only the
        dead reckoning's mean load, a recurrence with a division, stays a loop (``_merge``).
        Any other batch takes the loop. (A held step's seconds are valid, ``0 < seconds <=
        seconds_keep``, and its throttle is a profile's, in ``(0, 1]``.)"""
        seconds, energies, throttles = items[0::3], items[1::3], items[2::3]
        spent = self._spent
        try:   # (a None among the energies raises TypeError)
            energy = reduce(add, map(float, energies), spent["energy_j"])
            valid = min(energies) > 0.0 and energy < math.inf   # each in (0, inf)
        except TypeError:
            valid = False
        if not valid:
            self._record(zip(seconds, energies, throttles, strict=True), stale)
            return
        spent["energy_j"] = energy
        spent["seconds"] = reduce(add, map(float, seconds), spent["seconds"])
        spent["steps"] += len(seconds)
        self._estimator.observe_all(seconds, energies, throttles)
        if stale < len(seconds):
            self._merge(map(truediv, energies[stale:], seconds[stale:]), seconds[stale:])

    def _record(self, items: Iterable[tuple[float | None, float | None, float]], stale: int
                ) -> tuple[float, float | None] | None:
        """:meth:`record` of each of ``items`` in order, the first ``stale`` not reckoned (a
        report since replaced the reckoning); what the estimator recorded of the last."""
        spent = self._spent
        energy, seconds_sum, steps = spent["energy_j"], spent["seconds"], spent["steps"]
        est = self._estimator
        observe, p = est.observe, self.profile
        loads: list[float] = []
        busy: list[float] = []
        observed = None
        for i, (seconds, energy_j, throttle) in enumerate(items):
            if energy_j is not None and math.isfinite(energy_j):
                energy += float(energy_j)
            steps += 1
            if seconds is None:
                observed = None
                continue
            seconds_sum += float(seconds)
            observed = observe(seconds, energy_j, throttle)
            if observed is None or i < stale:
                continue
            if observed[1] is not None:
                load = energy_j / seconds   # type: ignore[operator]  (observed: it is valid)
            else:   # (the estimate after this observation, before the next)
                cost = est.estimate()
                load = p.load_power(throttle, max(cost.power_w, p.idle_power_w))
            loads.append(load)
            busy.append(seconds)
        spent["energy_j"], spent["seconds"], spent["steps"] = energy, seconds_sum, steps
        self._merge(loads, busy)
        return observed

    def _merge(self, loads: Iterable[float], seconds: Sequence[float]) -> None:
        """Fold steps of ``loads`` (W) for ``seconds`` into the one interval since the report."""
        if not seconds:
            return
        mean, busy = self._load, self._busy
        for load, s in zip(loads, seconds, strict=True):
            total = busy + s
            mean = load if busy == 0.0 else (mean * busy + load * s) / total
            busy = total
        self._load, self._busy = mean, busy
        self._device = None

    def end_s(self, policy: Policy) -> float:
        """The end of the time budget: the OS window's, cut at the policy's deadline."""
        end = math.inf if self.window_end_s is None else self.window_end_s
        return end if policy.deadline_s is None else min(end, policy.deadline_s)

    def state_dict(self) -> dict[str, Any]:
        self.fold()
        return {"window_end_s": self.window_end_s, "estimator": self._estimator.state_dict(),
                "ambient": self.ambient.state_dict(),
                "reported": None if self.reported is None else self.reported.to_dict(),
                "since": [list(x) for x in self.since], "device": self.device.to_dict(),
                "base": None if self._base is self.reported else self._base.to_dict()}

    def load_state_dict(self, obj: Mapping[str, Any]) -> None:
        self.deferred.clear()
        self._stale = 0
        end = obj.get("window_end_s")
        self.window_end_s = None if end is None else check_number(end, "window_end_s")
        self._estimator.load_state_dict(obj.get("estimator"))
        self.ambient.load_state_dict(obj.get("ambient"))
        rep = obj.get("reported")
        self.reported = None if rep is None else DeviceState.from_dict(rep, "reported")
        self._load = self._busy = 0.0
        # one interval (older states: each step)
        since = check_list(obj.get("since", []), "since", _SINCE)
        self._merge([load for load, _ in since], [s for _, s in since])
        self._device = DeviceState.from_dict(obj.get("device"), "device")
        base = obj.get("base")
        if base is not None:
            self._base = DeviceState.from_dict(base, "base")
        elif self.reported is not None:
            self._base = self.reported
        else:   # a state written before "base": the folded state is the start
            self._base, self._load, self._busy = self._device, 0.0, 0.0
