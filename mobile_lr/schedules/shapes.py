"""Schedule shapes: small pure functions of the step, one factory each.

Each factory validates its arguments once and returns a :class:`Shape`, whose
formula maps a (virtual) step ``u`` and a length ``L`` to an absolute learning
rate. A shape whose length argument is omitted is *progress-based*: its length
is the planned total, and re-planning stretches it (see :mod:`.plan`). A shape
with an explicit length, or one defined by absolute step counts (``step``,
``multistep`` with integer milestones, ``exponential``, ``inverse_time``,
``cyclic``, ``cosine_restarts``, ``piecewise_constant``), is *absolute*: it
ignores budget changes, as a plain PyTorch scheduler would.

"The LR at step t" means what ``scheduler.get_last_lr()`` returns after ``t``
calls of ``scheduler.step()`` in PyTorch (t = 0 is the initial LR); every
formula below is transcribed from ``torch.optim.lr_scheduler`` (2.13) or from
the Keras 3 schedule it names, and the test-suite checks it step for step.

>>> s = cosine(0.1)
>>> [round(s.at(t, 4), 6) for t in range(5)]
[0.1, 0.085355, 0.05, 0.014645, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mobile_lr.validation import ValidationError, check_int, check_number, join

from . import plan as _plan
from ._ops import SCALAR, Ops

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
    params: Mapping[str, Any] = field(default_factory=dict)

    def evaluate(self, ops: Ops, s: Any, local_plan: _plan.PlanHistory) -> Any:
        """LR at local step(s) ``s`` given the plan history in local time."""
        if self.progress_based:
            u, total = _plan.warp(ops, s, _plan.segments(local_plan))
            return self.formula(ops, u, total)
        return self.formula(ops, s, self.length)

    @property
    def follows_plan(self) -> bool:
        """Whether budget changes (re-plans) move this shape."""
        return self.progress_based

    def at(self, step: float, total: int) -> float:
        """LR at one step under a single fixed plan of ``total`` steps."""
        return float(self.evaluate(SCALAR, float(step), [(0, total)]))


# --------------------------------------------------------------------------- helpers

def _num(value: Any, path: str, name: str, **bounds: Any) -> float:
    return check_number(value, join(path, name), **bounds)


def _length(value: Any, path: str, name: str) -> int | None:
    return None if value is None else check_int(value, join(path, name), lo=1)


def _lr_bound(value: float, base_lr: float, path: str, name: str) -> float:
    if value > base_lr:
        raise ValidationError(join(path, name), f"{value!r} is above base_lr {base_lr!r}",
                              f"a number in [0, base_lr={base_lr!r}]")
    return value


def _make(kind: str, formula: Formula, length: int | None, **params: Any) -> Shape:
    return Shape(kind, formula, progress_based=length is None, length=length, params=params)


# --------------------------------------------------------------------------- shapes

def constant(base_lr: float, *, factor: float = 1.0, total_iters: int | None = None,
             path: str = "shape") -> Shape:
    """ConstantLR: ``base_lr * factor`` for ``t < total_iters``, then ``base_lr``.

    With the default ``factor=1`` this is Keras's constant schedule. An omitted
    ``total_iters`` means the planned total, so the factor holds all run long.

    >>> s = constant(0.1, factor=0.5, total_iters=2)
    >>> s.at(1, 10), s.at(2, 10)
    (0.05, 0.1)
    """
    factor = _num(factor, path, "factor", lo=0.0, hi=1.0)
    length = _length(total_iters, path, "total_iters")

    def f(ops: Ops, u: Any, n: Any) -> Any:
        return ops.where(u < n, base_lr * factor, base_lr * (factor + (1.0 - factor)))

    return _make("constant", f, length, factor=factor)


def step(base_lr: float, *, step_size: int, gamma: float = 0.1, path: str = "shape") -> Shape:
    """StepLR: ``base_lr * gamma ** floor(t / step_size)``. Absolute.

    >>> [round(step(1.0, step_size=2, gamma=0.5).at(t, 9), 3) for t in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    size = check_int(step_size, join(path, "step_size"), lo=1)
    gamma = _num(gamma, path, "gamma", lo=0.0)

    def f(ops: Ops, u: Any, _n: Any) -> Any:
        return base_lr * gamma ** ops.floor(u / size)

    return Shape("step", f, progress_based=False, params={"step_size": size, "gamma": gamma})


def multistep(base_lr: float, *, milestones: Sequence[Any], gamma: float = 0.1,
              path: str = "shape") -> Shape:
    """MultiStepLR: multiply by ``gamma`` at each milestone (the decay applies *at* ``t == m``).

    Milestones are either all integer steps (absolute, as in PyTorch) or all
    fractions in (0, 1) of the planned total (progress-based: they move when
    the budget changes).

    >>> s = multistep(1.0, milestones=[0.5], gamma=0.1)
    >>> s.at(4, 10), s.at(5, 10)
    (1.0, 0.1)
    """
    mpath = join(path, "milestones")
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
    gamma = _num(gamma, path, "gamma", lo=0.0)

    def f(ops: Ops, u: Any, n: Any) -> Any:
        count = 0.0
        for m in values:
            count = count + ops.where(u >= (m * n if fractions else m), 1.0, 0.0)
        return base_lr * gamma ** count

    return Shape("multistep", f, progress_based=fractions,
                 params={"milestones": values, "gamma": gamma})


def exponential(base_lr: float, *, gamma: float | None = None, decay_rate: float | None = None,
                decay_steps: int | None = None, staircase: bool = False,
                path: str = "shape") -> Shape:
    """ExponentialLR ``base_lr * gamma ** t``, or Keras ExponentialDecay
    ``base_lr * decay_rate ** (t / decay_steps)`` (floored with ``staircase``). Absolute.

    >>> exponential(1.0, gamma=0.5).at(3, 10)
    0.125
    >>> exponential(1.0, decay_rate=0.5, decay_steps=2, staircase=True).at(3, 10)
    0.5
    """
    if gamma is not None:
        if decay_rate is not None or decay_steps is not None or staircase:
            raise ValidationError(join(path, "gamma"), "give either gamma or decay_rate/decay_steps",
                                  "gamma (PyTorch) or decay_rate + decay_steps [+ staircase] (Keras)")
        g = _num(gamma, path, "gamma", lo=0.0)
        return Shape("exponential", lambda ops, u, n: base_lr * g ** u, progress_based=False,
                     params={"gamma": g})
    if decay_rate is None or decay_steps is None:
        raise ValidationError(join(path, "gamma"), "missing required field",
                              "gamma (PyTorch) or decay_rate + decay_steps [+ staircase] (Keras)")
    rate = _num(decay_rate, path, "decay_rate", lo=0.0)
    dsteps = check_int(decay_steps, join(path, "decay_steps"), lo=1)
    stair = bool(staircase)

    def f(ops: Ops, u: Any, _n: Any) -> Any:
        p = u / dsteps
        return base_lr * rate ** (ops.floor(p) if stair else p)

    return Shape("exponential", f, progress_based=False,
                 params={"decay_rate": rate, "decay_steps": dsteps, "staircase": stair})


def inverse_time(base_lr: float, *, decay_rate: float, decay_steps: int, staircase: bool = False,
                 path: str = "shape") -> Shape:
    """Keras InverseTimeDecay: ``base_lr / (1 + decay_rate * t / decay_steps)``. Absolute.

    >>> inverse_time(1.0, decay_rate=1.0, decay_steps=2).at(2, 10)
    0.5
    """
    rate = _num(decay_rate, path, "decay_rate", lo=0.0)
    dsteps = check_int(decay_steps, join(path, "decay_steps"), lo=1)
    stair = bool(staircase)

    def f(ops: Ops, u: Any, _n: Any) -> Any:
        p = u / dsteps
        return base_lr / (1.0 + rate * (ops.floor(p) if stair else p))

    return Shape("inverse_time", f, progress_based=False,
                 params={"decay_rate": rate, "decay_steps": dsteps, "staircase": stair})


def linear(base_lr: float, *, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
           total_iters: int | None = None, path: str = "shape") -> Shape:
    """LinearLR: ``base_lr * (s + (e - s) * min(t, L) / L)``.

    >>> linear(1.0, start_factor=1.0, end_factor=0.0).at(3, 4)
    0.25
    """
    s0 = _num(start_factor, path, "start_factor", lo=0.0, hi=1.0, lo_open=True)
    e0 = _num(end_factor, path, "end_factor", lo=0.0, hi=1.0)
    length = _length(total_iters, path, "total_iters")

    def f(ops: Ops, u: Any, n: Any) -> Any:
        return base_lr * (s0 + (e0 - s0) * ops.minimum(u, n) / n)

    return _make("linear", f, length, start_factor=s0, end_factor=e0)


def polynomial(base_lr: float, *, total_iters: int | None = None, power: float = 1.0,
               end_learning_rate: float = 0.0, cycle: bool = False, path: str = "shape") -> Shape:
    """PolynomialLR / Keras PolynomialDecay:
    ``(base_lr - end) * (1 - min(t, L) / L) ** power + end``.

    With ``cycle`` (Keras), ``L`` grows to the next multiple that covers ``t``.

    >>> polynomial(1.0, power=2.0).at(5, 10)
    0.25
    """
    length = _length(total_iters, path, "total_iters")
    pw = _num(power, path, "power", lo=0.0)
    end = _lr_bound(_num(end_learning_rate, path, "end_learning_rate", lo=0.0), base_lr, path,
                    "end_learning_rate")
    cyc = bool(cycle)

    def f(ops: Ops, u: Any, n: Any) -> Any:
        if cyc:
            n = n * ops.maximum(ops.ceil(u / n), 1.0)
            frac = u / n
        else:
            frac = ops.minimum(u, n) / n
        return (base_lr - end) * (1.0 - frac) ** pw + end

    return _make("polynomial", f, length, power=pw, end_learning_rate=end, cycle=cyc)


def cosine(base_lr: float, *, T_max: int | None = None, eta_min: float = 0.0,
           path: str = "shape") -> Shape:
    """CosineAnnealingLR (closed form):
    ``eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``.

    With an explicit ``T_max`` it is periodic past the end, exactly as PyTorch;
    progress-based (``T_max`` omitted) it holds ``eta_min`` at the end.

    >>> cosine(1.0, eta_min=0.1).at(10, 10)
    0.1
    """
    length = _length(T_max, path, "T_max")
    lo = _lr_bound(_num(eta_min, path, "eta_min", lo=0.0), base_lr, path, "eta_min")

    def f(ops: Ops, u: Any, n: Any) -> Any:
        return lo + (base_lr - lo) * (1.0 + ops.cos(math.pi * u / n)) / 2.0

    return _make("cosine", f, length, eta_min=lo)


def cosine_restarts(base_lr: float, *, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                    m_mul: float = 1.0, path: str = "shape") -> Shape:
    """CosineAnnealingWarmRestarts (SGDR), with Keras's ``m_mul`` peak decay per restart.

    Cycle ``i`` starts at ``T_0 * (T_mult**i - 1) / (T_mult - 1)`` and lasts
    ``T_0 * T_mult**i`` steps; within it
    ``lr = eta_min + (base_lr - eta_min) * m_mul**i * (1 + cos(pi * T_cur / T_i)) / 2``.

    >>> s = cosine_restarts(1.0, T_0=2)
    >>> [s.at(t, 9) for t in range(4)]
    [1.0, 0.5, 1.0, 0.5]
    """
    t0 = check_int(T_0, join(path, "T_0"), lo=1)
    mult = check_int(T_mult, join(path, "T_mult"), lo=1)
    lo = _lr_bound(_num(eta_min, path, "eta_min", lo=0.0), base_lr, path, "eta_min")
    mm = _num(m_mul, path, "m_mul", lo=0.0, hi=1.0)
    log_mult = math.log(mult) if mult > 1 else 1.0

    def start_of(i: Any) -> Any:
        return t0 * i if mult == 1 else t0 * (mult ** i - 1.0) / (mult - 1.0)

    def f(ops: Ops, u: Any, _n: Any) -> Any:
        if mult == 1:
            i = ops.floor(u / t0)
        else:
            # Closed form for the cycle index, then an exact integer correction:
            # the logarithm may land a hair on the wrong side of a boundary.
            i = ops.floor(ops.log(u / t0 * (mult - 1.0) + 1.0) / log_mult)
            i = ops.where(u < start_of(i), i - 1.0, i)
            i = ops.where(u >= start_of(i + 1.0), i + 1.0, i)
        t_cur = u - start_of(i)
        t_i = t0 * float(mult) ** i
        return lo + (base_lr - lo) * mm ** i * (1.0 + ops.cos(math.pi * t_cur / t_i)) / 2.0

    return Shape("cosine_restarts", f, progress_based=False,
                 params={"T_0": t0, "T_mult": mult, "eta_min": lo, "m_mul": mm})


def onecycle(base_lr: float, *, max_lr: float | None = None, total_steps: int | None = None,
             pct_start: float = 0.3, anneal_strategy: str = "cos", div_factor: float = 25.0,
             final_div_factor: float = 1e4, three_phase: bool = False,
             path: str = "shape") -> Shape:
    """OneCycleLR: warm from ``max_lr/div_factor`` to ``max_lr``, then anneal to
    ``max_lr/(div_factor*final_div_factor)`` (PyTorch's phases, cos or linear).

    ``max_lr`` defaults to the spec's ``base_lr``. PyTorch extrapolates the last
    phase at ``t == total_steps`` (one step past its end, and below zero for
    ``linear``) and raises after it; here every phase is clamped, so from
    ``t = total_steps - 1`` on the LR holds the final value.

    >>> s = onecycle(1.0, pct_start=0.5, anneal_strategy="linear", div_factor=10.0)
    >>> s.at(0, 11), s.at(4.5, 11)
    (0.1, 1.0)
    """
    peak = _num(base_lr if max_lr is None else max_lr, path, "max_lr", lo=0.0, lo_open=True)
    length = _length(total_steps, path, "total_steps")
    pct = _num(pct_start, path, "pct_start", lo=0.0, hi=1.0)
    if anneal_strategy not in ("cos", "linear"):
        raise ValidationError(join(path, "anneal_strategy"), f"unknown value {anneal_strategy!r}",
                              "cos, linear")
    div = _num(div_factor, path, "div_factor", lo=0.0, lo_open=True)
    final_div = _num(final_div_factor, path, "final_div_factor", lo=0.0, lo_open=True)
    initial = peak / div
    floor_lr = initial / final_div
    three = bool(three_phase)
    cos_anneal = anneal_strategy == "cos"

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

    return _make("onecycle", f, length, max_lr=peak, pct_start=pct,
                 anneal_strategy=anneal_strategy, div_factor=div,
                 final_div_factor=final_div, three_phase=three)


def cyclic(base_lr: float, *, max_lr: float, cycle_base_lr: float | None = None,
           step_size_up: int = 2000, step_size_down: int | None = None,
           mode: str = "triangular", gamma: float = 1.0, path: str = "shape") -> Shape:
    """CyclicLR (Smith's CLR): triangle waves between ``base_lr`` and ``max_lr``.

    ``triangular2`` halves the amplitude every cycle, ``exp_range`` scales it by
    ``gamma ** t``. Absolute. (In the spec the shape's own ``base_lr`` field,
    default the spec's ``base_lr``, is passed here as ``cycle_base_lr``.)

    >>> s = cyclic(0.1, max_lr=1.0, step_size_up=2)
    >>> [round(s.at(t, 9), 3) for t in range(5)]
    [0.1, 0.55, 1.0, 0.55, 0.1]
    """
    lo = _num(base_lr if cycle_base_lr is None else cycle_base_lr, path, "base_lr",
              lo=0.0, lo_open=True)
    hi = _num(max_lr, path, "max_lr", lo=0.0, lo_open=True)
    up = float(check_int(step_size_up, join(path, "step_size_up"), lo=1))
    down = up if step_size_down is None else float(
        check_int(step_size_down, join(path, "step_size_down"), lo=1))
    if mode not in ("triangular", "triangular2", "exp_range"):
        raise ValidationError(join(path, "mode"), f"unknown value {mode!r}",
                              "triangular, triangular2, exp_range")
    g = _num(gamma, path, "gamma", lo=0.0, hi=1.0, lo_open=True)
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
            return lo + height * (1 / (2.0 ** (cycle - 1.0)))
        return lo + height * g ** u

    return Shape("cyclic", f, progress_based=False,
                 params={"base_lr": lo, "max_lr": hi, "step_size_up": up,
                         "step_size_down": down, "mode": mode, "gamma": g})


def piecewise_constant(base_lr: float, *, boundaries: Sequence[int], values: Sequence[float],
                       path: str = "shape") -> Shape:
    """Keras PiecewiseConstantDecay: ``values[i]`` while ``boundaries[i-1] < t <= boundaries[i]``.

    The switch happens at ``t = boundary + 1`` (Keras's inclusive left piece).
    Values are absolute learning rates. Absolute.

    >>> s = piecewise_constant(1.0, boundaries=[2], values=[1.0, 0.5])
    >>> [s.at(t, 9) for t in range(4)]
    [1.0, 1.0, 1.0, 0.5]
    """
    bpath, vpath = join(path, "boundaries"), join(path, "values")
    if not isinstance(boundaries, list | tuple):
        raise ValidationError(bpath, "expected a list", "increasing integer steps >= 0")
    bounds = [float(check_int(b, join(bpath, i), lo=0)) for i, b in enumerate(boundaries)]
    for i in range(1, len(bounds)):
        if bounds[i] <= bounds[i - 1]:
            raise ValidationError(join(bpath, i), f"{boundaries[i]!r} is not above the previous one",
                                  "strictly increasing boundaries")
    if not isinstance(values, list | tuple) or len(values) != len(bounds) + 1:
        raise ValidationError(vpath, f"expected {len(bounds) + 1} values (one more than boundaries)",
                              "a list of learning rates >= 0")
    vals = [check_number(v, join(vpath, i), lo=0.0) for i, v in enumerate(values)]

    def f(ops: Ops, u: Any, _n: Any) -> Any:
        out = vals[0] + 0.0 * u
        for b, v in zip(bounds, vals[1:], strict=True):
            out = ops.where(u > b, v, out)
        return out

    return Shape("piecewise_constant", f, progress_based=False,
                 params={"boundaries": bounds, "values": vals})


def rex(base_lr: float, *, total_iters: int | None = None, eta_min: float = 0.0,
        path: str = "shape") -> Shape:
    """REX (Chen, Wolfe, Kyrillidis, MLSys 2022), the paper's profile:
    ``eta_min + (base_lr - eta_min) * (1 - z) / (1 - z / 2)`` with ``z = min(t, L) / L``.

    >>> round(rex(1.0).at(5, 10), 6)
    0.666667
    """
    length = _length(total_iters, path, "total_iters")
    lo = _lr_bound(_num(eta_min, path, "eta_min", lo=0.0), base_lr, path, "eta_min")

    def f(ops: Ops, u: Any, n: Any) -> Any:
        z = ops.minimum(u, n) / n
        return lo + (base_lr - lo) * (1.0 - z) / (1.0 - z / 2.0)

    return _make("rex", f, length, eta_min=lo)


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


def wsd(base_lr: float, *, decay_fraction: float = 0.2, decay_shape: str = "1-sqrt",
        eta_min: float = 0.0, total_iters: int | None = None, path: str = "shape") -> Shape:
    """Warmup-stable-decay (Hägele et al. 2024): hold ``base_lr``, then cool down
    over the last ``decay_fraction`` of the run (``linear``, ``cosine`` or ``1-sqrt``).

    The hold lasts ``L - D`` steps with ``D = max(1, floor(decay_fraction * L))``
    (as in ``epfml/schedules-and-scaling``); warm-up is the spec's ``warmup``.

    >>> s = wsd(1.0, decay_fraction=0.5, decay_shape="linear")
    >>> [s.at(t, 4) for t in range(5)]
    [1.0, 1.0, 1.0, 0.5, 0.0]
    """
    frac = _num(decay_fraction, path, "decay_fraction", lo=0.0, hi=1.0, lo_open=True)
    if decay_shape not in WSD_DECAYS:
        raise ValidationError(join(path, "decay_shape"), f"unknown value {decay_shape!r}",
                              ", ".join(WSD_DECAYS))
    lo = _lr_bound(_num(eta_min, path, "eta_min", lo=0.0), base_lr, path, "eta_min")
    length = _length(total_iters, path, "total_iters")
    g = cooldown_profile(decay_shape)

    def f(ops: Ops, u: Any, n: Any) -> Any:
        d = decay_steps_of(frac, n, ops)
        q = ops.minimum(ops.maximum((u - (n - d)) / d, 0.0), 1.0)
        return lo + (base_lr - lo) * g(ops, q)

    return _make("wsd", f, length, decay_fraction=frac, decay_shape=decay_shape, eta_min=lo)


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

    def evaluate(self, ops: Ops, s: Any, local_plan: _plan.PlanHistory) -> Any:
        out = None
        boundary = 0
        for shape, steps in self.parts:
            sub_plan = [(0, steps)] if steps is not None else _plan.shift(local_plan, boundary)
            val = shape.evaluate(ops, ops.maximum(s - boundary, 0.0), sub_plan)
            out = val if out is None else ops.where(s >= boundary, val, out)
            boundary += steps or 0
        return out


def sequence(parts: Sequence[tuple[Shape, int | None]]) -> Shape:
    """Join validated shapes; see :class:`Sequence_`.

    >>> s = sequence([(constant(1.0, factor=0.5), 2), (cosine(1.0), None)])
    >>> [round(s.at(t, 4), 3) for t in range(5)]
    [0.5, 0.5, 1.0, 0.5, 0.0]
    """
    return Sequence_("sequence", lambda ops, u, n: None, progress_based=False, parts=tuple(parts))
