"""The phone's physics, written once for one phone (floats) and for many (numpy arrays).

Every formula of the device model and of the planner's closed-form jumps stands here once,
against an ``ops`` back-end: :data:`SCALAR` evaluates it on Python floats with ``math``
(what the schedule manager and the Kotlin port do, bit for bit), :data:`ARRAY` on numpy
arrays, one element per phone (what the budget simulation of many phones does). A formula
that holds only in one regime (draining, charging below the CV knee, in the taper, full)
goes through :meth:`ops.switch <_Scalar.switch>`: on floats it calls the one branch that
applies, on arrays it evaluates every branch and picks per phone; a value that is only
defined under a condition (a logarithm, a division) goes through ``ops.when``, which on
floats evaluates it only when the condition holds.

The model (see :mod:`mobile_lr.device` for its choices):

* :func:`status_for`: the Android thermal status after a temperature, with the AOSP
  hysteresis (up at ``T >= threshold``, down below ``threshold - hysteresis``).
* :func:`advance`: ``dt`` seconds at constant load, split at the battery events (empty, CV
  knee, full) into pieces of constant heat, on each of which the RC closed form is exact.
* :func:`cool_down`: seconds of rest until the temperature falls to a target.
* :func:`battery_regime`, :func:`jump_bound`, :func:`jump`: the planner's runs of identical
  steps (``T_n = T_ss + (T_0 - T_ss)·q^n``; ``level_n = level_0 + n·δ``; in the taper
  ``v_n = v_0 + n·λ·d``), used by :mod:`mobile_lr.planner`.

Numbers of one profile that the formulas use are gathered once in :class:`Physics`
(``DeviceProfile.physics``); the usable battery energy is a per-phone input, because the
state of health varies across a fleet of one profile.
"""

from __future__ import annotations

import math
import operator
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np

from mobile_lr.schedules._ops import _ArrayOps, _ScalarOps

if TYPE_CHECKING:
    from mobile_lr.device import DeviceProfile

__all__ = [
    "ARRAY",
    "MAX_STEPS",
    "SCALAR",
    "Phone",
    "Physics",
    "Regime",
    "advance",
    "battery_regime",
    "cool_down",
    "jump",
    "jump_bound",
    "status_for",
    "steps_below",
]

#: The largest step count the planner reports (a bound that is never crossed).
MAX_STEPS = 10**9
#: Battery events split an interval into at most this many pieces (empty, knee, full ...).
MAX_PIECES = 8


# --------------------------------------------------------------------------- back-ends
# The schedule formulas' two back-ends (mobile_lr.schedules._ops), with what the device
# model adds: exp, lazy and multi-way choices, table look-ups and the planner's loop.

T = TypeVar("T")
F = TypeVar("F")


