"""ONNX Runtime Training artifacts and the ONNX inference model of a recipe.

Export rules (docs/DEVICES.md §7.1, checked on the pinned stack):

* TorchScript exporter (``dynamo=False``): its initializers keep the names of
  ``model.named_parameters()``, so the recipe's trainable/frozen split maps one
  to one onto ``requires_grad``/``frozen_params``;
* opset 17 (ORT 1.19.2 accepts up to 21), ``do_constant_folding=False`` (folding
  can merge or rename weights), ``TrainingMode.TRAINING`` for the training graph
  (dropout/batch-norm in training form), a dynamic batch axis, I/O named
  ``input``/``output``;
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
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    import onnx
    import torch

from mobile_lr.recipes import CustomLoss, Recipe

__all__ = [
    "INFERENCE_MODEL",
    "MAX_IR_VERSION",
    "OPSET",
    "ORT_FILES",
    "NativeLog",
    "UnsupportedModel",
    "export_onnx",
    "quiet_native_stderr",
    "write_ort_artifacts",
]

OPSET = 17
MAX_IR_VERSION = 10
ORT_FILES = ("training_model.onnx", "eval_model.onnx", "optimizer_model.onnx", "checkpoint")
INFERENCE_MODEL = "inference_model.onnx"


class UnsupportedModel(Exception):
    """A backend cannot represent this recipe; the message says why (goes into the manifest)."""


class NativeLog:
    """Text native code wrote to fd 2 inside :func:`quiet_native_stderr` (filled when the block ends)."""

    text = ""


@contextlib.contextmanager
def quiet_native_stderr(replay_on_error: bool = True) -> Iterator[NativeLog]:
    """Capture what native code writes to stderr (ORT's gradient builder logs every graph pass at INFO).

    Both routes are captured: fd 2 (ORT) and Python's ``sys.stderr`` (ExecuTorch's pybindings
    forward their C++ log there). On an exception the captured tail is replayed to stderr (unless
    ``replay_on_error`` is false) so that no error is lost.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    log = NativeLog()
    python_side = io.StringIO()
    failed = False
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stderr(python_side):
                yield log
        except BaseException:
            failed = True
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            log.text = sink.read().decode("utf-8", "replace") + python_side.getvalue()
            if failed and replay_on_error and log.text.strip():
                print(log.text[-4000:], file=sys.stderr)


def export_onnx(recipe: Recipe, path: str | os.PathLike[str], *, training: bool) -> onnx.ModelProto:
    """Export the recipe's model to ONNX (batch axis dynamic); returns the loaded model."""
    mode = torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL
    model = recipe.model
    was_training = model.training
    model.train(training)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but keeps names
            torch.onnx.export(
                model, (recipe.example_input,), str(path), input_names=["input"],
                output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                opset_version=OPSET, export_params=True, do_constant_folding=False,
                training=mode, dynamo=False)
    finally:
        model.train(was_training)
    proto = onnx.load(str(path))
    _check_ir(proto, Path(path).name)
    return proto


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


def write_ort_artifacts(recipe: Recipe, out_dir: str | os.PathLike[str]) -> list[str]:
    """Write the four ORT training artifacts into ``out_dir``; returns their file names.

    Raises :class:`UnsupportedModel` when ORT cannot train this recipe.
    """
    with optional_imports(__name__):
        from onnxruntime.training import artifacts

    out = Path(out_dir)
    loss = _loss_block(recipe)
    optimizer = _optimizer_block(recipe)
    recipe.apply_trainable()
    with tempfile.TemporaryDirectory() as tmp:
        proto = export_onnx(recipe, Path(tmp) / "base.onnx", training=True)
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
        raise UnsupportedModel(f"generate_artifacts failed: {str(err).strip().splitlines()[-1]}") from err
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
