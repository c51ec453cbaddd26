"""The Runs of the next held steps, made ahead in one go: a held ``next()`` is an index and a
bound check (:mod:`.hold` proves the steps; this only saves making each decision on the spot).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat

from .decisions import Run

__all__ = ["HeldRuns"]

_TRAIN = "train"
# ``Run(*fields)`` without the named tuple's Python-level ``__new__``
_new = tuple.__new__


class HeldRuns:
    """``runs[i]`` is the Run of step ``at + i`` for ``i < n``, at the LR
    ``lr_fn(step) * scale``: the same expression as an unheld step's, so the same bits. Valid
    for one LR function and scale: the manager clears it whenever one of them can change (a
    full plan arms a new hold, a plateau metric moves the LR function)."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.at = self.n = 0
        self.runs: list[Run] = []

    def fill(self, lr_fn: Callable[[int], float], scale: float, step: int, count: int) -> None:
        """The next ``count`` steps from ``step``."""
        steps = range(step, step + count)
        lrs = [lr_fn(t) * scale for t in steps]
        # the named tuples' fields zipped and built in C (a Python-level loop cost as much as
        # the LR itself)
        self.runs = list(map(_new, repeat(Run), zip(steps, lrs, repeat(_TRAIN))))
        self.at, self.n = step, count