class _Scalar(_ScalarOps):
    """Python floats and ``math``: one phone, the results bit for bit what a port computes."""

    exp = staticmethod(math.exp)
    lookup = staticmethod(operator.getitem)
    not_ = staticmethod(operator.not_)
    any = staticmethod(bool)
    count_le = staticmethod(bisect_right)   # how many of the increasing edges are <= x

    # builtin min/max of two floats (NaN-safe as they are), at a third of their cost
    @staticmethod
    def minimum(a: Any, b: Any) -> Any:
        return b if b < a else a

    @staticmethod
    def maximum(a: Any, b: Any) -> Any:
        return b if b > a else a

    @staticmethod
    def when(cond: bool, value: Callable[[], Any], otherwise: Any) -> Any:
        """``value()`` where ``cond`` holds (only evaluated then), else ``otherwise``."""
        return value() if cond else otherwise

    @staticmethod
    def where_all(cond: bool, a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[Any, ...]:
        """:meth:`where` item by item over two tuples."""
        return a if cond else b

    @staticmethod
    def select(conds: Sequence[bool], choices: Sequence[Any], default: Any) -> Any:
        for i, cond in enumerate(conds):
            if cond:
                return choices[i]
        return default

    @staticmethod
    def switch(kind: int, branches: Sequence[Callable[..., Any]], *args: Any) -> Any:
        """``branches[kind](*args)``: only the branch that applies runs."""
        return branches[kind](*args)

    @staticmethod
    def until(body: Callable[[T, F], T], state: T, fixed: F, done: Callable[[T, F], bool]) -> T:
        """``state = body(state, fixed)`` until ``done(state, fixed)``."""
        while not done(state, fixed):
            state = body(state, fixed)
        return state


class _Array(_ArrayOps):
    """numpy arrays, one element per phone (float ``exp``/``log`` may differ from ``math``'s
    in the last bit, which can move a boundary by one step)."""

    exp = staticmethod(np.exp)
    not_ = staticmethod(np.logical_not)
    any = staticmethod(np.any)

    @staticmethod
    def when(cond: np.ndarray, value: Callable[[], Any], otherwise: Any) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.where(cond, value(), otherwise)

    @staticmethod
    def where_all(cond: np.ndarray, a: tuple[Any, ...], b: tuple[Any, ...]
                  ) -> tuple[np.ndarray, ...]:
        if np.all(cond):  # the common case: every phone still going (no copies then)
            return tuple(x if np.shape(x) == np.shape(cond) else np.where(cond, x, y)
                         for x, y in zip(a, b, strict=True))
        return tuple(np.where(cond, x, y) for x, y in zip(a, b, strict=True))

    @staticmethod
    def select(conds: Sequence[np.ndarray], choices: Sequence[Any], default: Any) -> np.ndarray:
        """The choice of the first condition that holds (``np.select``, at a fraction of its
        cost for a few conditions)."""
        out = default
        for cond, choice in zip(reversed(conds), reversed(choices), strict=True):
            out = np.where(cond, choice, out)
        return np.asarray(out)

    @staticmethod
    def switch(kind: np.ndarray, branches: Sequence[Callable[..., Any]], *args: Any) -> Any:
        """Each phone's own branch: every branch some phone takes runs on every phone, then
        each phone's result is picked (tuples item by item); a branch no phone takes does not
        run (phones of one cell often all take the same one)."""
        kind = np.asarray(kind, dtype=np.intp)
        if kind.ndim == 0:
            with np.errstate(all="ignore"):
                return branches[int(kind)](*args)
        taken = np.bincount(kind.ravel(), minlength=len(branches)) > 0 if kind.size else \
            np.zeros(len(branches), bool)
        with np.errstate(all="ignore"):
            outs = [branch(*args) if taken[k] else None for k, branch in enumerate(branches)]
        live = [out for out in outs if out is not None]
        if not live:  # no phone at all
            return branches[0](*args)
        if isinstance(live[0], tuple):
            picked = (_pick(kind, items) for items in
                      zip(*(o if o is not None else (None,) * len(live[0]) for o in outs),
                          strict=True))
            return type(live[0])(*picked) if hasattr(live[0], "_fields") else tuple(picked)
        return _pick(kind, outs)

    @staticmethod
    def lookup(table: Sequence[float], index: np.ndarray) -> np.ndarray:
        return np.asarray(table)[index]

    @staticmethod
    def count_le(edges: Sequence[float], x: np.ndarray) -> np.ndarray:
        """How many of the increasing edges are not above ``x`` (``bisect_right``: NaN counts
        all): one comparison per edge, several times faster than ``searchsorted`` on long
        arrays of a few edges."""
        below = np.zeros(np.shape(x), np.intp)
        for edge in edges:
            below += x < edge
        return len(edges) - below

    @staticmethod
    def until(body: Callable[[T, F], T], state: T, fixed: F, done: Callable[[T, F], Any]
              ) -> T:
        """``state = body(state, fixed)`` for the phones not ``done`` until none is left.

        ``state`` and ``fixed`` are NamedTuples of per-phone arrays (scalars are broadcast);
        ``body`` sees only the phones still going, and the result holds every phone's last
        state."""
        n = max(np.size(f) for f in (*state, *fixed))
        state, fixed = (type(t)(*(np.array(np.broadcast_to(f, (n,))) for f in t))
                        for t in (state, fixed))
        idx = np.nonzero(np.logical_not(done(state, fixed)))[0]
        while idx.size:
            part = type(fixed)(*(f[idx] for f in fixed))
            sub = body(type(state)(*(f[idx] for f in state)), part)
            for f, g in zip(state, sub, strict=True):
                f[idx] = g
            idx = idx[np.logical_not(done(sub, part))]
        return state


def _pick(kind: np.ndarray, choices: Sequence[Any]) -> Any:
    """``choices[kind]`` per phone (``np.choose``, faster for a few kinds): a choice every
    branch shares is passed through; a kind no phone has is None (its branch did not run)."""
    ks = [k for k, c in enumerate(choices) if c is not None]
    first = choices[ks[0]]
    if kind.size == 0 or (len(ks) > 1 and all(choices[k] is first for k in ks[1:])):
        return first
    out = np.broadcast_to(np.asarray(first), kind.shape)
    for k in ks[1:]:
        out = np.where(kind == k, choices[k], out)
    return out


SCALAR = _Scalar()
ARRAY = _Array()
Ops = _Scalar | _Array


# --------------------------------------------------------------------------- constants


@dataclass(frozen=True)
class Physics:
    """The numbers of one profile the formulas use, derived once (``DeviceProfile.physics``)."""

    profile: DeviceProfile
    thresholds: tuple[float, ...]        # status k begins at thresholds[k - 1]
    thresholds_down: tuple[float, ...]   # ... and ends below thresholds_down[k - 1]
    edges: tuple[float, ...]             # -inf, the thresholds, +inf: edges[k] = threshold(k)
    charge_in_w: float                   # what the charger delivers, eta * P_charge
    loss_w: float                        # its conversion loss (heat), (1 - eta) * P_charge
    full_heat: float                     # heat per W of load carried by the charger when full
    v_full: float                        # the taper's v at level 1

    @classmethod
    def of(cls, p: DeviceProfile) -> Physics:
        eta = p.charge_efficiency
        th = tuple(p.thresholds_c)
        return cls(p, th, tuple(t - p.hysteresis_c for t in th), (-math.inf, *th, math.inf),
                   eta * p.charge_power_w, (1.0 - eta) * p.charge_power_w, (1.0 - eta) / eta,
                   math.exp((1.0 - p.cv_knee) / p.cv_taper))


class Phone(NamedTuple):
    """What the formulas need of a phone (floats, or arrays with one element per phone)."""

    level: Any
    charging: Any
    temp: Any
    status: Any
    ambient: Any
    battery_j: Any       # usable energy, J


# --------------------------------------------------------------------------- thermal


def status_for(ops: Ops, c: Physics, temp: Any, previous: Any) -> Any:
    """The highest status whose edge is reached, with hysteresis for those at or below
    ``previous``: ``max(count(T >= threshold), min(previous, count(T >= threshold - hyst)))``
    (thresholds increase, so the statuses reached are the first ones)."""
    return ops.maximum(ops.count_le(c.thresholds, temp),
                       ops.minimum(previous, ops.count_le(c.thresholds_down, temp)))


def rc(ops: Ops, c: Physics, temp: Any, heat_w: Any, dt: Any, ambient: Any) -> Any:
    """The RC closed form over ``dt`` seconds of constant heat input."""
    steady = ambient + heat_w * c.profile.thermal_resistance_k_per_w
    return steady + (temp - steady) * ops.exp(-dt / c.profile.tau_s)


def cool_down(ops: Ops, c: Physics, temp: Any, heat_w: Any, ambient: Any, target_c: float
              ) -> Any:
    """Seconds of rest at ``heat_w`` until the temperature falls to ``target_c`` (inf if it
    never does)."""
    steady = ambient + heat_w * c.profile.thermal_resistance_k_per_w
    kind = ops.select([temp <= target_c, steady >= target_c], [0, 1], 2)
    return ops.switch(kind, (
        lambda: 0.0,
        lambda: math.inf,
        lambda: c.profile.tau_s * ops.log((temp - steady) / (target_c - steady))))


def rest_heat(ops: Ops, c: Physics, charging: Any) -> Any:
    """Heat of a resting phone: idle power, plus the charger's loss when plugged in."""
    return c.profile.idle_power_w + ops.where(charging, c.loss_w, 0.0)


# --------------------------------------------------------------------------- battery


class Regime:
    """Battery regimes of a constant load (integer codes, so arrays of them select)."""

    DRAIN = 0    # on battery, or a charger that cannot carry the load
    FULL = 1     # full on the charger: the charger carries the load
    HOLD = 2     # the charger exactly carries the load below full
    RISE = 3     # charging below the CV knee
    TAPER = 4    # charging in the CV taper
    OFF = 5      # empty and nothing flows (advance only)


def knee_level(ops: Ops, c: Physics, a: Any, net: Any) -> Any:
    """Level at which the CV taper starts to limit the charge ``a`` (inf when net <= 0)."""
    p = c.profile
    return ops.when(net > 0.0, lambda: p.cv_knee + p.cv_taper * ops.log(a / net), math.inf)


def battery_regime(ops: Ops, level: Any, charging: Any, net: Any, l_star: Any) -> Any:
    """The :class:`Regime` of a phone at ``level`` whose battery gets ``net`` W."""
    return ops.select([ops.not_(charging) | (net < 0.0), level >= 1.0, net == 0.0,
                       level < l_star],
                      [Regime.DRAIN, Regime.FULL, Regime.HOLD, Regime.RISE], Regime.TAPER)


def heat(ops: Ops, c: Physics, regime: Any, loss: Any, load: Any) -> Any:
    """Heat input while the phone draws ``load``: plus the charger's loss ``loss`` (0 when
    unplugged; an upper bound in the taper), or the loss of carrying the load when full."""
    return load + ops.where(regime == Regime.FULL, c.full_heat * load, loss)


# Each regime's piece of constant heat within the ``rem`` seconds left: (seconds, level at its
# end, consumed J, charger J); ``b`` is the load drawn (0 when off), ``net`` the power into the
# battery, ``a`` the charger's output, ``l_star`` the level where the taper starts.

def _drain_piece(ops: Ops, c: Physics, charging: Any, level: Any, rem: Any, b: Any,
                 net: Any, a: Any, l_star: Any, e_full: Any) -> tuple[Any, ...]:
    t_empty = ops.when(net < 0.0, lambda: level * e_full / -net, math.inf)
    dur = ops.minimum(rem, t_empty)
    new = ops.where(dur == t_empty, 0.0, ops.maximum(0.0, level + net * dur / e_full))
    return dur, new, b * dur, ops.where(charging, c.profile.charge_power_w * dur, 0.0)


def _full_piece(ops: Ops, c: Physics, charging: Any, level: Any, rem: Any, b: Any,
                net: Any, a: Any, l_star: Any, e_full: Any) -> tuple[Any, ...]:
    # the charger carries the load, the battery rests
    return rem, 1.0, b * rem, b / c.profile.charge_efficiency * rem


def _hold_piece(ops: Ops, c: Physics, charging: Any, level: Any, rem: Any, b: Any,
                net: Any, a: Any, l_star: Any, e_full: Any) -> tuple[Any, ...]:
    return rem, level, b * rem, c.profile.charge_power_w * rem


def _rise_piece(ops: Ops, c: Physics, charging: Any, level: Any, rem: Any, b: Any,
                net: Any, a: Any, l_star: Any, e_full: Any) -> tuple[Any, ...]:
    target = ops.minimum(l_star, 1.0)
    t_to = (target - level) * e_full / net
    dur = ops.minimum(rem, t_to)
    new = ops.where(dur == t_to, target, ops.minimum(level + net * dur / e_full, target))
    return dur, new, b * dur, c.profile.charge_power_w * dur


def _taper_piece(ops: Ops, c: Physics, charging: Any, level: Any, rem: Any, b: Any,
                 net: Any, a: Any, l_star: Any, e_full: Any) -> tuple[Any, ...]:
    # v = exp((level - knee)/k) grows linearly at a/(k·E)
    p = c.profile
    v0 = ops.exp((level - p.cv_knee) / p.cv_taper)
    lam = a / (p.cv_taper * e_full)
    # a charger output that underflows to 0 W/J never fills the battery (Kotlin's x / 0.0 is
    # +inf too)
    t_full = ops.when(lam > 0.0, lambda: (c.v_full - v0) / lam, math.inf)
    dur = ops.minimum(rem, t_full)
    new = ops.where(dur == t_full, 1.0,
                    ops.minimum(1.0, p.cv_knee + p.cv_taper * ops.log(v0 + lam * dur)))
    stored = (new - level) * e_full
    return dur, new, b * dur, (b * dur + stored) / p.charge_efficiency


def _off_piece(ops: Ops, c: Physics, charging: Any, level: Any, rem: Any, b: Any,
               net: Any, a: Any, l_star: Any, e_full: Any) -> tuple[Any, ...]:
    # empty, and the charger cannot carry the load: nothing flows
    return rem, 0.0, 0.0, 0.0


_PIECES = (_drain_piece, _full_piece, _hold_piece, _rise_piece, _taper_piece, _off_piece)


def advance(ops: Ops, c: Physics, ph: Phone, load_w: Any, dt: Any
            ) -> tuple[Any, Any, Any, Any, Any]:
    """``dt`` seconds at constant load ``load_w`` (plus charger heat), exactly.

    Returns (level, temperature, status, consumed J, charger J); the level is clipped to
    [0, 1]. Charger output ``a = η·P_chg`` serves the load first; the battery takes at most
    ``a`` below the knee and ``a·exp(-(level - knee)/k)`` above it; an empty phone that the
    charger cannot carry is off (nothing flows).
    """
    a = ops.where(ph.charging, c.charge_in_w, 0.0)
    loss = ops.where(ph.charging, c.loss_w, 0.0)
    level, temp, status, rem = ph.level, ph.temp, ph.status, dt
    consumed = charger = 0.0
    for _ in range(MAX_PIECES):
        active = rem > 0.0
        if not ops.any(active):
            break
        b = ops.where((level > 0.0) | (a > 0.0), load_w, 0.0)
        net = a - b
        l_star = knee_level(ops, c, a, net)
        regime = ops.where((level <= 0.0) & (net <= 0.0), Regime.OFF,
                           battery_regime(ops, level, ph.charging, net, l_star))
        dur, new, used, wall = ops.switch(regime, _PIECES, ops, c, ph.charging, level, rem, b,
                                          net, a, l_star, ph.battery_j)
        heat_w = ops.where(regime == Regime.OFF, 0.0, heat(ops, c, regime, loss, b))
        hot = rc(ops, c, temp, heat_w, dur, ph.ambient)
        level, temp, status, consumed, charger, rem = ops.where_all(
            active, (new, hot, status_for(ops, c, hot, status), consumed + used,
                     charger + wall, rem - dur),
            (level, temp, status, consumed, charger, rem))
    return ops.minimum(1.0, ops.maximum(0.0, level)), temp, status, consumed, charger


# --------------------------------------------------------------------------- planner jumps


def steps_below(ops: Ops, x: Any) -> Any:
    """Whole steps certainly inside a bound that is crossed at step ``x`` (one spare), at
    most :data:`MAX_STEPS` (0 for NaN)."""
    return ops.where(x >= 1.0, ops.floor(ops.minimum(MAX_STEPS + 1.0, ops.maximum(0.0, x)))
                     - 1.0, 0.0)


class Run(NamedTuple):
    """A run of identical steps from a phone: its load, step time and battery regime."""

    load: Any
    d: Any          # seconds per step
    a: Any          # charger power into the phone, W
    regime: Any
    l_star: Any     # level at which the taper starts (RISE's bound)
    steady: Any     # the temperature the run heads to


def start_run(ops: Ops, c: Physics, ph: Phone, load: Any, d: Any) -> Run:
    """The run of steps of ``d`` seconds at ``load`` from ``ph``."""
    a = ops.where(ph.charging, c.charge_in_w, 0.0)
    net = a - load
    l_star = knee_level(ops, c, a, net)
    regime = battery_regime(ops, ph.level, ph.charging, net, l_star)
    heat_w = heat(ops, c, regime, ops.where(ph.charging, c.loss_w, 0.0), load)
    return Run(load, d, a, regime, l_star,
               ph.ambient + heat_w * c.profile.thermal_resistance_k_per_w)


# Each regime's bound on the steps before the battery leaves it (or crosses the floor).

def _unbounded(ops: Ops, c: Physics, ph: Phone, run: Run, floor: Any) -> Any:
    return float(MAX_STEPS)


def _drain_bound(ops: Ops, c: Physics, ph: Phone, run: Run, floor: Any) -> Any:
    per_step = (run.load - run.a) * run.d / ph.battery_j
    return ops.when(per_step > 0.0, lambda: steps_below(ops, (ph.level - floor) / per_step),
                    float(MAX_STEPS))


def _rise_bound(ops: Ops, c: Physics, ph: Phone, run: Run, floor: Any) -> Any:
    per_step = (run.a - run.load) * run.d / ph.battery_j
    return ops.when(per_step > 0.0, lambda: steps_below(
        ops, (ops.minimum(run.l_star, 1.0) - ph.level) / per_step), float(MAX_STEPS))


def _taper_bound(ops: Ops, c: Physics, ph: Phone, run: Run, floor: Any) -> Any:
    p = c.profile
    v0 = ops.exp((ph.level - p.cv_knee) / p.cv_taper)
    per_step = run.a / (p.cv_taper * ph.battery_j) * run.d
    return steps_below(ops, (c.v_full - v0) / per_step)


_BATTERY_BOUNDS = (_drain_bound, _unbounded, _unbounded, _rise_bound, _taper_bound)


def jump_bound(ops: Ops, c: Physics, ph: Phone, run: Run, theta: float, floor: Any) -> Any:
    """Steps that certainly change no status, no battery regime and break no limit."""
    p = c.profile
    n = ops.switch(run.regime, _BATTERY_BOUNDS, ops, c, ph, run, floor)
    steady = run.steady
    log_q = -run.d / p.tau_s
    t0 = ph.temp
    up_edge = ops.minimum(theta, ops.lookup(c.edges, ops.minimum(ph.status + 1, 7)))
    down_edge = ops.lookup(c.edges, ph.status) - p.hysteresis_c
    # none at all if the status is about to move or the limit is reached; else the steps
    # until heading up to the next status (or the limit), or down below this one's edge
    towards = ops.select([(status_for(ops, c, t0, ph.status) != ph.status) | (t0 >= theta),
                          (steady > t0) & (steady > up_edge),
                          (steady < t0) & (ph.status >= 1) & (steady < down_edge)], [0, 1, 2], 3)
    return ops.minimum(n, ops.switch(towards, (
        lambda: 0.0,
        lambda: steps_below(ops, ops.log((steady - up_edge) / (steady - t0)) / log_q),
        lambda: steps_below(ops, ops.log((down_edge - steady) / (t0 - steady)) / log_q),
        lambda: float(MAX_STEPS))))


# Each regime's level after n steps, and whether it stays in the regime (above the floor).

def _linear_jump(ops: Ops, c: Physics, ph: Phone, run: Run, n: Any, floor: Any
                 ) -> tuple[Any, Any]:
    level = ph.level + n * (run.a - run.load) * run.d / ph.battery_j
    ok = ops.where(run.regime == Regime.DRAIN, ops.not_((level < floor) | (level <= 0.0)),
                   ops.where(run.regime == Regime.RISE, level < ops.minimum(run.l_star, 1.0),
                             True))
    return level, ok


def _full_jump(ops: Ops, c: Physics, ph: Phone, run: Run, n: Any, floor: Any
               ) -> tuple[Any, Any]:
    return 1.0, True


def _taper_jump(ops: Ops, c: Physics, ph: Phone, run: Run, n: Any, floor: Any
                ) -> tuple[Any, Any]:
    p = c.profile
    v0 = ops.exp((ph.level - p.cv_knee) / p.cv_taper)
    v = v0 + n * run.a / (p.cv_taper * ph.battery_j) * run.d
    inside = v < c.v_full
    return ops.when(inside, lambda: p.cv_knee + p.cv_taper * ops.log(v), 1.0), inside


_JUMPS = (_linear_jump, _full_jump, _linear_jump, _linear_jump, _taper_jump)


def jump(ops: Ops, c: Physics, ph: Phone, run: Run, n: Any, theta: float, floor: Any
         ) -> tuple[Any, Any, Any]:
    """(level, temperature, ok) after ``n`` identical steps in closed form; ``ok`` is false
    where a check fails (a bound crossed after all: take exact steps there)."""
    p = c.profile
    level, ok = ops.switch(run.regime, _JUMPS, ops, c, ph, run, n, floor)
    steady = run.steady
    temp = steady + (ph.temp - steady) * ops.exp(-n * run.d / p.tau_s)
    ok = ok & (temp < theta) & (status_for(ops, c, temp, ph.status) == ph.status)
    return ops.minimum(1.0, level), temp, ok
