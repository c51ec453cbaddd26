"""The ExecuTorch training program (``model.pte``) of a recipe.

ExecuTorch trains a *joint* forward-backward graph captured at export
(docs/DEVICES.md §7.2): the model is wrapped so that it returns the loss
as output 0 (and the detached output as output 1), exported with
``torch.export.export``, turned into the joint graph by
``torch.export.experimental._export_forward_backward``, lowered with
``to_edge(...).to_executorch()``. Only parameters with ``requires_grad=True``
get gradients; the frozen ones become constants of the program. The optimizer
is *not* in the graph (the runtime applies it, see
``mobile_lr.runtime.executorch_rt``).

The batch axis is exported dynamic (1..``max_batch``), which the portable
kernels handle for the digits models; where a model's dynamic export fails,
the program is exported at the example batch size and the manifest says
``"dynamic_batch": false`` with that size. Every program is loaded and run once
(one forward-backward on the example batch) before it is written: lowering
succeeds even when the portable kernels lack a backward op, which only shows
when the method loads. Where export or that run fails (batch norm in training
form, adaptive average pooling's backward on executorch 1.4.1; docs/DEVICES.md
§7.2), :class:`UnsupportedModel` carries the reason into the manifest.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    import torch
    from torch import nn

from mobile_lr.export.onnx_artifacts import UnsupportedModel, quiet_native_stderr
from mobile_lr.recipes import Recipe

__all__ = ["DEFAULT_MAX_BATCH", "PTE_FILE", "WRAPPED_PREFIX", "TrainingWrapper", "write_executorch_program"]

PTE_FILE = "model.pte"
DEFAULT_MAX_BATCH = 1024
WRAPPED_PREFIX = "model."  # parameter names in the program are "model." + the recipe's names


class TrainingWrapper(nn.Module):
    """``forward(input, target) -> (loss, output.detach())``: the loss is output 0, as ExecuTorch wants."""

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.model = recipe.model
        self._loss = recipe.torch_loss

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(x)
        return self._loss(out, target), out.detach()


def _example_target(recipe: Recipe, batch: int) -> torch.Tensor:
    if recipe.target_dtype == "int64":
        return torch.zeros(batch, dtype=torch.int64)
    with torch.no_grad():
        out = recipe.model(recipe.example_input[:batch])
    return torch.zeros_like(out)


def _lower(recipe: Recipe, dynamic: bool, max_batch: int) -> Any:
    with optional_imports(__name__):
        from executorch.exir import EdgeCompileConfig, to_edge
    from torch.export import Dim, export
    from torch.export.experimental import _export_forward_backward

    wrapper = TrainingWrapper(recipe)
    x = recipe.example_input
    target = _example_target(recipe, x.shape[0])
    shapes = None
    if dynamic:
        batch = Dim("batch", min=1, max=max_batch)
        shapes = ({0: batch}, {0: batch})
    ep = export(wrapper, (x, target), dynamic_shapes=shapes, strict=True)
    ep = _export_forward_backward(ep)
    edge = to_edge(ep, compile_config=EdgeCompileConfig(_check_ir_validity=False))
    return edge.to_executorch()


def _smoke_test(recipe: Recipe, buffer: bytes) -> None:
    """Load the program and run one forward-backward: lowering succeeds even when the portable
    kernel library lacks a backward op (e.g. ``_adaptive_avg_pool2d_backward``), which only
    shows when the method loads. Such a program must not ship."""
    from executorch.extension.training import _load_for_executorch_for_training_from_buffer

    x = recipe.example_input
    failure = None
    with quiet_native_stderr(replay_on_error=False) as log:
        try:
            module = _load_for_executorch_for_training_from_buffer(buffer)
            module.forward_backward("forward", (x, _example_target(recipe, x.shape[0])))
        except Exception as err:  # the pybinding raises RuntimeError with an error code only
            failure = err
    if failure is not None:
        missing = sorted(set(re.findall(r"Missing operator: \[\d+\] (\S+)", log.text)))
        detail = f"missing portable kernels {', '.join(missing)}" if missing else str(failure)
        raise UnsupportedModel(f"the program does not run in the ExecuTorch runtime: {detail}")


def write_executorch_program(recipe: Recipe, out_dir: str | os.PathLike[str], *,
                             max_batch: int = DEFAULT_MAX_BATCH) -> dict[str, Any]:
    """Write ``model.pte``; returns the manifest's ``backends.executorch`` fields (without status).

    Raises :class:`UnsupportedModel` with the reason when the model does not export.
    """
    recipe.apply_trainable()
    was_training = recipe.model.training
    recipe.model.train()
    errors = []
    program = None
    dynamic = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for dynamic in (True, False):
                try:
                    program = _lower(recipe, dynamic, max_batch)
                    break
                except Exception as err:  # export raises many kinds; the reason goes into the manifest
                    errors.append(f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300]}"
                                  if str(err).strip() else type(err).__name__)
    finally:
        recipe.model.train(was_training)
    if program is None:
        raise UnsupportedModel("torch.export / ExecuTorch lowering failed: " + errors[-1])
    buffer = program.buffer
    _smoke_test(recipe, buffer)
    (Path(out_dir) / PTE_FILE).write_bytes(buffer)
    info: dict[str, Any] = {"files": [PTE_FILE], "method": "forward", "dynamic_batch": dynamic,
                            "max_batch": max_batch if dynamic else recipe.batch_size,
                            "parameter_prefix": WRAPPED_PREFIX,
                            "outputs": ["loss", "output"]}
    if not dynamic:
        info["batch_size"] = recipe.batch_size
        info["note"] = "dynamic batch export failed (" + errors[0] + "); fixed batch"
    return info
