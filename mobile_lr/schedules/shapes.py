"""Schedule shapes: small pure functions of the step, one factory each.

Each shape type is declared once as a record of its spec fields (JSON name,
bounds, default, help: :mod:`mobile_lr.validation.schema`), registered in
:data:`SHAPES` under its ``type``; the record's :meth:`ShapeArgs.build` returns a
:class:`Shape`, whose formula maps a (virtual) step ``u`` and a length ``L`` to an
absolute learning rate. A shape whose length argument is omitted is *progress-based*: its length
is the planned total, and re-planning stretches it (see :mod:`.plan`). A shape
with an explicit length, or one defined by absolute step counts (``step``,
``multistep`` with integer milestones, ``exponential``, ``inverse_time``,
``cyclic``, ``cosine_restarts``, ``piecewise_constant``), is *absolute*: it
ignores budget changes, as a plain PyTorch scheduler would.

"The LR at step t" means what ``scheduler.get_last_lr()`` returns after ``t``
calls of ``scheduler.step()`` in PyTorch (t = 0 is the initial LR); every
formula below is transcribed from ``torch.optim.lr_scheduler`` (2.13) or from
the Keras 3 schedule it names, and the test-suite checks it step for step.

>>> s = Cosine().build(0.1)
>>> [round(s.at(t, 4), 6) for t in range(5)]
[0.1, 0.085355, 0.05, 0.014645, 0.0]
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from mobile_lr.validation import ValidationError, check_int, check_keys, check_number, get_object, join
from mobile_lr.validation.schema import (
    Record,
    boolean,
    choice,
    custom,
    declarations,
    integer,
    is_required,
    number,
    numbers,
    within,
)

from . import plan as _plan
from ._ops import SCALAR, Ops

_R = TypeVar("_R", bound="ShapeArgs")  # typing.Self is Python 3.11+

Formula = Callable[[Ops, Any, Any], Any]


@dataclass(frozen=True)
class Shape:
    """A validated shape: ``formula(ops, u, L) -> lr``.

    ``length`` is the explicit length argument (``None`` = planned total).
    ``progress_based`` shapes are evaluated through the progress map.
    """

    kind: str
    formula: Formula
    progress_based: bool
    length: int | None = None
    args: Any = None  # the ShapeArgs record it was built from (None for a sequence)

    def evaluate(self, ops: Ops, s: Any, local_plan: _plan.PlanHistory) -> Any:
        """LR at local step(s) ``s`` given the plan history in local time."""
        return self.prepare(local_plan)(ops, s)

    def prepare(self, local_plan: _plan.PlanHistory) -> Callable[[Ops, Any], Any]:
        """:meth:`evaluate` for one plan history: ``f(ops, s)``, what depends on the plan
        done once."""
        formula = self.formula
        if self.progress_based:
            warp = _plan.Warp(_plan.segments(local_plan))
            f = lambda ops, s: formula(ops, *warp(ops, s))  # noqa: E731
            f.scalar = warp.scalar_of(formula, SCALAR)  # type: ignore[attr-defined]
            return f
        length = self.length
        f = lambda ops, s: formula(ops, s, length)  # noqa: E731
        # ``f.scalar(s) == f(SCALAR, s)``: what a manager's step asks, one call fewer
        f.scalar = lambda s: formula(SCALAR, s, length)  # type: ignore[attr-defined]
        return f

    @property
    def follows_plan(self) -> bool:
        """Whether budget changes (re-plans) move this shape."""
        return self.progress_based

    def at(self, step: float, total: int) -> float:
        """LR at one step under a single fixed plan of ``total`` steps."""
        return float(self.evaluate(SCALAR, float(step), [(0, total)]))


# --------------------------------------------------------------------------- declarations

LR = ("lr",)  # tag of the fields holding absolute learning rates (scaled with base_lr)
SHAPES: dict[str, type[ShapeArgs]] = {}


def register(kind: str) -> Callable[[type[ShapeArgs]], type[ShapeArgs]]:
    """Class decorator: the record declares the spec fields of shape ``type: kind``."""
    def deco(cls: type[ShapeArgs]) -> type[ShapeArgs]:
        cls.TYPE = kind
        SHAPES[kind] = cls
        return cls
    return deco


class ShapeArgs(Record):
    """The spec fields of one shape type; :meth:`build` makes the :class:`Shape`."""

    TYPE: ClassVar[str] = ""

    @classmethod
    def from_dict(cls: type[_R], obj: Any, path: str | None = "shape") -> _R:
        """Read ``{"type": TYPE, ...fields}`` (the ``type`` key is checked by the caller)."""
        path = path or ""
        obj = get_object(obj, path)
        check_keys(obj, path, ("type", *cls.field_keys()), required=cls.required_keys())
        return super().from_dict({k: v for k, v in obj.items() if k != "type"}, path)

    @classmethod
    def field_keys(cls) -> tuple[str, ...]:
        return tuple(".".join(keys) for _f, _d, keys in declarations(cls))

    @classmethod
    def required_keys(cls) -> tuple[str, ...]:
        return tuple(".".join(keys) for f, _d, keys in declarations(cls) if is_required(f))

    def shape(self, base_lr: float, path: str = "shape") -> Shape:
        """The validated shape for ``base_lr``; errors name fields under ``path``."""
        try:
            return self.build(base_lr)
        except ValidationError as err:
            raise within(err, path) from None

    def build(self, base_lr: float) -> Shape:
        raise NotImplementedError

    def _make(self, formula: Formula, length: int | None) -> Shape:
        return Shape(self.TYPE, formula, progress_based=length is None, length=length, args=self)

    def _absolute(self, formula: Formula) -> Shape:
        return Shape(self.TYPE, formula, progress_based=False, args=self)


def _lr_bound(value: float, base_lr: float, name: str) -> float:
    if value > base_lr:
        raise ValidationError(name, f"{value!r} is above base_lr {base_lr!r}",
                              f"a number in [0, base_lr={base_lr!r}]")
    return value


_LENGTH_HELP = "length in steps; omitted: the planned total (the shape then follows re-plans)"


def _length_field() -> Any:
    return integer(None, lo=1, nullable=True, help=_LENGTH_HELP)


# --------------------------------------------------------------------------- shapes

_FRACTION = {"lo": 0.0, "hi": 1.0}


@register("constant")
@dataclass(frozen=True, kw_only=True)
class Constant(ShapeArgs):
    """ConstantLR: ``base_lr * factor`` for ``t < total_iters``, then ``base_lr``.

    With the default ``factor=1`` this is Keras's constant schedule. An omitted
    ``total_iters`` means the planned total, so the factor holds all run long.

    >>> s = Constant(factor=0.5, total_iters=2).build(0.1)
    >>> s.at(1, 10), s.at(2, 10)
    (0.05, 0.1)
    """

    factor: float = number(1.0, **_FRACTION, help="multiplies base_lr until total_iters")
    total_iters: int | None = _length_field()

    def build(self, base_lr: float) -> Shape:
        factor = self.factor

        def f(ops: Ops, u: Any, n: Any) -> Any:
            return ops.where(u < n, base_lr * factor, base_lr * (factor + (1.0 - factor)))

        return self._make(f, self.total_iters)


@register("step")
@dataclass(frozen=True, kw_only=True)
class Step(ShapeArgs):
    """StepLR: ``base_lr * gamma ** floor(t / step_size)``. Absolute.

    >>> [round(Step(step_size=2, gamma=0.5).build(1.0).at(t, 9), 3) for t in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    step_size: int = integer(lo=1, help="steps between two decays")
    gamma: float = number(0.1, lo=0.0, help="decay factor")

    def build(self, base_lr: float) -> Shape:
        size, gamma = self.step_size, self.gamma

        def f(ops: Ops, u: Any, _n: Any) -> Any:
            return base_lr * ops.pow(gamma, ops.floor(u / size))

        return self._absolute(f)


def _milestones(milestones: Any, mpath: str) -> tuple[float, ...]:
    if not isinstance(milestones, list | tuple) or not milestones:
        raise ValidationError(mpath, "expected a non-empty list",
                              "increasing integer steps >= 1, or increasing fractions in (0, 1)")
    fractions = all(isinstance(m, float) and not m.is_integer() for m in milestones)
    values: list[float] = []
    for i, m in enumerate(milestones):
        if fractions:
            values.append(check_number(m, join(mpath, i), lo=0.0, hi=1.0, lo_open=True, hi_open=True))
        else:
            values.append(float(check_int(m, join(mpath, i), lo=1)))
        if i and values[-1] <= values[-2]:
            raise ValidationError(join(mpath, i), f"{m!r} is not above the previous milestone",
                                  "strictly increasing milestones")
    return tuple(values)


def _are_fractions(milestones: Sequence[float]) -> bool:
    return all(not m.is_integer() for m in milestones)


@register("multistep")
@dataclass(frozen=True, kw_only=True)
class MultiStep(ShapeArgs):
    """MultiStepLR: multiply by ``gamma`` at each milestone (the decay applies *at* ``t == m``).

    Milestones are either all integer steps (absolute, as in PyTorch) or all
    fractions in (0, 1) of the planned total (progress-based: they move when
    the budget changes).

    >>> s = MultiStep(milestones=[0.5], gamma=0.1).build(1.0)
    >>> s.at(4, 10), s.at(5, 10)
    (1.0, 0.1)
    """

    milestones: tuple[float, ...] = custom(
        _milestones, {"type": "array", "minItems": 1, "items": {"type": "number", "exclusiveMinimum": 0}},
        help="increasing integer steps >= 1, or increasing fractions in (0, 1) of the planned total")
    gamma: float = number(0.1, lo=0.0, help="decay factor at each milestone")

    def build(self, base_lr: float) -> Shape:
        values, gamma = self.milestones, self.gamma
        fractions = _are_fractions(values)

        def f(ops: Ops, u: Any, n: Any) -> Any:
            return base_lr * ops.pow(gamma, _milestones_reached(ops, values, u, n if fractions else None))

        return Shape("multistep", f, progress_based=fractions, args=self)


def _milestones_reached(ops: Ops, values: Sequence[float], u: Any, n: Any) -> Any:
    """How many milestones ``m`` have ``u >= m`` (``u >= m * n`` for fractions), by binary search:
    O(log M) per step instead of one comparison per milestone (10^5 steps x 10^5 milestones took
    11 s); the comparisons are the same, so the counts are identical."""
    if ops is SCALAR:
        return float(bisect.bisect_right(values, u, key=None if n is None else (lambda m: m * n)))
    u = np.asarray(u, dtype=np.float64)
    scale = 1.0 if n is None else np.asarray(n, dtype=np.float64)
    ms = np.asarray(values, dtype=np.float64)
    shape = np.broadcast(u, scale).shape
    lo = np.zeros(shape, dtype=np.int64)  # invariant: milestones [0, lo) reached, [hi, M) not
    hi = np.full(shape, len(ms), dtype=np.int64)
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        open_ = lo < hi
        reached = open_ & (u >= ms[np.minimum(mid, len(ms) - 1)] * scale)
        lo = np.where(reached, mid + 1, lo)
        hi = np.where(open_ & ~reached, mid, hi)
    return lo.astype(np.float64)


_EXP_ALLOWED = "gamma (PyTorch) or decay_rate + decay_steps [+ staircase] (Keras)"


@register("exponential")
@dataclass(frozen=True, kw_only=True)
class Exponential(ShapeArgs):
    """ExponentialLR ``base_lr * gamma ** t``, or Keras ExponentialDecay
    ``base_lr * decay_rate ** (t / decay_steps)`` (floored with ``staircase``). Absolute.

    >>> Exponential(gamma=0.5).build(1.0).at(3, 10)
    0.125
    >>> Exponential(decay_rate=0.5, decay_steps=2, staircase=True).build(1.0).at(3, 10)
    0.5
    """

    gamma: float | None = number(None, lo=0.0, nullable=True, help="PyTorch: factor per step")
    decay_rate: float | None = number(None, lo=0.0, nullable=True, help="Keras: factor per decay_steps")
    decay_steps: int | None = integer(None, lo=1, nullable=True, help="Keras: steps per decay_rate")
    staircase: bool = boolean(False, help="Keras: decay in whole decay_steps")

    SCHEMA_RULES: ClassVar[dict[str, Any]] = {"oneOf": [
        {"required": ["gamma"], "not": {"anyOf": [{"required": ["decay_rate"]},
                                                   {"required": ["decay_steps"]}]}},
        {"required": ["decay_rate", "decay_steps"], "not": {"required": ["gamma"]}}]}

    def check(self) -> None:
        if self.gamma is not None:
            if self.decay_rate is not None or self.decay_steps is not None or self.staircase:
                raise ValidationError("gamma", "give either gamma or decay_rate/decay_steps", _EXP_ALLOWED)
        elif self.decay_rate is None or self.decay_steps is None:
            raise ValidationError("gamma", "missing required field", _EXP_ALLOWED)

    def build(self, base_lr: float) -> Shape:
        if self.gamma is not None:
            g = self.gamma
            return self._absolute(lambda ops, u, n: base_lr * ops.pow(g, u))
        rate, dsteps, stair = self.decay_rate, self.decay_steps, self.staircase

        def f(ops: Ops, u: Any, _n: Any) -> Any:
            p = u / dsteps
            return base_lr * ops.pow(rate, ops.floor(p) if stair else p)

        return self._absolute(f)


@register("inverse_time")
@dataclass(frozen=True, kw_only=True)
class InverseTime(ShapeArgs):
    """Keras InverseTimeDecay: ``base_lr / (1 + decay_rate * t / decay_steps)``. Absolute.

    >>> InverseTime(decay_rate=1.0, decay_steps=2).build(1.0).at(2, 10)
    0.5
    """

    decay_rate: float = number(lo=0.0, help="decay per decay_steps")
    decay_steps: int = integer(lo=1, help="steps per unit of decay")
    staircase: bool = boolean(False, help="decay in whole decay_steps")

    def build(self, base_lr: float) -> Shape:
        rate, dsteps, stair = self.decay_rate, self.decay_steps, self.staircase

        def f(ops: Ops, u: Any, _n: Any) -> Any:
            p = u / dsteps
            return base_lr / (1.0 + rate * (ops.floor(p) if stair else p))

        return self._absolute(f)


@register("linear")
@dataclass(frozen=True, kw_only=True)
class Linear(ShapeArgs):
    """LinearLR: ``base_lr * (s + (e - s) * min(t, L) / L)``.

    >>> Linear(start_factor=1.0, end_factor=0.0).build(1.0).at(3, 4)
    0.25
    """

    start_factor: float = number(1.0 / 3, **_FRACTION, lo_open=True, help="factor at step 0")
    end_factor: float = number(1.0, **_FRACTION, help="factor from total_iters on")
    total_iters: int | None = _length_field()

    def build(self, base_lr: float) -> Shape:
        s0, e0 = self.start_factor, self.end_factor

        def f(ops: Ops, u: Any, n: Any) -> Any:
            return base_lr * (s0 + (e0 - s0) * ops.minimum(u, n) / n)

        return self._make(f, self.total_iters)


@register("polynomial")
@dataclass(frozen=True, kw_only=True)
class Polynomial(ShapeArgs):
    """PolynomialLR / Keras PolynomialDecay:
    ``(base_lr - end) * (1 - min(t, L) / L) ** power + end``.

    With ``cycle`` (Keras), ``L`` grows to the next multiple that covers ``t``.

    >>> Polynomial(power=2.0).build(1.0).at(5, 10)
    0.25
    """

    total_iters: int | None = _length_field()
    power: float = number(1.0, lo=0.0, help="exponent of the decay")
    end_learning_rate: float = number(0.0, lo=0.0, tags=LR, help="final LR (at most base_lr)")
    cycle: bool = boolean(False, help="Keras: restart with a longer length instead of holding the end")

    def build(self, base_lr: float) -> Shape:
        pw, cyc = self.power, self.cycle
        end = _lr_bound(self.end_learning_rate, base_lr, "end_learning_rate")

        def f(ops: Ops, u: Any, n: Any) -> Any:
            if cyc:
                n = n * ops.maximum(ops.ceil(u / n), 1.0)
                frac = u / n
            else:
                frac = ops.minimum(u, n) / n
            return (base_lr - end) * ops.pow(1.0 - frac, pw) + end

        return self._make(f, self.total_iters)


@register("cosine")
@dataclass(frozen=True, kw_only=True)
class Cosine(ShapeArgs):
    """CosineAnnealingLR (closed form):
    ``eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``.

    With an explicit ``T_max`` it is periodic past the end, exactly as PyTorch;
    progress-based (``T_max`` omitted) it holds ``eta_min`` at the end.

    >>> Cosine(eta_min=0.1).build(1.0).at(10, 10)
    0.1
    """

    T_max: int | None = integer(None, lo=1, nullable=True, help=_LENGTH_HELP)
    eta_min: float = number(0.0, lo=0.0, tags=LR, help="lowest LR (at most base_lr)")

    def build(self, base_lr: float) -> Shape:
        lo = _lr_bound(self.eta_min, base_lr, "eta_min")

        def f(ops: Ops, u: Any, n: Any) -> Any:
            return lo + (base_lr - lo) * (1.0 + ops.cos(math.pi * u / n)) / 2.0

        return self._make(f, self.T_max)


@register("cosine_restarts")
@dataclass(frozen=True, kw_only=True)
class CosineRestarts(ShapeArgs):
    """CosineAnnealingWarmRestarts (SGDR), with Keras's ``m_mul`` peak decay per restart.

    Cycle ``i`` starts at ``T_0 * (T_mult**i - 1) / (T_mult - 1)`` and lasts
    ``T_0 * T_mult**i`` steps; within it
    ``lr = eta_min + (base_lr - eta_min) * m_mul**i * (1 + cos(pi * T_cur / T_i)) / 2``.

    >>> s = CosineRestarts(T_0=2).build(1.0)
    >>> [s.at(t, 9) for t in range(4)]
    [1.0, 0.5, 1.0, 0.5]
    """

    T_0: int = integer(lo=1, help="length of the first cycle")
    T_mult: int = integer(1, lo=1, help="each cycle is this many times longer than the last")
    eta_min: float = number(0.0, lo=0.0, tags=LR, help="lowest LR (at most base_lr)")
    m_mul: float = number(1.0, **_FRACTION, help="Keras: peak factor per restart")

    def build(self, base_lr: float) -> Shape:
        t0, mult, mm = self.T_0, self.T_mult, self.m_mul
        lo = _lr_bound(self.eta_min, base_lr, "eta_min")
        log_mult = math.log(mult) if mult > 1 else 1.0

        def start_of(ops: Ops, i: Any) -> Any:
            return t0 * i if mult == 1 else t0 * (ops.pow(float(mult), i) - 1.0) / (mult - 1.0)

        def f(ops: Ops, u: Any, _n: Any) -> Any:
            if mult == 1:
                i = ops.floor(u / t0)
            else:
                # Closed form for the cycle index, then an exact integer correction:
                # the logarithm may land a hair on the wrong side of a boundary.
                i = ops.floor(ops.log(u / t0 * (mult - 1.0) + 1.0) / log_mult)
                i = ops.where(u < start_of(ops, i), i - 1.0, i)
                i = ops.where(u >= start_of(ops, i + 1.0), i + 1.0, i)
            t_cur = u - start_of(ops, i)
            t_i = t0 * ops.pow(float(mult), i)
            return lo + (base_lr - lo) * ops.pow(mm, i) * (1.0 + ops.cos(math.pi * t_cur / t_i)) \
                / 2.0

        return self._absolute(f)


@register("onecycle")
@dataclass(frozen=True, kw_only=True)
class OneCycle(ShapeArgs):
    """OneCycleLR: warm from ``max_lr/div_factor`` to ``max_lr``, then anneal to
    ``max_lr/(div_factor*final_div_factor)`` (PyTorch's phases, cos or linear).

    ``max_lr`` defaults to the spec's ``base_lr``. PyTorch extrapolates the last
    phase at ``t == total_steps`` (one step past its end, and below zero for
    ``linear``) and raises after it; here every phase is clamped, so from
    ``t = total_steps - 1`` on the LR holds the final value.

    >>> s = OneCycle(pct_start=0.5, anneal_strategy="linear", div_factor=10.0).build(1.0)
    >>> s.at(0, 11), s.at(4.5, 11)
    (0.1, 1.0)
    """

    max_lr: float | None = number(None, lo=0.0, lo_open=True, tags=LR, nullable=True,
                                  help="peak LR (omitted: base_lr)")
    total_steps: int | None = integer(None, lo=1, nullable=True, help=_LENGTH_HELP)
    pct_start: float = number(0.3, **_FRACTION, help="fraction of the run spent warming up")
    anneal_strategy: str = choice(("cos", "linear"), "cos", help="shape of each phase")
    div_factor: float = number(25.0, lo=0.0, lo_open=True, help="initial LR = max_lr / div_factor")
    final_div_factor: float = number(1e4, lo=0.0, lo_open=True,
                                     help="final LR = initial LR / final_div_factor")
    three_phase: bool = boolean(False, help="anneal back to the initial LR before the final phase")

    def build(self, base_lr: float) -> Shape:
        peak = base_lr if self.max_lr is None else self.max_lr
        pct, three = self.pct_start, self.three_phase
        initial = peak / self.div_factor
        floor_lr = initial / self.final_div_factor
        cos_anneal = self.anneal_strategy == "cos"

        def anneal(ops: Ops, start: float, end: float, p: Any) -> Any:
            if cos_anneal:
                return end + (start - end) / 2.0 * (ops.cos(math.pi * p) + 1.0)
            return (end - start) * p + start

        def f(ops: Ops, u: Any, n: Any) -> Any:
            if three:
                phases = [(pct * n - 1.0, initial, peak),
                          (2.0 * pct * n - 2.0, peak, initial),
                          (n - 1.0, initial, floor_lr)]
            else:
                phases = [(pct * n - 1.0, initial, peak), (n - 1.0, peak, floor_lr)]
            out = None
            taken = None
            start_step = 0.0
            for i, (end_step, lr_a, lr_b) in enumerate(phases):
                span = end_step - start_step
                p = ops.where(span > 0, (u - start_step) / ops.where(span > 0, span, 1.0), 1.0)
                p = ops.minimum(ops.maximum(p, 0.0), 1.0)
                val = anneal(ops, lr_a, lr_b, p)
                here = (u <= end_step) if i < len(phases) - 1 else (u == u)
                if out is None:
                    out, taken = val, here
                else:
                    out = ops.where(taken, out, val)
                    taken = ops.where(taken, taken, here)
                start_step = end_step
            return out

        return self._make(f, self.total_steps)


@register("cyclic")
@dataclass(frozen=True, kw_only=True)
class Cyclic(ShapeArgs):
    """CyclicLR (Smith's CLR): triangle waves between ``base_lr`` and ``max_lr``.

    ``triangular2`` halves the amplitude every cycle, ``exp_range`` scales it by
    ``gamma ** t``. Absolute. (The shape's own ``base_lr`` field, default the
    spec's ``base_lr``, is the attribute ``cycle_base_lr``.)

    >>> s = Cyclic(max_lr=1.0, step_size_up=2).build(0.1)
    >>> [round(s.at(t, 9), 3) for t in range(5)]
    [0.1, 0.55, 1.0, 0.55, 0.1]
    """

    cycle_base_lr: float | None = number(None, lo=0.0, lo_open=True, tags=LR, key="base_lr", nullable=True,
                                         help="lower LR of the wave (omitted: the spec's base_lr)")
    max_lr: float = number(lo=0.0, lo_open=True, tags=LR, help="upper LR of the wave")
    step_size_up: int = integer(2000, lo=1, help="steps from the bottom to the top")
    step_size_down: int | None = integer(None, lo=1, nullable=True,
                                        help="steps from the top down (omitted: step_size_up)")
    mode: str = choice(("triangular", "triangular2", "exp_range"), "triangular",
                       help="how the amplitude changes from cycle to cycle")
    gamma: float = number(1.0, **_FRACTION, lo_open=True, help="exp_range: amplitude factor per step")

    def build(self, base_lr: float) -> Shape:
        lo = base_lr if self.cycle_base_lr is None else self.cycle_base_lr
        hi, g, mode = self.max_lr, self.gamma, self.mode
        up = float(self.step_size_up)
        down = up if self.step_size_down is None else float(self.step_size_down)
        total = up + down
        ratio = up / total

        def f(ops: Ops, u: Any, _n: Any) -> Any:
            cycle = ops.floor(1.0 + u / total)
            x = 1.0 + u / total - cycle
            scale = ops.where(x <= ratio, x / ratio, (x - 1.0) / (ratio - 1.0))
            height = (hi - lo) * scale
            if mode == "triangular":
                return lo + height * 1.0
            if mode == "triangular2":
                return lo + height * (1 / ops.pow(2.0, cycle - 1.0))
            return lo + height * ops.pow(g, u)

        return self._absolute(f)


def _boundaries(boundaries: Any, bpath: str) -> tuple[float, ...]:
    if not isinstance(boundaries, list | tuple):
        raise ValidationError(bpath, "expected a list", "increasing integer steps >= 0")
    bounds = [float(check_int(b, join(bpath, i), lo=0)) for i, b in enumerate(boundaries)]
    for i in range(1, len(bounds)):
        if bounds[i] <= bounds[i - 1]:
            raise ValidationError(join(bpath, i), f"{boundaries[i]!r} is not above the previous one",
                                  "strictly increasing boundaries")
    return tuple(bounds)


@register("piecewise_constant")
@dataclass(frozen=True, kw_only=True)
class PiecewiseConstant(ShapeArgs):
    """Keras PiecewiseConstantDecay: ``values[i]`` while ``boundaries[i-1] < t <= boundaries[i]``.

    The switch happens at ``t = boundary + 1`` (Keras's inclusive left piece).
    Values are absolute learning rates. Absolute.

    >>> s = PiecewiseConstant(boundaries=[2], values=[1.0, 0.5]).build(1.0)
    >>> [s.at(t, 9) for t in range(4)]
    [1.0, 1.0, 1.0, 0.5]
    """

    boundaries: tuple[float, ...] = custom(
        _boundaries, {"type": "array", "items": {"type": "integer", "minimum": 0}},
        help="strictly increasing steps at which the next value starts (one step later)")
    values: tuple[float, ...] = numbers(lo=0.0, tags=LR, help="one LR per piece: len(boundaries) + 1")

    def check(self) -> None:
        if len(self.values) != len(self.boundaries) + 1:
            raise ValidationError("values", f"expected {len(self.boundaries) + 1} values (one more "
                                  "than boundaries)", "a list of learning rates >= 0")

    def build(self, base_lr: float) -> Shape:
        bounds, vals = self.boundaries, self.values

        def f(ops: Ops, u: Any, _n: Any) -> Any:
            out = vals[0] + 0.0 * u
            for b, v in zip(bounds, vals[1:], strict=True):
                out = ops.where(u > b, v, out)
            return out

        return self._absolute(f)


@register("rex")
@dataclass(frozen=True, kw_only=True)
class Rex(ShapeArgs):
    """REX (Chen, Wolfe, Kyrillidis, MLSys 2022), the paper's profile:
    ``eta_min + (base_lr - eta_min) * (1 - z) / (1 - z / 2)`` with ``z = min(t, L) / L``.

    >>> round(Rex().build(1.0).at(5, 10), 6)
    0.666667
    """

    total_iters: int | None = _length_field()
    eta_min: float = number(0.0, lo=0.0, tags=LR, help="lowest LR (at most base_lr)")

    def build(self, base_lr: float) -> Shape:
        lo = _lr_bound(self.eta_min, base_lr, "eta_min")

        def f(ops: Ops, u: Any, n: Any) -> Any:
            z = ops.minimum(u, n) / n
            return lo + (base_lr - lo) * (1.0 - z) / (1.0 - z / 2.0)

        return self._make(f, self.total_iters)


WSD_DECAYS = ("linear", "cosine", "1-sqrt")


def decay_steps_of(decay_fraction: float, total: Any, ops: Ops = SCALAR) -> Any:
    """Length of a cool-down that is ``decay_fraction`` of ``total`` (at least one step)."""
    return ops.minimum(total, ops.maximum(1.0, ops.floor(decay_fraction * total)))


def cooldown_profile(kind: str) -> Callable[[Ops, Any], Any]:
    """Decay factor ``g(q)`` from 1 at ``q = 0`` to 0 at ``q = 1``."""
    if kind == "linear":
        return lambda ops, q: 1.0 - q
    if kind == "cosine":
        return lambda ops, q: (1.0 + ops.cos(math.pi * q)) / 2.0
    return lambda ops, q: 1.0 - ops.sqrt(q)


@register("wsd")
@dataclass(frozen=True, kw_only=True)
class WSD(ShapeArgs):
    """Warmup-stable-decay (Hägele et al. 2024): hold ``base_lr``, then cool down
    over the last ``decay_fraction`` of the run (``linear``, ``cosine`` or ``1-sqrt``).

    The hold lasts ``L - D`` steps with ``D = max(1, floor(decay_fraction * L))``
    (as in ``epfml/schedules-and-scaling``); warm-up is the spec's ``warmup``.

    >>> s = WSD(decay_fraction=0.5, decay_shape="linear").build(1.0)
    >>> [s.at(t, 4) for t in range(5)]
    [1.0, 1.0, 1.0, 0.5, 0.0]
    """

    decay_fraction: float = number(0.2, **_FRACTION, lo_open=True, help="share of the run spent cooling down")
    decay_shape: str = choice(WSD_DECAYS, "1-sqrt", help="profile of the cool-down")
    eta_min: float = number(0.0, lo=0.0, tags=LR, help="LR at the end (at most base_lr)")
    total_iters: int | None = _length_field()

    def build(self, base_lr: float) -> Shape:
        frac = self.decay_fraction
        lo = _lr_bound(self.eta_min, base_lr, "eta_min")
        g = cooldown_profile(self.decay_shape)

        def f(ops: Ops, u: Any, n: Any) -> Any:
            d = decay_steps_of(frac, n, ops)
            q = ops.minimum(ops.maximum((u - (n - d)) / d, 0.0), 1.0)
            return lo + (base_lr - lo) * g(ops, q)

        return self._make(f, self.total_iters)


@dataclass(frozen=True)
class Sequence_(Shape):
    """Shapes joined end to end; each part restarts at its own step 0.

    Like PyTorch's SequentialLR and optax's ``join_schedules``. Every part but
    the last has a fixed number of ``steps``; the last may omit it and then
    takes the rest of the planned total (and follows re-plans).
    """

    parts: tuple[tuple[Shape, int | None], ...] = ()

    @property
    def follows_plan(self) -> bool:
        last, steps = self.parts[-1]
        return steps is None and last.follows_plan

    def prepare(self, local_plan: _plan.PlanHistory) -> Callable[[Ops, Any], Any]:
        parts = []
        boundary = 0
        for shape, steps in self.parts:
            sub_plan = [(0, steps)] if steps is not None else _plan.shift(local_plan, boundary)
            parts.append((shape.prepare(sub_plan), boundary))
            boundary += steps or 0

        def f(ops: Ops, s: Any) -> Any:
            out = None
            for part, start in parts:
                val = part(ops, ops.maximum(s - start, 0.0))
                out = val if out is None else ops.where(s >= start, val, out)
            return out

        return f


def union_schema(kinds: Sequence[str]) -> dict[str, Any]:
    """JSON Schema of a shape object whose ``type`` is one of ``kinds``."""
    options = []
    for kind in kinds:
        obj = SHAPES[kind].object_schema()
        options.append({**obj, "properties": {"type": {"const": kind}, **obj["properties"]},
                        "required": ["type", *obj.get("required", ())]})
    return {"oneOf": options}


def _parts(parts: Any, path: str) -> tuple[Any, ...]:
    """The raw parts list (each part is read by the spec, which knows ``base_lr``)."""
    if not isinstance(parts, list | tuple) or not parts:
        raise ValidationError(path, "expected a non-empty list of parts",
                              '[{"steps": N, "shape": {...}}, ..., {"shape": {...}}]')
    return tuple(parts)


_BASIC = tuple(SHAPES)  # the shapes a sequence may join (registered above)


@register("sequence")
@dataclass(frozen=True, kw_only=True)
class SequenceArgs(ShapeArgs):
    """Shapes joined end to end (PyTorch's SequentialLR); read by the spec, see :func:`sequence`."""

    parts: tuple[Any, ...] = custom(_parts, {
        "type": "array", "minItems": 1,
        "items": {"type": "object", "properties": {
            "steps": {"type": "integer", "minimum": 1,
                      "description": "length of this part (every part but the last needs it)"},
            "shape": union_schema(_BASIC)}, "required": ["shape"], "additionalProperties": False}},
        help="the parts in order; each restarts at its own step 0")


def sequence(parts: Sequence[tuple[Shape, int | None]]) -> Shape:
    """Join validated shapes; see :class:`Sequence_`.

    >>> s = sequence([(Constant(factor=0.5).build(1.0), 2), (Cosine().build(1.0), None)])
    >>> [round(s.at(t, 4), 3) for t in range(5)]
    [0.5, 0.5, 1.0, 0.5, 0.0]
    """
    return Sequence_("sequence", lambda ops, u, n: None, progress_based=False, parts=tuple(parts))
