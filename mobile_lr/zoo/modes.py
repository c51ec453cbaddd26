"""Fine-tuning modes: which part of a pre-trained zoo model a phone trains.

Every zoo model is a :class:`Backbone`: an ordered list of feature *blocks*
(input to output) and a ``head`` module. A mode turns that structure into the
recipe's trainable split:

* ``head`` — the head alone. The cheapest step: no gradient flows into the
  features, so an engine only needs the head's backward.
* ``last-k`` — the last ``k`` blocks and the head (``k`` = 2 unless given).
* ``bias+head`` — every bias of the model (BatchNorm/LayerNorm shifts, linear,
  convolution and recurrent biases) and the head: TinyTL (Cai et al., 2020,
  "TinyTL: Reduce Memory, Not Parameters for Efficient On-Device Learning")
  showed that bias updates need no stored activations for the weight gradients
  and recover much of full fine-tuning's accuracy.
* ``lora`` — low-rank adapters (Hu et al., 2021): every ``nn.Linear`` and
  pointwise (1x1) convolution inside the adapted blocks (all blocks unless
  ``k`` is given: the last ``k``) gets ``W x + (alpha / r) · B A x`` with rank
  ``r``, ``A`` Kaiming-uniform and ``B`` zero (so the adapted model starts equal
  to the pre-trained one); ``A``, ``B`` and the head train, ``W`` stays frozen.

The adapter parameters keep the base layer's own ``weight``/``bias`` names (the
adapted layer *is* the base layer with two extra parameters, ``lora_a`` and
``lora_b``), so pre-trained weights of the plain model load into the adapted one.

>>> import torch
>>> from torch import nn
>>> class Tiny(Backbone):
...     def __init__(self):
...         super().__init__()
...         self.blocks = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8))
...         self.head = nn.Linear(8, 2)
...         self.block_names = ("blocks.0", "blocks.1")
...     def forward(self, x):
...         return self.head(self.blocks(x))
>>> apply_mode(Tiny(), "last-k", k=1)[0]
('blocks.1.weight', 'blocks.1.bias', 'head.weight', 'head.bias')
>>> apply_mode(Tiny(), "bias+head")[0]
('blocks.0.bias', 'blocks.1.bias', 'head.weight', 'head.bias')
>>> m = Tiny()
>>> trainable, adapters = apply_mode(m, "lora", rank=2)
>>> adapters
('blocks.0.lora_a', 'blocks.0.lora_b', 'blocks.1.lora_a', 'blocks.1.lora_b')
>>> trainable == adapters + ('head.weight', 'head.bias')
True
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mobile_lr.validation import ValidationError

__all__ = ["DEFAULT_K", "MODES", "Backbone", "LoRAConv", "LoRALinear", "apply_mode"]

MODES = ("head", "last-k", "bias+head", "lora")
DEFAULT_K = 2


class Backbone(nn.Module):
    """A zoo model: ``block_names`` (feature blocks, input to output) and a ``head`` module.

    Subclasses set both in ``__init__``; the names are ``named_modules()`` paths.
    """

    block_names: tuple[str, ...] = ()
    head: nn.Module


class _LoRA:
    """The adapter half shared by :class:`LoRALinear` and :class:`LoRAConv`."""

    rank: int
    scale: float

    def _init_adapter(self, layer: nn.Module, a_shape: tuple[int, ...], b_shape: tuple[int, ...],
                      rank: int, alpha: float) -> None:
        self.rank, self.scale = rank, alpha / rank
        w = layer.weight
        self.lora_a = nn.Parameter(torch.empty(a_shape, dtype=w.dtype))
        self.lora_b = nn.Parameter(torch.zeros(b_shape, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # nn.Linear's own initialisation


class LoRALinear(nn.Linear, _LoRA):
    """``nn.Linear`` plus a rank-``r`` update: ``x W^T + b + scale · (x A^T) B^T``."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None)
        self.load_state_dict(base.state_dict())
        self._init_adapter(base, (rank, base.in_features), (base.out_features, rank), rank, alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = nn.functional.linear(nn.functional.linear(x, self.lora_a), self.lora_b)
        return super().forward(x) + self.scale * delta


class LoRAConv(nn.Module, _LoRA):
    """A pointwise convolution (1x1, ``Conv1d`` or ``Conv2d``) plus a rank-``r`` update.

    Holds the base convolution's ``weight``/``bias`` as its own parameters (same
    names as the plain layer) and runs both through the functional convolution.
    """

    def __init__(self, base: nn.Conv1d | nn.Conv2d, rank: int, alpha: float) -> None:
        super().__init__()
        self._conv = nn.functional.conv2d if isinstance(base, nn.Conv2d) else nn.functional.conv1d
        self.stride, self.groups = base.stride, base.groups
        self.weight = nn.Parameter(base.weight.detach().clone())
        self.bias = None if base.bias is None else nn.Parameter(base.bias.detach().clone())
        ones = (1,) * (base.weight.dim() - 2)
        self._init_adapter(base, (rank, base.in_channels, *ones), (base.out_channels, rank, *ones),
                           rank, alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self._conv
        base = conv(x, self.weight, self.bias, self.stride)
        delta = conv(conv(x, self.lora_a, None, self.stride), self.lora_b)
        return base + self.scale * delta


def _pointwise(m: nn.Module) -> bool:
    return (isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.groups == 1
            and all(k == 1 for k in m.kernel_size) and m.padding in ((0,), (0, 0)))


def _adapt(model: nn.Module, block: str, rank: int, alpha: float) -> int:
    """Put every Linear / pointwise conv in ``block`` (itself included) in LoRA form; returns how many."""
    targets = [path for path, m in model.get_submodule(block).named_modules(prefix=block)
               if (isinstance(m, nn.Linear) and not isinstance(m, LoRALinear)) or _pointwise(m)]
    for path in targets:
        parent, _, attr = path.rpartition(".")
        base = model.get_submodule(path)
        lora = LoRALinear(base, rank, alpha) if isinstance(base, nn.Linear) else LoRAConv(base, rank, alpha)
        setattr(model.get_submodule(parent), attr, lora)
    return len(targets)


def _blocks(model: Backbone, k: int | None, default: int | None) -> tuple[str, ...]:
    names = model.block_names
    k = default if k is None else k
    if k is None:
        return names
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(names):
        raise ValidationError("k", f"{k!r} is out of range", f"an integer in [1, {len(names)}] "
                                                             f"(this model has {len(names)} blocks)")
    return names[len(names) - k:]


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name.startswith(p + ".") for p in prefixes)


def apply_mode(model: Backbone, mode: str, *, k: int | None = None, rank: int = 4,
               alpha: float | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Set ``model`` up for fine-tuning mode ``mode``; returns ``(trainable, adapters)`` names.

    ``adapters`` are parameters that exist only for fine-tuning (LoRA's ``A``/``B``):
    pre-training leaves them at their initial values. ``lora`` changes ``model``
    in place (adapted layers); the other modes only choose names. ``alpha``
    defaults to ``2 · rank`` (scale 2).
    """
    if mode not in MODES:
        raise ValidationError("mode", f"unknown value {mode!r}", ", ".join(MODES))
    if mode not in ("last-k", "lora") and k is not None:
        raise ValidationError("k", f"only with mode last-k or lora, not {mode}")
    if mode == "lora":
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValidationError("rank", f"{rank!r} is out of range", "an integer >= 1")
        alpha = 2.0 * rank if alpha is None else float(alpha)
        adapted = _blocks(model, k, None)
        if sum(_adapt(model, b, rank, alpha) for b in adapted) == 0:
            raise ValidationError("mode", "lora: no Linear or pointwise convolution in the adapted blocks",
                                  "another mode, or a larger k")
    names = [n for n, _ in model.named_parameters()]
    head = [n for n in names if n.startswith("head.")]
    if mode == "head":
        body: list[str] = []
    elif mode == "last-k":
        body = [n for n in names if _under(n, _blocks(model, k, DEFAULT_K)) and n not in head]
    elif mode == "bias+head":
        body = [n for n in names if n.rsplit(".", 1)[-1].startswith("bias") and n not in head]
    else:
        body = [n for n in names if n.rsplit(".", 1)[-1] in ("lora_a", "lora_b")]
    adapters = tuple(body) if mode == "lora" else ()
    return tuple(body + head), adapters
