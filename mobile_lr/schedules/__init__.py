"""Learning-rate schedules as pure math, and the JSON schedule spec.

A schedule is a pure function of the step ``t`` and the plan history (the
planned total, and how it changed), times ``base_lr``. No optimizer, no hidden
state, no framework import: the state lives in one place, the manager.

- :mod:`.shapes`: one factory per shape (optax style), each returning a small
  pure formula; PyTorch and Keras counterparts are matched step for step.
- :mod:`.plan`: the progress map that re-plans a schedule when the budget changes.
- :mod:`.spec`: the versioned JSON spec (``mobile-lr.schedule/1``) and :class:`Schedule`.
- :mod:`.plateau`: ReduceLROnPlateau as a pure state transition.

>>> s = parse_spec({"format": "mobile-lr.schedule/1", "base_lr": 1.0,
...                 "shape": {"type": "linear", "start_factor": 1.0, "end_factor": 0.0}})
>>> s.lr(5, [(0, 10)]), s.lr(5, [(0, 10), (5, 6)]), s.lr(6, [(0, 10), (5, 6)])
(0.5, 0.5, 0.0)
"""

from .plan import PlanHistory, check_plan
from .plateau import PlateauRule
from .shapes import Shape
from .spec import FORMAT, SHAPE_TYPES, Schedule, load_spec, parse_spec

__all__ = [
    "FORMAT",
    "SHAPE_TYPES",
    "PlanHistory",
    "PlateauRule",
    "Schedule",
    "Shape",
    "check_plan",
    "load_spec",
    "parse_spec",
]
