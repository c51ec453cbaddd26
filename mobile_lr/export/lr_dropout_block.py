"""Learning-rate dropout in the ONNX Runtime Training optimizer graph (onnxruntime-training 1.19.2).

:func:`lr_dropout_optimizer` returns an ``onnxblock`` block to pass as
``generate_artifacts(..., optimizer=block)``. The phone then trains with the
unchanged training API (``Optimizer.step()``); the graph draws the mask and
applies the **official** rule of :mod:`mobile_lr.lr_dropout`: SGD's momentum and
AdamW's moments see the full gradient, only the parameter update is masked.

What the 1.19.2 training API imposes (``training_api/optimizer.cc``, checked
by running it):

1. The optimizer graph's inputs are fixed: ``learning_rate``, ``step``,
   ``params``, ``gradients`` and the algorithm's state sequences
   (``first_order_moments`` [, ``second_order_moments``]); nothing else can be
   fed, so **the mask cannot come from the host**: the graph makes it.
2. State persists only through **in-place writes** into the tensors of those
   input sequences, which only the fused ``com.microsoft`` optimizer kernels do
   (standard ops write new tensors, which are dropped after the run).
3. The top-level graph must hold **exactly one** fused optimizer node
   (``AdamWOptimizer`` or ``SGDOptimizerV2``; two fail with "Group count can
   only be 1"). Its type picks the algorithm, hence the state inputs.

Masked SGD without momentum needs one node: ``SGDOptimizerV2`` on the params
with the gradient multiplied by the mask. Momentum SGD and AdamW need a second
in-place write (the momentum buffer, resp. the parameters), so it sits inside
an ``If`` node whose condition (``step > 0``) is computed at run time: the
node count only looks at the top level, and the branch reaches the outer
sequences as implicit inputs, i.e. the same tensors, so its in-place write
lands in the real state. That is how each kind is built:

* ``sgd-lrd``, momentum 0: ``p -= lr * mask * (g + wd*p)``, one node;
* ``sgd-lrd``, momentum mu: ``b' = g_wd`` at step 1 else ``mu*b + (1-dampening)*g_wd``
  (PyTorch's SGD, Nesterov optional); ``SGDOptimizerV2`` on the params with
  ``mask * b'`` (top level), and ``SGDOptimizerV2`` with learning rate 1 on the
  momentum buffers with ``b - b'`` (in the ``If``);
* ``adamw-lrd``: ``AdamWOptimizer`` (PyTorch's formula, ``adam_mode=0``) on a
  *copy* of the params with the real moments (top level: the moments take the
  full-gradient update in place), then ``SGDOptimizerV2`` with learning rate 1
  on the real params with ``mask * (p - p_adamw)`` (in the ``If``).

Arithmetic differs from PyTorch's by rounding only: ``b - (b - b')`` is ``b'``
up to an ulp, and ``p - (p - p_adamw)`` is exactly ``p_adamw`` whenever the two
are within a factor of two (Sterbenz). A dropped coordinate is left bit-exact.

The mask is :func:`mobile_lr.lr_dropout.counter_keep`, evaluated with int64
ONNX ops (``Mul``, ``Div``, ``BitwiseXor``, ``BitwiseAnd``: the graph is stamped
opset 18, which ORT 1.19.2 runs) from the seed (a constant), the ``step``
input (ORT feeds its step count + 1; the count is in the checkpoint, so a
resumed run draws the masks it would have drawn) and the parameter's key
(:func:`mobile_lr.lr_dropout.param_keys`), computed in the graph from the
shape of each sequence element. The key is not the element's position on
purpose: the position is the iteration order of the training API's
``std::unordered_map`` of parameters, which is neither the model's order nor
the Python API's (measured: ``2.bias, 2.weight, 0.weight, 0.bias`` for a
two-layer MLP whose ``CheckpointState.parameters`` lists ``0.bias, 0.weight,
2.bias, 2.weight``) and may differ between libc++ (Android) and libstdc++
(Linux). Only parameters of *equal shape* are told apart by their order among
themselves, so for them the phone may hand out the mask streams differently
than the desktop (same distribution); every other parameter gets the same
mask on both.

ORT's own ``RandomUniformLike`` was not used: its generator is
``std::default_random_engine`` (implementation-defined: a different stream on
Android than on Linux), it lives in the kernel object and restarts from the
seed when a session is re-created (every resume would replay the first masks),
and the desktop could not reproduce it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    import onnx
    from onnx import TensorProto
    from onnx import helper as oh
    from onnxruntime.training import onnxblock

from mobile_lr.bundle import LR_DROPOUT_FORMAT, write_manifest
from mobile_lr.lr_dropout import (
    KINDS,
    MASK32,
    MASK_BITS,
    MIX_MUL,
    MIX_SHIFT,
    SECOND_KEY,
    keep_threshold,
    mix32,
)
from mobile_lr.recipes import OptimizerSpec, Recipe
from mobile_lr.validation import ValidationError, check_int, check_number

__all__ = [
    "LR_DROPOUT_FORMAT",
    "LR_DROPOUT_OPSET",
    "LRDropoutOptimizer",
    "export_lrd_bundle",
    "lr_dropout_optimizer",
    "lrd_hparams",
    "write_optimizer_model",
]

LR_DROPOUT_OPSET = 18  # BitwiseXor / BitwiseAnd
_MS = "com.microsoft"


class _Emitter:
    """Appends nodes and constants to a graph under readable, unique ``lrd/...`` names."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self._count = 0
        self._consts: dict[tuple[int, Any], str] = {}

    def name(self, hint: str) -> str:
        self._count += 1
        return f"lrd/{hint}/{self._count}"

    def node(self, op: str, inputs: Sequence[str], hint: str, domain: str = "", outputs: int = 1,
             **attrs: Any) -> str | list[str]:
        outs = [self.name(f"{hint}.{op}") for _ in range(outputs)]
        self.graph.node.append(oh.make_node(op, list(inputs), outs, name=outs[0], domain=domain, **attrs))
        return outs[0] if outputs == 1 else outs

    def const(self, value: float | int, dtype: int, shape: Sequence[int] = ()) -> str:
        key = (dtype, value, tuple(shape))
        if key not in self._consts:
            name = self.name("const")
            self.graph.initializer.append(oh.make_tensor(name, dtype, list(shape), [value]))
            self._consts[key] = name
        return self._consts[key]

    def i64(self, value: int, shape: Sequence[int] = ()) -> str:
        return self.const(int(value), TensorProto.INT64, shape)

    def f32(self, value: float) -> str:
        return self.const(float(value), TensorProto.FLOAT)

    def mix32(self, x: str, hint: str) -> str:
        """:func:`mobile_lr.lr_dropout.mix32` on an int64 tensor (values < 2**32, no overflow)."""
        x = self.node("BitwiseXor", [x, self.node("Div", [x, self.i64(1 << MIX_SHIFT[0])], hint)], hint)
        x = self.node("BitwiseAnd", [self.node("Mul", [x, self.i64(MIX_MUL[0])], hint), self.i64(MASK32)],
                      hint)
        x = self.node("BitwiseXor", [x, self.node("Div", [x, self.i64(1 << MIX_SHIFT[1])], hint)], hint)
        x = self.node("BitwiseAnd", [self.node("Mul", [x, self.i64(MIX_MUL[1])], hint), self.i64(MASK32)],
                      hint)
        return self.node("BitwiseXor", [x, self.node("Div", [x, self.i64(1 << MIX_SHIFT[2])], hint)], hint)


