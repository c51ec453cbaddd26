"""ExecuTorch training runtime (the program format of ``executorch.extension.training``).

The program (``model.pte``) is read once as bytes, re-checked against the
verified manifest and loaded from those bytes, so what runs is exactly what was
verified. Its joint ``forward`` method returns ``[loss, output, gradients...,
parameters...]``; this runtime calls it directly (``run_method`` with
``clone_outputs=False``, one call per step, the layout read once from the
program's metadata methods) where ``TrainingModule.forward_backward`` would make
four calls and clone every gradient. The optimizer step is applied by this
runtime with ``torch.optim`` on the live weights, which is how a new learning
rate is applied every step without losing momentum (the full reasoning and the
update rule are in :mod:`mobile_lr.runtime.torch_optim`).

Evaluation and prediction run the program's ``eval`` method (exported in eval
mode: dropout off, batch norm on its running statistics), which takes the
trainable weights as inputs; a bundle without it falls back to the training
method.

Parameters: only the trainable ones exist as weights in the program; the frozen
ones are constants baked into it, which nothing at runtime can change, so
:meth:`ExecuTorchRuntime.parameters` returns the trainable ones.

Batch size: the program's batch axis is dynamic (1..``max_batch`` of the
manifest: the exporter's ``--max-batch``, by default the recipe's batch; a larger training
batch is refused naming that flag; evaluation and prediction run in chunks of ``max_batch``);
a program exported at a fixed batch (the fallback) trains only at that batch and evaluates by
padding the last chunk.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from mobile_lr.bundle import load_bundle
from mobile_lr.extras import require
from mobile_lr.native import quiet_native_stderr
from mobile_lr.recipes import OptimizerSpec
from mobile_lr.runtime.base import (
    ModelIO,
    RuntimeBase,
    backend_info,
    check_sf_r,
    engine_loads,
    logits_metrics,
)
from mobile_lr.runtime.checkpoint import CheckpointError
from mobile_lr.runtime.torch_optim import (
    OPTIMIZER_CHOICES,
    eval_point,
    make_optimizer,
    optimizer_state,
    restore_optimizer_state,
    set_lr,
    torch_threads,
)
from mobile_lr.validation import ValidationError

require(__name__, "torch", "executorch")

__all__ = ["ExecuTorchRuntime"]


class ExecuTorchRuntime(RuntimeBase):
    """Train a bundle's ExecuTorch program with the bundle's optimizer (SGD or AdamW).

    ``optimizer``: ``"recipe"`` (the bundle's), ``"schedulefree"`` (schedule-free AdamW with the
    bundle's betas, eps and weight decay; evaluation at its averaged point), or an
    :class:`~mobile_lr.recipes.OptimizerSpec` that replaces the bundle's (the optimizer is not
    part of the program). ``threads``: torch's threads for the optimizer step (``None``: the
    process's setting); ExecuTorch's own kernels run on the calling thread.
    """

    kind = "executorch"

    def __init__(self, bundle_dir: str | os.PathLike[str], *, ema: float | None = None,
                 optimizer: str | OptimizerSpec | None = "recipe", expected_sha256: str | None = None,
                 threads: int | None = 1, sf_r: float = 0.0) -> None:
        import torch
        from executorch.extension.pybindings.portable_lib import _load_for_executorch_from_buffer

        spec, choice = (optimizer, "recipe") if isinstance(optimizer, OptimizerSpec) else (None, optimizer)
        choice = choice or "recipe"
        if choice not in OPTIMIZER_CHOICES:
            raise ValidationError("optimizer", f"unknown value {choice!r}",
                                  ", ".join(OPTIMIZER_CHOICES) + " or an OptimizerSpec")
        if choice == "schedulefree" and ema is not None:
            raise ValidationError("ema", "schedule-free AdamW already averages its iterates",
                                  "ema=None with optimizer='schedulefree'")
        self.sf_r = check_sf_r(sf_r, choice)
        bundle = load_bundle(bundle_dir, expected_sha256)
        backend = backend_info(bundle.manifest, "executorch")
        info = backend.options
        super().__init__(bundle.sha256, ModelIO.from_manifest(bundle.manifest),
                         bundle.manifest.model.trainable, ema)
        self.bundle = bundle
        self._torch = torch
        self._method = info["method"]
        self._eval_method = info.get("eval_method")  # None: a bundle from before the eval method
        prefix = info["parameter_prefix"]
        self._dynamic = bool(info["dynamic_batch"])
        self._max_batch = int(info["max_batch"])
        # The loaded program may point into this buffer: keep it alive as long as the program.
        self._program_bytes = bundle.read_verified(backend.files[0])
        with engine_loads(backend.files[0], "ExecuTorch"):
            self._module = _load_for_executorch_from_buffer(self._program_bytes)
            # The joint method returns [user outputs, gradients, parameters]; the metadata methods say
            # where each part starts and name the gradients/parameters (executorch.extension.training).
            meta = f"__et_training_{{}}_{self._method}"
            self._grad_start = int(self._module.run_method(meta.format("gradients_index"), ())[0])
            self._param_start = int(self._module.run_method(meta.format("parameters_index"), ())[0])
            fqns = [str(f) for f in self._module.run_method(meta.format("fqn"), ())]
            # The parameter outputs of a run with clone_outputs=False are the live weights themselves
            # (the same storage at every call); the zero batch below changes nothing.
            n0 = 1 if self._dynamic else self._max_batch
            with quiet_native_stderr():  # the first run's CPU probe lines (mobile_lr.native)
                outs = self._run_training(self.io.dummy_input(n0), self.io.dummy_target(n0))
            live = dict(zip(fqns, outs[self._param_start:], strict=True))
            self._params = {name: live[prefix + name] for name in self.trainable_names}
            self._grad_index = {name: self._grad_start + fqns.index(prefix + name)
                                for name in self.trainable_names}
        self.optimizer_choice = choice
        self._threads = threads
        self._spec = spec or bundle.manifest.optimizer
        self._optimizer = make_optimizer(self._spec, list(self._params.values()), choice, self.sf_r)
        self._init_ema()

    def _run_training(self, xb: np.ndarray, yb: np.ndarray) -> list[Any]:
        """One forward-backward; the outputs alias the program's buffers until the next run."""
        torch = self._torch
        return self._module.run_method(self._method, (torch.from_numpy(xb), torch.from_numpy(yb)),
                                       clone_outputs=False)

    # ---------------------------------------------------------------- engine

    def _trainable_arrays(self) -> dict[str, np.ndarray]:
        return {name: p.numpy() for name, p in self._params.items()}

    def _set_trainable(self, values: Mapping[str, np.ndarray]) -> None:
        with self._torch.no_grad():
            for name, p in self._params.items():
                p.copy_(self._torch.from_numpy(np.ascontiguousarray(values[name], dtype=np.float32)))

    def _state_arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"param/{name}": p.numpy().copy() for name, p in self._params.items()}
        arrays.update(optimizer_state(self._optimizer)[0])
        return arrays

    def _state_meta(self) -> dict[str, Any]:
        _, meta = optimizer_state(self._optimizer)
        return {"optimizer": meta, "optimizer_choice": self.optimizer_choice}

    def _restore(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], name: str) -> None:
        values = {}
        for pname, p in self._params.items():
            a = arrays.get(f"param/{pname}")
            if a is None or a.shape != tuple(p.shape):
                raise CheckpointError(name, f"parameter {pname!r} missing or of the wrong shape")
            values[pname] = a
        restore_optimizer_state(self._optimizer, arrays, (meta.get("engine") or {}).get("optimizer") or {},
                                name)
        self._set_trainable(values)

    def _run(self, xb: np.ndarray, yb: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and outputs of the eval method (eval mode: no dropout) at the current weights."""
        torch = self._torch
        if self._eval_method is None:
            outs = self._run_training(xb, yb)
        else:
            outs = self._module.run_method(self._eval_method, (torch.from_numpy(xb), torch.from_numpy(yb),
                                                               *self._params.values()))
        return float(outs[0]), outs[1].numpy().copy()

    # ---------------------------------------------------------------- protocol

    def step(self, x: Any, y: Any, lr: float) -> float:
        xb = self.io.x(x)
        yb = self.io.y(y, len(xb))
        lr = self._lr(lr)
        if len(xb) > self._max_batch or (not self._dynamic and len(xb) != self._max_batch):
            raise ValidationError("x", f"batch of {len(xb)} samples; this program takes "
                                       f"{'at most ' if self._dynamic else ''}{self._max_batch}",
                                  "a batch the program takes; export with --max-batch N "
                                  "(export_bundle(max_batch=N)) to train larger ones")
        outs = self._run_training(xb, yb)
        loss = float(outs[0])
        for pname, p in self._params.items():
            p.grad = outs[self._grad_index[pname]]
        set_lr(self._optimizer, lr)
        with torch_threads(self._threads):
            self._optimizer.step()
        for p in self._params.values():
            p.grad = None
        self._after_step()
        return loss

    def _eval_point(self) -> contextlib.AbstractContextManager[None]:
        return eval_point(self._optimizer, list(self._params.values()), self.optimizer_choice)

    def _chunks(self, xb: np.ndarray, yb: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss sum and outputs over all samples, in chunks the program accepts."""
        b = self._max_batch
        losses, outs = 0.0, []
        for i in range(0, len(xb), b):
            xc, yc = xb[i:i + b], yb[i:i + b]
            n = len(xc)
            if not self._dynamic and n < b:  # fixed-batch program: pad, keep the real rows' outputs
                pad = b - n
                xc = np.concatenate([xc, np.repeat(xc[:1], pad, axis=0)])
                yc = np.concatenate([yc, np.repeat(yc[:1], pad, axis=0)])
            loss, out = self._run(xc, yc)
            losses += loss * n  # with padding: the padded batch's mean (an approximation, stated above)
            outs.append(out[:n])
        return losses, np.concatenate(outs)

    def evaluate(self, x: Any, y: Any, *, weights: str = "auto") -> dict[str, float]:
        xb = self.io.x(x)
        yb = self.io.y(y, len(xb))
        with self._using(weights), self._eval_point():
            loss_sum, logits = self._chunks(xb, yb)
        return logits_metrics(loss_sum, logits, yb, self.io.classifies)

    def predict(self, x: Any, *, weights: str = "auto") -> np.ndarray:
        xb = self.io.x(x)
        with self._using(weights), self._eval_point():
            return self._chunks(xb, self.io.dummy_target(len(xb)))[1]

    def parameters(self) -> dict[str, np.ndarray]:
        with self._eval_point():
            return {name: p.numpy().copy() for name, p in self._params.items()}
