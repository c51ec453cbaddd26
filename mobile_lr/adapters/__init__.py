"""Adapters that let a mobile-lr schedule drive the optimizers people already use.

- :class:`mobile_lr.adapters.SpecLR` (in :mod:`.torch_lr`): a ``torch.optim.lr_scheduler.LRScheduler``.
- :class:`mobile_lr.adapters.OrtScheduleDriver` (in :mod:`.ort_lr`): sets an ONNX Runtime
  Training ``Optimizer``'s learning rate every step.

Both names are importable from here, but each is loaded on first use from its own module, so
using one never imports the other framework (and ``OrtScheduleDriver`` needs no onnxruntime
import at all: it only calls the optimizer's two LR methods).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mobile_lr.adapters.ort_lr import OrtScheduleDriver
    from mobile_lr.adapters.torch_lr import SpecLR

__all__ = ["OrtScheduleDriver", "SpecLR"]

_HOME = {"SpecLR": "mobile_lr.adapters.torch_lr", "OrtScheduleDriver": "mobile_lr.adapters.ort_lr"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)
