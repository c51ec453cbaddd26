"""ONNX Runtime Training runtime (``onnxruntime.training.api``): the phone's engine, on the desktop.

One step is what the Android app does: ``Optimizer.set_learning_rate(lr)``
(every step: the schedule manager owns the LR), ``Module(x, labels)`` (train
step: loss and gradients), ``Optimizer.step()``, ``Module.lazy_reset_grad()``.

The bundle is verified (:func:`mobile_lr.bundle.load_bundle`) before any of its
files reaches ORT, and ORT parses exactly the bytes that were verified: its
Python API (1.19.2: ``Module``, ``Optimizer``, ``CheckpointState.load_checkpoint``)
takes only paths, so the runtime reads each file once (``Bundle.read_verified``:
size, SHA-256 and the external-data check again after the read), keeps the bytes,
and writes them into a private temporary directory for every build of the
sessions (the first, and every :meth:`load`, i.e. every rollback). A file swapped
in the bundle after the check is never opened.

EMA (iterate averaging) works on the flat vector of trainable parameters:
``Module.get_contiguous_parameters(trainable_only=True)`` reads it and
``Module.copy_buffer_to_parameters`` writes it back (the 1.19.2 Python wrapper
hands its argument straight to C++, which wants the *inner* OrtValue, hence
``OrtValue.ortvalue_from_numpy(a)._ortvalue``). Gradients and optimizer state
are untouched by the swap (docs/DEVICES.md §7.3).

LR-dropout bundles (``mobile-lr export --optimizer sgd-lrd|adamw-lrd``,
docs/LR_DROPOUT.md) train through the same four calls: the mask is drawn inside
the optimizer graph from a counter hash of the seed, the parameter's shape key
and the graph's ``step`` input, which ORT itself feeds (its optimizer step
count + 1). So the runtime feeds nothing extra, and because that count is part
of ORT's optimizer state (saved below), a resumed run draws exactly the masks
the uninterrupted run would have drawn. ``lr_dropout`` holds the manifest's
block (``None`` for a plain bundle).

Schedule-free AdamW (``optimizer="schedulefree"``, the PyTorch runtime's keyword)
on an AdamW bundle: the optimizer session runs the bundle's AdamW graph with its
first-moment coefficient set to 0 (:func:`.ort_schedulefree.schedulefree_graph`,
written to a private temporary file for ORT, which takes paths); each step puts
``y`` in the parameters for the train step, ``z`` for the optimizer step, reads
the new ``z`` back and updates the average ``x`` in numpy; ``x`` stays in the
parameters between steps, so evaluation, prediction, :meth:`parameters` and the
exported inference model all use the averaged weights. Schedule-free's ``beta1``
is the bundle's ``betas[0]``, as in the PyTorch runtime. SGD and LR-dropout
bundles are refused.

Checkpoints hold ORT's own checkpoint file (``CheckpointState.save_checkpoint``
with the optimizer state: moments and step count) as bytes inside the
mobile-lr checkpoint, next to the EMA and metadata: one file, one atomic rename.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mobile_lr.bundle import load_bundle
from mobile_lr.extras import require
from mobile_lr.runtime.base import (
    ModelIO,
    RuntimeBase,
    backend_info,
    check_sf_r,
    engine_loads,
    logits_metrics,
    lr_dropout_info,
)
from mobile_lr.runtime.checkpoint import CheckpointError, atomic_write
from mobile_lr.runtime.ort_schedulefree import ScheduleFreeState, schedulefree_graph
from mobile_lr.validation import ValidationError

require(__name__, "onnxruntime")

__all__ = ["EVAL_CHUNK", "OPTIMIZER_CHOICES", "ORT_FILES", "OrtRuntime"]

EVAL_CHUNK = 4096  # samples per eval call: bounds the activation memory of an evaluation
_FLAT = "flat"
OPTIMIZER_CHOICES = ("recipe", "schedulefree")
ORT_FILES = ("training_model.onnx", "eval_model.onnx", "optimizer_model.onnx", "checkpoint")


class OrtRuntime(RuntimeBase):
    """Train a bundle's ORT artifacts. ``threads`` sets ORT's intra-op threads (1: a background job).

    ``optimizer``: ``"recipe"`` (the bundle's optimizer graph) or ``"schedulefree"``
    (schedule-free AdamW with the bundle's AdamW hyper-parameters).
    """

    kind = "ort"

    def __init__(self, bundle_dir: str | os.PathLike[str], *, ema: float | None = None, threads: int = 1,
                 expected_sha256: str | None = None, optimizer: str = "recipe", sf_r: float = 0.0) -> None:
        if optimizer not in OPTIMIZER_CHOICES:
            raise ValidationError("optimizer", f"unknown value {optimizer!r}", ", ".join(OPTIMIZER_CHOICES))
        if optimizer == "schedulefree" and ema is not None:
            raise ValidationError("ema", "schedule-free AdamW already averages its iterates",
                                  "ema=None with optimizer='schedulefree'")
        self.sf_r = check_sf_r(sf_r, optimizer)
        bundle = load_bundle(bundle_dir, expected_sha256)
        backend_info(bundle.manifest, "ort")
        self.lr_dropout = lr_dropout_info(bundle.manifest, "ort")
        self.optimizer_choice = optimizer
        # The bytes ORT will parse, read once and re-checked against the manifest (ORT takes paths:
        # they are written to a private directory at every build, never opened in the bundle).
        self._verified = {name: bundle.read_verified(name) for name in ORT_FILES}
        self._sf_graph: bytes | None = None
        if optimizer == "schedulefree":
            self._sf_graph, sf_beta1, sf_decay = schedulefree_graph(
                bundle.manifest, self._verified["optimizer_model.onnx"])
            self._verified["optimizer_model.onnx"] = self._sf_graph
        super().__init__(bundle.sha256, ModelIO.from_manifest(bundle.manifest),
                         bundle.manifest.model.trainable, ema)
        self.bundle = bundle
        self._threads = threads
        self._private: tempfile.TemporaryDirectory[str] | None = None
        self._state = self._load_state(self._verified["checkpoint"], "checkpoint")
        self._build()
        self._init_ema()
        self._sf: ScheduleFreeState | None = None
        if self._sf_graph is not None:
            self._sf = ScheduleFreeState(self._flat(), sf_beta1, sf_decay, self.sf_r)

    # ---------------------------------------------------------------- engine

    @staticmethod
    def _load_state(data: bytes, name: str) -> Any:
        """An ORT ``CheckpointState`` from checkpoint bytes (through a private file: ORT takes paths)."""
        from onnxruntime.training.api import CheckpointState

        with tempfile.TemporaryDirectory(prefix="mobile-lr-ort-") as tmp:
            ckpt = Path(tmp) / "checkpoint"
            ckpt.write_bytes(data)
            try:
                return CheckpointState.load_checkpoint(str(ckpt))
            except Exception as err:  # native code raises RuntimeError-like errors
                raise CheckpointError(name, f"ORT cannot read the checkpoint ({err})") from None

    def _build(self) -> None:
        """(Re)build the ORT sessions from the verified bytes, written into a new private directory
        (mode 0700, this process's own) that lives as long as the sessions: ORT reads the eval
        model again when exporting for inference. Nothing is opened in the bundle directory."""
        import onnxruntime as ort
        from onnxruntime.training.api import Module, Optimizer

        so = ort.SessionOptions()
        so.intra_op_num_threads = self._threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3  # ORT warns about the optimizer graph's output shape on every load
        private = tempfile.TemporaryDirectory(prefix="mobile-lr-ort-")
        path = Path(private.name)
        for name in ("training_model.onnx", "eval_model.onnx", "optimizer_model.onnx"):
            (path / name).write_bytes(self._verified[name])
        with engine_loads("training_model.onnx, eval_model.onnx or optimizer_model.onnx", "ONNX Runtime"):
            module = Module(str(path / "training_model.onnx"), self._state, str(path / "eval_model.onnx"),
                            session_options=so)
            optimizer = Optimizer(str(path / "optimizer_model.onnx"), module)
            module.train()
        self._module, self._optimizer = module, optimizer
        old, self._private = self._private, private
        if old is not None:
            old.cleanup()

    def _flat(self) -> np.ndarray:
        return self._module.get_contiguous_parameters(trainable_only=True).numpy()

    def _set_flat(self, flat: np.ndarray) -> None:
        from onnxruntime import OrtValue

        flat = np.ascontiguousarray(flat, dtype=np.float32)
        self._module.copy_buffer_to_parameters(OrtValue.ortvalue_from_numpy(flat)._ortvalue,
                                               trainable_only=True)

    def _trainable_arrays(self) -> dict[str, np.ndarray]:
        return {_FLAT: self._flat()}

    def _set_trainable(self, values: Mapping[str, np.ndarray]) -> None:
        self._set_flat(values[_FLAT])

    def _state_arrays(self) -> dict[str, np.ndarray]:
        from onnxruntime.training.api import CheckpointState

        with tempfile.TemporaryDirectory() as tmp:
            ckpt = Path(tmp) / "checkpoint"
            CheckpointState.save_checkpoint(self._state, str(ckpt), include_optimizer_state=True)
            data = ckpt.read_bytes()
        arrays = {"ort_checkpoint": np.frombuffer(data, dtype=np.uint8)}
        if self._sf is not None:
            arrays.update(self._sf.arrays())
        return arrays

    def _state_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"optimizer_choice": self.optimizer_choice}
        if self._sf is not None:
            meta["schedulefree"] = self._sf.meta()
        return meta

    def _restore(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], name: str) -> None:

        if "ort_checkpoint" not in arrays:
            raise CheckpointError(name, "no ORT checkpoint inside")
        engine = meta.get("engine") or {}
        if engine.get("optimizer_choice", "recipe") != self.optimizer_choice:
            raise CheckpointError(name, f"written with optimizer {engine.get('optimizer_choice')!r}, "
                                        f"not {self.optimizer_choice!r}")
        state = self._load_state(arrays["ort_checkpoint"].tobytes(), name)
        if self._sf is not None:  # checks everything before it changes anything
            self._sf.restore(engine.get("schedulefree"), arrays, name)
        self._state = state
        self._build()

    # ---------------------------------------------------------------- protocol

    def step(self, x: Any, y: Any, lr: float) -> float:
        xb = self.io.x(x)
        yb = self.io.y(y, len(xb))
        lr = self._lr(lr)
        self._optimizer.set_learning_rate(lr)
        if self._sf is not None:
            return self._sf_step(xb, yb, lr)
        loss, _ = self._module(xb, yb)
        self._optimizer.step()
        self._module.lazy_reset_grad()
        self._after_step()
        return float(np.asarray(loss).item())  # a custom loss block may return shape [1]

    def _sf_step(self, xb: np.ndarray, yb: np.ndarray, lr: float) -> float:
        """Gradient at y, ORT's AdamW step on z, the average x in numpy; x is left in the parameters."""
        sf = self._sf
        assert sf is not None
        y_point = sf.y()
        self._set_flat(y_point)
        loss, _ = self._module(xb, yb)
        self._set_flat(sf.z)  # the gradients survive the swap (tests/test_runtime_schedulefree_ort.py)
        self._optimizer.step()
        self._module.lazy_reset_grad()
        sf.finish(y_point, self._flat(), lr)
        self._set_flat(sf.x)
        self._after_step()
        return float(np.asarray(loss).item())

    def _run_eval(self, xb: np.ndarray, yb: np.ndarray) -> tuple[float, np.ndarray]:
        self._module.eval()
        try:
            losses, outs = [], []
            for i in range(0, len(xb), EVAL_CHUNK):
                loss, out = self._module(xb[i:i + EVAL_CHUNK], yb[i:i + EVAL_CHUNK])
                losses.append(float(np.asarray(loss).item()) * len(out))
                outs.append(out)
        finally:
            self._module.train()
        return float(sum(losses)), np.concatenate(outs)

    def evaluate(self, x: Any, y: Any, *, weights: str = "auto") -> dict[str, float]:
        xb = self.io.x(x)
        yb = self.io.y(y, len(xb))
        with self._using(weights):
            loss_sum, logits = self._run_eval(xb, yb)
        return logits_metrics(loss_sum, logits, yb, self.io.classifies)

    def predict(self, x: Any, *, weights: str = "auto") -> np.ndarray:
        xb = self.io.x(x)
        with self._using(weights):
            return self._run_eval(xb, self.io.dummy_target(len(xb)))[1]

    def _set_named(self, values: Mapping[str, np.ndarray]) -> None:
        # the Module trains the CheckpointState's own buffers: writing them is seen by the next step
        for name, a in values.items():
            self._state.parameters[name] = a
        if self._sf is not None:
            self._sf.restart(self._flat())

    def parameters(self) -> dict[str, np.ndarray]:
        # iterating ORT's Parameters yields (name, Parameter) pairs
        return {name: np.array(p.data, copy=True) for name, p in self._state.parameters}

    def export_inference(self, path: str | os.PathLike[str], *, weights: str = "auto") -> str:
        """Write an ONNX inference model of the trained weights (atomically); returns "ema" or "raw".

        With EMA on, ``weights="auto"`` exports the EMA weights, the ones
        :meth:`evaluate` reports on. The model has one input ``input`` and one
        output ``output`` (ORT drops the loss and the labels input).
        """
        path = Path(path)
        with tempfile.TemporaryDirectory() as tmp, self._using(weights) as which:
            out = Path(tmp) / "inference.onnx"
            self._module.export_model_for_inferencing(str(out), ["output"])
            data = out.read_bytes()
        atomic_write(path, lambda f: f.write(data))
        return which
