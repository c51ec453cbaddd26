"""The peak-LR-for-budget registry and the factor it gives one run.

A peak-LR policy maps (planned total at the start of training, nominal total, params) to a
factor on the schedule's LRs: under a cut budget the peak LR matters (bench/budget_quality
measures it). Select one by name in ``ManagerConfig.peak_lr``; add one with
:func:`register_peak_lr_policy`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mobile_lr.validation import ValidationError, check_number, get_object, join

__all__ = ["PEAK_LR_POLICIES", "PeakLr", "PeakLrFn", "parse_peak_lr", "register_peak_lr_policy"]

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


def parse_peak_lr(obj: Any, path: str) -> dict[str, Any]:
    """``{"type": name, ...numeric params}`` of a registered policy (``ManagerConfig.peak_lr``)."""
    obj = get_object(obj, path)
    name = obj.get("type", "none")
    if not isinstance(name, str) or name not in PEAK_LR_POLICIES:
        raise ValidationError(join(path, "type"), f"unknown peak-LR policy {name!r}",
                              ", ".join(sorted(PEAK_LR_POLICIES)))
    return {"type": name, **{key: check_number(value, join(path, key))
                             for key, value in obj.items() if key != "type"}}


class PeakLr:
    """The factor of one run, fixed by its rule at the first training step."""

    KEYS = ("peak_factor",)

    def __init__(self, rule: Mapping[str, Any] | None) -> None:
        self.rule = dict(rule or {"type": "none"})
        self.factor: float | None = None

    def settle(self, planned: int, nominal: int) -> None:
        """Fix the factor from the first plan (once)."""
        if self.factor is None:
            params = {k: v for k, v in self.rule.items() if k != "type"}
            self.factor = float(PEAK_LR_POLICIES[self.rule["type"]](planned, nominal, params))

    def state_dict(self) -> dict[str, Any]:
        return {"peak_factor": self.factor}

    def load_state_dict(self, obj: Mapping[str, Any]) -> None:
        value = obj.get("peak_factor")
        self.factor = None if value is None else check_number(value, "peak_factor", lo=0.0,
                                                              lo_open=True)