def _check_hparams(kind: str, hparams: dict[str, Any]) -> dict[str, Any]:
    allowed = {"sgd-lrd": {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False},
               "adamw-lrd": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2}}
    if kind not in allowed:
        raise ValidationError("optimizer", f"unknown value {kind!r}", ", ".join(KINDS))
    unknown = sorted(set(hparams) - set(allowed[kind]))
    if unknown:
        raise ValidationError(f"optimizer.{unknown[0]}", f"not a hyper-parameter of {kind}",
                              ", ".join(allowed[kind]))
    out = {**allowed[kind], **hparams}
    check_number(out["weight_decay"], "optimizer.weight_decay", lo=0.0)
    if kind == "sgd-lrd":
        check_number(out["momentum"], "optimizer.momentum", lo=0.0, hi=1.0, hi_open=True)
        check_number(out["dampening"], "optimizer.dampening", lo=0.0, hi=1.0)
        if out["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
            raise ValidationError("optimizer.nesterov", "needs momentum > 0 and dampening 0")
    else:
        b1, b2 = out["betas"]
        check_number(b1, "optimizer.betas[0]", lo=0.0, hi=1.0, hi_open=True)
        check_number(b2, "optimizer.betas[1]", lo=0.0, hi=1.0, hi_open=True)
        check_number(out["eps"], "optimizer.eps", lo=0.0, lo_open=True)
    return out


def lr_dropout_optimizer(kind: str, keep: float, seed: int = 0, **hparams: Any) -> LRDropoutOptimizer:
    """An ``onnxblock`` optimizer block: ``"sgd-lrd"`` or ``"adamw-lrd"`` with keep probability ``keep``.

    ``hparams`` are ``torch.optim.SGD``'s (``momentum``, ``dampening``,
    ``weight_decay``, ``nesterov``) or ``torch.optim.AdamW``'s (``betas``,
    ``eps``, ``weight_decay``), with PyTorch's defaults; the learning rate is the
    training API's (``Optimizer.set_learning_rate``, driven by the schedule).
    """
    keep = check_number(keep, "lr_dropout.keep", lo=0.0, hi=1.0)
    seed = check_int(seed, "lr_dropout.seed", lo=0, hi=MASK32)
    return LRDropoutOptimizer(kind, keep, seed, _check_hparams(kind, dict(hparams)))


class LRDropoutOptimizer(onnxblock.ForwardBlock):
    """The optimizer graph with learning-rate dropout (module doc); made by :func:`lr_dropout_optimizer`."""

    def __init__(self, kind: str, keep: float, seed: int, hparams: dict[str, Any]) -> None:
        super().__init__()
        self.kind, self.keep, self.seed, self.hparams = kind, keep, seed, hparams

    def build(self, parameters: tuple[list[onnx.TensorProto], list[onnx.TensorProto]]) -> str:
        trainable = parameters[0]
        dtype = trainable[0].data_type if trainable else TensorProto.FLOAT
        return _build(self.base, self.kind, self.keep, self.seed, self.hparams, len(trainable), dtype)


# ---------------------------------------------------------------------- graph


def _set_opset(model: onnx.ModelProto) -> None:
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            op.version = max(op.version, LR_DROPOUT_OPSET)
            return
    model.opset_import.append(oh.make_opsetid("", LR_DROPOUT_OPSET))


def _bool1(name: str) -> onnx.ValueInfoProto:
    return oh.make_tensor_value_info(name, TensorProto.BOOL, [1])


def _build(model: onnx.ModelProto, kind: str, keep: float, seed: int, hp: dict[str, Any], n: int,
           dtype: int) -> str:
    if n == 0:
        raise ValidationError("requires_grad", "no trainable parameter", "at least one")
    if dtype != TensorProto.FLOAT:
        raise ValidationError("requires_grad", "LR dropout graphs are built for float32 parameters")
    _set_opset(model)
    g = model.graph
    states = ["first_order_moments"] + (["second_order_moments"] if kind == "adamw-lrd" else [])
    g.input.extend([oh.make_tensor_value_info("learning_rate", TensorProto.FLOAT, [1]),
                    oh.make_tensor_value_info("step", TensorProto.INT64, [1])])
    g.input.extend(oh.make_tensor_sequence_value_info(name, dtype, None)
                   for name in ["params", "gradients", *states])
    e = _Emitter(g)
    masks = list(_masks(e, keep, seed, n))
    at = lambda seq, i, hint: e.node("SequenceAt", [seq, e.i64(i)], hint)  # noqa: E731 (copies)
    if kind == "adamw-lrd":
        b1, b2 = hp["betas"]
        copy = e.node("SequenceConstruct", [at("params", i, f"p{i}") for i in range(n)], "params_copy")
        flag, stepped = e.node("AdamWOptimizer", ["learning_rate", "step", copy, "gradients", *states],
                               "adamw", domain=_MS, outputs=2, alpha=float(b1), beta=float(b2),
                               epsilon=float(hp["eps"]), weight_decay=float(hp["weight_decay"]),
                               correct_bias=1, adam_mode=0)
        deltas = [e.node("Mul", [masks[i], e.node("Sub", [at("params", i, f"p{i}"), at(stepped, i, f"p{i}")],
                                                  f"p{i}")], f"p{i}") for i in range(n)]
        inner = e.node("SequenceConstruct", deltas, "masked_delta")
        return _finish(e, flag, _in_place_sgd(e, "params", inner))
    updates, momentum_deltas = [], []
    first = e.node("Equal", ["step", e.i64(1, [1])], "first_step")
    for i in range(n):
        grad = at("gradients", i, f"g{i}")
        if hp["weight_decay"]:
            grad = e.node("Add", [grad, e.node("Mul", [at("params", i, f"p{i}"), e.f32(hp["weight_decay"])],
                                               f"wd{i}")], f"wd{i}")
        update = grad
        mu = hp["momentum"]
        if mu:
            buf = at("first_order_moments", i, f"b{i}")
            blend = e.node("Add", [e.node("Mul", [buf, e.f32(mu)], f"b{i}"),
                                   e.node("Mul", [grad, e.f32(1.0 - hp["dampening"])], f"b{i}")], f"b{i}")
            new_buf = e.node("Where", [first, grad, blend], f"b{i}")  # PyTorch: buf = d_p at step 1
            momentum_deltas.append(e.node("Sub", [buf, new_buf], f"b{i}"))
            update = e.node("Add", [grad, e.node("Mul", [new_buf, e.f32(mu)], f"n{i}")], f"n{i}") \
                if hp["nesterov"] else new_buf
        updates.append(e.node("Mul", [masks[i], update], f"u{i}"))
    masked = e.node("SequenceConstruct", updates, "masked")
    flag = e.node("SGDOptimizerV2", ["learning_rate", "params", masked], "sgd", domain=_MS)
    if not momentum_deltas:
        return _finish(e, flag)
    inner = e.node("SequenceConstruct", momentum_deltas, "momentum_delta")
    return _finish(e, flag, _in_place_sgd(e, "first_order_moments", inner))


def _masks(e: _Emitter, keep: float, seed: int, n: int) -> Iterator[str]:
    """Float 0/1 keep-masks shaped like each gradient: ``counter_keep(seed, step, key_i, shape_i, keep)``.

    ``key_i`` is :func:`mobile_lr.lr_dropout.param_keys` computed at run time:
    the shape signature of sequence element i, mixed with the number of earlier
    elements of equal signature (a strictly lower-triangular count).
    """
    grads = [e.node("SequenceAt", ["gradients", e.i64(i)], f"mask{i}") for i in range(n)]
    sigs = [_shape_signature(e, g, f"sig{i}") for i, g in enumerate(grads)]
    all_sigs = e.node("Concat", sigs, "occ", axis=0)
    same = e.node("Equal", [e.node("Reshape", [all_sigs, _shape_const(e, [n, 1])], "occ"),
                            e.node("Reshape", [all_sigs, _shape_const(e, [1, n])], "occ")], "occ")
    earlier = e.name("earlier")
    e.graph.initializer.append(oh.make_tensor(earlier, TensorProto.INT64, [n, n],
                                              [int(j < i) for i in range(n) for j in range(n)]))
    occurrences = e.node("ReduceSum", [e.node("Mul", [e.node("Cast", [same], "occ", to=TensorProto.INT64),
                                                      earlier], "occ"), e.i64(1, [1])], "occ", keepdims=0)
    step32 = e.node("BitwiseAnd", ["step", e.i64(MASK32, [1])], "key")
    step_key = e.mix32(e.node("BitwiseXor", [e.i64(mix32(seed & MASK32), [1]), step32], "key"), "key")
    threshold = e.i64(keep_threshold(keep))
    for i, (grad, sig) in enumerate(zip(grads, sigs, strict=True)):
        hint = f"mask{i}"
        occ = e.node("Gather", [occurrences, e.i64(i, [1])], hint, axis=0)
        key = e.mix32(e.node("BitwiseXor", [sig, e.mix32(occ, hint)], hint), hint)
        k1 = e.mix32(e.node("BitwiseXor", [step_key, key], hint), hint)
        k2 = e.mix32(e.node("BitwiseXor", [k1, e.i64(SECOND_KEY, [1])], hint), hint)
        coords = e.node("Range", [e.i64(0), e.node("Size", [grad], hint), e.i64(1)], hint)
        u = e.mix32(e.node("BitwiseXor", [e.mix32(e.node("BitwiseXor", [coords, k1], hint), hint), k2], hint),
                    hint)
        kept = e.node("Less", [e.node("Div", [u, e.i64(1 << (32 - MASK_BITS))], hint), threshold], hint)
        yield e.node("Reshape", [e.node("Cast", [kept], hint, to=TensorProto.FLOAT),
                                 e.node("Shape", [grad], hint)], hint)


def _shape_const(e: _Emitter, dims: Sequence[int]) -> str:
    name = e.name("shape")
    e.graph.initializer.append(oh.make_tensor(name, TensorProto.INT64, [len(dims)], list(dims)))
    return name


def _shape_signature(e: _Emitter, tensor: str, hint: str) -> str:
    """:func:`mobile_lr.lr_dropout.shape_signature` of ``tensor``'s run-time shape, as int64 ``[1]``."""
    shape = e.node("Shape", [tensor], hint)
    rank = e.node("Reshape", [e.node("Size", [shape], hint), e.i64(1, [1])], hint)
    dims = e.node("Range", [e.i64(0), e.node("Size", [shape], hint), e.i64(1)], hint)
    dim_keys = e.mix32(e.node("Add", [dims, e.i64(1)], hint), hint)
    dims32 = e.node("BitwiseAnd", [shape, e.i64(MASK32)], hint)
    terms = e.mix32(e.node("BitwiseXor", [dims32, dim_keys], hint), hint)
    total = e.node("Add", [e.node("ReduceSum", [terms], hint, keepdims=1), e.mix32(rank, hint)], hint)
    return e.node("BitwiseAnd", [total, e.i64(MASK32, [1])], hint)


def _in_place_sgd(e: _Emitter, target: str, deltas: str) -> str:
    """``target -= deltas`` in place, inside an ``If`` (see the module doc for why); returns its flag."""
    ok = e.name("inner.flag")
    branch_ok = e.name("inner.flag.out")
    then = oh.make_graph(
        [oh.make_node("SGDOptimizerV2", [e.f32(1.0), target, deltas], [ok], name=ok, domain=_MS),
         oh.make_node("Identity", [ok], [branch_ok], name=branch_ok)],
        "lrd_in_place", [], [_bool1(branch_ok)], value_info=[_bool1(ok)])
    skipped = e.name("skipped")
    other = oh.make_graph([oh.make_node("Constant", [], [skipped], name=skipped,
                                        value=oh.make_tensor(skipped, TensorProto.BOOL, [1], [False]))],
                          "lrd_skip", [], [_bool1(skipped)])
    cond = e.node("Squeeze", [e.node("Greater", ["step", e.i64(0, [1])], "always")], "always")
    out = e.node("If", [cond], "in_place", then_branch=then, else_branch=other)
    e.graph.value_info.append(_bool1(out))
    return out


def _finish(e: _Emitter, *flags: str) -> str:
    flag = flags[0]
    for other in flags[1:]:
        flag = e.node("And", [flag, other], "updated")
    e.graph.value_info.append(_bool1(flag))
    e.graph.output.append(_bool1(flag))
    return flag


def write_optimizer_model(path: str | os.PathLike[str], kind: str, keep: float, seed: int,
                          trainable: Sequence[tuple[str, Sequence[int]]], opset: int = 17,
                          **hparams: Any) -> onnx.ModelProto:
    """Build the LR-dropout optimizer graph for parameters ``[(name, shape), ...]`` without a training model.

    What ``generate_artifacts(..., optimizer=lr_dropout_optimizer(...))`` writes as
    ``optimizer_model.onnx`` (the optimizer graph depends only on the number and
    dtype of the trainable parameters), for swapping into existing artifacts.
    """
    block = lr_dropout_optimizer(kind, keep, seed, **hparams)
    protos = [onnx.TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape))
              for name, shape in trainable]
    with onnxblock.empty_base(opset_version=opset):
        block((protos, []))
        model = block.to_model_proto()
    onnx.save(model, str(Path(path)))
    return model


