"""PyTorch eager runtime: the reference the exported artifacts are compared against.

Built from a :class:`~mobile_lr.recipes.Recipe` (its model is copied, the
recipe stays untouched) or from a bundle directory. From a bundle, the model
code comes from the *caller*: the manifest's ``model.recipe`` name selects a
recipe from an allow-list (the built-in recipes plus the caller's ``recipes=``;
the CLI's ``--recipe``); a bundle never names code to import (its ``model.entry``
is information only). The weights come from the verified ``inference_model.onnx``
(an ONNX protobuf, parsed from the verified bytes; never a pickle).

Optimizers: the recipe's (``torch.optim.AdamW`` or ``SGD``), or
``optimizer="schedulefree"`` for ``schedulefree.AdamWScheduleFree`` (its
evaluation point ``x`` is used by :meth:`evaluate`/:meth:`predict`; it cannot
be combined with an EMA, which would average a second time). Its checkpoint
stores the training point ``y`` and the optimizer's ``z`` and scalars, which
restores it exactly.

Batch norm is frozen, as on the exported engines: a training step runs the
model in train mode (dropout on) with every batch-norm module in eval mode, so it
normalizes with its running statistics and never updates them.

Runs single-threaded by default (``threads=1``): for models this small, torch's
thread pool costs more than it gains. The thread count is set around each call
and restored after, so the process's setting is left alone.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mobile_lr.extras import optional_imports, require

with optional_imports(__name__):
    import torch

from mobile_lr.bundle import load_bundle
from mobile_lr.recipes import BUILTIN_RECIPES, OptimizerSpec, Recipe, batchnorm_modules, load_recipe
from mobile_lr.runtime.base import ModelIO, RuntimeBase, check_sf_r, logits_metrics
from mobile_lr.runtime.checkpoint import CheckpointError
from mobile_lr.runtime.torch_optim import (
    eval_point,
    make_optimizer,
    optimizer_state,
    restore_optimizer_state,
    set_lr,
    torch_threads,
)
from mobile_lr.validation import ValidationError

require(__name__, "onnx")

__all__ = ["EVAL_CHUNK", "RecipeSource", "TorchRuntime", "recipe_identity"]

EVAL_CHUNK = 4096


def recipe_identity(recipe: Recipe) -> str:
    """Identity of a recipe-built runtime: hash of its entry, trainable split and initial weights."""
    h = hashlib.sha256(json.dumps([recipe.entry or recipe.name, list(recipe.trainable)]).encode())
    for name, t in recipe.model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().numpy().tobytes())
    return "recipe-" + h.hexdigest()


def _model_io(recipe: Recipe) -> ModelIO:
    was_training = recipe.model.training
    recipe.model.eval()  # a train-mode forward would update batch-norm statistics
    with torch.no_grad():
        out = recipe.model(recipe.example_input[:1])
    recipe.model.train(was_training)
    classes = (len(recipe.labels) or int(out.shape[-1])) if recipe.classifies else None
    return ModelIO(recipe.input_shape, tuple(out.shape[1:]), recipe.target_name, recipe.target_dtype,
                   classes, recipe.input_dtype)


def _unused_buffer(name: str) -> bool:
    """A buffer the eval graph does not read (so the inference model does not hold it)."""
    return name.rsplit(".", 1)[-1] == "num_batches_tracked"


RecipeSource = Recipe | Callable[[], Recipe] | str
"""What the caller may allow for a bundle's model: a recipe, a factory, or a recipe spec
(a built-in name or ``package.module:function`` given by the *caller*, never by the bundle)."""


def _allowed_recipe(name: str, recipes: Mapping[str, RecipeSource] | None,
                    options: Mapping[str, Any] | None = None) -> Recipe:
    """The recipe the manifest's ``model.recipe`` *name* selects from the caller's allow-list.

    The allow-list is the built-in recipes plus ``recipes`` (keyed by the name the bundle's
    manifest records, i.e. ``Recipe.name``). A bundle never names code: its ``model.entry``
    is information only and is never imported. ``options`` (the manifest's ``model.options``:
    JSON values, each checked by the recipe function) rebuild the architecture the bundle was
    exported at (a zoo model's width, its LoRA adapters).
    """
    allowed: dict[str, RecipeSource] = {n: n for n in BUILTIN_RECIPES}
    allowed.update(recipes or {})
    source = allowed.get(name)
    if source is None:
        raise ValidationError("model.recipe", f"{name!r} is not an allowed recipe: a bundle never names "
                                              "code to import",
                              ", ".join(sorted(allowed)) + ", or pass recipes={name: recipe} "
                              "(CLI: --recipe package.module:function)")
    if isinstance(source, Recipe):
        return copy.deepcopy(source)
    if options is not None and not isinstance(options, Mapping):
        raise ValidationError("model.options", f"expected an object, got {type(options).__name__}")
    options = dict(options or {})
    if isinstance(source, str):
        recipe = load_recipe(source, **options)
    else:
        try:
            recipe = source(**options)
        except TypeError as err:
            raise ValidationError("model.options", f"the factory for {name!r} does not take them: "
                                                   f"{err}"[:300], "a factory accepting them") from None
    if not isinstance(recipe, Recipe):
        raise ValidationError("recipes", f"the factory for {name!r} returned {type(recipe).__name__}")
    return recipe


def _recipe_from_bundle(bundle_dir: str | os.PathLike[str], expected_sha256: str | None,
                        recipes: Mapping[str, RecipeSource] | None) -> tuple[Recipe, str, str]:
    import onnx
    from onnx import numpy_helper

    bundle = load_bundle(bundle_dir, expected_sha256)
    manifest = bundle.manifest
    manifest.lr_dropout_for("torch")  # an LR-dropout bundle is refused, never trained maskless
    recipe = _allowed_recipe(manifest.model.recipe, recipes, manifest.model.info.get("options"))
    proto = onnx.load_from_string(bundle.read_verified("inference_model.onnx"))
    weights = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    wanted = {k: v for k, v in recipe.model.state_dict().items() if k in weights or not _unused_buffer(k)}
    missing = [k for k in wanted if k not in weights]
    if missing:
        raise ValidationError("inference_model.onnx", f"weights {missing} not found"[:300],
                              "a bundle exported by mobile-lr export from this recipe")
    recipe.load_state_dict({**recipe.model.state_dict(), **{k: weights[k] for k in wanted}})
    recipe = dataclasses.replace(recipe, trainable=manifest.model.trainable, optimizer=manifest.optimizer)
    recipe.apply_trainable()
    return recipe, bundle.sha256, (manifest.model.info.get("batchnorm") or {}).get("mode", "frozen")


class TorchRuntime(RuntimeBase):
    """PyTorch eager training of a recipe or a bundle.

    ``optimizer``: ``"recipe"`` (the recipe's or bundle's), ``"schedulefree"``, or an
    :class:`~mobile_lr.recipes.OptimizerSpec` that replaces the recipe's.
    """

    kind = "torch"

    def __init__(self, source: Recipe | str | os.PathLike[str], *, ema: float | None = None,
                 optimizer: str | OptimizerSpec = "recipe", threads: int | None = 1,
                 expected_sha256: str | None = None,
                 recipes: Mapping[str, RecipeSource] | None = None, sf_r: float = 0.0) -> None:
        if isinstance(source, Recipe):
            recipe = copy.deepcopy(source)
            recipe.apply_trainable()
            identity = recipe_identity(recipe)
            bn_mode = "frozen"
        else:
            recipe, identity, bn_mode = _recipe_from_bundle(source, expected_sha256, recipes)
        if bn_mode != "frozen":
            raise ValidationError("batchnorm", f"{bn_mode!r} batch norm is not trained by this runtime",
                                  "a bundle exported with --batchnorm frozen")
        if isinstance(optimizer, OptimizerSpec):
            recipe = dataclasses.replace(recipe, optimizer=optimizer)
            optimizer = "recipe"
        if optimizer == "schedulefree" and ema is not None:
            raise ValidationError("ema", "schedule-free AdamW already averages its iterates",
                                  "ema=None with optimizer='schedulefree'")
        self.sf_r = check_sf_r(sf_r, optimizer)
        super().__init__(identity, _model_io(recipe), recipe.trainable, ema)
        self.recipe = recipe
        self.model = recipe.model
        self.optimizer_choice = optimizer
        self._threads = threads
        self._frozen_bn = [self.model.get_submodule(n) for n in batchnorm_modules(self.model)]
        named = dict(self.model.named_parameters())
        self._params = {n: named[n] for n in self.trainable_names}
        self._optimizer = make_optimizer(recipe.optimizer, list(self._params.values()), optimizer, self.sf_r)
        self._init_ema()

    def _thread_limit(self) -> contextlib.AbstractContextManager[None]:
        return torch_threads(self._threads)

    # ---------------------------------------------------------------- engine

    def _trainable_arrays(self) -> dict[str, np.ndarray]:
        return {n: p.detach().numpy() for n, p in self._params.items()}

    def _set_trainable(self, values: Mapping[str, np.ndarray]) -> None:
        with torch.no_grad():
            for n, p in self._params.items():
                p.copy_(torch.from_numpy(np.ascontiguousarray(values[n], dtype=np.float32)))

    def _state_arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"param/{n}": p.detach().numpy().copy() for n, p in self.model.named_parameters()}
        arrays.update(optimizer_state(self._optimizer)[0])
        return arrays

    def _state_meta(self) -> dict[str, Any]:
        return {"optimizer": optimizer_state(self._optimizer)[1], "optimizer_choice": self.optimizer_choice}

    def _restore(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], name: str) -> None:
        engine = meta.get("engine") or {}
        if engine.get("optimizer_choice") != self.optimizer_choice:
            raise CheckpointError(name, f"written with optimizer {engine.get('optimizer_choice')!r}, "
                                        f"not {self.optimizer_choice!r}")
        with torch.no_grad():
            for n, p in self.model.named_parameters():
                a = arrays.get(f"param/{n}")
                if a is None or a.shape != tuple(p.shape):
                    raise CheckpointError(name, f"parameter {n!r} missing or of the wrong shape")
                p.copy_(torch.from_numpy(np.array(a, copy=True)))
        restore_optimizer_state(self._optimizer, arrays, engine.get("optimizer") or {}, name)

    def _eval_point(self) -> contextlib.AbstractContextManager[None]:
        """Schedule-free AdamW evaluates at its averaged point (:func:`.torch_optim.eval_point`)."""
        return eval_point(self._optimizer, list(self._params.values()), self.optimizer_choice)

    def _forward_all(self, xb: np.ndarray, yb: np.ndarray | None) -> tuple[float, np.ndarray]:
        self.model.eval()
        loss_sum, outs = 0.0, []
        with torch.no_grad():
            for i in range(0, len(xb), EVAL_CHUNK):
                out = self.model(torch.from_numpy(xb[i:i + EVAL_CHUNK]))
                if yb is not None:
                    yt = torch.from_numpy(yb[i:i + EVAL_CHUNK])
                    loss_sum += float(self.recipe.torch_loss(out, yt)) * len(out)
                outs.append(out.numpy())
        self.model.train()
        return loss_sum, np.concatenate(outs)

    # ---------------------------------------------------------------- protocol

    def step(self, x: Any, y: Any, lr: float) -> float:
        xb = self.io.x(x)
        yb = self.io.y(y, len(xb))
        lr = self._lr(lr)
        with self._thread_limit():
            self.model.train()
            for bn in self._frozen_bn:  # frozen: normalizes with its running statistics, never updates them
                bn.eval()
            self._optimizer.zero_grad(set_to_none=True)
            loss = self.recipe.torch_loss(self.model(torch.from_numpy(xb)), torch.from_numpy(yb))
            loss.backward()
            set_lr(self._optimizer, lr)
            self._optimizer.step()
        self._after_step()
        return float(loss.detach())

    def evaluate(self, x: Any, y: Any, *, weights: str = "auto") -> dict[str, float]:
        xb = self.io.x(x)
        yb = self.io.y(y, len(xb))
        with self._thread_limit(), self._using(weights), self._eval_point():
            loss_sum, logits = self._forward_all(xb, yb)
        return logits_metrics(loss_sum, logits, yb, self.io.classifies)

    def predict(self, x: Any, *, weights: str = "auto") -> np.ndarray:
        xb = self.io.x(x)
        with self._thread_limit(), self._using(weights), self._eval_point():
            return self._forward_all(xb, None)[1]

    def parameters(self) -> dict[str, np.ndarray]:
        with self._eval_point():
            return {n: p.detach().numpy().copy() for n, p in self.model.named_parameters()}

    def state_dict(self, *, weights: str = "auto") -> dict[str, np.ndarray]:
        """The model's weights as numpy arrays (EMA or raw), e.g. to build a new recipe from them."""
        with self._using(weights), self._eval_point():
            return {k: v.detach().numpy().copy() for k, v in self.model.state_dict().items()}
