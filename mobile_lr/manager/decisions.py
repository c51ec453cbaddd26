"""What the manager tells the training loop: :class:`Run`, :class:`Pause`, :class:`Stop` or
:class:`Rollback` (reasons are :class:`mobile_lr.rules.Reason` values)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, NamedTuple

from mobile_lr.validation import ValidationError, check_fields, check_int, check_number, check_text

__all__ = ["Decision", "Pause", "PendingRun", "Rollback", "Run", "Stop", "load_saved"]


class Run(NamedTuple):
    """Run training step ``step`` at ``lr``; ``phase`` is ``"train"`` or ``"range-test"``.

    A named tuple, not a frozen dataclass like the other decisions: one is made for every
    training step, and a frozen dataclass's ``__init__`` (``object.__setattr__`` per field)
    cost more than the rest of a held step (docs/DECISIONS.md, the manager's held step)."""

    step: int
    lr: float
    phase: str = "train"

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


@dataclass(frozen=True)
class Pause:
    """Rest: ``resume_hint`` seconds after which ``reason`` may have cleared (None if it
    depends on the user)."""

    reason: str
    resume_hint: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Stop:
    """The run is over (``reason``; ``detail``: what limited its budget)."""

    reason: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Rollback:
    """Restore the checkpoint of ``to_step`` (0: the initial weights) and scale the LR."""

    to_step: int
    lr_scale: float
    failures: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Decision = Run | Pause | Stop | Rollback


class PendingRun(NamedTuple):
    """The Run issued and not observed yet, with the thermal status it started at."""

    phase: str
    step: int
    lr: float
    status: int

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


def _phase(value: Any, field: str) -> str:
    if value not in ("train", "range-test"):
        raise ValidationError(field, f"unknown phase {value!r}", "train, range-test")
    return value


_step = partial(check_int, lo=0)
#: How a saved record's fields are checked before the record is made from them.
_SAVED: dict[type, dict[str, Callable[[Any, str], Any]]] = {
    Stop: {"reason": check_text, "detail": check_text},
    Rollback: {"to_step": _step, "lr_scale": partial(check_number, lo=0.0, lo_open=True),
               "failures": _step, "reason": check_text},
    PendingRun: {"phase": _phase, "step": _step, "lr": partial(check_number, lo=0.0),
                 "status": partial(check_int, lo=0, hi=6)},  # a ThermalStatus
}


def load_saved(cls: type, value: Any, path: str) -> Any:
    """The ``cls`` (:class:`Stop`, :class:`Rollback`, :class:`PendingRun`) a manager state
    saved at ``path``, or None; a wrong key or type is a ValidationError naming the field."""
    return None if value is None else cls(**check_fields(value, path, _SAVED[cls]))