# ---------------------------------------------------------------------- bundles

_BASE = {"sgd-lrd": "sgd", "adamw-lrd": "adamw"}


def lrd_hparams(kind: str, recipe_optimizer: OptimizerSpec) -> OptimizerSpec:
    """The optimizer the mask is applied to: the recipe's own when it is of the same type.

    Otherwise that type's defaults, with momentum 0.9 for SGD (the official
    SGD-LRD's setting; its code needs momentum > 0).
    """
    base = _BASE.get(kind)
    if base is None:
        raise ValidationError("optimizer", f"unknown value {kind!r}", ", ".join(KINDS))
    if recipe_optimizer.type == base:
        return recipe_optimizer
    return OptimizerSpec("sgd", momentum=0.9) if base == "sgd" else OptimizerSpec("adamw")


def _spec_hparams(spec: OptimizerSpec) -> dict[str, Any]:
    return {k: (tuple(v) if k == "betas" else v) for k, v in spec.to_dict().items() if k != "type"}


def export_lrd_bundle(recipe: Recipe, out_dir: str | os.PathLike[str], kind: str, keep: float,
                      seed: int = 0, **export_options: Any) -> dict[str, Any]:
    """Export an ORT-only bundle whose optimizer graph applies LR dropout; returns the manifest.

    The bundle is exported by :func:`export.export_bundle` with a plain
    optimizer of the same type (which ORT's stock blocks can represent; the
    optimizer graph depends only on the trainable parameters), then
    ``optimizer_model.onnx`` is replaced by :func:`lr_dropout_optimizer`'s graph
    and the manifest is rewritten: its ``optimizer`` block is the optimizer the
    mask applies to (:func:`lrd_hparams`) and a new top-level ``lr_dropout``
    block records ``kind``, ``keep``, ``seed``, the rule and the mask source.
    Only the ORT backend: the other runtimes read ``optimizer`` and know
    nothing of the mask. A crash between the two rewrites leaves a bundle that
    fails verification (the optimizer file no longer matches the manifest), never
    one that silently trains without the mask.
    """
    from mobile_lr.export.onnx_artifacts import OPSET
    from mobile_lr.export.pipeline import export_bundle

    keep = check_number(keep, "lr_dropout.keep", lo=0.0, hi=1.0)
    seed = check_int(seed, "lr_dropout.seed", lo=0, hi=MASK32)
    spec = lrd_hparams(kind, recipe.optimizer)
    hparams = _spec_hparams(spec)
    _check_hparams(kind, dict(hparams))
    backends = export_options.pop("backends", ["ort"])
    if list(backends) != ["ort"]:
        raise ValidationError("backend", f"{','.join(backends)}: LR dropout is built for ONNX Runtime "
                                         "Training only", "ort")
    plain = dataclasses.replace(recipe, optimizer=OptimizerSpec(spec.type))
    manifest = export_bundle(plain, out_dir, backends=["ort"], **export_options)
    if manifest.backends["ort"].status != "ok":
        return manifest
    out = Path(out_dir)
    shapes = {name: tuple(p.shape) for name, p in recipe.model.named_parameters()}
    tmp = out / ".optimizer_model.onnx.lrd-tmp"
    write_optimizer_model(tmp, kind, keep, seed, [(n, shapes[n]) for n in recipe.trainable], opset=OPSET,
                          **hparams)
    os.replace(tmp, out / "optimizer_model.onnx")
    fields = {k: v for k, v in manifest.to_dict().items() if k not in ("format", "files")}
    fields["optimizer"] = spec.to_dict()
    fields["lr_dropout"] = {"format": LR_DROPOUT_FORMAT, "kind": kind, "keep": keep, "seed": seed,
                            "rule": "official", "mask": "counter", "backends": ["ort"]}
    return write_manifest(out, fields)
