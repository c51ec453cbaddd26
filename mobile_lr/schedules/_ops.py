"""Two arithmetic back-ends for one set of schedule formulas.

Every shape formula is written once, against an ``ops`` namespace, and runs
either on Python floats (``SCALAR``: a manager asking for one step's LR pays
for a handful of ``math`` calls, well under a microsecond each) or on numpy
arrays (``ARRAY``: a plot or a fleet simulation evaluates thousands of steps in
one call). Keeping one formula for both is what guarantees the scalar and the
vectorised answers agree to rounding (numpy's SIMD ``pow`` and ``cos`` may
differ from libm's in the last bit, nothing more).
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


SCALAR = _ScalarOps()
ARRAY = _ArrayOps()
Ops = _ScalarOps | _ArrayOps
