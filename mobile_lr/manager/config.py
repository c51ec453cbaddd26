"""The manager's stated numbers, declared once (constructor, JSON, JSON Schema):
:class:`ManagerConfig` and the LR range test's :class:`RangeTestConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mobile_lr.validation import check_int, check_number
from mobile_lr.validation.schema import Record, choice, custom, integer, nested, number

from .peak import parse_peak_lr

__all__ = ["HORIZONS", "DivergenceConfig", "ManagerConfig", "RangeTestConfig"]

#: What :attr:`ManagerConfig.schedule_horizon` may say.
HORIZONS = ("plan", "battery")


@dataclass(frozen=True, kw_only=True)
class RangeTestConfig(Record):
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

    PATH = "range_test"

    fraction: float = number(0.05, lo=0.0, hi=0.5, lo_open=True,
                             help="share of the first plan's steps the sweep takes")
    min_steps: int = integer(10, lo=3, help="fewer steps than this: the test is skipped")
    max_steps: int = integer(100, help="at most this many steps (>= min_steps)")
    # the sweep spans at most 1e-12..1e6 x base LR: beyond, the ratio overflows (1e-320 .. 10 is
    # inf) or the LRs are no training's (lr-find --end-factor 1e23 swept to 10^21)
    start_factor: float = number(1e-3, lo=1e-12, hi=1e6, hi_open=True, help="first LR / base LR")
    end_factor: float = number(10.0, hi=1e6, help="last LR / base LR (> start_factor)")
    smoothing: float = number(0.8, lo=0.0, hi=1.0, hi_open=True,
                              help="beta of the debiased EMA of the loss")
    diverge_factor: float = number(4.0, lo=1.0, lo_open=True,
                                   help="stop when the smoothed loss exceeds this x its best")
    skip_start: float = number(0.1, lo=0.0, hi=0.5,
                               help="share of the first points the pick skips")

    def check(self) -> None:
        check_int(self.max_steps, "max_steps", lo=self.min_steps)
        check_number(self.end_factor, "end_factor", lo=self.start_factor, lo_open=True)


@dataclass(frozen=True, kw_only=True)
class DivergenceConfig(Record):
    """A divergence that is not a NaN: a loss that climbs and stays up (a peak LR too high for
    the task trains to chance with every loss finite).

    The training losses are smoothed by a debiased EMA (``smoothing`` = beta); a step is
    *diverging* when the smoothed loss is above ``factor ×`` its running minimum and above
    its first value (where the fine-tune started: a healthy fine-tune does not end up above
    it). ``patience`` diverging steps in a row are a failure, handled as a non-finite loss
    is: a rollback to the last checkpoint taken while no step was diverging, the LR cut by
    ``lr_factor``, counted with them against ``max_failures`` (the last failure rolls back
    too, then stops the run: it ends at the checkpoint, not at the diverged weights).
    """

    PATH = "divergence"

    factor: float = number(2.0, lo=1.0, lo_open=True,
                           help="diverging: the smoothed loss above this x its running minimum")
    patience: int = integer(5, lo=1, help="diverging steps in a row that are a failure")
    smoothing: float = number(0.8, lo=0.0, hi=1.0, hi_open=True,
                              help="beta of the debiased EMA of the training loss")
    lr_factor: float = number(0.5, lo=0.0, hi=1.0, lo_open=True,
                              help="LR factor after a diverging loss")


_PEAK_SCHEMA = {"type": "object", "properties": {"type": {"type": "string"}},
                "additionalProperties": {"type": "number"}}


@dataclass(frozen=True, kw_only=True)
class ManagerConfig(Record):
    """Stated numbers of the manager (all JSON).

    * ``nominal_steps``: the run's full length (default: the schedule's total_steps).
    * ``prior_factor``, ``margin``, ``unobserved_power_factor``, ``estimator_window``,
      ``min_observations``: the cost estimator (see :class:`mobile_lr.budget.CostEstimator`).
    * ``replan_tolerance``: a new planned total is recorded when it differs from
      the one in force by more than ``remaining // replan_tolerance`` steps.
    * ``nan_lr_factor``, ``max_failures``: on a non-finite loss, roll back and
      multiply the LR by the factor; the ``max_failures + 1``-th failure stops the run.
    * ``resume_gap_c``: after a thermal pause, resume once the temperature is this
      far below the planner's limit.
    * ``range_test``: a :class:`RangeTestConfig`, or None (off).
    * ``divergence``: a :class:`DivergenceConfig` (a loss that climbs and stays up is rolled
      back like a non-finite one), or absent (off: only non-finite losses roll back).
    * ``peak_lr``: ``{"type": name, ...params}`` of a
      :data:`~mobile_lr.manager.peak.PEAK_LR_POLICIES` entry.
    * ``schedule_horizon``: the totals the schedule follows. Absent (or ``"plan"``): the plan
      history. ``"battery"``: each planned total capped, while the phone charges, at what its
      battery alone affords then (at least one step): the steps the run is sure of, since a
      charger can be unplugged at any time. It is meant for a shape that holds its peak after
      a warm-up (the warm-up is then sized by the sure steps, so a budget that turns out short
      is not spent warming up for the charger's long plan); the plan history, the stops and
      the budget are unchanged.
    """

    PATH = "config"

    nominal_steps: int | None = integer(None, lo=1, nullable=True,
                                        help="the run's length (null: the schedule's total_steps)")
    prior_factor: float = number(3.0, lo=1.0, help="cost uncertainty before observations")
    margin: float = number(0.1, lo=0.0, help="pessimistic margin over the observed spread")
    unobserved_power_factor: float = number(1.5, lo=1.0,
                                            help="power factor while no energy is observed")
    estimator_window: int = integer(15, lo=1, help="observations the estimate keeps")
    min_observations: int = integer(
        3, help="observations before the estimate replaces the prior (1 .. estimator_window)")
    replan_tolerance: int = integer(20, lo=1,
                                    help="re-plan when the total moves by remaining // this")
    nan_lr_factor: float = number(0.5, lo=0.0, hi=1.0, lo_open=True,
                                  help="LR factor after a non-finite loss")
    max_failures: int = integer(3, lo=0, help="non-finite losses rolled back before stopping")
    resume_gap_c: float = number(1.0, lo=0.0,
                                 help="resume this far below the thermal limit after a pause")
    range_test: RangeTestConfig | None = nested(RangeTestConfig, None, nullable=True,
                                                help="the LR range test (null: off)")
    divergence: DivergenceConfig | None = nested(
        DivergenceConfig, None, help="loss-spike divergence detection (absent: off)")
    peak_lr: dict[str, Any] | None = custom(
        parse_peak_lr, _PEAK_SCHEMA, None, nullable=True,
        help="peak-LR-for-budget rule: {type, ...params} (null: none)")
    schedule_horizon: str | None = choice(
        HORIZONS, None, help="the totals the schedule follows: the plan's (absent, plan), or "
                             "battery: capped while charging at what the battery alone affords")

    def check(self) -> None:
        check_int(self.min_observations, "min_observations", lo=1, hi=self.estimator_window)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if out["peak_lr"] is None:
            out["peak_lr"] = {"type": "none"}   # as written since the first state files
        return out
