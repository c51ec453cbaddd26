"""The schedule spec (``mobile-lr.schedule/1``) and the :class:`Schedule` it builds.

The spec is the cross-language contract: Python, the Kotlin core of the
Android app and the exporter all read the same JSON. Field names mirror
PyTorch's scheduler arguments (Keras's where the shape is Keras's), see
docs/SCHEDULE_SPEC.md. Anything unknown is refused, never ignored:
a typo in a phone's schedule must not silently train with a default.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import numpy as np

from mobile_lr.validation import ValidationError, check_keys, get_int, get_object, join, read_json
from mobile_lr.validation.schema import Record, choice, custom, integer, nested, number

from . import plan as _plan
from . import shapes as _shapes
from ._ops import ARRAY, EXACT, SCALAR, Ops
from .plateau import PlateauRule

FORMAT = "mobile-lr.schedule/1"
BUDGET_MODES = ("fixed", "replan", "wsd")
WARMUP_SHAPES = ("linear", "cosine")

# Derived from the shape declarations (mobile_lr.schedules.shapes.SHAPES), in registration order.
SHAPE_TYPES = tuple(_shapes.SHAPES)
SHAPE_FIELDS: dict[str, tuple[str, ...]] = {k: c.field_keys() for k, c in _shapes.SHAPES.items()}
REQUIRED_FIELDS = {k: c.required_keys() for k, c in _shapes.SHAPES.items() if c.required_keys()}
# Fields holding absolute learning rates: scaled with base_lr by Schedule.scaled().
LR_FIELDS = ("base_lr", *sorted({".".join(keys) for c in _shapes.SHAPES.values()
                                 for _f, d, keys in _shapes.declarations(c) if "lr" in d.tags}))


@dataclass(frozen=True, kw_only=True)
class Warmup(Record):
    """A warm-up before the shape: ``start_factor`` to 1 over ``steps`` (capped by ``max_fraction``)."""

    steps: int = integer(lo=0, help="warm-up length in steps")
    start_factor: float = number(0.1, lo=0.0, hi=1.0, help="factor of the shape's first LR at step 0")
    shape: str = choice(WARMUP_SHAPES, "linear", help="linear or half-cosine ramp")
    max_fraction: float = number(0.1, lo=0.0, hi=1.0, lo_open=True, hi_open=True,
                                 help="the warm-up never takes more than this share of the planned total")

    def length(self, total: int) -> int:
        """Warm-up steps for a planned total: never more than ``max_fraction`` of it."""
        return min(self.steps, math.floor(self.max_fraction * total))

    def factor(self, ops: Ops, t: Any, w: int) -> Any:
        x = t / max(w, 1)
        if self.shape == "cosine":
            x = (1.0 - ops.cos(math.pi * x)) / 2.0
        return self.start_factor + (1.0 - self.start_factor) * x


@dataclass(frozen=True, kw_only=True)
class Budget(Record):
    """How a change of the planned total (a re-plan) moves the schedule."""

    mode: str = choice(BUDGET_MODES, "replan", help="fixed: ignore re-plans; replan: stretch or squeeze "
                       "the shape; wsd: hold the peak and start the cool-down when the rest of the "
                       "budget reaches decay_fraction")
    decay_fraction: float | None = number(None, lo=0.0, hi=1.0, lo_open=True,
                                          help="mode wsd only: share of the run spent cooling down "
                                               "(default 0.2)")

    SCHEMA_RULES: ClassVar[dict[str, Any]] = {"if": {"required": ["decay_fraction"]}, "then": {
        "required": ["mode"], "properties": {"mode": {"const": "wsd"}}}}

    def check(self) -> None:
        if self.mode != "wsd" and self.decay_fraction is not None:
            raise ValidationError("decay_fraction", "unknown field", "mode")

    @property
    def wsd_fraction(self) -> float | None:
        return None if self.mode != "wsd" else 0.2 if self.decay_fraction is None else self.decay_fraction


def _shape_object(value: Any, path: str) -> Any:
    return get_object(value, path)


@dataclass(frozen=True, kw_only=True)
class SpecFile(Record):
    """A schedule: ``base_lr`` times a shape of the step and the plan (mobile-lr.schedule/1).

    Field names mirror PyTorch's scheduler arguments (Keras's where the shape is Keras's);
    anything unknown is refused. ``docs/SCHEDULE_SPEC.md`` describes every shape.
    """

    FORMAT = FORMAT
    FORMAT_REQUIRED = True
    FORMAT_PROBLEM = "unknown version"

    base_lr: float = number(lo=0.0, lo_open=True, help="the peak learning rate; every shape is relative "
                            "to it")
    total_steps: int | None = integer(None, lo=1, help="the planned total (omitted: given by the plan)")
    warmup: Warmup | None = nested(Warmup, None, help="optional warm-up before the shape")
    shape: dict[str, Any] = custom(_shape_object, _shapes.union_schema(SHAPE_TYPES),
                                   help="the shape: {\"type\": ..., its fields}")
    budget: Budget = nested(Budget, Budget, help="how re-plans move the schedule")


class Schedule:
    """A validated schedule: pure ``lr(t, plan)``; built by :func:`parse_spec`.

    ``plan`` is the plan history ``[(0, T0), (t1, T1), ...]`` (see
    :mod:`mobile_lr.schedules.plan`); omitted, it is ``[(0, total_steps)]``.
    """

    def __init__(self, spec: dict[str, Any], shape: _shapes.Shape, warmup: Warmup | None,
                 plateau: PlateauRule | None, wsd_fraction: float | None):
        self._spec = spec
        self.base_lr: float = float(spec["base_lr"])
        self.total_steps: int | None = spec.get("total_steps")
        self.budget_mode: str = spec.get("budget", {}).get("mode", "replan")
        self.shape = shape
        self.warmup = warmup
        self.plateau_rule = plateau
        self._wsd_fraction = wsd_fraction

    # ---------------------------------------------------------------- public API
    @property
    def is_plateau(self) -> bool:
        return self.plateau_rule is not None

    @property
    def follows_plan(self) -> bool:
        """Whether a budget change moves the LR at all (absolute shapes ignore it)."""
        return self.budget_mode != "fixed" and (self.shape.follows_plan or self.warmup is not None)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._spec)

    def plan_or_default(self, plan: _plan.PlanHistory | None) -> list[tuple[int, int]]:
        if plan is None:
            if self.total_steps is None:
                raise ValidationError("total_steps", "the planned total is unknown",
                                      "total_steps in the spec, or a plan [[0, T0], ...]")
            return [(0, self.total_steps)]
        return _plan.check_plan(list(plan))

    def lr(self, t: int, plan: _plan.PlanHistory | None = None,
           plateau: Mapping[str, Any] | None = None) -> float:
        """The LR at step ``t``: what PyTorch's ``get_last_lr()`` gives after ``t`` steps."""
        return float(self._eval(SCALAR, float(t), self.plan_or_default(plan), plateau))

    def lr_function(self, plan: _plan.PlanHistory | None = None,
                    plateau: Mapping[str, Any] | None = None) -> Callable[[int], float]:
        """``f(t) == lr(t, plan, plateau)`` bit for bit, with what depends on the plan done
        once: what a loop calls every step between two re-plans."""
        at = self._prepare(self.plan_or_default(plan), plateau)
        plain = getattr(at, "plain", None)
        if plain is None:
            f = lambda t: float(at(SCALAR, float(t)))  # noqa: E731
        elif (scalar := getattr(plain, "scalar", None)) is not None:
            # no warm-up, a plain shape: for t >= 0 the shape's own step is t (max(t - 0, 0) =
            # t), its scalar path in one call (a manager's every step)
            f = lambda t: float(scalar(float(t)) if t >= 0 else at(SCALAR, float(t)))  # noqa: E731
        else:
            f = lambda t: float(plain(SCALAR, float(t)) if t >= 0 else at(SCALAR, float(t)))  # noqa: E731
        f.table = partial(_lr_table, at, f)  # type: ignore[attr-defined]
        return f

    def lrs(self, ts: Sequence[int] | np.ndarray, plan: _plan.PlanHistory | None = None,
            plateau: Mapping[str, Any] | None = None) -> np.ndarray:
        """Vectorised :meth:`lr` over many steps (equal to the scalar path up to the last bit)."""
        t = np.asarray(ts, dtype=np.float64)
        with np.errstate(all="ignore"):
            out = self._eval(ARRAY, t, self.plan_or_default(plan), plateau)
        return np.broadcast_to(np.asarray(out, dtype=np.float64), t.shape).copy()

    def end_lr(self, plan: _plan.PlanHistory | None = None) -> float:
        """The LR at the end of the current plan (``t`` = the last planned total)."""
        p = self.plan_or_default(plan)
        return self.lr(p[-1][1], p)

    def scaled(self, k: float) -> Schedule:
        """The same schedule with every learning rate multiplied by ``k`` (> 0).

        The manager uses it to choose the peak LR for the budget: absolute LR
        fields (``eta_min``, ``max_lr``, ``values``...) scale with ``base_lr``.
        """
        if not (isinstance(k, int | float) and math.isfinite(k) and k > 0):
            raise ValidationError("scale", f"{k!r} is not a positive finite number", "k > 0")
        return parse_spec(_scale_lrs(self._spec, float(k)))

    # --- plateau ------------------------------------------------------------
    def plateau_start(self) -> dict[str, Any]:
        if self.plateau_rule is None:
            raise ValueError("this schedule has no plateau shape")
        return self.plateau_rule.start(self.base_lr)

    def plateau_load(self, value: Any, path: str) -> dict[str, Any] | None:
        """A saved plateau state checked against this schedule (None: no plateau shape)."""
        if self.plateau_rule is None:
            if value is not None:
                raise ValidationError(path, "a state for a plateau shape", "null: the shape is not plateau")
            return None
        return self.plateau_rule.check_state(value, path)

    def plateau_observe(self, state: Mapping[str, Any], metric: float) -> dict[str, Any]:
        if self.plateau_rule is None:
            raise ValueError("this schedule has no plateau shape")
        return self.plateau_rule.observe(dict(state), metric)

    # ---------------------------------------------------------------- internals
    def _eval(self, ops: Ops, t: Any, plan: list[tuple[int, int]],
              plateau: Mapping[str, Any] | None) -> Any:
        return self._prepare(plan, plateau)(ops, t)

    def _prepare(self, plan: list[tuple[int, int]], plateau: Mapping[str, Any] | None
                 ) -> Callable[[Ops, Any], Any]:
        """``f(ops, t)``, the LR at step(s) ``t`` under this plan history (checked): what
        depends on the plan (warm-up length, progress map, the WSD cool-down's start) is
        done once."""
        if self.budget_mode == "fixed":
            plan = plan[:1]
        w = self.warmup.length(plan[0][1]) if self.warmup else 0
        shape_plan = _plan.shift(plan, w)
        if self.plateau_rule is not None:
            value = float(plateau["lr"]) if plateau is not None else self.base_lr

            def body(ops: Ops, s: Any, t: Any) -> Any:
                return value + 0.0 * t

            start = value
        elif self.budget_mode == "wsd":
            body = self._wsd_mode(shape_plan)
            start = self.shape.evaluate(SCALAR, 0.0, shape_plan)
        else:
            shape = self.shape.prepare(shape_plan)

            def body(ops: Ops, s: Any, t: Any) -> Any:
                return shape(ops, s)

            start = shape(SCALAR, 0.0) if self.warmup else 0.0
        warmup = self.warmup
        if w == 0:  # no warm-up (or none under this plan): s = max(t, 0)
            def at0(ops: Ops, t: Any) -> Any:
                return body(ops, ops.maximum(t - w, 0.0), t)

            if self.plateau_rule is None and self.budget_mode != "wsd":
                at0.plain = shape  # type: ignore[attr-defined]  (the shape at s = t >= 0)
            return at0

        def at(ops: Ops, t: Any) -> Any:
            y = body(ops, ops.maximum(t - w, 0.0), t)
            if w > 0:
                y = ops.where(t < w, start * warmup.factor(ops, t, w), y)
            return y

        return at

    def _wsd_mode(self, plan: list[tuple[int, int]]) -> Callable[[Ops, Any, Any], Any]:
        """Hold the peak; start the cool-down when the remaining budget reaches the fraction.

        The cool-down starts at the first step ``c`` where ``c >= E - D(E)`` for
        the total ``E`` in force (``D`` as in :func:`shapes.decay_steps_of`);
        from then on the shape runs as the cool-down profile over ``[c, E]`` and
        further re-plans stretch what is left of it.
        """
        frac = self._wsd_fraction
        starts = [p[0] for p in plan[1:]] + [math.inf]
        c = None
        for (t_k, total_k), nxt in zip(plan, starts, strict=True):
            total_k = max(total_k, 1)
            cand = max(t_k, total_k - int(_shapes.decay_steps_of(frac, float(total_k))))
            if cand < nxt:
                c = cand
                break
        # The peak: a progress-based shape's value at u = 0 does not depend on the total.
        hold = self.shape.prepare([(0, max(plan[-1][1], 1))])
        if c is None:  # unreachable: the last plan always yields a start
            return lambda ops, s, t: hold(ops, 0.0 * s)
        cool = self.shape.prepare(_plan.shift(plan, c))
        return lambda ops, s, t: ops.where(s >= c, cool(ops, ops.maximum(s - c, 0.0)),
                                           hold(ops, 0.0 * s))


