"""ONNX Runtime Training artifacts and the ONNX inference model of a recipe.

Export rules (docs/DEVICES.md §7.1, checked on the pinned stack):

* TorchScript exporter (``dynamo=False``): its initializers keep the names of
  ``model.named_parameters()``, so the recipe's trainable/frozen split maps one
  to one onto ``requires_grad``/``frozen_params``;
* opset 17 (ORT 1.19.2 accepts up to 21), ``do_constant_folding=False`` (folding
  can merge or rename weights), ``TrainingMode.PRESERVE`` over the forms of
  :mod:`mobile_lr.export.forms` (training graph: dropout on, batch norm frozen as
  its affine map; inference model: eval mode), a dynamic batch axis, I/O named
  ``input``/``output``;
* the training graph's LayerNormalization and Dropout nodes get their optional
  outputs, which ORT's gradient builders need (:func:`expose_optional_outputs`);
* batch-norm statistics cannot train in ORT: its gradient builder turns every
  BatchNormalization into a training-mode node, but the training API has no way to
  carry the updated running statistics into the next step or the checkpoint, so
  ``batchnorm="train"`` is refused naming the modules;
* ``generate_artifacts`` needs its directory to exist; cross-entropy creates an
  int64 ``labels`` input of shape (B,), MSE a float ``target`` shaped like the
  output; ``additional_output_names=["output"]`` makes a train/eval step return
  ``(loss, logits)``;
* the optimizer block is built explicitly with the recipe's hyper-parameters:
  onnxblock's ``AdamW`` defaults to eps=1e-6 where torch uses 1e-8, and its SGD
  is plain SGD (no momentum, dampening, weight decay or Nesterov), so a recipe
  asking for those gets the ORT backend reported as unsupported, with the reason;
* AdamW is switched to PyTorch's formula: onnxblock always emits the
  ``AdamWOptimizer`` node with ``adam_mode=1`` (Hugging Face's variant: eps added
  to the uncorrected sqrt(v), weight decay after the update), while ORT's kernel
  also implements ``adam_mode=0``, ``torch.optim.AdamW`` exactly (bias-corrected
  sqrt(v) + eps, decay before the update; ORT's
  ``training_ops/cpu/optimizer/adamw/adamw.cc``). The exporter sets the attribute
  to 0 in ``optimizer_model.onnx``, so the phone trains what PyTorch trains;
* ORT 1.19.2 refuses ONNX IR > 10: every model is checked after generation.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    import onnx
    import onnx.numpy_helper
    import torch

from mobile_lr.export.forms import (
    batchnorm_modules,
    describe_modules,
    eval_form,
    training_form,
    unrolled_rnns,
)
from mobile_lr.native import NativeLog, quiet_native_stderr
from mobile_lr.recipes import CustomLoss, Recipe

__all__ = [
    "INFERENCE_MODEL",
    "MAX_IR_VERSION",
    "OPSET",
    "ORT_FILES",
    "NativeLog",
    "UnsupportedModel",
    "decompose_hard_activations",
    "engine_error",
    "export_onnx",
    "expose_optional_outputs",
    "module_of_node",
    "ort_hint",
    "quiet_native_stderr",
    "refuse_batchnorm_training",
    "write_ort_artifacts",
]

OPSET = 17
MAX_IR_VERSION = 10
ORT_FILES = ("training_model.onnx", "eval_model.onnx", "optimizer_model.onnx", "checkpoint")
INFERENCE_MODEL = "inference_model.onnx"


class UnsupportedModel(Exception):
    """A backend cannot represent this recipe; the message says why (goes into the manifest)."""


def refuse_batchnorm_training(recipe: Recipe, batchnorm: str, engine: str, why: str) -> None:
    """Raise :class:`UnsupportedModel` naming the batch-norm modules if ``batchnorm="train"`` asks
    ``engine`` to train statistics it cannot."""
    bns = batchnorm_modules(recipe.model)
    if batchnorm == "train" and bns:
        raise UnsupportedModel(f"batch-norm statistics cannot train in {engine} "
                               f"({describe_modules(recipe.model, bns)}): {why}; "
                               "export with --batchnorm frozen")


def export_onnx(recipe: Recipe, path: str | os.PathLike[str], *, training: bool,
                batchnorm: str = "frozen") -> onnx.ModelProto:
    """Export the recipe's model to ONNX (batch axis dynamic); returns the loaded model.

    ``training=True``: the training form (:func:`~mobile_lr.export.forms.training_form`: dropout
    on, batch norm frozen) with the optional outputs ORT's gradient builders read
    (:func:`expose_optional_outputs`); ``False``: the eval form.
    """
    model = recipe.model
    form = training_form(model, batchnorm) if training else eval_form(model)
    rnns = unrolled_rnns(model) if training else contextlib.nullcontext()
    try:
        with form, rnns, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but keeps names
            torch.onnx.export(
                model, (recipe.example_input,), str(path), input_names=["input"],
                output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                opset_version=OPSET, export_params=True, do_constant_folding=False,
                training=torch.onnx.TrainingMode.PRESERVE, dynamo=False)
    except torch.onnx.errors.OnnxExporterError as err:
        _refuse_export(err, model, training)
    proto = onnx.load(str(path))
    _check_ir(proto, Path(path).name)
    if training:
        expose_optional_outputs(proto)
        decompose_hard_activations(proto)
    return proto


def _modules_like(model: torch.nn.Module, op: str) -> list[str]:
    """Modules whose class is named like the aten op ``op`` (``instance_norm``: ``InstanceNorm2d``)."""
    key = op.replace("_", "").lower()
    return [n for n, m in model.named_modules()
            if re.sub(r"\d+d$", "", type(m).__name__.lower()) == key]


def _refuse_export(err: Exception, model: torch.nn.Module, training: bool) -> None:
    """The TorchScript exporter's failure in one line, naming the modules of the op it names: an
    :class:`UnsupportedModel` for the training graph (ORT's alone), a ``ValidationError`` for the
    inference model (every bundle has one)."""
    text = str(err).strip()
    first = re.split(r"\s+\[Caused by|\n", text, maxsplit=1)[0][:300]
    op = re.search(r"export of (?:operator )?(\w+)", first)
    names = _modules_like(model, op.group(1)) if op else []
    where = f" at {describe_modules(model, names)}" if names else ""
    graph = "training graph" if training else "inference model"
    why = f"the ONNX exporter (opset {OPSET}) cannot write the {graph}"
    if training:
        raise UnsupportedModel(f"{why}{where}: {first}{ort_hint(text)}") from None
    from mobile_lr.validation import ValidationError

    raise ValidationError("recipe.model", f"{why}{where}: {first}",
                          "ops the TorchScript ONNX exporter writes, sizes static but the batch's") from None


# Optional outputs that ORT's gradient builders take as inputs of the backward node
# (``orttraining/core/graph/gradient_builder.cc``: LayerNormalizationGrad reads the saved mean and
# inverse standard deviation, DropoutGrad the mask). The TorchScript exporter writes these nodes
# with their first output only, and the builder then fails with "gradient_builder_base.h:123
# i < node_->OutputDefs().size()". Naming the outputs makes the nodes compute them.
OPTIONAL_OUTPUTS = {"LayerNormalization": ("mean", "inv_std_dev"), "Dropout": ("mask",)}


def expose_optional_outputs(proto: onnx.ModelProto) -> None:
    """Give every LayerNormalization / Dropout node its optional outputs (in place)."""
    for node in proto.graph.node:
        extra = OPTIONAL_OUTPUTS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if extra and len(node.output) == 1:
            node.output.extend(f"{node.output[0]}.{name}" for name in extra)


def _hard_sigmoid_nodes(x: str, out: str, alpha: float, beta: float, name: str) -> tuple[list, list]:
    """``out = Clip(x * alpha + beta, 0, 1)``: nodes and their constant initializers."""
    h = onnx.helper
    consts = [onnx.numpy_helper.from_array(np.array(v, dtype=np.float32), f"{name}.{k}")
              for k, v in (("alpha", alpha), ("beta", beta), ("zero", 0.0), ("one", 1.0))]
    nodes = [h.make_node("Mul", [x, f"{name}.alpha"], [f"{name}.scaled"], name=f"{name}/Mul"),
             h.make_node("Add", [f"{name}.scaled", f"{name}.beta"], [f"{name}.shifted"], name=f"{name}/Add"),
             h.make_node("Clip", [f"{name}.shifted", f"{name}.zero", f"{name}.one"], [out],
                         name=f"{name}/Clip")]
    return nodes, consts


def decompose_hard_activations(proto: onnx.ModelProto) -> None:
    """Rewrite HardSigmoid and HardSwish (MobileNetV3's activations) as Mul/Add/Clip, in place.

    ORT 1.19.2 registers no gradient builder for either (its registry names Clip, Mul and Add);
    ``HardSwish(x) = x * HardSigmoid(x; 1/6, 1/2)``, ``HardSigmoid(x) = clip(alpha x + beta, 0, 1)``.
    Node names keep the module scope, so errors still point at the module.
    """
    graph = proto.graph
    rewritten = []
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in ("HardSigmoid", "HardSwish"):
            rewritten.append(node)
            continue
        name = node.name or node.output[0]
        x, out = node.input[0], node.output[0]
        if node.op_type == "HardSwish":
            nodes, consts = _hard_sigmoid_nodes(x, f"{name}.gate", 1.0 / 6.0, 0.5, name)
            nodes.append(onnx.helper.make_node("Mul", [x, f"{name}.gate"], [out], name=f"{name}/Mul_gate"))
        else:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            nodes, consts = _hard_sigmoid_nodes(x, out, attrs.get("alpha", 0.2), attrs.get("beta", 0.5), name)
        rewritten.extend(nodes)
        graph.initializer.extend(consts)
    del graph.node[:]
    graph.node.extend(rewritten)


def module_of_node(model: torch.nn.Module, node_name: str) -> str | None:
    """``"blocks.1.dw.0 (Conv2d)"`` for an ONNX node ``/blocks/blocks.1/dw/dw.0/Conv`` of ``model``.

    The TorchScript exporter names a node by its module scopes, each scope the attribute name
    (a Sequential's child repeats its parent: ``dw/dw.0``), then the op."""
    segments = [p for p in node_name.split("/") if p]
    for i, seg in enumerate(segments):  # gradient node "/op/MaxPool_Grad/MaxPoolGrad_0": "/op/MaxPool"
        if seg.endswith("_Grad"):
            del segments[i + 1:]
            break
    parts = segments[:-1]
    path: list[str] = []
    for part in parts:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    name = ".".join(path)
    try:
        mod = model.get_submodule(name)
    except AttributeError:
        return None
    return f"{name or '<model>'} ({type(mod).__name__})"


# What the user can do about an ONNX op ORT cannot differentiate or run, where the training form
# writes out only some of its uses (mobile_lr/export/written_out.py).
ORT_HINTS = {
    "InstanceNormalization|instance_norm": "an InstanceNorm is written out only without running statistics: "
                             "construct it with track_running_stats=False",
    "Resize": "only nearest upsampling by whole factors is written out: use mode='nearest' with an "
              "integer scale_factor",
    "AveragePool": "average pooling is written out as a convolution only with ceil_mode=False, "
                   "count_include_pad=True and no divisor_override",
    "LSTM": "an LSTM with proj_size is not unrolled: use proj_size=0",
    "ConvTranspose": "a 1-d or 2-d transposed convolution is written out only with an output_padding "
                     "below the stride: lower output_padding, or upsample (nn.Upsample, nearest) and "
                     "convolve (nn.Conv2d) instead",
}


def ort_hint(text: str) -> str:
    """``"; construct it with ..."``: what to change for the first op of :data:`ORT_HINTS` that
    ``text`` (an engine's error) names, or ``""``."""
    for op, hint in ORT_HINTS.items():
        if re.search(rf"\b(?:{op})(?:Grad)?\b", text):
            return f"; {hint}"
    return ""


def engine_error(err: BaseException | str, model: torch.nn.Module, log: str = "") -> str:
    """``" at blocks.1.dw.0 (Conv2d): <the error's last line>"``: an engine's error, naming the
    model module when the message (or the captured native log) names an ONNX node of it (a node
    at the root, ``/Softplus``, is a function the model's own ``forward`` calls), and what the
    user can change where :func:`ort_hint` knows."""
    text = str(err).strip() or type(err).__name__
    lines = [ln for ln in text.splitlines() if ln.strip()]
    message = lines[-1] if lines else text
    if message.startswith("/onnxruntime_src/"):  # drop the C++ signature ORT puts first
        found = re.search(r" was false\. (.+)|\[ONNXRuntimeError\] : \d+ : \w+ : (.+)", message)
        message = next((g for g in found.groups() if g), message) if found else message
    both = text + "\n" + log
    message = message[:400] + ort_hint(both)
    nodes = (re.findall(r"(/[\w.\-]+(?:/[\w.\-]+)+)", both)
             + re.findall(r"(?:node|name)\W{1,3}(/[\w.\-]+)\b", both))  # a root node: "for node /Elu"
    for candidate in nodes:
        module = module_of_node(model, candidate)
        if module:
            return f" at {module}: {message}"
    return f": {message}"


def _check_ir(proto: onnx.ModelProto, name: str) -> None:
    if proto.ir_version > MAX_IR_VERSION:
        raise UnsupportedModel(f"{name} has ONNX IR {proto.ir_version}; onnxruntime-training 1.19.2 "
                               f"reads IR <= {MAX_IR_VERSION} (pin onnx==1.17.0)")


def _loss_block(recipe: Recipe):  # -> artifacts.LossType | onnxblock.Block
    from onnxruntime.training import artifacts

    if isinstance(recipe.loss, CustomLoss):
        if recipe.loss.onnx_block is None:
            raise UnsupportedModel(f"custom loss {recipe.loss.name!r} has no onnxblock version")
        return recipe.loss.onnx_block()
    return {"cross_entropy": artifacts.LossType.CrossEntropyLoss,
            "mse": artifacts.LossType.MSELoss}[recipe.loss]


def _optimizer_block(recipe: Recipe):  # -> onnxblock.optim block
    from onnxruntime.training import onnxblock

    opt = recipe.optimizer
    if opt.type == "adamw":
        return onnxblock.optim.AdamW(betas=tuple(opt.betas), eps=opt.eps, weight_decay=opt.weight_decay)
    extras = {k: v for k, v in (("momentum", opt.momentum), ("dampening", opt.dampening),
                                ("weight_decay", opt.weight_decay), ("nesterov", opt.nesterov)) if v}
    if extras:
        raise UnsupportedModel(f"ONNX Runtime Training's SGD is plain SGD; the recipe asks for {extras}")
    return onnxblock.optim.SGD()


def write_ort_artifacts(recipe: Recipe, out_dir: str | os.PathLike[str], *,
                        batchnorm: str = "frozen") -> list[str]:
    """Write the four ORT training artifacts into ``out_dir``; returns their file names.

    Raises :class:`UnsupportedModel` when ORT cannot train this recipe.
    """
    with optional_imports(__name__):
        from onnxruntime.training import artifacts

    out = Path(out_dir)
    loss = _loss_block(recipe)
    optimizer = _optimizer_block(recipe)
    refuse_batchnorm_training(recipe, batchnorm, "ONNX Runtime Training",
                              "its training API cannot carry updated running statistics to the next step")
    recipe.apply_trainable()
    with tempfile.TemporaryDirectory() as tmp:
        proto = export_onnx(recipe, Path(tmp) / "base.onnx", training=True, batchnorm=batchnorm)
    initializers = {i.name for i in proto.graph.initializer}
    missing = [n for n in recipe.trainable if n not in initializers]
    if missing:
        raise UnsupportedModel(f"trainable parameters {missing} are not ONNX initializers "
                               "(renamed or folded by the exporter)")
    frozen = [n for n in recipe.frozen if n in initializers]
    out.mkdir(parents=True, exist_ok=True)  # generate_artifacts fails unless the directory exists
    try:
        with quiet_native_stderr():
            artifacts.generate_artifacts(
                proto, requires_grad=list(recipe.trainable), frozen_params=frozen, loss=loss,
                optimizer=optimizer, artifact_directory=str(out), additional_output_names=["output"])
    except Exception as err:  # ORT raises bare RuntimeError/ValueError from native code
        where = engine_error(err, recipe.model)
        raise UnsupportedModel(f"ONNX Runtime cannot build the training graph{where}; keep that module in "
                               "the frozen part before any trainable layer, or replace the module (or the "
                               "torch.nn.functional call in its forward)") from err
    if recipe.optimizer.type == "adamw":
        _use_torch_adamw(out / "optimizer_model.onnx")
    for name in ORT_FILES[:3]:
        _check_ir(onnx.load(str(out / name), load_external_data=False), name)
    return list(ORT_FILES)


def _use_torch_adamw(path: Path) -> None:
    """Set ``adam_mode=0`` (PyTorch's AdamW) on the optimizer graph's AdamWOptimizer node."""
    proto = onnx.load(str(path))
    nodes = [n for n in proto.graph.node if n.op_type == "AdamWOptimizer"]
    if len(nodes) != 1:
        raise UnsupportedModel(f"expected one AdamWOptimizer node in {path.name}, found {len(nodes)}")
    attrs = nodes[0].attribute
    for i, attr in enumerate(attrs):
        if attr.name == "adam_mode":
            del attrs[i]
            break
    attrs.append(onnx.helper.make_attribute("adam_mode", 0))
    onnx.save(proto, str(path))
