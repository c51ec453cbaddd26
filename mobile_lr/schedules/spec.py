"""The schedule spec (``mobile-lr.schedule/1``) and the :class:`Schedule` it builds.

The spec is the cross-language contract: Python, the Kotlin core of the
Android app and the exporter all read the same JSON. Field names mirror
PyTorch's scheduler arguments (Keras's where the shape is Keras's), see the
README section "Schedule spec". Anything unknown is refused, never ignored:
a typo in a phone's schedule must not silently train with a default.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mobile_lr.validation import (
    ValidationError,
    check_keys,
    get_bool,
    get_choice,
    get_int,
    get_number,
    get_object,
    join,
)

from . import plan as _plan
from . import shapes as _shapes
from ._ops import ARRAY, SCALAR, Ops
from .plateau import PlateauRule

FORMAT = "mobile-lr.schedule/1"
BUDGET_MODES = ("fixed", "replan", "wsd")
WARMUP_SHAPES = ("linear", "cosine")

# Fields of each shape type. Booleans and choices are checked here; numbers by the factories.
SHAPE_FIELDS: dict[str, tuple[str, ...]] = {
    "constant": ("factor", "total_iters"),
    "step": ("step_size", "gamma"),
    "multistep": ("milestones", "gamma"),
    "exponential": ("gamma", "decay_rate", "decay_steps", "staircase"),
    "inverse_time": ("decay_rate", "decay_steps", "staircase"),
    "linear": ("start_factor", "end_factor", "total_iters"),
    "polynomial": ("total_iters", "power", "end_learning_rate", "cycle"),
    "cosine": ("T_max", "eta_min"),
    "cosine_restarts": ("T_0", "T_mult", "eta_min", "m_mul"),
    "onecycle": ("max_lr", "total_steps", "pct_start", "anneal_strategy", "div_factor",
                 "final_div_factor", "three_phase"),
    "cyclic": ("base_lr", "max_lr", "step_size_up", "step_size_down", "mode", "gamma"),
    "piecewise_constant": ("boundaries", "values"),
    "rex": ("total_iters", "eta_min"),
    "wsd": ("decay_fraction", "decay_shape", "eta_min", "total_iters"),
    "sequence": ("parts",),
    "plateau": ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown",
                "min_lr", "eps"),
}
REQUIRED_FIELDS = {"step": ("step_size",), "multistep": ("milestones",),
                   "inverse_time": ("decay_rate", "decay_steps"),
                   "cosine_restarts": ("T_0",), "cyclic": ("max_lr",),
                   "piecewise_constant": ("boundaries", "values"), "sequence": ("parts",)}
BOOL_FIELDS = ("staircase", "cycle", "three_phase")
# Fields holding absolute learning rates: scaled with base_lr by Schedule.scaled().
LR_FIELDS = ("eta_min", "max_lr", "base_lr", "end_learning_rate", "values", "min_lr")
SHAPE_TYPES = tuple(SHAPE_FIELDS)


@dataclass(frozen=True)
class Warmup:
    steps: int
    start_factor: float = 0.1
    shape: str = "linear"
    max_fraction: float = 0.1

    def length(self, total: int) -> int:
        """Warm-up steps for a planned total: never more than ``max_fraction`` of it."""
        return min(self.steps, math.floor(self.max_fraction * total))

    def factor(self, ops: Ops, t: Any, w: int) -> Any:
        x = t / max(w, 1)
        if self.shape == "cosine":
            x = (1.0 - ops.cos(math.pi * x)) / 2.0
        return self.start_factor + (1.0 - self.start_factor) * x


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

    def plateau_observe(self, state: Mapping[str, Any], metric: float) -> dict[str, Any]:
        if self.plateau_rule is None:
            raise ValueError("this schedule has no plateau shape")
        return self.plateau_rule.observe(dict(state), metric)

    # ---------------------------------------------------------------- internals
    def _eval(self, ops: Ops, t: Any, plan: list[tuple[int, int]],
              plateau: Mapping[str, Any] | None) -> Any:
        if self.budget_mode == "fixed":
            plan = plan[:1]
        w = self.warmup.length(plan[0][1]) if self.warmup else 0
        shape_plan = _plan.shift(plan, w)
        s = ops.maximum(t - w, 0.0)
        if self.plateau_rule is not None:
            value = float(plateau["lr"]) if plateau is not None else self.base_lr
            y = value + 0.0 * t
            start = value
        elif self.budget_mode == "wsd":
            y = self._wsd_mode(ops, s, shape_plan)
            start = self.shape.evaluate(SCALAR, 0.0, shape_plan)
        else:
            y = self.shape.evaluate(ops, s, shape_plan)
            start = self.shape.evaluate(SCALAR, 0.0, shape_plan) if self.warmup else 0.0
        if w > 0:
            y = ops.where(t < w, start * self.warmup.factor(ops, t, w), y)
        return y

    def _wsd_mode(self, ops: Ops, s: Any, plan: list[tuple[int, int]]) -> Any:
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
        hold = self.shape.evaluate(ops, 0.0 * s, [(0, max(plan[-1][1], 1))])
        if c is None:  # unreachable: the last plan always yields a start
            return hold
        cool = self.shape.evaluate(ops, ops.maximum(s - c, 0.0), _plan.shift(plan, c))
        return ops.where(s >= c, cool, hold)


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
    with open(path, encoding="utf-8") as fh:
        try:
            obj = json.load(fh)
        except json.JSONDecodeError as err:
            raise ValidationError("<file>", f"not valid JSON ({err.msg} at line {err.lineno})",
                                  "a JSON object") from None
    return parse_spec(obj)


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
    root = get_object(obj, "")
    check_keys(root, "", ("format", "base_lr", "total_steps", "warmup", "shape", "budget"),
               required=("format", "base_lr", "shape"))
    if root["format"] != FORMAT:
        raise ValidationError("format", f"unknown version {root['format']!r}", FORMAT)
    base_lr = get_number(root, "base_lr", "", lo=0.0, lo_open=True)
    get_int(root, "total_steps", "", default=None, lo=1)  # validated; read by Schedule

    warmup = None
    if "warmup" in root:
        w = get_object(root["warmup"], "warmup")
        check_keys(w, "warmup", ("steps", "start_factor", "shape", "max_fraction"),
                   required=("steps",))
        warmup = Warmup(
            steps=get_int(w, "steps", "warmup", lo=0),
            start_factor=get_number(w, "start_factor", "warmup", default=0.1, lo=0.0, hi=1.0),
            shape=get_choice(w, "shape", "warmup", WARMUP_SHAPES, default="linear"),
            max_fraction=get_number(w, "max_fraction", "warmup", default=0.1, lo=0.0, hi=1.0,
                                    lo_open=True, hi_open=True),
        )

    budget = get_object(root.get("budget", {}), "budget")
    mode = get_choice(budget, "mode", "budget", BUDGET_MODES, default="replan")
    check_keys(budget, "budget", ("mode", "decay_fraction") if mode == "wsd" else ("mode",))
    wsd_fraction = None
    if mode == "wsd":
        wsd_fraction = get_number(budget, "decay_fraction", "budget", default=0.2, lo=0.0, hi=1.0,
                                  lo_open=True)

    shape_obj = get_object(root["shape"], "shape")
    plateau = None
    if shape_obj.get("type") == "plateau":
        plateau = _parse_plateau(shape_obj, base_lr)
        shape = _shapes.constant(base_lr)
    else:
        shape = _parse_shape(shape_obj, base_lr, "shape", allow_sequence=True)
    if mode == "wsd" and (plateau is not None or not shape.follows_plan or shape.kind in
                          ("wsd", "sequence")):
        raise ValidationError("budget.mode", f"'wsd' cannot drive a {shape_obj.get('type')!r} shape",
                              "fixed or replan for this shape; wsd needs a progress-based shape "
                              "(length omitted) other than wsd and sequence")
    spec = json.loads(json.dumps(root))  # a private deep copy of plain JSON types
    return Schedule(spec, shape, warmup, plateau, wsd_fraction)


def _parse_plateau(obj: Mapping[str, Any], base_lr: float) -> PlateauRule:
    path = "shape"
    check_keys(obj, path, ("type", *SHAPE_FIELDS["plateau"]))
    rule = PlateauRule(
        mode=get_choice(obj, "mode", path, ("min", "max"), default="min"),
        factor=get_number(obj, "factor", path, default=0.1, lo=0.0, hi=1.0, hi_open=True),
        patience=get_int(obj, "patience", path, default=10, lo=0),
        threshold=get_number(obj, "threshold", path, default=1e-4, lo=0.0),
        threshold_mode=get_choice(obj, "threshold_mode", path, ("rel", "abs"), default="rel"),
        cooldown=get_int(obj, "cooldown", path, default=0, lo=0),
        min_lr=get_number(obj, "min_lr", path, default=0.0, lo=0.0),
        eps=get_number(obj, "eps", path, default=1e-8, lo=0.0),
    )
    if rule.min_lr > base_lr:
        raise ValidationError(join(path, "min_lr"), f"{rule.min_lr!r} is above base_lr {base_lr!r}",
                              f"a number in [0, base_lr={base_lr!r}]")
    return rule


def _parse_shape(obj: Mapping[str, Any], base_lr: float, path: str,
                 allow_sequence: bool) -> _shapes.Shape:
    kind = obj.get("type")
    allowed_types = [k for k in SHAPE_TYPES if allow_sequence or k not in ("sequence", "plateau")]
    if "type" not in obj:
        raise ValidationError(join(path, "type"), "missing required field", ", ".join(allowed_types))
    if kind not in allowed_types:
        raise ValidationError(join(path, "type"), f"unknown shape type {kind!r}",
                              ", ".join(allowed_types))
    check_keys(obj, path, ("type", *SHAPE_FIELDS[kind]), required=REQUIRED_FIELDS.get(kind, ()))
    kwargs = {k: v for k, v in obj.items() if k != "type"}
    for name in BOOL_FIELDS:
        if name in kwargs:
            kwargs[name] = get_bool(kwargs, name, path)
    if kind == "sequence":
        return _parse_sequence(kwargs["parts"], base_lr, join(path, "parts"))
    if kind == "cyclic" and "base_lr" in kwargs:
        kwargs["cycle_base_lr"] = kwargs.pop("base_lr")
    factory = getattr(_shapes, kind)
    return factory(base_lr, path=path, **kwargs)


def _parse_sequence(parts: Any, base_lr: float, path: str) -> _shapes.Shape:
    if not isinstance(parts, list) or not parts:
        raise ValidationError(path, "expected a non-empty list of parts",
                              '[{"steps": N, "shape": {...}}, ..., {"shape": {...}}]')
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
