"""Schedule-free AdamW on ONNX Runtime Training, through the parameter buffer.

ORT 1.19.2's training API has no schedule-free optimizer and no access to the
gradients, but it lets us read and replace the trainable parameters between the
train step and the optimizer step (``Module.get_contiguous_parameters`` /
``copy_buffer_to_parameters``; the gradients survive the swap, reference
runtimes.md §9). ``schedulefree.AdamWScheduleFree`` (package 1.4.1) keeps three
points: ``z`` (the base sequence, moved by an RMS-normalised gradient step),
``x`` (a weighted average of the ``z``'s, the weights evaluated and exported) and
``y = (1 - beta1) * z + beta1 * x`` (where the gradient is taken). Its step::

    v      = beta2 * v + (1 - beta2) * g(y)^2
    d      = g(y) / (sqrt(v / (1 - beta2^(k+1))) + eps) + weight_decay * y
    z      = z - lr * d
    c      = lr_max^2 / sum over steps of lr_max^2         (r = 0, weight_lr_power = 2)
    x      = (1 - c) * x + c * z

The ``z`` step is ORT's own AdamW update when the bundle's optimizer graph has
first-moment coefficient 0 and PyTorch's formula (``adam_mode=0``, which the
exporter sets): ``AdamWComputeMode0`` in ``training_ops/cpu/optimizer/adamw/adamw.cc``
then computes ``m = g``, ``alpha_correction = 1 - 0^step = 1`` and
``w -= lr * m / (sqrt(v / (1 - beta2^step)) + eps)``, and ORT feeds ``step`` as its
optimizer step count + 1 (``training_api/optimizer.cc``), so the bias correction
is the package's ``1 - beta2^(k+1)``. Weight decay differs in where it is taken:
ORT decays the point it updates (``w -= lr * wd * w``, here ``z``) while the
package decays at ``y``; the runtime adds ``lr * wd * (z - y)`` back, which gives
the package's update exactly (in real arithmetic; float32 rounding differs).

Hence a schedule-free bundle is exported with ``OptimizerSpec("adamw",
betas=(0.0, beta2))`` (:meth:`mobile_lr.recipes.OptimizerSpec.schedule_free_base`); the
schedule-free ``beta1`` (the interpolation between ``z`` and ``x``, 0.9 by
default as in the package) is a runtime option, not a graph attribute. The
package's warm-up (``warmup_steps``) is not used: the schedule manager owns the
LR (the PyTorch runtime also builds the package's optimizer with
``warmup_steps=0``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mobile_lr.runtime.checkpoint import CheckpointError
from mobile_lr.validation import ValidationError, check_number

__all__ = ["SF_BETA1", "ScheduleFreeState", "check_schedulefree_bundle"]

SF_BETA1 = 0.9  # schedulefree.AdamWScheduleFree's default betas[0]
_ALLOWED = "a bundle exported with AdamW betas=(0, beta2) (OptimizerSpec.schedule_free_base())"


def check_schedulefree_bundle(manifest: Mapping[str, Any], optimizer_graph: bytes) -> float:
    """The weight decay of a bundle whose ORT optimizer can make schedule-free AdamW's ``z`` step.

    Both the manifest and the optimizer graph itself are checked: one
    ``AdamWOptimizer`` node with ``alpha`` (beta1) 0, ``adam_mode`` 0 and bias
    correction on. Anything else is refused with a :class:`ValidationError`.
    """
    import onnx

    opt = manifest.get("optimizer") or {}
    if opt.get("type") != "adamw":
        raise ValidationError("optimizer", f"schedule-free needs an AdamW bundle, not {opt.get('type')!r}",
                              _ALLOWED)
    if manifest.get("lr_dropout") is not None:
        raise ValidationError("optimizer", "schedule-free is not combined with LR dropout", _ALLOWED)
    proto = onnx.load_from_string(optimizer_graph)
    nodes = [n for n in proto.graph.node if n.op_type == "AdamWOptimizer"]
    if len(nodes) != 1:
        raise ValidationError("optimizer_model.onnx", f"expected one AdamWOptimizer node, found {len(nodes)}",
                              _ALLOWED)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    alpha = float(attrs.get("alpha", 0.9))  # the kernel's defaults when an attribute is absent
    if alpha != 0.0 or float(opt.get("betas", [0.9])[0]) != 0.0:
        raise ValidationError("optimizer.betas[0]", f"is {alpha:g} in the optimizer graph; schedule-free "
                              "needs the graph's first moment to be the gradient itself (beta1 = 0)",
                              _ALLOWED)
    if int(attrs.get("adam_mode", 0)) != 0 or int(attrs.get("correct_bias", 1)) != 1:
        raise ValidationError("optimizer_model.onnx", "the AdamW node is not PyTorch's formula with bias "
                              "correction (adam_mode=0, correct_bias=1)", _ALLOWED)
    return float(attrs.get("weight_decay", 0.0))


class ScheduleFreeState:
    """``z``, ``x`` (float32 flat vectors, ORT's parameter order) and the package's scalars.

    ``k`` counts steps, ``lr_max`` is the largest LR seen (``-1`` before the first
    step, as in the package) and ``weight_sum`` the sum of the averaging weights.
    """

    def __init__(self, flat: np.ndarray, beta1: float, weight_decay: float) -> None:
        self.beta1 = check_number(beta1, "sf_beta1", lo=0.0, hi=1.0, hi_open=True)
        self.weight_decay = float(weight_decay)
        self.z = np.array(flat, dtype=np.float32, copy=True)
        self.x = np.array(flat, dtype=np.float32, copy=True)
        self.k = 0
        self.lr_max = -1.0
        self.weight_sum = 0.0

    def y(self) -> np.ndarray:
        """The training point ``(1 - beta1) z + beta1 x``."""
        b = np.float32(self.beta1)
        return (np.float32(1.0) - b) * self.z + b * self.x

    def finish(self, y: np.ndarray, z_ort: np.ndarray, lr: float) -> None:
        """Take ORT's updated ``z`` (decayed at ``z``), move the decay to ``y``, update ``x``."""
        z = np.asarray(z_ort, dtype=np.float32)
        if self.weight_decay:
            z = z + np.float32(lr * self.weight_decay) * (self.z - y)
        self.lr_max = max(lr, self.lr_max)
        weight = self.lr_max ** 2
        self.weight_sum += weight
        c = weight / self.weight_sum if self.weight_sum > 0 else 0.0
        self.z = np.array(z, dtype=np.float32, copy=True)
        self.x += np.float32(c) * (self.z - self.x)
        self.k += 1

    def restart(self, flat: np.ndarray) -> None:
        """New weights from outside (a federated round): ``z = x`` there, the average starts over.

        The second moment in ORT's optimizer state and ``k`` (its bias correction) are kept.
        """
        self.z = np.array(flat, dtype=np.float32, copy=True)
        self.x = np.array(flat, dtype=np.float32, copy=True)
        self.lr_max = -1.0
        self.weight_sum = 0.0

    def arrays(self) -> dict[str, np.ndarray]:
        return {"sf/z": self.z, "sf/x": self.x}

    def meta(self) -> dict[str, Any]:
        return {"beta1": self.beta1, "weight_decay": self.weight_decay, "k": self.k,
                "lr_max": self.lr_max, "weight_sum": self.weight_sum}

    def restore(self, meta: Mapping[str, Any] | None, arrays: Mapping[str, np.ndarray], name: str) -> None:
        if not isinstance(meta, Mapping):
            raise CheckpointError(name, "no schedule-free state inside")
        if meta.get("beta1") != self.beta1 or meta.get("weight_decay") != self.weight_decay:
            raise CheckpointError(name, f"schedule-free beta1/weight decay {meta.get('beta1')}/"
                                        f"{meta.get('weight_decay')} differ from this runtime's "
                                        f"{self.beta1}/{self.weight_decay}")
        for key in ("sf/z", "sf/x"):
            a = arrays.get(key)
            if a is None or a.shape != self.z.shape or a.dtype != np.float32:
                raise CheckpointError(name, f"{key} missing or of the wrong shape")
        try:
            k, lr_max, weight_sum = int(meta["k"]), float(meta["lr_max"]), float(meta["weight_sum"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(name, "schedule-free counters missing or not numbers") from None
        self.z = np.array(arrays["sf/z"], copy=True)
        self.x = np.array(arrays["sf/x"], copy=True)
        self.k, self.lr_max, self.weight_sum = k, lr_max, weight_sum
