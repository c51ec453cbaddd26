"""The zoo's recipes: each a model, its generated task and a fine-tuning mode.

Every function takes ``mode`` (``head``, ``last-k``, ``bias+head``, ``lora``;
see :mod:`mobile_lr.zoo.modes`), ``k`` (blocks for ``last-k``, adapted blocks
for ``lora``), ``rank`` (LoRA), a size option (``width`` scales the channels or
the hidden size; the defaults are the realistic sizes, the tests use small
widths of the same architecture), ``seed`` (the initial weights) and
``batch_size``. The options are recorded in ``Recipe.options``, so
``load_recipe(recipe.entry, **recipe.options)`` rebuilds the same model.

All use AdamW with weight decay 0.01 and cross-entropy. ``pretrain_data`` is
the task's population and ``user_data(seed, n_train)`` one user's shifted data.

>>> from mobile_lr.recipes import load_recipe
>>> r = load_recipe("ds-cnn", width=0.5, mode="last-k", k=1)
>>> r.name, r.mode, r.input_shape, r.trainable[-2:], r.options["width"]
('ds-cnn', 'last-k', (1, 49, 10), ('head.weight', 'head.bias'), 0.5)
>>> sum(p.numel() for p in load_recipe("mobilenetv2").model.parameters()) > 1_000_000
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from mobile_lr.recipes import BUILTIN_RECIPES, OptimizerSpec, Recipe
from mobile_lr.validation import ValidationError, check_int, check_number, get_bool, get_choice
from mobile_lr.zoo.dscnn import DSCNN
from mobile_lr.zoo.images import DigitImages
from mobile_lr.zoo.mobilenet import ACTIVATIONS, MobileNetV2, make_divisible
from mobile_lr.zoo.modes import MODES, Backbone, apply_mode
from mobile_lr.zoo.motion import Motion
from mobile_lr.zoo.recurrent import SensorRNN
from mobile_lr.zoo.speech import Keywords
from mobile_lr.zoo.tasks import Task
from mobile_lr.zoo.text import Intents
from mobile_lr.zoo.transformer import TextTransformer

__all__ = ["ds_cnn", "gru_sensor", "lstm_sensor", "mobilenetv2", "task_for", "text_transformer"]


# option -> check(value, name) -> value; every zoo recipe's options are checked before anything is built
_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "width": lambda v, f: check_number(v, f, lo=0.0, hi=8.0, lo_open=True),
    "depth": lambda v, f: check_number(v, f, lo=0.0, hi=1.0, lo_open=True),
    "stages": lambda v, f: check_int(v, f, lo=1, hi=7),
    "resolution": lambda v, f: check_int(v, f, lo=16, hi=224),
    "blocks": lambda v, f: check_int(v, f, lo=1, hi=32),
    "layers": lambda v, f: check_int(v, f, lo=1, hi=32),
    "heads": lambda v, f: check_int(v, f, lo=1, hi=64),
    "vocab": lambda v, f: check_int(v, f, lo=64, hi=1_000_000),
    "seq_len": lambda v, f: check_int(v, f, lo=8, hi=4096),
    "steps": lambda v, f: check_int(v, f, lo=4, hi=4096),
    "mode": lambda v, f: get_choice({f: v}, f, "", MODES),
    "k": lambda v, f: None if v is None else check_int(v, f, lo=1),
    "rank": lambda v, f: check_int(v, f, lo=1, hi=4096),
    "activation": lambda v, f: get_choice({f: v}, f, "", ACTIVATIONS),
    "se": lambda v, f: get_bool({f: v}, f, ""),
    "dropout": lambda v, f: check_number(v, f, lo=0.0, hi=1.0, hi_open=True),
    "seed": lambda v, f: check_int(v, f, lo=0, hi=2**32 - 1),
    "batch_size": lambda v, f: check_int(v, f, lo=1, hi=65536),
}


def _checked(options: dict[str, Any]) -> dict[str, Any]:
    """The recipe function's arguments, each checked (one clear line naming the option)."""
    return {k: _CHECKS[k](v, k) for k, v in options.items()}


# recipe name -> its task, from the recipe's options (a simulator needs the data, not the model)
_TASKS: dict[str, Callable[[dict[str, Any]], Task]] = {
    "mobilenetv2": lambda o: DigitImages(o.get("resolution", 64)),
    "ds-cnn": lambda o: Keywords(),
    "text-transformer": lambda o: Intents(o.get("vocab", 256), o.get("seq_len", 32)),
    "gru-sensor": lambda o: Motion(o.get("steps", 64)),
    "lstm-sensor": lambda o: Motion(o.get("steps", 64)),
}


