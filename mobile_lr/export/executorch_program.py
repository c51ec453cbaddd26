"""The ExecuTorch training program (``model.pte``) of a recipe: a training and an eval method.

``forward`` (training): ExecuTorch trains a *joint* forward-backward graph captured at
export (docs/DEVICES.md §7.2). The model, in its training form
(:func:`mobile_lr.export.forms.training_form`: dropout on, batch norm frozen), is wrapped to
return the loss as output 0 (and the detached output as output 1), exported with
``torch.export.export``, turned into the joint graph by
``torch.export.experimental._export_forward_backward``. Only parameters with
``requires_grad=True`` get gradients; the frozen ones become constants of the program. The
optimizer is *not* in the graph (the runtime applies it, see
``mobile_lr.runtime.executorch_rt``).

``eval``: the model in its eval form (dropout off, batch norm on its running statistics),
forward only, returning ``(loss, output)``. It takes the trainable parameters as inputs
after ``input`` and ``target``, in the manifest's ``model.trainable`` order, so it always
evaluates the weights the ``forward`` method is training (two methods of one program do
not share weights; parameters passed in do). Without it, evaluation would run the
training graph: dropout on, a different loss at every call.

The batch axis is exported dynamic (1..``max_batch``, by default the recipe's own batch:
ExecuTorch plans every buffer at the upper bound of its shape, so the bound *is* the step's
memory, docs/DECISIONS.md "Its peak memory is planned at the largest batch"); where a model's
dynamic export fails, the program is exported at the example batch size and the manifest says
``"dynamic_batch": false`` with that size. Before the program is written, every operator
it calls is looked up in the kernels the installed ExecuTorch runtime registers
(lowering succeeds even when a backward kernel is missing, which otherwise only shows when
the method loads): a missing kernel is reported with the model modules that use it. The
exporter then opens the bundle with the ExecuTorch runtime and proves it (evaluation
parity with PyTorch eager and one training step, :mod:`mobile_lr.export.proof`).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    import torch
    from torch import nn

from mobile_lr.export.executorch_fast import addmm_as_mm, fast_form
from mobile_lr.export.executorch_layout import channels_first_across_layers, drop_redundant_clones
from mobile_lr.export.forms import eval_form, training_form
from mobile_lr.export.onnx_artifacts import UnsupportedModel, refuse_batchnorm_training
from mobile_lr.recipes import Recipe

__all__ = ["EVAL_METHOD", "PTE_FILE", "WRAPPED_PREFIX", "EvalWrapper", "TrainingWrapper",
           "example_target", "modules_calling", "write_executorch_program"]

PTE_FILE = "model.pte"
EVAL_METHOD = "eval"
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


class EvalWrapper(nn.Module):
    """``forward(input, target, trainable_params) -> (loss, output)`` with the given trainable weights."""

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.model = recipe.model
        self._loss = recipe.torch_loss
        self._names = tuple(recipe.trainable)

    def forward(self, x: torch.Tensor, target: torch.Tensor,
                params: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        out = torch.func.functional_call(self.model, dict(zip(self._names, params, strict=True)), (x,),
                                         strict=False)
        return self._loss(out, target), out


def example_target(recipe: Recipe, batch: int) -> torch.Tensor:
    """A target batch of the right dtype and shape (zeros)."""
    if recipe.target_dtype == "int64":
        return torch.zeros(batch, dtype=torch.int64)
    with torch.no_grad(), eval_form(recipe.model):
        out = recipe.model(recipe.example_input[:batch])
    return torch.zeros_like(out)


def _lower(recipe: Recipe, dynamic: bool, max_batch: int, batchnorm: str) -> Any:
    with optional_imports(__name__):
        from executorch.exir import EdgeCompileConfig, to_edge
    from torch.export import Dim, export
    from torch.export.experimental import _export_forward_backward

    x = recipe.example_input
    target = example_target(recipe, x.shape[0])
    params = tuple(dict(recipe.model.named_parameters())[n].detach() for n in recipe.trainable)
    shapes = eval_shapes = None
    if dynamic:
        batch = Dim("batch", min=1, max=max_batch)
        shapes = ({0: batch}, {0: batch})
        eval_shapes = (*shapes, tuple(None for _ in params))
    with training_form(recipe.model, batchnorm), fast_form():
        joint = _export_forward_backward(export(TrainingWrapper(recipe), (x, target), dynamic_shapes=shapes,
                                                strict=True))
    with eval_form(recipe.model), fast_form(), torch.no_grad():
        evaluation = export(EvalWrapper(recipe), (x, target, params), dynamic_shapes=eval_shapes, strict=True)
    edge = addmm_as_mm(to_edge({"forward": joint, EVAL_METHOD: evaluation},
                               compile_config=EdgeCompileConfig(_check_ir_validity=False)))
    edge = edge.transform([channels_first_across_layers, drop_redundant_clones])
    try:
        return edge.to_executorch()
    except RuntimeError as err:  # "Missing out variants: {'aten::_native_batch_norm_legit_functional'}"
        ops = re.findall(r"'(\w+::[\w.]+)'", str(err)) if "out variant" in str(err) else []
        if not ops:
            raise
        modules = _modules_calling(_graphs(edge), ops)
        where = f" (used by {', '.join(modules[:4])})" if modules else ""
        raise UnsupportedModel(f"ExecuTorch has no out-variant kernel for {', '.join(ops)}{where}") from None


def _registered_kernels() -> set[str]:
    from executorch.extension.pybindings.portable_lib import _get_operator_names

    return set(_get_operator_names())


def _op_name(name: str, overload: str) -> str:
    return f"{name}.{overload}" if overload else name


def _op_base(name: str) -> str:
    """``aten::avg_pool2d_backward.grad_input`` -> ``avg_pool2d``: a backward op names its forward."""
    return name.split("::", 1)[-1].split(".", 1)[0].removesuffix("_backward")


def _graphs(program: Any) -> list[Any]:
    """The graph of every method of an edge or ExecuTorch program manager."""
    return [program.exported_program(method).graph for method in program.methods]


def _modules_calling(graphs: Iterable[Any], ops: Iterable[str]) -> list[str]:
    """``"features.3 (AvgPool2d)"`` for each model module whose graph nodes call one of ``ops``.

    The joint graph keeps no module stacks (``_export_forward_backward`` drops them), the eval
    method's graph does: a backward op is traced to the module of its forward op there."""
    wanted = {_op_base(op) for op in ops}
    found: dict[str, None] = {}
    for graph in graphs:
        for node in graph.nodes:
            target = getattr(node.target, "__name__", "")
            stack = node.meta.get("nn_module_stack") or {}
            if node.op != "call_function" or not stack or _op_base(target) not in wanted:
                continue
            path, kind = list(stack.values())[-1]
            path = str(path).removeprefix(WRAPPED_PREFIX.rstrip(".")).removeprefix(".")
            kind = getattr(kind, "__name__", str(kind).rsplit(".", 1)[-1])
            found[f"{path or '<model>'} ({kind})"] = None
    return list(found)