#: steps from which :func:`_lr_table` pays numpy's cost per call (~15 calls of ~0.5 µs)
TABLE_MIN = 32


def _lr_table(at: Callable[[Ops, Any], Any], f: Callable[[int], float], start: int, count: int,
              scale: float) -> list[float]:
    """``[f(t) * scale for t in range(start, start + count)]`` bit for bit (``f.table`` of
    :meth:`Schedule.lr_function`, ``at`` its prepared schedule): in one pass of the ``EXACT``
    back-end (numpy's arithmetic, libm's functions) for a long range, the steps one by one for
    a short one or where the pass raises (a step where the scalar path would raise too)."""
    if count >= TABLE_MIN and start >= 0:
        try:
            with np.errstate(all="ignore"):
                out = at(EXACT, np.arange(start, start + count, dtype=np.float64))
            out = np.asarray(out, dtype=np.float64)
            if out.shape != (count,):   # (a shape constant in t)
                out = np.broadcast_to(out, (count,))
            return (out * scale).tolist()
        except (ValueError, ArithmeticError):
            pass
    return [f(t) * scale for t in range(start, start + count)]


def _scale_lrs(obj: Any, k: float) -> Any:
    if isinstance(obj, dict):
        out = {}
        for key, val in obj.items():
            if key in LR_FIELDS and isinstance(val, int | float) and not isinstance(val, bool):
                out[key] = val * k
            elif key == "values" and isinstance(val, list):
                out[key] = [v * k for v in val]
            else:
                out[key] = _scale_lrs(val, k)
        return out
    if isinstance(obj, list):
        return [_scale_lrs(v, k) for v in obj]
    return obj