def task_for(name: str, options: Mapping[str, Any] | None = None) -> Task:
    """The task of zoo recipe ``name`` built with ``options`` (a manifest's ``model.options``),
    without building the model: its population and user data."""
    if name not in _TASKS:
        raise ValidationError("recipe", f"{name!r} is not a zoo recipe", ", ".join(_TASKS))
    return _TASKS[name](_checked({k: v for k, v in (options or {}).items() if k in _CHECKS}))


def _example(task: Task, batch_size: int, seed: int) -> torch.Tensor:
    """A batch drawn from the task's value range (seeded; FLOPs and export parity use it)."""
    gen = torch.Generator().manual_seed(seed)
    shape = (batch_size, *task.input_shape)
    if isinstance(task, Intents):
        return torch.randint(0, task.vocab, shape, generator=gen).float()
    return torch.rand(shape, generator=gen)


def _build(name: str, make: Callable[[], Backbone], task: Task, options: dict[str, Any]) -> Recipe:
    """Seeded model, mode applied, task attached: the common tail of every zoo recipe."""
    seed = options["seed"]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = make()
        trainable, adapters = apply_mode(model, options["mode"], k=options["k"], rank=options["rank"])
    return Recipe(name=name, model=model, example_input=_example(task, options["batch_size"], seed),
                  loss="cross_entropy", trainable=trainable, adapters=adapters,
                  optimizer=OptimizerSpec("adamw", weight_decay=0.01), labels=task.labels,
                  entry=BUILTIN_RECIPES[name], mode=options["mode"], options=options,
                  pretrain_data=task.pretrain_data, user_data=task.user)


def _width(width: float, base: int, divisor: int = 4) -> int:
    """``base · width`` channels, a multiple of ``divisor`` (attention: of the head count)."""
    return make_divisible(base * width, divisor)


def mobilenetv2(width: float = 1.0, depth: float = 1.0, stages: int = 7, resolution: int = 64,
                mode: str = "head", k: int | None = None, rank: int = 4, activation: str = "relu6",
                se: bool = False, dropout: float = 0.0, seed: int = 0, batch_size: int = 32) -> Recipe:
    """MobileNetV2 (2.24 M parameters at width 1) on colour digit photos ``resolution`` pixels wide."""
    options = _checked(locals())
    task = task_for("mobilenetv2", options)

    def make() -> MobileNetV2:
        return MobileNetV2(width, len(task.labels), depth=depth, stages=stages, activation=activation,
                           se=se, dropout=dropout)

    return _build("mobilenetv2", make, task, options)


def ds_cnn(width: float = 1.0, blocks: int = 4, mode: str = "head", k: int | None = None, rank: int = 4,
           seed: int = 0, batch_size: int = 32) -> Recipe:
    """DS-CNN keyword spotter (64 channels at width 1) on generated keyword features (49 x 10)."""
    options = _checked(locals())
    task = task_for("ds-cnn", options)
    return _build("ds-cnn", lambda: DSCNN(_width(width, 64), blocks, len(task.labels)), task, options)


def text_transformer(width: float = 1.0, layers: int = 4, heads: int = 4, vocab: int = 256, seq_len: int = 32,
                     mode: str = "head", k: int | None = None, rank: int = 4, dropout: float = 0.0,
                     seed: int = 0, batch_size: int = 32) -> Recipe:
    """Transformer encoder (128 wide at width 1, 4 layers, 0.56 M) on generated intent sentences."""
    options = _checked(locals())
    task = task_for("text-transformer", options)

    def make() -> TextTransformer:
        return TextTransformer(vocab, seq_len, _width(width, 128, heads), heads, layers, len(task.labels),
                               dropout=dropout)

    return _build("text-transformer", make, task, options)


def _sensor(name: str, cell: str, options: dict[str, Any]) -> Recipe:
    task = task_for(name, options)
    hidden = _width(options["width"], 128)
    classes = len(task.labels)
    return _build(name, lambda: SensorRNN(3, hidden, options["layers"], classes, cell), task, options)


def gru_sensor(width: float = 1.0, layers: int = 2, steps: int = 64, mode: str = "head",
               k: int | None = None, rank: int = 4, seed: int = 0, batch_size: int = 32) -> Recipe:
    """Two GRU layers (128 hidden at width 1) on generated accelerometer windows (``steps`` x 3, 32 Hz)."""
    return _sensor("gru-sensor", "gru", _checked(locals()))


def lstm_sensor(width: float = 1.0, layers: int = 2, steps: int = 64, mode: str = "head",
                k: int | None = None, rank: int = 4, seed: int = 0, batch_size: int = 32) -> Recipe:
    """The LSTM variant of :func:`gru_sensor`."""
    return _sensor("lstm-sensor", "lstm", _checked(locals()))

