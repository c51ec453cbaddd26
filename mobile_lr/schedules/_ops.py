"""Two arithmetic back-ends for one set of schedule formulas.

Every shape formula is written once, against an ``ops`` namespace, and runs
either on Python floats (``SCALAR``: a manager asking for one step's LR pays
for a handful of ``math`` calls, well under a microsecond each) or on numpy
arrays (``ARRAY``: a plot or a fleet simulation evaluates thousands of steps in
one call). Keeping one formula for both is what guarantees the scalar and the
vectorised answers agree to rounding (numpy's SIMD ``pow`` and ``cos`` may
differ from libm's in the last bit, nothing more).

A third back-end, ``EXACT``, gives the scalar path's bits on arrays: numpy's
arithmetic (IEEE, rounded as Python's floats are) with the functions a SIMD
kernel may round differently (``pow``, ``cos``, ``log``) taken from libm element
by element. A manager makes its held steps' LRs ahead with it, and compares them
exactly with the scalar path's. So a formula raises to a power with
``ops.pow``, never with ``**`` on a value that may be an array.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class _ScalarOps:
    name = "scalar"

    @staticmethod
    def pow(x: float, y: float) -> float:
        """``x ** y``; an overflow is ``inf`` (as numpy and the Kotlin core's ``Math.pow`` give),
        not Python's ``OverflowError``: a growth shape at a large step reaches the limit."""
        try:
            return x ** y
        except OverflowError:
            return math.inf

    cos = staticmethod(math.cos)   # the C function itself: no Python frame per call

    sqrt = staticmethod(math.sqrt)   # the C function itself: no Python frame per call

    log = staticmethod(math.log)   # the C function itself: no Python frame per call

    @staticmethod
    def floor(x: float) -> float:
        return float(math.floor(x))

    @staticmethod
    def ceil(x: float) -> float:
        return float(math.ceil(x))

    @staticmethod
    def minimum(a: float, b: float) -> float:
        return a if a <= b else b

    @staticmethod
    def maximum(a: float, b: float) -> float:
        return a if a >= b else b

    @staticmethod
    def where(cond: bool, a: Any, b: Any) -> Any:
        return a if cond else b

    @staticmethod
    def zeros_like(x: float) -> float:
        return 0.0


class _ArrayOps:
    name = "array"

    @staticmethod
    def pow(x: Any, y: Any) -> Any:
        with np.errstate(over="ignore"):
            return np.power(x, y)
    cos = staticmethod(np.cos)
    sqrt = staticmethod(np.sqrt)
    log = staticmethod(np.log)
    floor = staticmethod(np.floor)
    ceil = staticmethod(np.ceil)
    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)
    where = staticmethod(np.where)

    @staticmethod
    def zeros_like(x: np.ndarray) -> np.ndarray:
        return np.zeros_like(x, dtype=np.float64)


def _libm(f: Any, *xs: Any) -> np.ndarray:
    """``f`` (a scalar function of floats) of each element of the broadcast ``xs``."""
    args = [np.asarray(x, dtype=np.float64) for x in xs]
    if len(args) > 1:
        args = np.broadcast_arrays(*args)
    out = np.fromiter(map(f, *(a.ravel().tolist() for a in args)), np.float64, args[0].size)
    return out.reshape(args[0].shape)


class _ExactOps(_ArrayOps):
    """Arrays at the scalar back-end's bits (see the module doc); raises where the scalar
    path would (``math.log(0)``), instead of numpy's ``-inf``."""

    name = "exact"

    @staticmethod
    def pow(x: Any, y: Any) -> np.ndarray:
        return _libm(_ScalarOps.pow, x, y)

    @staticmethod
    def cos(x: Any) -> np.ndarray:  # type: ignore[override]
        return _libm(math.cos, x)

    @staticmethod
    def log(x: Any) -> np.ndarray:  # type: ignore[override]
        return _libm(math.log, x)


SCALAR = _ScalarOps()
ARRAY = _ArrayOps()
EXACT = _ExactOps()
Ops = _ScalarOps | _ArrayOps
