"""The schedule manager: the object a training loop talks to.

::

    decision = manager.next()        # Run(step, lr) | Pause(reason, resume_hint) | Stop(reason)
                                     # | Rollback(to_step, ...)
    loss = trainer.step(batch, lr=decision.lr)
    manager.observe(loss=loss, step_seconds=..., energy_j=...)
    manager.update_device(state)     # what the phone reads: battery, charger, temperature, status
    manager.state_dict() / ScheduleManager.from_state_dict(obj)   # plain JSON, exact resume

It combines a schedule (:mod:`mobile_lr.schedules`), the budget planner and the
user's policy. Before every step it plans (closed-form segments, tens of µs)
from the device state it was last told with a *pessimistic* per-step cost
(:meth:`mobile_lr.budget.CostEstimator.pessimistic`); it runs the step only if
the plan affords at least one, so it never starts a step whose predicted end is
below the battery floor or above the allowed thermal status. The planned total
``step + affordable`` is written into the schedule's plan history when it
differs from the one in force by more than ``remaining // replan_tolerance``
steps (any change near the end), so the schedule re-plans on real drift
(charger plugged or unplugged, throttling, a new OS window, a wrong profile
corrected by observations) and not on jitter, and the last step of a run that
ends because its budget ran out is the last step of the plan in force.

The decision logic uses integers and the planner's floats only; the Kotlin port
reproduces it from golden vectors. Decisions:

* ``Run(step, lr, phase)``: ``phase`` is ``"train"`` or ``"range-test"``.
* ``Pause(reason, resume_hint)``: reasons ``not-charging``, ``battery-low``,
  ``battery``, ``thermal``, ``window``, ``time``; the hint is seconds of rest
  after which the reason may have cleared (None if it depends on the user).
* ``Stop(reason, detail)``: ``done`` (the nominal steps are done), ``budget``
  (the run's budget is spent and the last Run was the last step of its plan),
  ``budget-cut`` (the budget vanished within one step, e.g. unplugged just
  above the floor), ``deadline``, ``diverged`` (too many non-finite losses).
* ``Rollback(to_step, lr_scale, failures, reason)``: restore the checkpoint the
  caller last reported with :meth:`ScheduleManager.mark_checkpoint` (or the
  initial weights for ``to_step == 0``), after a non-finite loss or at the end
  of the LR range test.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mobile_lr.bundle import Manifest
from mobile_lr.budget import (
    AmbientEstimator,
    CostEstimator,
    Plan,
    Policy,
    StepCost,
    effective_floor,
    plan,
    sustained_rate,
)
from mobile_lr.device import (
    DeviceProfile,
    DeviceState,
    advance,
    cool_down_seconds,
    load_profile,
)
from mobile_lr.schedules import Schedule, parse_spec
from mobile_lr.validation import (
    ValidationError,
    check_keys,
    get_int,
    get_number,
    get_object,
    join,
)

__all__ = [
    "PEAK_LR_POLICIES",
    "RECOMMENDED_AVERAGING",
    "RECOMMENDED_CONFIG",
    "RECOMMENDED_EMA",
    "Decision",
    "ManagerConfig",
    "Pause",
    "Rollback",
    "Run",
    "ScheduleManager",
    "Stop",
    "recommended_averaging",
    "recommended_runtime_options",
    "recommended_schedule",
    "register_peak_lr_policy",
]

STATE_FORMAT = "mobile-lr.manager-state/1"


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Run:
    step: int
    lr: float
    phase: str = "train"


@dataclass(frozen=True)
class Pause:
    reason: str
    resume_hint: float | None = None


@dataclass(frozen=True)
class Stop:
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Rollback:
    to_step: int
    lr_scale: float
    failures: int
    reason: str


Decision = Run | Pause | Stop | Rollback


# --------------------------------------------------------------------------- peak LR hook

# A peak-LR policy maps (planned total at the start of training, nominal total, params)
# to a factor on the schedule's LRs. Under a cut budget the peak LR matters (bench/README.md).
PeakLrFn = Callable[[int, int, Mapping[str, float]], float]


def _peak_none(planned: int, nominal: int, params: Mapping[str, float]) -> float:
    return 1.0


def _peak_budget_power(planned: int, nominal: int, params: Mapping[str, float]) -> float:
    """``min(max_factor, (nominal / planned) ** power)``: a higher peak for a short budget."""
    ratio = nominal / max(planned, 1)
    return min(params.get("max_factor", 3.0), max(1.0, ratio ** params.get("power", 0.5)))


PEAK_LR_POLICIES: dict[str, PeakLrFn] = {"none": _peak_none, "budget_power": _peak_budget_power}


def register_peak_lr_policy(name: str, fn: PeakLrFn) -> None:
    """Add a peak-LR-for-budget rule (the benchmark tunes them); select it by name in config."""
    PEAK_LR_POLICIES[name] = fn


# --------------------------------------------------------------------------- recommended set-up

# What bench/budget_quality measured best when the battery cuts a fine-tune short (bench/README.md
# "Quality under a cut budget", docs/DECISIONS.md): average the iterates (schedule-free AdamW
# where the runtime has it, else an EMA of the weights with a re-planned cool-down), and raise
# the peak LR when the first plan is short.

#: Iterate averaging per runtime kind: the PyTorch runtime trains with schedule-free AdamW
#: (evaluated at its average), ORT and ExecuTorch keep the bundle's optimizer with an EMA.
#: ORT can run schedule-free AdamW (``optimizer="schedulefree"``), but at the bundle's AdamW
#: base LR it trails the EMA set-up (docs/DECISIONS.md, "Schedule-free AdamW on ORT").
RECOMMENDED_AVERAGING: dict[str, str] = {"torch": "schedulefree", "ort": "ema", "executorch": "ema"}

#: The runtimes' ``ema=`` decay for the ``"ema"`` flavour (an EMA of 0.9 spans ~10 steps:
#: short enough for a 30-step budget; a longer one keeps too much of the pre-trained weights).
RECOMMENDED_EMA = 0.9

#: :class:`ManagerConfig` fields (JSON) to use with :func:`recommended_schedule`: the peak LR
#: is ``min(2.5, (nominal / first plan) ** 0.3)`` times ``base_lr`` (2x for a tenth of the plan).
RECOMMENDED_CONFIG: dict[str, Any] = {
    "peak_lr": {"type": "budget_power", "power": 0.3, "max_factor": 2.5}}


def recommended_averaging(runtime: str, manifest: Manifest | None = None) -> str:
    """The averaging flavour for ``runtime`` training the bundle of ``manifest`` (None: any bundle).

    :data:`RECOMMENDED_AVERAGING`, except that the ORT runtime builds schedule-free AdamW on
    the bundle's AdamW optimizer graph, so where ``"schedulefree"`` is chosen for ORT an SGD
    or LR-dropout bundle gets the EMA there.

    >>> recommended_averaging("torch")
    'schedulefree'
    >>> recommended_averaging("ort")
    'ema'
    """
    if runtime not in RECOMMENDED_AVERAGING:
        raise ValidationError("runtime", f"unknown value {runtime!r}", ", ".join(RECOMMENDED_AVERAGING))
    averaging = RECOMMENDED_AVERAGING[runtime]
    if runtime != "ort" or averaging != "schedulefree" or manifest is None:
        return averaging
    return averaging if manifest.plain_adamw else "ema"


def recommended_runtime_options(averaging: str) -> dict[str, Any]:
    """Keyword arguments for :func:`mobile_lr.runtime.open_runtime` of that averaging flavour."""
    if averaging == "schedulefree":
        return {"optimizer": "schedulefree"}
    if averaging == "ema":
        return {"ema": RECOMMENDED_EMA}
    raise ValidationError("averaging", f"unknown value {averaging!r}", "schedulefree, ema")


def recommended_schedule(base_lr: float, averaging: str = "ema") -> dict[str, Any]:
    """The recommended schedule spec for a fine-tune whose budget the battery decides.

    Both flavours warm up for at most 5 steps (never more than 5 % of the first plan).
    ``"ema"``: then the peak is held and a linear cool-down to 0 runs over the last 20 % of
    the budget in force after the warm-up (budget mode ``wsd``: a budget cut moves the
    cool-down; steps already held at the peak are never re-decayed); for a plan of 300,
    warm-up 0..4, cool-down over steps 241..299. ``"schedulefree"``: then the LR stays at
    the peak (the optimizer's own averaging does what the cool-down does).

    >>> from mobile_lr.schedules import parse_spec
    >>> s = parse_spec(recommended_schedule(0.01))
    >>> [round(s.lr(t, [(0, 300)]), 6) for t in (0, 5, 241, 270, 300)]
    [0.001, 0.01, 0.01, 0.005085, 0.0]
    >>> sf = parse_spec(recommended_schedule(0.01, "schedulefree"))
    >>> [round(sf.lr(t, [(0, 300)]), 6) for t in (0, 5, 299)]
    [0.001, 0.01, 0.01]
    """
    recommended_runtime_options(averaging)  # validates the flavour
    spec: dict[str, Any] = {"format": "mobile-lr.schedule/1", "base_lr": base_lr,
                            "warmup": {"steps": 5, "start_factor": 0.1, "max_fraction": 0.05}}
    if averaging == "schedulefree":
        spec["shape"] = {"type": "constant", "factor": 1.0}
    else:
        spec["shape"] = {"type": "linear", "start_factor": 1.0, "end_factor": 0.0}
        spec["budget"] = {"mode": "wsd", "decay_fraction": 0.2}
    return spec


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class RangeTestConfig:
    """Smith's LR range test, run once before the schedule starts.

    It takes ``floor(fraction · budget)`` steps (budget = the first plan's steps),
    at most ``max_steps``, and is skipped when that is below ``min_steps``. LR
    ``i`` is ``base·start_factor·(end_factor/start_factor)^(i/(n-1))``; the loss is
    smoothed by a debiased EMA (``smoothing`` = β, as fastai's AvgSmoothLoss); the
    sweep stops early when the smoothed loss exceeds ``diverge_factor ×`` its best
    or a loss is not finite; the chosen LR is the one at the steepest descent
    (``argmin`` of the central-difference gradient of the smoothed loss, first
    ``skip_start`` fraction of points skipped, as pytorch-lr-finder's suggestion).
    """

    fraction: float = 0.05
    min_steps: int = 10
    max_steps: int = 100
    start_factor: float = 1e-3
    end_factor: float = 10.0
    smoothing: float = 0.8
    diverge_factor: float = 4.0
    skip_start: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ManagerConfig:
    """Stated numbers of the manager (all JSON).

    * ``nominal_steps``: the run's full length (default: the schedule's total_steps).
    * ``prior_factor``, ``margin``, ``unobserved_power_factor``, ``estimator_window``,
      ``min_observations``: the cost estimator (see :class:`CostEstimator`).
    * ``replan_tolerance``: a new planned total is recorded when it differs from
      the one in force by more than ``remaining // replan_tolerance`` steps.
    * ``nan_lr_factor``, ``max_failures``: on a non-finite loss, roll back and
      multiply the LR by the factor; the ``max_failures + 1``-th failure stops the run.
    * ``resume_gap_c``: after a thermal pause, resume once the temperature is this
      far below the planner's limit.
    * ``range_test``: a :class:`RangeTestConfig`, or None (off).
    * ``peak_lr``: ``{"type": name, ...params}`` of a :data:`PEAK_LR_POLICIES` entry.
    """

    nominal_steps: int | None = None
    prior_factor: float = 3.0
    margin: float = 0.1
    unobserved_power_factor: float = 1.5
    estimator_window: int = 15
    min_observations: int = 3
    replan_tolerance: int = 20
    nan_lr_factor: float = 0.5
    max_failures: int = 3
    resume_gap_c: float = 1.0
    range_test: RangeTestConfig | None = None
    peak_lr: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("range_test", "peak_lr")}
        out["range_test"] = None if self.range_test is None else self.range_test.to_dict()
        out["peak_lr"] = dict(self.peak_lr) if self.peak_lr is not None else {"type": "none"}
        return out

    @classmethod
    def from_dict(cls, obj: Any, path: str = "config") -> ManagerConfig:
        obj = get_object(obj, path)
        names = [f for f in cls.__dataclass_fields__]
        check_keys(obj, path, names)
        kw: dict[str, Any] = {}
        if obj.get("nominal_steps") is not None:
            kw["nominal_steps"] = get_int(obj, "nominal_steps", path, lo=1)
        for key, lo in (("prior_factor", 1.0), ("unobserved_power_factor", 1.0)):
            kw[key] = get_number(obj, key, path, default=getattr(cls, key), lo=lo)
        kw["margin"] = get_number(obj, "margin", path, default=cls.margin, lo=0.0)
        kw["resume_gap_c"] = get_number(obj, "resume_gap_c", path, default=cls.resume_gap_c,
                                        lo=0.0)
        kw["nan_lr_factor"] = get_number(obj, "nan_lr_factor", path, default=cls.nan_lr_factor,
                                         lo=0.0, hi=1.0, lo_open=True)
        kw["estimator_window"] = get_int(obj, "estimator_window", path,
                                         default=cls.estimator_window, lo=1)
        kw["min_observations"] = get_int(obj, "min_observations", path,
                                         default=cls.min_observations, lo=1,
                                         hi=kw["estimator_window"])
        kw["replan_tolerance"] = get_int(obj, "replan_tolerance", path,
                                         default=cls.replan_tolerance, lo=1)
        kw["max_failures"] = get_int(obj, "max_failures", path, default=cls.max_failures, lo=0)
        rt = obj.get("range_test")
        if rt is not None:
            kw["range_test"] = _parse_range_test(rt, join(path, "range_test"))
        peak = obj.get("peak_lr")
        if peak is not None:
            kw["peak_lr"] = _parse_peak(peak, join(path, "peak_lr"))
        return cls(**kw)


def _parse_range_test(obj: Any, path: str) -> RangeTestConfig:
    obj = get_object(obj, path)
    check_keys(obj, path, list(RangeTestConfig.__dataclass_fields__))
    d = RangeTestConfig()
    fraction = get_number(obj, "fraction", path, default=d.fraction, lo=0.0, hi=0.5,
                          lo_open=True)
    min_steps = get_int(obj, "min_steps", path, default=d.min_steps, lo=3)
    max_steps = get_int(obj, "max_steps", path, default=d.max_steps, lo=min_steps)
    start = get_number(obj, "start_factor", path, default=d.start_factor, lo=0.0, lo_open=True)
    end = get_number(obj, "end_factor", path, default=d.end_factor, lo=start, lo_open=True)
    return RangeTestConfig(
        fraction=fraction, min_steps=min_steps, max_steps=max_steps, start_factor=start,
        end_factor=end,
        smoothing=get_number(obj, "smoothing", path, default=d.smoothing, lo=0.0, hi=1.0,
                             hi_open=True),
        diverge_factor=get_number(obj, "diverge_factor", path, default=d.diverge_factor,
                                  lo=1.0, lo_open=True),
        skip_start=get_number(obj, "skip_start", path, default=d.skip_start, lo=0.0, hi=0.5))


def _parse_peak(obj: Any, path: str) -> dict[str, Any]:
    obj = get_object(obj, path)
    name = obj.get("type", "none")
    if name not in PEAK_LR_POLICIES:
        raise ValidationError(join(path, "type"), f"unknown peak-LR policy {name!r}",
                              ", ".join(sorted(PEAK_LR_POLICIES)))
    out: dict[str, Any] = {"type": name}
    for key in obj:
        if key != "type":
            out[key] = get_number(obj, key, path)
    return out


# --------------------------------------------------------------------------- manager


class ScheduleManager:
    """Schedule + planner + policy, driven one decision at a time. See the module doc."""

    def __init__(self, schedule: Schedule | Mapping[str, Any], profile: DeviceProfile | str,
                 policy: Policy | Mapping[str, Any] | None = None,
                 config: ManagerConfig | Mapping[str, Any] | None = None,
                 state: DeviceState | None = None):
        self.schedule = schedule if isinstance(schedule, Schedule) else parse_spec(schedule)
        self.profile = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
        self.policy = policy if isinstance(policy, Policy) else (
            Policy() if policy is None else Policy.from_dict(policy))
        self.config = config if isinstance(config, ManagerConfig) else (
            ManagerConfig() if config is None else ManagerConfig.from_dict(config))
        nominal = self.config.nominal_steps or self.schedule.total_steps
        if nominal is None:
            raise ValidationError("config.nominal_steps", "the run's length is unknown",
                                  "nominal_steps in the config or total_steps in the schedule")
        self.nominal_steps: int = int(nominal)
        c = self.config
        self.estimator = CostEstimator(
            StepCost.from_profile(self.profile), idle_power_w=self.profile.idle_power_w,
            window=c.estimator_window, min_observations=c.min_observations,
            prior_factor=c.prior_factor, margin=c.margin,
            unobserved_power_factor=c.unobserved_power_factor)
        self.device: DeviceState = state if state is not None else DeviceState.initial(
            self.profile, 1.0)
        self.ambient = AmbientEstimator(self.profile)
        self._reported: DeviceState | None = None   # last state the caller reported
        self._since: list[tuple[float, float]] = []  # (load W, s) of steps since then
        self.step = 0                       # training steps done (the schedule's t)
        self.plan_history: list[tuple[int, int]] = []
        self.nan_scale = 1.0
        self.range_scale = 1.0
        self.peak_factor: float | None = None
        self.failures = 0
        self.last_good_step = 0
        self.window_end_s: float | None = None
        self.pending: dict[str, Any] | None = None    # the Run issued, until observed
        self.pending_rollback: Rollback | None = None
        self.stopped: Stop | None = None
        self.last_run_total: int | None = None
        self.plateau_state = self.schedule.plateau_start() if self.schedule.is_plateau else None
        self.range_test: dict[str, Any] = {"status": "off" if c.range_test is None else "pending"}
        self.spent = {"steps": 0, "seconds": 0.0, "energy_j": 0.0}
        self.last_plan: Plan | None = None
        self.predicted_end: DeviceState | None = None

    # ------------------------------------------------------------------ caller inputs
    def update_device(self, state: DeviceState) -> None:
        """The device state the caller just read (simulator, or BatteryManager + PowerManager)."""
        if not isinstance(state, DeviceState):
            raise ValidationError("state", f"expected a DeviceState, got {type(state).__name__}")
        if state.ambient_c is None and self._reported is not None:
            self.ambient.observe(self._reported, state, self._since)
        self._reported, self._since = state, []
        self.device = state

    def _view(self) -> DeviceState:
        """The state the planner uses: the ambient, when unknown, is the estimated one."""
        if self.device.ambient_c is not None:
            return self.device
        return DeviceState(self.device.level, self.device.charging, self.device.temperature_c,
                           self.device.thermal_status, self.device.time_s, self.ambient.value)

    def begin_window(self, now_s: float | None = None, length_s: float | None = None) -> None:
        """A new OS window (a Worker started): the session's time budget restarts."""
        now = self.device.time_s if now_s is None else float(now_s)
        if length_s is None:
            length_s = self.policy.window_s if self.policy.window_s is not None \
                else self.profile.window_for(self.device.charging)
        self.window_end_s = now + float(length_s)

    def mark_checkpoint(self) -> None:
        """The caller saved the model as it is after ``step`` training steps (call it between
        ``observe`` and the next step); a rollback returns there."""
        if self.pending_rollback is None and self.range_test["status"] not in ("running",):
            self.last_good_step = self.step

    def observe(self, loss: float | None = None, step_seconds: float | None = None,
                energy_j: float | None = None) -> None:
        """Report the outcome of the Run just issued."""
        if self.pending is None:
            raise ValueError("observe() without a Run to observe")
        run, self.pending = self.pending, None
        throttle = self.profile.throughput[run["status"]]
        if step_seconds is not None:
            self.estimator.observe(step_seconds, energy_j, throttle)
            self._dead_reckon(step_seconds, energy_j, throttle)
            self.spent["seconds"] += float(step_seconds)
        if energy_j is not None and math.isfinite(energy_j):
            self.spent["energy_j"] += float(energy_j)
        self.spent["steps"] += 1
        finite = loss is None or math.isfinite(loss)
        if run["phase"] == "range-test":
            self._range_observe(loss if loss is not None else math.nan)
            return
        if not finite:
            self.failures += 1
            if self.failures > self.config.max_failures:
                self.stopped = Stop("diverged", f"{self.failures} non-finite losses")
                return
            self.nan_scale *= self.config.nan_lr_factor
            self.pending_rollback = Rollback(self.last_good_step, self.nan_scale, self.failures,
                                             "non-finite loss")
            return
        self.step += 1

    def observe_eval(self, metric: float) -> None:
        """An evaluation metric for a ``plateau`` schedule (ignored by other shapes)."""
        if self.plateau_state is not None and math.isfinite(metric):
            self.plateau_state = self.schedule.plateau_observe(self.plateau_state, metric)

    def _dead_reckon(self, seconds: float, energy_j: float | None, throttle: float) -> None:
        """Advance the believed state by the step just done, until the caller updates it."""
        if not (math.isfinite(seconds) and seconds > 0.0):
            return
        if energy_j is not None and math.isfinite(energy_j) and energy_j > 0.0:
            load = energy_j / seconds
        else:
            cost = self.estimator.estimate()
            load = self.profile.idle_power_w + (max(cost.power_w, self.profile.idle_power_w)
                                                - self.profile.idle_power_w) * throttle
        self._since.append((load, seconds))
        end, _ = advance(self.profile, self._view(), load, seconds)
        self.device = DeviceState(end.level, end.charging, end.temperature_c, end.thermal_status,
                                  end.time_s, self.device.ambient_c)

    # ------------------------------------------------------------------ decisions
    @property
    def lr_scale(self) -> float:
        """Factor on the schedule's LRs: range test × peak-LR policy × NaN cuts."""
        return self.range_scale * (self.peak_factor or 1.0) * self.nan_scale

    @property
    def planned_total(self) -> int | None:
        return self.plan_history[-1][1] if self.plan_history else None

    def lr_at(self, t: int) -> float:
        """The LR the current plan history gives step ``t`` (no side effects)."""
        hist = self.plan_history or [(0, self.nominal_steps)]
        return self.schedule.lr(t, hist, self.plateau_state) * self.lr_scale

    def next(self) -> Decision:
        """The next decision; see the module docstring."""
        self.predicted_end = None
        if self.stopped is not None:
            return self.stopped
        if self.pending_rollback is not None:
            return self._apply_rollback()
        if self.step >= self.nominal_steps:
            return self._stop(Stop("done"))
        now = self.device.time_s
        if self.policy.deadline_s is not None and now >= self.policy.deadline_s:
            return self._stop(Stop("deadline"))
        if self.window_end_s is None:
            self.begin_window()
        session = self._plan(self.nominal_steps - self.step)
        budget = self._run_budget(session)
        if self.range_test["status"] in ("pending", "running"):
            decision = self._range_next(session, budget)
            if decision is not None:
                return decision
            if self.pending_rollback is not None:
                return self._apply_rollback()
        self._record_total(self.step + min(budget, self.nominal_steps - self.step))
        if session.steps == 0:
            return self._no_step(session, budget)
        if self.peak_factor is None:
            rule = dict(self.config.peak_lr or {"type": "none"})
            fn = PEAK_LR_POLICIES[rule.pop("type")]
            self.peak_factor = float(fn(self.planned_total or 1, self.nominal_steps, rule))
        lr = self.lr_at(self.step)
        if not (math.isfinite(lr) and lr >= 0.0):  # a valid spec never yields this
            return self._stop(Stop("diverged", f"schedule gave LR {lr!r}"))
        self.last_run_total = self.planned_total
        self.pending = {"phase": "train", "step": self.step, "lr": lr,
                        "status": int(self.device.thermal_status)}
        return Run(self.step, lr)

    def _run_budget(self, session: Plan) -> int:
        """Steps the run can still expect: this session's plus those after it (deadline, or
        after a thermal pause in the same window)."""
        budget = session.steps + self._later_steps(session)
        if session.steps > 0 and not self.estimator.warm:
            # Calibration: the gate used the pessimistic prior (it must hold for any true
            # cost within the prior factor), but sizing the schedule on it would spend the
            # first steps' LR decay far too fast. Size it on the profile's own numbers until
            # `min_observations` steps have been measured.
            sizing = self._plan(self.nominal_steps - self.step, self.estimator.estimate())
            budget = max(sizing.steps + self._later_steps(sizing), 1)
        return budget

    def _plan(self, max_steps: int, cost: StepCost | None = None) -> Plan:
        """Plan the session from the believed state; the gate plan (pessimistic cost) also
        records the predicted end of the next step."""
        budget = None
        if self.window_end_s is not None:
            budget = self.window_end_s - self.device.time_s
        gate = cost is None
        cost = self.estimator.pessimistic() if cost is None else cost
        result = plan(self.profile, self._view(), self.policy, cost, max_steps=max_steps,
                      time_budget_s=budget)
        if gate:
            self.last_plan = result
            if result.steps >= 1:
                self.predicted_end = self._one_step(cost)
        return result

    def _one_step(self, cost: StepCost) -> DeviceState:
        """Predicted end of the next step at the pessimistic cost (what the gate checked)."""
        p = self.profile
        m = p.throughput[self.device.thermal_status]
        load = p.idle_power_w + (max(cost.power_w, p.idle_power_w) - p.idle_power_w) * m
        end, _ = advance(p, self._view(), load, cost.seconds / m)
        return end

    def _later_steps(self, session: Plan) -> int:
        """Steps expected after this session's plan, before the run ends.

        Horizon ``"deadline"``: until the deadline, the time after this session counting
        ``window / (window + gap)``. Horizon ``"session"``, when the plan stops at the thermal
        limit: until the end of the current window (or the deadline if earlier), after the
        cool-down from the plan's end to the resume temperature, so a phone that may pause to
        cool and go on in the same window is not stopped (and its schedule anneals by then).
        Both: at the sustained rate, at most the battery spare above the floor.
        """
        if session.limiting_factor == "none":
            return 0
        cost = self.estimator.pessimistic()
        charging = self.device.charging or self.policy.charging_only
        view = self._view()
        if self.policy.horizon == "deadline" and self.policy.deadline_s is not None:
            left = self.policy.deadline_s - self.device.time_s - session.seconds
            window = self.policy.window_s if self.policy.window_s is not None \
                else self.profile.window_for(charging)
            left *= window / (window + self.policy.window_gap_s)
        elif session.limiting_factor == "thermal" and self.window_end_s is not None:
            end = self.window_end_s
            if self.policy.deadline_s is not None:
                end = min(end, self.policy.deadline_s)
            hot = DeviceState(session.end_level, self.device.charging,
                              session.end_temperature_c, session.end_status, 0.0,
                              view.ambient_c)
            target = self.policy.thermal_limit_c(self.profile) - self.config.resume_gap_c
            left = end - self.device.time_s - session.seconds - cool_down_seconds(
                self.profile, hot, target)
        else:
            return 0
        rate = sustained_rate(self.profile, self.policy, cost, charging=charging,
                              ambient_c=view.ambient_c)
        by_time = math.floor(max(0.0, left) * rate)
        # battery drained per step: the whole step's energy, less what a charger delivers
        drain = cost.joules
        if charging:
            drain -= self.profile.charge_efficiency * self.profile.charge_power_w * cost.seconds
        if drain <= 0.0:
            return by_time
        floor = effective_floor(self.profile, self.policy, charging)
        spare = (session.end_level - floor) * self.profile.battery_j
        return min(by_time, math.floor(max(0.0, spare) / drain))

    def _record_total(self, total: int) -> None:
        """Write a new planned total into the plan history if it moved beyond the tolerance."""
        if not self.plan_history:
            self.plan_history.append((0, total))  # a plan history starts at step 0
            return
        current = self.plan_history[-1][1]
        remaining = max(0, total - self.step)
        if abs(total - current) <= remaining // self.config.replan_tolerance:
            return
        if self.plan_history[-1][0] == self.step:
            # no step ran under the entry in force: amend it (same meaning, shorter history)
            self.plan_history[-1] = (self.step, total)
        else:
            self.plan_history.append((self.step, total))

    def _no_step(self, session: Plan, budget: int) -> Decision:
        """No step is affordable now: pause, or stop if the run's budget is spent."""
        reason = _pause_reason(session)
        if budget > 0 or self.last_run_total is None:
            return Pause(reason, self._resume_hint(reason))  # more later, or nothing ran yet
        if self.last_run_total == self.step:
            return self._stop(Stop("budget", session.limiting_factor))
        return self._stop(Stop("budget-cut", session.detail or session.limiting_factor))

    def _resume_hint(self, reason: str) -> float | None:
        st, p = self._view(), self.profile
        if reason == "thermal":
            target = self.policy.thermal_limit_c(p) - self.config.resume_gap_c
            hint = cool_down_seconds(p, st, target)
            return hint if math.isfinite(hint) else None
        if reason == "battery" and st.charging:
            rate = (p.charge_efficiency * p.charge_power_w - p.idle_power_w) / p.battery_j
            if rate > 0.0:
                return max(0.0, (self.policy.battery_floor - st.level) / rate)
        return None

    def _stop(self, stop: Stop) -> Stop:
        self.stopped = stop
        return stop

    def _apply_rollback(self) -> Rollback:
        rb, self.pending_rollback = self.pending_rollback, None
        assert rb is not None
        self.step = rb.to_step
        kept = [(t, total) for t, total in self.plan_history if t <= rb.to_step]
        self.plan_history = kept
        self.last_run_total = None if not kept else self.last_run_total
        return rb

    # ------------------------------------------------------------------ LR range test
    def _range_next(self, session: Plan, budget: int) -> Decision | None:
        rt = self.config.range_test
        state = self.range_test
        assert rt is not None
        if state["status"] == "pending":
            n = min(rt.max_steps, math.floor(rt.fraction * min(budget, self.nominal_steps)))
            if n < rt.min_steps:
                if session.steps == 0:
                    return Pause(_pause_reason(session), self._resume_hint(
                        _pause_reason(session)))
                self.range_test = {"status": "skipped", "steps": n}
                return None
            self.range_test = state = {"status": "running", "n": n, "lrs": [], "smooth": [],
                                       "avg": 0.0, "best": None}
        i = len(state["smooth"])
        if session.steps == 0:
            if i >= rt.min_steps:
                self._range_finish("budget")
                return None
            return Pause(_pause_reason(session), self._resume_hint(_pause_reason(session)))
        n = state["n"]
        lo = self.schedule.base_lr * rt.start_factor
        lr = lo * (rt.end_factor / rt.start_factor) ** (i / (n - 1))
        self.pending = {"phase": "range-test", "step": i, "lr": lr,
                        "status": int(self.device.thermal_status)}
        state["lrs"] = [*state["lrs"][:i], lr]
        return Run(i, lr, "range-test")

    def _range_observe(self, loss: float) -> None:
        rt = self.config.range_test
        state = self.range_test
        assert rt is not None
        if not math.isfinite(loss):
            state["lrs"].pop()
            self._range_finish("diverged")
            return
        beta = rt.smoothing
        state["avg"] = beta * state["avg"] + (1.0 - beta) * loss
        smooth = state["avg"] / (1.0 - beta ** (len(state["smooth"]) + 1))
        state["smooth"].append(smooth)
        best = state["best"]
        if best is None or smooth < best:
            state["best"] = best = smooth
        if smooth > rt.diverge_factor * best:
            self._range_finish("diverged")
        elif len(state["smooth"]) >= state["n"]:
            self._range_finish("complete")

    def _range_finish(self, how: str) -> None:
        rt = self.config.range_test
        state = self.range_test
        assert rt is not None
        smooth, lrs = state["smooth"], state["lrs"]
        chosen = pick_steepest(smooth, rt.skip_start)
        scale = 1.0 if chosen is None else lrs[chosen] / self.schedule.base_lr
        self.range_scale = scale
        self.range_test = {"status": "done", "how": how, "points": len(smooth),
                           "chosen_index": chosen, "chosen_lr": None if chosen is None
                           else lrs[chosen], "scale": scale}
        self.pending_rollback = Rollback(0, self.nan_scale, self.failures, "range-test")

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly, as plain JSON (with the inputs)."""
        return json.loads(json.dumps({
            "format": STATE_FORMAT,
            "schedule": self.schedule.to_dict(),
            "profile": self.profile.to_dict(),
            "policy": self.policy.to_dict(),
            "config": self.config.to_dict(),
            "step": self.step,
            "plan_history": [list(p) for p in self.plan_history],
            "nan_scale": self.nan_scale,
            "range_scale": self.range_scale,
            "peak_factor": self.peak_factor,
            "failures": self.failures,
            "last_good_step": self.last_good_step,
            "window_end_s": self.window_end_s,
            "pending": self.pending,
            "pending_rollback": None if self.pending_rollback is None
            else self.pending_rollback.__dict__,
            "stopped": None if self.stopped is None else self.stopped.__dict__,
            "last_run_total": self.last_run_total,
            "plateau_state": self.plateau_state,
            "range_test": self.range_test,
            "spent": self.spent,
            "estimator": self.estimator.state_dict(),
            "ambient": self.ambient.state_dict(),
            "reported": None if self._reported is None else self._reported.to_dict(),
            "since": [list(x) for x in self._since],
            "device": self.device.to_dict(),
        }))

    def load_state_dict(self, obj: Mapping[str, Any]) -> None:
        """Restore the mutable state saved by :meth:`state_dict` (same inputs assumed)."""
        obj = get_object(obj, "")
        if obj.get("format") != STATE_FORMAT:
            raise ValidationError("format", f"unknown manager state {obj.get('format')!r}",
                                  STATE_FORMAT)
        self.step = get_int(obj, "step", "", lo=0)
        hist = obj.get("plan_history", [])
        self.plan_history = [(int(t), int(total)) for t, total in hist]
        self.nan_scale = get_number(obj, "nan_scale", "", lo=0.0, lo_open=True)
        self.range_scale = get_number(obj, "range_scale", "", lo=0.0, lo_open=True)
        pf = obj.get("peak_factor")
        self.peak_factor = None if pf is None else get_number(obj, "peak_factor", "", lo=0.0,
                                                              lo_open=True)
        self.failures = get_int(obj, "failures", "", lo=0)
        self.last_good_step = get_int(obj, "last_good_step", "", lo=0)
        self.window_end_s = obj.get("window_end_s")
        self.pending = None if obj.get("pending") is None else dict(obj["pending"])
        rb = obj.get("pending_rollback")
        self.pending_rollback = None if rb is None else Rollback(**rb)
        st = obj.get("stopped")
        self.stopped = None if st is None else Stop(**st)
        self.last_run_total = obj.get("last_run_total")
        self.plateau_state = obj.get("plateau_state")
        self.range_test = json.loads(json.dumps(obj["range_test"]))
        self.spent = dict(obj["spent"])
        self.estimator.load_state_dict(obj["estimator"])
        self.ambient.load_state_dict(obj["ambient"])
        rep = obj.get("reported")
        self._reported = None if rep is None else DeviceState.from_dict(rep, "reported")
        self._since = [(float(a), float(b)) for a, b in obj.get("since", [])]
        self.device = DeviceState.from_dict(obj["device"], "device")

    @classmethod
    def from_state_dict(cls, obj: Mapping[str, Any]) -> ScheduleManager:
        """A manager rebuilt entirely from :meth:`state_dict` (schedule, profile, policy too)."""
        obj = get_object(obj, "")
        check_keys(obj, "", ("format", "schedule", "profile", "policy", "config", "step",
                             "plan_history", "nan_scale", "range_scale", "peak_factor",
                             "failures", "last_good_step", "window_end_s", "pending",
                             "pending_rollback", "stopped", "last_run_total", "plateau_state",
                             "range_test", "spent", "estimator", "ambient", "reported",
                             "since", "device"))
        mgr = cls(parse_spec(obj["schedule"]), DeviceProfile.from_dict(obj["profile"], "profile"),
                  Policy.from_dict(obj["policy"], "policy"),
                  ManagerConfig.from_dict(obj["config"], "config"))
        mgr.load_state_dict(obj)
        return mgr


def _pause_reason(session: Plan) -> str:
    if session.detail == "not charging":
        return "not-charging"
    if session.detail == "battery low":
        return "battery-low"
    if session.limiting_factor == "time":
        return "window"
    if session.limiting_factor == "none":
        return "done"
    return session.limiting_factor


def pick_steepest(smooth: list[float], skip_start: float) -> int | None:
    """Index of the steepest descent of a smoothed loss curve (None if too short).

    Central differences inside, one-sided at the ends (``numpy.gradient``);
    the first ``floor(skip_start · n)`` points (at least one) are skipped; ties
    go to the lowest index, so the Kotlin port picks the same point.
    """
    n = len(smooth)
    skip = max(1, math.floor(skip_start * n))
    if n - skip < 3:
        return None
    best_i, best_g = None, math.inf
    for i in range(skip, n):
        g = smooth[i] - smooth[i - 1] if i == n - 1 else (smooth[i + 1] - smooth[i - 1]) / 2.0
        if g < best_g:
            best_i, best_g = i, g
    return best_i if best_g < 0.0 else None

