"""Training runtimes: ONNX Runtime Training, ExecuTorch and PyTorch eager behind one protocol.

>>> sorted(RUNTIMES)
['executorch', 'ort', 'torch']

- :class:`TrainingRuntime` (in :mod:`.base`): ``step(x, y, lr) -> loss``,
  ``evaluate(x, y) -> {"loss", "accuracy", "n"}``, ``predict(x)``,
  ``save(path, extra)`` / ``load(path) -> extra``, ``parameters()``,
  ``trainable_names``, ``step_count``, ``identity``.
- :class:`~.ort_rt.OrtRuntime`, :class:`~.executorch_rt.ExecuTorchRuntime`,
  :class:`~.torch_rt.TorchRuntime`; :func:`open_runtime` picks one by name.
- :mod:`.checkpoint`: atomic, pickle-free checkpoint files.

The engines are imported lazily: ExecuTorch alone takes seconds to import.
"""

from __future__ import annotations

import os
from typing import Any

from mobile_lr.runtime.base import TrainingRuntime
from mobile_lr.runtime.checkpoint import CheckpointError, atomic_write, read_checkpoint, write_checkpoint
from mobile_lr.validation import ValidationError

__all__ = [
    "RUNTIMES",
    "CheckpointError",
    "TrainingRuntime",
    "atomic_write",
    "open_runtime",
    "read_checkpoint",
    "write_checkpoint",
]

RUNTIMES = ("ort", "executorch", "torch")


def open_runtime(kind: str, bundle_dir: str | os.PathLike[str], **options: Any) -> TrainingRuntime:
    """The runtime ``kind`` ("ort", "executorch", "torch") on a bundle; ``options`` go to its constructor."""
    if kind == "ort":
        from mobile_lr.runtime.ort_rt import OrtRuntime

        return OrtRuntime(bundle_dir, **options)
    if kind == "executorch":
        from mobile_lr.runtime.executorch_rt import ExecuTorchRuntime

        return ExecuTorchRuntime(bundle_dir, **options)
    if kind == "torch":
        from mobile_lr.runtime.torch_rt import TorchRuntime

        return TorchRuntime(bundle_dir, **options)
    raise ValidationError("runtime", f"unknown value {kind!r}", ", ".join(RUNTIMES))