# ------------------------------------------------------------------------- parsing

def load_spec(path: str | os.PathLike[str]) -> Schedule:
    """Read and validate a schedule spec file (JSON)."""
    return parse_spec(read_json(path, "<file>"))


def parse_spec(obj: Any) -> Schedule:
    """Validate a spec (a dict as read from JSON) and build its :class:`Schedule`.

    >>> s = parse_spec({"format": "mobile-lr.schedule/1", "base_lr": 0.1,
    ...                 "shape": {"type": "cosine"}, "total_steps": 100})
    >>> s.lr(0), round(s.lr(50), 6), s.lr(100)
    (0.1, 0.05, 0.0)
    >>> parse_spec({"format": "mobile-lr.schedule/9", "base_lr": 0.1, "shape": {"type": "cosine"}})
    Traceback (most recent call last):
    ...
    mobile_lr.validation.ValidationError: format: unknown version ...; allowed: mobile-lr.schedule/1
    """
    root = SpecFile.from_dict(obj)
    base_lr, mode = root.base_lr, root.budget.mode
    plateau = None
    if root.shape.get("type") == "plateau":
        plateau = PlateauRule.from_dict(root.shape, "shape")
        shape = plateau.shape(base_lr, "shape")
    else:
        shape = _parse_shape(root.shape, base_lr, "shape", allow_sequence=True)
    if mode == "wsd" and (plateau is not None or not shape.follows_plan or shape.kind in
                          ("wsd", "sequence")):
        raise ValidationError("budget.mode", f"'wsd' cannot drive a {root.shape.get('type')!r} shape",
                              "fixed or replan for this shape; wsd needs a progress-based shape "
                              "(length omitted) other than wsd and sequence")
    spec = json.loads(json.dumps(obj))  # a private deep copy of plain JSON types
    return Schedule(spec, shape, root.warmup, plateau, root.budget.wsd_fraction)


