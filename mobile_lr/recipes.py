"""Model recipes: what the exporter needs to know about a PyTorch model.

A recipe is a Python entry point ``package.module:function`` that returns a
:class:`Recipe`: the ``nn.Module`` (with the weights to start from), example
inputs (their batch size is the one FLOPs are counted at), the loss, which
parameters train on the phone (the rest stay frozen), the optimizer and its
hyper-parameters, and the class names. The built-in names ``digits-mlp`` and
``digits-cnn`` resolve to :func:`digits_mlp` and :func:`digits_cnn`; the model
zoo's (``mobilenetv2``, ``ds-cnn``, ``text-transformer``, ``gru-sensor``,
``lstm-sensor``) to :mod:`mobile_lr.zoo`, whose recipes take options (a width,
a fine-tuning ``mode``, ...) that :func:`load_recipe` passes on and records in
``Recipe.options``, so that a runtime can build the same model again.

Pre-trained weights: a recipe function builds a freshly initialised model;
:func:`load_recipe` takes an optional ``state_dict`` to start from instead, and
:func:`pretrain` trains a recipe's model in place on the desktop (the demo
pre-trains on the general population, then exports).

>>> r = load_recipe("digits-mlp")
>>> r.name, r.input_shape, r.trainable[:2], r.frozen, r.optimizer.type
('digits-mlp', (64,), ('fc1.weight', 'fc1.bias'), (), 'adamw')
>>> c = load_recipe("digits-cnn")
>>> c.input_shape, c.trainable, len(c.frozen)
((1, 8, 8), ('head.weight', 'head.bias'), 4)
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    import torch
    from torch import nn

# The optimizer block is part of the bundle manifest's schema (one typed Manifest in bundle.py).
from mobile_lr.bundle import OPTIMIZERS, OptimizerSpec
from mobile_lr.validation import ValidationError

__all__ = [
    "BUILTIN_RECIPES",
    "LOSSES",
    "OPTIMIZERS",
    "CustomLoss",
    "DigitsCNN",
    "DigitsMLP",
    "OptimizerSpec",
    "Recipe",
    "batchnorm_modules",
    "digits_cnn",
    "digits_mlp",
    "load_recipe",
    "pretrain",
]

LOSSES = ("cross_entropy", "mse")
BUILTIN_RECIPES = {
    "digits-mlp": "mobile_lr.recipes:digits_mlp",
    "digits-cnn": "mobile_lr.recipes:digits_cnn",
    "mobilenetv2": "mobile_lr.zoo.catalog:mobilenetv2",
    "ds-cnn": "mobile_lr.zoo.catalog:ds_cnn",
    "text-transformer": "mobile_lr.zoo.catalog:text_transformer",
    "gru-sensor": "mobile_lr.zoo.catalog:gru_sensor",
    "lstm-sensor": "mobile_lr.zoo.catalog:lstm_sensor",
}


@dataclass(frozen=True)
class CustomLoss:
    """A loss other than the two built-ins, given once for each backend.

    ``torch_fn(output, target) -> scalar`` is used by PyTorch eager and embedded
    in the ExecuTorch training program; ``onnx_block()`` returns an
    ``onnxruntime.training.onnxblock.Block`` whose ``build(output_name)`` creates
    the target input named ``target_name`` (None: the ORT backend is reported as
    unsupported). ``target_dtype`` is ``"int64"`` for class indices of shape
    ``(B,)`` (accuracy is then reported) or ``"float32"`` for targets shaped like
    the output.
    """

    name: str
    torch_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    onnx_block: Callable[[], Any] | None = None
    target_name: str = "target"
    target_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.target_dtype not in ("int64", "float32"):
            raise ValidationError("loss.target_dtype", f"unknown value {self.target_dtype!r}",
                                  "int64, float32")


@dataclass
class Recipe:
    """Everything the exporter and the runtimes need to know about one model.

    ``trainable`` lists the parameter names (``model.named_parameters()``) that
    train on the phone; empty means all. Every other parameter is frozen.
    ``example_input`` is a float32 batch ``(B, *input_shape)``, or int64 token ids
    for a model that starts with an ``nn.Embedding``; ``B`` is the batch the FLOPs of
    a training step are counted at. It is also the batch the exporter proves each
    backend on (evaluation loss against PyTorch eager, one training step), so real
    samples make a stronger check than zeros.

    ``mode`` names the fine-tuning mode that chose ``trainable`` (the zoo's
    ``head``, ``last-k``, ``bias+head``, ``lora``; empty: the recipe's own
    split). ``options`` are the keyword options the recipe function was called
    with (JSON values): ``load_recipe(entry, **options)`` builds the same
    architecture again. ``adapters`` are parameters that exist only for
    fine-tuning (LoRA's): pre-training leaves them at their initial values and
    a ``state_dict`` need not contain them. ``user_data(seed, n_train)`` returns
    one simulated user's (train, test) :class:`~mobile_lr.datasets.Split` pair,
    the data a phone fine-tunes on, where the recipe has such data.
    """

    name: str
    model: nn.Module
    example_input: torch.Tensor
    loss: str | CustomLoss = "cross_entropy"
    trainable: tuple[str, ...] = ()
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    labels: tuple[str, ...] = ()
    entry: str = ""
    pretrain_data: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None
    mode: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    adapters: tuple[str, ...] = ()
    user_data: Callable[[int, int], tuple[Any, Any]] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, nn.Module):
            raise ValidationError("recipe.model", f"expected an nn.Module, got {type(self.model).__name__}")
        if not isinstance(self.example_input, torch.Tensor) or self.example_input.dim() < 2 \
                or self.example_input.dtype not in (torch.float32, torch.int64):
            raise ValidationError("recipe.example_input",
                                  "expected a float32 tensor (B, ...) or int64 token ids (B, ...)")
        if self.example_input.shape[0] < 1:
            raise ValidationError("recipe.example_input", "an empty batch", "at least one sample")
        if isinstance(self.loss, str) and self.loss not in LOSSES:
            raise ValidationError("recipe.loss", f"unknown value {self.loss!r}",
                                  ", ".join(LOSSES) + " or a CustomLoss")
        names = [n for n, _ in self.model.named_parameters()]
        if not names:
            raise ValidationError("recipe.model", f"{type(self.model).__name__} has no parameters to train")
        if not self.trainable:
            self.trainable = tuple(names)
        self.trainable = tuple(self.trainable)
        self.adapters = tuple(self.adapters)
        for key, group in (("trainable", self.trainable), ("adapters", self.adapters)):
            for n in group:
                if n not in names:
                    raise ValidationError(f"recipe.{key}", f"{n!r} is not a parameter of the model",
                                          ", ".join(names))
        self.options = dict(self.options)
        if isinstance(self.optimizer, Mapping):
            self.optimizer = OptimizerSpec.from_dict(self.optimizer)
        self.labels = tuple(self.labels)

    def check_output(self) -> None:
        """Run the model once on ``example_input`` (eval mode, no gradient) and refuse, in one
        line, what no engine could train: a forward that fails, an output that is not one
        floating tensor of the batch (a tuple, or a Hugging Face ``ModelOutput``: return its
        ``.logits``), non-finite values at the initial weights, or class logits that do not match
        ``labels``. Cheaper and clearer than the same failure deep inside an exporter."""
        x = self.example_input
        try:
            with model_mode(self.model, False), torch.no_grad():
                out = self.model(x)
        except Exception as err:
            raise ValidationError("recipe.model", f"fails on example_input of shape {tuple(x.shape)}: "
                                                  f"{_first_line(err)}") from None
        if not isinstance(out, torch.Tensor):
            hint = "; return its .logits" if hasattr(out, "logits") else ""
            raise ValidationError("recipe.model", f"forward returns {type(out).__name__}, not one "
                                                  f"tensor{hint}", "a float tensor (B, ...)")
        b = self.batch_size
        if not out.is_floating_point() or out.dim() < 1 or out.shape[0] != b:
            raise ValidationError("recipe.model", f"forward returns a {out.dtype} tensor of shape "
                                                  f"{tuple(out.shape)}", f"a float tensor ({b}, ...)")
        if not bool(torch.isfinite(out).all()):
            raise ValidationError("recipe.model", "the output at example_input is not finite (NaN or inf): "
                                                  "check the weights")
        if self.loss == "cross_entropy":
            if out.dim() != 2:
                raise ValidationError("recipe.model", f"cross_entropy needs logits ({b}, classes), got shape "
                                                      f"{tuple(out.shape)}")
            if self.labels and len(self.labels) != out.shape[1]:
                raise ValidationError("recipe.labels", f"{len(self.labels)} names for a model of "
                                                       f"{out.shape[1]} classes", f"{out.shape[1]} names")

    # ------------------------------------------------------------------ derived facts

    @property
    def frozen(self) -> tuple[str, ...]:
        """Parameters that never change on the phone (in the model's order)."""
        return tuple(n for n, _ in self.model.named_parameters() if n not in self.trainable)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample (without the batch axis)."""
        return tuple(self.example_input.shape[1:])

    @property
    def input_dtype(self) -> str:
        """``"float32"`` or ``"int64"`` (token ids)."""
        return "int64" if self.example_input.dtype == torch.int64 else "float32"

    @property
    def batch_size(self) -> int:
        return int(self.example_input.shape[0])

    @property
    def loss_name(self) -> str:
        return self.loss if isinstance(self.loss, str) else self.loss.name

    @property
    def target_name(self) -> str:
        if isinstance(self.loss, CustomLoss):
            return self.loss.target_name
        return "labels" if self.loss == "cross_entropy" else "target"

    @property
    def target_dtype(self) -> str:
        if isinstance(self.loss, CustomLoss):
            return self.loss.target_dtype
        return "int64" if self.loss == "cross_entropy" else "float32"

    @property
    def classifies(self) -> bool:
        """Targets are class indices: accuracy is meaningful."""
        return self.target_dtype == "int64"

    def torch_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The recipe's loss in PyTorch (mean over the batch)."""
        if isinstance(self.loss, CustomLoss):
            return self.loss.torch_fn(output, target)
        if self.loss == "cross_entropy":
            return nn.functional.cross_entropy(output, target)
        return nn.functional.mse_loss(output, target)

    def apply_trainable(self) -> None:
        """Set ``requires_grad`` from the trainable/frozen split (done before every export)."""
        for n, p in self.model.named_parameters():
            p.requires_grad_(n in self.trainable)

    def prepare(self, x: Any) -> np.ndarray:
        """Input rows as ``(N, *input_shape)`` of the input dtype (flat rows of the right size reshaped)."""
        a = np.asarray(x, dtype=np.dtype(self.input_dtype))
        per = math.prod(self.input_shape)
        if a.ndim < 1 or a.size % per or a.shape[1:] not in (self.input_shape, (per,)):
            raise ValidationError("x", f"shape {a.shape} does not fit input shape {self.input_shape}",
                                  f"(N, {', '.join(map(str, self.input_shape))}) or (N, {per})")
        return a.reshape(len(a), *self.input_shape)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Start from these weights (numpy arrays or tensors); every parameter but the adapters is needed."""
        sd = {k: torch.tensor(np.asarray(v)) for k, v in state_dict.items()}  # copies
        for name, value in self.model.state_dict().items():
            if name in self.adapters and name not in sd:
                sd[name] = value
        try:
            self.model.load_state_dict(sd, strict=True)
        except RuntimeError as err:
            raise ValidationError("state_dict", str(err).splitlines()[0]) from None


@contextlib.contextmanager
def model_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """``model.train(training)`` within the block, every module's own flag restored after."""
    saved = [(mod, mod.training) for mod in model.modules()]
    model.train(training)
    try:
        yield
    finally:
        for mod, flag in saved:
            mod.training = flag


def batchnorm_modules(model: nn.Module) -> list[str]:
    """Qualified names of the model's batch-norm modules (``nn.BatchNorm1d/2d/3d``, SyncBatchNorm)."""
    return [name for name, mod in model.named_modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]


# ---------------------------------------------------------------------- loading


def _resolve(spec: str) -> Callable[..., Recipe]:
    target = BUILTIN_RECIPES.get(spec, spec)
    if ":" not in target:
        raise ValidationError("recipe", f"unknown recipe {spec!r}",
                              ", ".join(BUILTIN_RECIPES) + " or package.module:function")
    mod_name, _, func_name = target.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as err:
        raise ValidationError("recipe", f"cannot import {mod_name!r}: {err}",
                              "an importable package.module:function") from None
    except Exception as err:   # the user's module fails while it is imported (a syntax error, ...)
        raise ValidationError("recipe", f"importing {mod_name!r} failed: {_first_line(err)}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ValidationError("recipe", f"{mod_name!r} has no function {func_name!r}",
                              "an importable package.module:function")
    return func


def _first_line(err: BaseException) -> str:
    """``Type: message``, the message's first line (what a user needs of their own code's error)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__


def _check_options(spec: str, func: Callable[..., Recipe], options: Mapping[str, Any]) -> None:
    """Unknown keyword options get one line naming the ones the recipe takes."""
    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for key in options:
        if key not in allowed:
            raise ValidationError(f"recipe option {key}", f"recipe {spec!r} takes no option {key!r}",
                                  ", ".join(allowed) or "no options")


def load_recipe(spec: str, state_dict: Mapping[str, Any] | None = None, **options: Any) -> Recipe:
    """Build the recipe named ``spec`` (built-in name or ``package.module:function``).

    ``options`` are passed to the recipe function (and recorded in
    ``Recipe.options`` unless the recipe records them itself); ``state_dict``
    replaces the freshly initialised weights.
    """
    func = _resolve(spec)
    _check_options(spec, func, options)
    try:
        recipe = func(**options)
    except ValidationError:
        raise
    except Exception as err:   # the user's recipe function fails: one line naming it, not its traceback
        raise ValidationError("recipe", f"{spec!r} failed: {_first_line(err)}") from None
    if not isinstance(recipe, Recipe):
        raise ValidationError("recipe", f"{spec!r} returned {type(recipe).__name__}, not a Recipe")
    if not recipe.entry:
        recipe = dataclasses.replace(recipe, entry=BUILTIN_RECIPES.get(spec, spec))
    if options and not recipe.options:
        recipe.options = dict(options)
    if state_dict is not None:
        recipe.load_state_dict(state_dict)
    recipe.apply_trainable()
    return recipe


# ---------------------------------------------------------------------- built-ins


class DigitsMLP(nn.Module):
    """64-128-10 multilayer perceptron on flattened 8x8 digits."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class DigitsCNN(nn.Module):
    """Two strided convolutions (the feature extractor) and a linear head.

    No pooling or batch norm: ExecuTorch's portable kernels lack their backward
    (docs/DEVICES.md §7.2), and the head-only personalisation keeps even
    the frozen trunk simple enough for both backends.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


def _digits_data() -> tuple[np.ndarray, np.ndarray]:
    from mobile_lr.datasets import general_split

    train, _ = general_split()
    return train.x, train.y


def _digits_user(seed: int, n_train: int) -> tuple[Any, Any]:
    from mobile_lr.datasets import user_split

    return user_split(seed, n_train)


def _seeded(make: Callable[[], nn.Module], seed: int) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return make()


def digits_mlp(seed: int = 0, batch_size: int = 32) -> Recipe:
    """MLP 64-128-10, every parameter trainable, AdamW (weight decay 0.01)."""
    from mobile_lr.datasets import CLASS_NAMES

    return Recipe(name="digits-mlp", model=_seeded(DigitsMLP, seed),
                  example_input=torch.zeros(batch_size, 64), loss="cross_entropy",
                  optimizer=OptimizerSpec("adamw", weight_decay=0.01), labels=CLASS_NAMES,
                  entry=BUILTIN_RECIPES["digits-mlp"], pretrain_data=_digits_data, user_data=_digits_user)


def digits_cnn(seed: int = 0, batch_size: int = 32) -> Recipe:
    """Small CNN; the convolutional feature extractor is frozen and the head trains."""
    from mobile_lr.datasets import CLASS_NAMES

    return Recipe(name="digits-cnn", model=_seeded(DigitsCNN, seed),
                  example_input=torch.zeros(batch_size, 1, 8, 8), loss="cross_entropy",
                  trainable=("head.weight", "head.bias"),
                  optimizer=OptimizerSpec("adamw", weight_decay=0.01), labels=CLASS_NAMES,
                  entry=BUILTIN_RECIPES["digits-cnn"], mode="head",
                  pretrain_data=_digits_data, user_data=_digits_user)


# ---------------------------------------------------------------------- pre-training


def pretrain(recipe: Recipe, x: np.ndarray | None = None, y: np.ndarray | None = None, *,
             epochs: int = 10, seed: int = 0, lr: float = 1e-2, batch_size: int = 32) -> dict[str, float]:
    """Train *all* of the recipe's parameters in place on the desktop (AdamW, PyTorch eager).

    This is the server side of personalisation: the whole model learns the
    general population; only later does the phone train the ``trainable`` part.
    Fine-tuning adapters (``recipe.adapters``) keep their initial values.
    ``x``/``y`` default to the recipe's ``pretrain_data``. Returns the final
    epoch's mean loss and the training accuracy. Runs on one thread: for models
    this small, torch's thread pool costs more than it gains (6x slower on two
    busy cores when measured).
    """
    if x is None or y is None:
        if recipe.pretrain_data is None:
            raise ValidationError("pretrain", f"recipe {recipe.name!r} has no pre-training data",
                                  "pass x and y")
        x, y = recipe.pretrain_data()
    xt = torch.from_numpy(recipe.prepare(x))
    yt = torch.as_tensor(np.asarray(y))
    if recipe.target_dtype == "float32":
        yt = yt.float()
    model = recipe.model
    gen = torch.Generator().manual_seed(seed)
    for n, p in model.named_parameters():
        p.requires_grad_(n not in recipe.adapters)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    mean_loss = math.nan
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(epochs):
            perm = torch.randperm(len(xt), generator=gen)
            total = 0.0
            for i in range(0, len(xt), batch_size):
                idx = perm[i:i + batch_size]
                opt.zero_grad()
                loss = recipe.torch_loss(model(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            mean_loss = total / len(xt)
        model.eval()
        with torch.no_grad():
            out = model(xt)
    finally:
        recipe.apply_trainable()
        torch.set_num_threads(threads)
    acc = float((out.argmax(1) == yt).float().mean()) if recipe.classifies else math.nan
    return {"loss": mean_loss, "accuracy": acc}
