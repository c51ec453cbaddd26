"""The FLOPs of a model's forward pass and of one training step, counted by autograd itself.

The manifest records them (``model.flops_forward``, ``model.flops_backward``,
``model.flops_per_step`` = forward + backward, at batch ``model.flops_batch``) and the simulator
charges a zoo model's step from them (docs/SIMULATION.md, "The cost of a step").

Why counted rather than estimated: a fixed "3 x forward" is right only when every layer trains.
A fine-tuning mode trains a part: in ``head`` mode autograd runs no backward through the frozen
trunk at all, in ``last-k`` it runs the weight gradients of the last blocks and the input
gradients down to the first of them, in ``bias+head`` the input gradients all the way down but no
convolution or matmul weight gradient. :class:`torch.utils.flop_counter.FlopCounterMode` counts the
matrix multiplications, convolutions (grouped and depthwise ones by their real fan-in) and their
backward kernels (a convolution's weight gradient corrected, :func:`_conv_backward`) exactly as
autograd dispatches them for the recipe's trainable split, so the
count follows the mode; it also sees attention's score and value products and a GRU's or LSTM's
gate matmuls, which forward hooks on ``nn.Linear``/``nn.Conv`` miss (a recurrent layer is no
``nn.Linear``). Elementwise work (activations, normalisation, the loss) and the optimizer update
are not counted: they are O(outputs) or O(parameters), not O(outputs x fan-in).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

__all__ = ["count_flops", "count_step_flops"]


def _conv_backward(grad_out_shape: list[int], x_shape: list[int], w_shape: list[int], _bias: object,
                   _stride: object, _padding: object, _dilation: object, transposed: bool,
                   _output_padding: object, _groups: int, output_mask: list[bool], **_: object) -> int:
    """``aten.convolution_backward``: each gradient asked for (input, weight) costs the forward's
    multiply-accumulates. torch's own formula counts a grouped convolution's weight gradient as if
    every input channel met every output channel, ``groups`` times too many: a depthwise 3x3 over
    C channels came out C times its forward."""
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def _counter() -> FlopCounterMode:
    """A counter with the corrected convolution backward."""
    return FlopCounterMode(display=False,
                           custom_mapping={torch.ops.aten.convolution_backward: _conv_backward})


@contextlib.contextmanager
def _countable(model: nn.Module) -> Iterator[None]:
    """oneDNN's fused LSTM kernel (``mkldnn_rnn_layer``) has no FLOP formula: a model with a
    recurrent layer is counted on PyTorch's own cells (the same matmuls, seen one by one)."""
    if not any(isinstance(m, nn.RNNBase) for m in model.modules()):
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the flags context warns about TF32 on Intel GPUs
        with torch.backends.mkldnn.flags(enabled=False):
            yield


@contextlib.contextmanager
def _trainable_only(model: nn.Module, trainable: Iterable[str] | None) -> Iterator[None]:
    """``requires_grad`` on the trainable parameters only (all when ``trainable`` is None); restored."""
    params = dict(model.named_parameters())
    before = {n: p.requires_grad for n, p in params.items()}
    names = set(params) if trainable is None else set(trainable)
    try:
        for n, p in params.items():
            p.requires_grad_(n in names)
        yield
    finally:
        for n, p in params.items():
            p.requires_grad_(before[n])


def count_step_flops(model: nn.Module, example_input: torch.Tensor,
                     trainable: Iterable[str] | None = None) -> tuple[int, int]:
    """``(forward, backward)`` FLOPs of one training step of ``model`` on ``example_input`` when
    only ``trainable`` (parameter names; None: all) gets gradients; see the module docstring.

    The model runs in whatever mode it is in (the exporter counts its evaluation form: frozen
    batch norm, no dropout, plain attention). Its gradients are left as they were.
    """
    with _countable(model), _trainable_only(model, trainable):
        grads = {n: p.grad for n, p in model.named_parameters()}
        with _counter() as forward_count:
            out = model(example_input)
        forward = int(forward_count.get_total_flops())
        backward = 0
        if out.requires_grad:  # nothing trains below the output: no backward runs (cannot happen in a bundle)
            with _counter() as backward_count:
                out.float().sum().backward()  # the FLOPs depend on the shapes, not on the output gradient
            backward = int(backward_count.get_total_flops())
        for n, p in model.named_parameters():
            p.grad = grads[n]
    return forward, backward


def count_flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """Forward FLOPs of ``model`` on ``example_input`` (2 per multiply-accumulate of its matmuls and
    convolutions; bias additions, activations and the loss are not counted)."""
    with _countable(model), torch.no_grad(), _counter() as count:
        model(example_input)
    return int(count.get_total_flops())