def _parse_shape(obj: Mapping[str, Any], base_lr: float, path: str,
                 allow_sequence: bool) -> _shapes.Shape:
    kind = obj.get("type")
    allowed_types = [k for k in SHAPE_TYPES if allow_sequence or k not in ("sequence", "plateau")]
    if "type" not in obj:
        raise ValidationError(join(path, "type"), "missing required field", ", ".join(allowed_types))
    if kind not in allowed_types:
        raise ValidationError(join(path, "type"), f"unknown shape type {kind!r}",
                              ", ".join(allowed_types))
    args = _shapes.SHAPES[kind].from_dict(obj, path)
    if isinstance(args, _shapes.SequenceArgs):
        return _parse_sequence(list(args.parts), base_lr, join(path, "parts"))
    return args.shape(base_lr, path)


def _parse_sequence(parts: list[Any], base_lr: float, path: str) -> _shapes.Shape:
    built: list[tuple[_shapes.Shape, int | None]] = []
    for i, part in enumerate(parts):
        ppath = join(path, i)
        part = get_object(part, ppath)
        last = i == len(parts) - 1
        check_keys(part, ppath, ("steps", "shape"), required=("shape",) if last else
                   ("shape", "steps"))
        steps = get_int(part, "steps", ppath, default=None, lo=1)
        shape = _parse_shape(get_object(part["shape"], join(ppath, "shape")), base_lr,
                             join(ppath, "shape"), allow_sequence=False)
        built.append((shape, steps))
    return _shapes.sequence(built)
