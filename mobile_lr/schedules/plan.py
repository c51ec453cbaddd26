"""The progress map: how a schedule follows a budget that keeps changing.

A *plan history* is a list ``[(t_0, T_0), (t_1, T_1), ...]`` meaning "at step
``t_k`` the planned total became ``T_k``" (``t_0 == 0``). A progress-based shape
is not evaluated at the raw step ``t`` but at a *virtual step* ``u(t)`` on the
scale of the current total, built piecewise:

- before any re-plan, ``u(t) = t`` exactly (so a schedule with one plan is
  identical to its PyTorch counterpart, step for step);
- when the total changes from ``T_old`` to ``T_new`` at ``t0``, the progress
  reached so far, ``p0 = u(t0) / T_old``, is kept, and the remaining progress
  ``1 - p0`` is spread linearly over the remaining ``T_new - t0`` steps::

      u(t) = p0*T_new + (t - t0) * (T_new - p0*T_new) / (T_new - t0)

  so ``u(T_new) == T_new``: the shape reaches its end value exactly at the new
  total, and the LR is continuous at ``t0`` (progress does not jump);
- a total at or below the current step means "the budget is spent": the shape
  sits at its end value.

All functions here are pure and work on Python floats or numpy arrays.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mobile_lr.validation import ValidationError, check_int

from ._ops import Ops

PlanHistory = Sequence[tuple[int, int]]

__all__ = ["PlanHistory", "Segment", "Warp", "check_plan", "segments", "shift", "warp"]


@dataclass(frozen=True)
class Segment:
    """One linear piece of the progress map, valid from ``start`` on."""

    start: int  # first step (in the shape's local time) this piece applies to
    u0: float  # virtual step at ``start``
    end: int  # planned total of this piece (>= 1)
    slope: float = field(init=False, repr=False, compare=False)  # derived once

    def __post_init__(self) -> None:
        remaining = self.end - self.start
        object.__setattr__(self, "slope",
                           (self.end - self.u0) / remaining if remaining > 0 else 0.0)

    def u_at(self, s: float) -> float:
        if self.end - self.start <= 0:
            return float(self.end)
        return min(self.u0 + (s - self.start) * self.slope, float(self.end))


def check_plan(plan: Any, field: str = "plan") -> list[tuple[int, int]]:
    """Validate a plan history and return it as a list of int pairs."""
    if not isinstance(plan, list | tuple) or not plan:
        raise ValidationError(field, "expected a non-empty list of [step, total] pairs",
                              "[[0, T0], [t1, T1], ...] with steps non-decreasing")
    out: list[tuple[int, int]] = []
    for i, item in enumerate(plan):
        if (not isinstance(item, list | tuple) or len(item) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) for v in item)):
            raise ValidationError(f"{field}[{i}]", f"expected [step, total] integers, got {item!r}"[:200],
                                  "two integers >= 0")
        t, total = (check_int(v, f"{field}[{i}]", lo=0) for v in item)  # 64-bit, short message
        if i == 0 and t != 0:
            raise ValidationError(f"{field}[0]", f"the first plan must start at step 0, got {t}",
                                  "[0, T0]")
        if out and t < out[-1][0]:
            raise ValidationError(f"{field}[{i}]", f"step {t} goes back in time", "non-decreasing steps")
        out.append((t, total))
    return out


def shift(plan: PlanHistory, offset: int) -> list[tuple[int, int]]:
    """The plan history as seen by a part of the schedule that starts at ``offset``.

    Entries at or before ``offset`` collapse into the part's initial total (the
    part had made no progress yet); later entries move into its local time.
    """
    first = plan[0]
    later: list[tuple[int, int]] = []
    for t, total in plan:
        if t <= offset:
            first = (t, total)
        else:
            later.append((t - offset, total - offset))
    return [(0, first[1] - offset), *later]


def segments(plan: PlanHistory) -> list[Segment]:
    """Build the piecewise-linear progress map of a (local) plan history."""
    segs = [Segment(0, 0.0, max(int(plan[0][1]), 1))]
    for t, total in plan[1:]:
        prev = segs[-1]
        progress = prev.u_at(t) / prev.end
        end = max(int(total), 1)
        segs.append(Segment(int(t), progress * end, end))
    return segs


def warp(ops: Ops, s: Any, segs: Sequence[Segment]) -> tuple[Any, Any]:
    """Virtual step ``u`` and current total ``E`` at local step(s) ``s``."""
    return Warp(segs)(ops, s)


class Warp:
    """:func:`warp` for one progress map, its look-up table built once (a manager asks the
    same map for the LR of every step until the next re-plan)."""

    def __init__(self, segs: Sequence[Segment]) -> None:
        self.segs = tuple(segs)
        self.starts = [seg.start for seg in self.segs]
        # what the scalar path reads of each piece, unpacked once (a manager asks every step)
        self._pieces = [(seg.start, seg.u0, seg.slope, float(seg.end), seg.end - seg.start <= 0)
                        for seg in self.segs]
        self._last = self._pieces[-1]   # the piece a manager's steps fall in between re-plans

    def scalar_of(self, formula: Any, ops: Ops) -> Any:
        """``g(s) == formula(ops, *self(ops, s))`` for a float ``s``, in one call: the piece
        of the last re-plan inlined (the steps of a manager between two re-plans fall there;
        the same arithmetic, so the same bits)."""
        start, u0, slope, end, flat = self._last
        warp = self

        def g(s: float) -> Any:
            if s >= start:
                if flat:
                    return formula(ops, end, end)
                u = u0 + (s - start) * slope
                return formula(ops, end if end < u else u, end)
            return formula(ops, *warp(ops, s))

        return g

    def __call__(self, ops: Ops, s: Any) -> tuple[Any, Any]:
        segs = self.segs
        if ops.name == "scalar":
            # the last piece that starts at or before s (the first one before any): u_at
            last = self._last
            start, u0, slope, end, flat = last if s >= last[0] else \
                self._pieces[bisect_right(self.starts, s, 1) - 1]
            if flat:
                return end, end
            u = u0 + (s - start) * slope
            return (end if end < u else u), end    # min(u, end), as builtin min picks
        start, u0, slope, end, flat = self._last
        if np.size(s) and np.min(s) >= start:   # all in the last piece (a manager's held steps):
            e = ops.zeros_like(s) + end               # the loop's choice, without the others
            return (e if flat else ops.minimum(u0 + (s - start) * slope, end)), e
        u = None
        e = None
        for seg in segs:
            if seg.end - seg.start <= 0:
                u_seg = ops.zeros_like(s) + float(seg.end)
            else:
                u_seg = ops.minimum(seg.u0 + (s - seg.start) * seg.slope, float(seg.end))
            if u is None:
                u, e = u_seg, ops.zeros_like(s) + float(seg.end)
            else:
                mask = s >= seg.start
                u = ops.where(mask, u_seg, u)
                e = ops.where(mask, float(seg.end), e)
        return u, e
