"""Schedule-free AdamW on ONNX Runtime Training, through the parameter buffer.

ORT 1.19.2's training API has no schedule-free optimizer and no access to the
gradients, but it lets us read and replace the trainable parameters between the
train step and the optimizer step (``Module.get_contiguous_parameters`` /
``copy_buffer_to_parameters``; the gradients survive the swap, docs/DEVICES.md
§7.3). ``schedulefree.AdamWScheduleFree`` (package 1.4.1) keeps three
points: ``z`` (the base sequence, moved by an RMS-normalised gradient step),
``x`` (a weighted average of the ``z``'s, the weights evaluated and exported) and
``y = (1 - beta1) * z + beta1 * x`` (where the gradient is taken). Its step::

    v      = beta2 * v + (1 - beta2) * g(y)^2
    d      = g(y) / (sqrt(v / (1 - beta2^(k+1))) + eps) + weight_decay * y
    z      = z - lr * d
    c      = (k+1)^r lr_max^2 / sum over steps of (k+1)^r lr_max^2   (weight_lr_power = 2)
    x      = (1 - c) * x + c * z

The ``z`` step is ORT's own AdamW kernel run with first-moment coefficient 0 and
PyTorch's formula: ``AdamWComputeMode0`` in ``training_ops/cpu/optimizer/adamw/adamw.cc``
then computes ``m = g``, ``alpha_correction = 1 - 0^step = 1`` and
``w -= lr * m / (sqrt(v / (1 - beta2^step)) + eps)``, and ORT feeds ``step`` as its
optimizer step count + 1 (``training_api/optimizer.cc``), so the bias correction is the
package's ``1 - beta2^(k+1)``. Weight decay differs in where it is taken: ORT decays the
point it updates (``w -= lr * wd * w``, here ``z``) while the package decays at ``y``;
the runtime adds ``lr * wd * (z - y)`` back, which gives the package's update exactly
(in real arithmetic; float32 rounding differs).

So no special export is needed: :func:`schedulefree_graph` derives that optimizer
graph from the bundle's (verified) AdamW graph by setting the ``AdamWOptimizer`` node's
``alpha`` to 0 (and ``adam_mode`` 0, ``correct_bias`` 1); ``beta2``, ``eps`` and the
weight decay stay the bundle's, and the bundle's ``betas[0]`` becomes schedule-free's
``beta1``, the interpolation between ``z`` and ``x``, as in the PyTorch runtime's
``optimizer="schedulefree"`` on the same bundle. The optimizer state has the same
shape either way (ORT keeps the unused first moment, equal to the last gradient), so
the bundle's checkpoint serves both. The package's warm-up (``warmup_steps``) is not
used: the schedule manager owns the LR (the PyTorch runtime also builds the package's
optimizer with ``warmup_steps=0``). On a phone the app would ship the derived graph
(it is a deterministic function of the bundle's) and apply the same four buffer calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mobile_lr.bundle import Manifest
from mobile_lr.extras import optional_imports
from mobile_lr.runtime.checkpoint import CheckpointError
from mobile_lr.validation import ValidationError, check_number

__all__ = ["ScheduleFreeState", "schedulefree_graph"]

_ALLOWED = "a bundle exported with AdamW (the recipe's default)"


def schedulefree_graph(manifest: Manifest, optimizer_graph: bytes) -> tuple[bytes, float, float]:
    """``(graph, beta1, weight_decay)``: the optimizer graph for schedule-free AdamW's ``z`` step.

    ``optimizer_graph`` is the bundle's verified ``optimizer_model.onnx``. It must hold
    exactly one ``AdamWOptimizer`` node whose ``beta``/``epsilon``/``weight_decay`` are the
    manifest's; SGD, LR-dropout and foreign graphs are refused with a :class:`ValidationError`.
    """
    with optional_imports(__name__):
        import onnx

    opt = manifest.optimizer
    if opt.type != "adamw":
        raise ValidationError("optimizer", f"schedule-free AdamW needs an AdamW bundle, not "
                                           f"{opt.type!r}", _ALLOWED)
    if manifest.lr_dropout is not None:
        raise ValidationError("optimizer", "schedule-free AdamW is not combined with LR dropout", _ALLOWED)
    proto = onnx.load_from_string(optimizer_graph)
    nodes = [n for n in proto.graph.node if n.op_type == "AdamWOptimizer"]
    if len(nodes) != 1:
        raise ValidationError("optimizer_model.onnx", f"expected one AdamWOptimizer node, found {len(nodes)}",
                              _ALLOWED)
    node = nodes[0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    beta1, beta2 = (float(b) for b in opt.betas)
    decay = float(opt.weight_decay)
    graph = (float(attrs.get("beta", 0.999)), float(attrs.get("epsilon", 1e-8)),
             float(attrs.get("weight_decay", 0.0)))
    want = (beta2, float(opt.eps), decay)
    if not np.allclose(graph, want, rtol=1e-6, atol=0.0):  # the graph stores float32 attributes
        raise ValidationError("optimizer_model.onnx", f"AdamW (beta2, eps, weight decay) {graph} differ "
                                                      f"from the manifest's {want}", _ALLOWED)
    check_number(beta1, "optimizer.betas[0]", lo=0.0, hi=1.0, hi_open=True)
    keep = [a for a in node.attribute if a.name not in ("alpha", "adam_mode", "correct_bias")]
    del node.attribute[:]
    node.attribute.extend(keep)
    node.attribute.extend([onnx.helper.make_attribute("alpha", 0.0),
                           onnx.helper.make_attribute("adam_mode", 0),
                           onnx.helper.make_attribute("correct_bias", 1)])
    return proto.SerializeToString(), beta1, decay


class ScheduleFreeState:
    """``z``, ``x`` (float32 flat vectors, ORT's parameter order) and the package's scalars.

    ``k`` counts steps, ``lr_max`` is the largest LR seen (``-1`` before the first
    step, as in the package) and ``weight_sum`` the sum of the averaging weights.
    """

    def __init__(self, flat: np.ndarray, beta1: float, weight_decay: float, r: float = 0.0) -> None:
        self.beta1 = float(beta1)
        self.r = float(r)
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
        weight = (self.k + 1) ** self.r * self.lr_max ** 2
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