def modules_calling(recipe: Recipe, ops: Iterable[str]) -> list[str]:
    """The modules whose evaluation graph (as the program's ``eval`` method captures it) calls one of
    ``ops`` or the forward of a backward among them: for a kernel that fails when the program
    runs, which only the runtime's log names. Exports the graph again (only after a failure)."""
    from torch.export import export

    x = recipe.example_input
    params = tuple(dict(recipe.model.named_parameters())[n].detach() for n in recipe.trainable)
    with eval_form(recipe.model), fast_form(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = export(EvalWrapper(recipe), (x, example_target(recipe, x.shape[0]), params), strict=False)
        graph = program.run_decompositions().graph
    return _modules_calling([graph], ops)


def missing_kernels(program: Any) -> list[str]:
    """Operators the program calls that the installed ExecuTorch runtime has no kernel for."""
    have = _registered_kernels()
    missing: dict[str, None] = {}
    for plan in program.executorch_program.execution_plan:
        for op in plan.operators:
            name = _op_name(op.name, op.overload)
            if name not in have:
                missing[name] = None
    return list(missing)


def _check_kernels(program: Any) -> None:
    missing = missing_kernels(program)
    if not missing:
        return
    modules = _modules_calling(_graphs(program), missing)
    if modules:
        raise UnsupportedModel(f"the ExecuTorch runtime has no kernel for {', '.join(missing)} (used by "
                               f"{', '.join(modules[:4])}); keep those modules in the frozen part before "
                               "any trainable layer, or replace them")
    # no forward op of the model is one of them: they come from a backward's decomposition, and the
    # joint graph keeps no trace of the op whose backward it was
    raise UnsupportedModel(f"the ExecuTorch runtime has no kernel for {', '.join(missing)}, which the "
                           "backward of one of the model's ops needs (no module's forward calls an op of "
                           "that name); keep the layers up to that op frozen, or write the function out in "
                           "elementwise ops in your forward (as the exporter does for F.silu, "
                           "docs/EXPORT.md)")


def _lowering_error(err: Exception) -> str:
    text = str(err).strip()
    first = text.splitlines()[0][:300] if text else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def write_executorch_program(recipe: Recipe, out_dir: str | os.PathLike[str], *,
                             max_batch: int | None = None, batchnorm: str = "frozen") -> dict[str, Any]:
    """Write ``model.pte``; returns the manifest's ``backends.executorch`` fields (without status).

    ``max_batch`` (default: the recipe's batch) is the largest training batch the program takes.

    Raises :class:`UnsupportedModel` with the reason when the model does not export or calls an
    operator the runtime has no kernel for.
    """
    refuse_batchnorm_training(recipe, batchnorm, "ExecuTorch 1.4.1",
                              "its kernel library has no out variant of _native_batch_norm_legit_functional, "
                              "the training form")
    max_batch = recipe.batch_size if max_batch is None else max_batch
    recipe.apply_trainable()
    errors = []
    program = None
    dynamic = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dynamic in (True, False):
            try:
                program = _lower(recipe, dynamic, max_batch, batchnorm)
                break
            except UnsupportedModel:
                raise
            except Exception as err:  # export raises many kinds; the reason goes into the manifest
                errors.append(_lowering_error(err))
    if program is None:
        raise UnsupportedModel("torch.export / ExecuTorch lowering failed: " + errors[-1])
    _check_kernels(program)
    (Path(out_dir) / PTE_FILE).write_bytes(program.buffer)
    info: dict[str, Any] = {"files": [PTE_FILE], "method": "forward", "eval_method": EVAL_METHOD,
                            "dynamic_batch": dynamic,
                            "max_batch": max_batch if dynamic else recipe.batch_size,
                            "parameter_prefix": WRAPPED_PREFIX, "outputs": ["loss", "output"]}
    if not dynamic:
        info["batch_size"] = recipe.batch_size
        info["note"] = "dynamic batch export failed (" + errors[0] + "); fixed batch"
    return info
