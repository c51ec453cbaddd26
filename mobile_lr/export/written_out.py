"""Functions an engine cannot differentiate or run, written out in ops every engine does.

Each form has the signature of the ``torch.nn.functional`` call it replaces and is applied by
one :class:`~torch.overrides.TorchFunctionMode` (:func:`written_out`) while the training graphs
are captured. The modules call the same functions (``nn.SiLU.forward`` is ``F.silu``,
``nn.AvgPool2d`` is ``F.avg_pool2d``, ``nn.GroupNorm`` is ``F.group_norm``...), so a model gets
the form whether it holds the module or calls the function inside its ``forward``
(torchvision's squeeze-excitation calls ``F.adaptive_avg_pool2d(x, 1)``, Hugging Face's
activations are functional), and each form is written once. The mode is seen by both
captures: the TorchScript ONNX exporter traces the Python that runs, and ``torch.export``'s
strict (Dynamo) capture traces through a mode active when it starts (checked on torch 2.13).
Why each function is written out: :mod:`mobile_lr.export.forms`.

A form returns ``None`` where it does not apply (an average pooling with ceil mode, a
divisor override, padding not counted, or an input that is not a 4-D batch); the call then
runs as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    import torch
    from torch.nn import functional as F
    from torch.nn.modules.utils import _pair
    from torch.overrides import TorchFunctionMode

__all__ = ["FORMS", "WrittenOut", "transposed_as_conv", "written_out"]

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


def _negative_part(x: torch.Tensor) -> torch.Tensor:
    """``min(x, 0)`` as ``x - relu(x)``: what ``exp`` may see without overflowing anywhere, with
    slope 1 at 0 (so ELU's gradient there is ``alpha``, as torch's)."""
    return x - torch.relu(x)


def _stable_softplus(z: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(z))`` without overflow: ``relu(z) + log1p(exp(-|z|))`` (slope 1/2 at 0)."""
    r = torch.relu(z)
    return r + torch.log1p(torch.exp(z - 2.0 * r))


def _per_channel(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-channel parameter shaped to broadcast over ``x``'s axis 1 (``(1, C, 1, ...)``)."""
    return p.reshape(1, -1, *([1] * (x.dim() - 2)))


def _exponential_linear(x: torch.Tensor, alpha: float, scale: float = 1.0,
                        inner: float = 1.0) -> torch.Tensor:
    """``scale * (relu(x) + alpha * (exp(inner * min(x, 0)) - 1))``: ELU, SELU and CELU."""
    return scale * (torch.relu(x) + alpha * (torch.exp(inner * _negative_part(x)) - 1.0))


def silu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    return input * torch.sigmoid(input)


def mish(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    return input * torch.tanh(_stable_softplus(input))


def softplus(input: torch.Tensor, beta: float = 1.0, threshold: float = 20.0) -> torch.Tensor:
    """torch's: ``input`` itself past the threshold."""
    return torch.where(beta * input > threshold, input, _stable_softplus(beta * input) / beta)


def elu(input: torch.Tensor, alpha: float = 1.0, inplace: bool = False) -> torch.Tensor:
    return _exponential_linear(input, float(alpha))


def selu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    return _exponential_linear(input, SELU_ALPHA, SELU_SCALE)


def celu(input: torch.Tensor, alpha: float = 1.0, inplace: bool = False) -> torch.Tensor:
    return _exponential_linear(input, float(alpha), inner=1.0 / float(alpha))


def prelu(input: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The weight (one, or one per channel on axis 1) still trains."""
    w = weight if weight.numel() == 1 else _per_channel(weight, input)
    return torch.relu(input) + w * _negative_part(input)


def group_norm(input: torch.Tensor, num_groups: int, weight: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """The mean and biased variance over each group (ONNX exports GroupNorm through
    InstanceNormalization, which ORT cannot differentiate)."""
    shape = input.shape
    g = input.reshape(shape[0], num_groups, -1)
    mean = g.mean(-1, keepdim=True)
    centred = g - mean
    var = (centred * centred).mean(-1, keepdim=True)
    y = (centred / torch.sqrt(var + eps)).reshape(shape)
    if weight is not None:
        y = y * _per_channel(weight, input)
    if bias is not None:
        y = y + _per_channel(bias, input)
    return y


def _depthwise_mean(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                    padding: tuple[int, int]) -> torch.Tensor:
    """Average pooling as a depthwise convolution with constant weights ``1 / (kh * kw)``."""
    channels = int(x.shape[1])
    weight = torch.full((channels, 1, *kernel), 1.0 / (kernel[0] * kernel[1]), dtype=x.dtype)
    return F.conv2d(x, weight, stride=stride, padding=padding, groups=channels)


def avg_pool2d(input: torch.Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> torch.Tensor | None:
    """None where a convolution differs (ceil mode, a divisor override, padding not counted)."""
    pad = _pair(padding)
    if input.dim() != 4 or ceil_mode or divisor_override or (any(pad) and not count_include_pad):
        return None
    kernel = _pair(kernel_size)
    return _depthwise_mean(input, kernel, _pair(stride) if stride else kernel, pad)


def adaptive_avg_pool2d(input: torch.Tensor, output_size: Any) -> torch.Tensor | None:
    """An output (oh, ow) that divides the (static) input size; None for a size that does not
    divide. A global average (1x1) is a mean over both axes, which every engine differentiates,
    taken without ``keepdim`` and then given its two unit axes: on a channels-last input (a
    ConvNeXt-style ``x.permute(0, 2, 3, 1)`` LayerNorm and back) the ``keepdim`` mean that torch
    decomposes the pool into keeps the input's strides, so the ``flatten`` after it is an
    ``as_strided`` view whose gradient is ``as_strided_scatter``, which ExecuTorch 1.4.1 has no
    kernel for; ``(B, C)`` plus two unit axes is contiguous."""
    if input.dim() != 4:
        return None
    out = _pair(output_size)
    h, w = int(input.shape[-2]), int(input.shape[-1])  # static sizes: the kernel is a constant
    oh, ow = (h if out[0] is None else out[0]), (w if out[1] is None else out[1])
    if (oh, ow) == (1, 1):
        return input.mean((-2, -1))[:, :, None, None]
    if h % oh or w % ow:
        return None
    kernel = (h // oh, w // ow)
    return _depthwise_mean(input, kernel, kernel, (0, 0))


def instance_norm(input: torch.Tensor, running_mean: torch.Tensor | None = None,
                  running_var: torch.Tensor | None = None, weight: torch.Tensor | None = None,
                  bias: torch.Tensor | None = None, use_input_stats: bool = True, momentum: float = 0.1,
                  eps: float = 1e-5) -> torch.Tensor | None:
    """A group norm with one group per channel (ORT cannot differentiate InstanceNormalization);
    None where running statistics are kept (``track_running_stats=True``): their update is not a
    function of the output, and ORT cannot carry it to the next step."""
    if not use_input_stats or running_mean is not None or running_var is not None or input.dim() < 3:
        return None
    return group_norm(input, int(input.shape[1]), weight, bias, eps)


def _edge_rows(x: torch.Tensor, dim: int, before: int, after: int,
               mode: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The slices a reflect/replicate/circular pad of ``x`` along ``dim`` puts around it, in order."""
    n = int(x.shape[dim])  # static: padding is of spatial axes
    if mode == "circular":
        return ([x.narrow(dim, n - before, before)] if before else [],
                [x.narrow(dim, 0, after)] if after else [])
    if mode == "reflect":
        return ([x.narrow(dim, k, 1) for k in range(before, 0, -1)],
                [x.narrow(dim, n - 1 - k, 1) for k in range(1, after + 1)])
    return [x.narrow(dim, 0, 1)] * before, [x.narrow(dim, n - 1, 1)] * after


def pad(input: torch.Tensor, pad: Any, mode: str = "constant",
        value: float | None = None) -> torch.Tensor | None:
    """Reflection, replication and circular padding as a concatenation of slices of the input (ORT
    differentiates Pad in constant mode only; Slice and Concat everywhere). None for a constant
    pad or a negative one (a crop)."""
    if mode not in ("reflect", "replicate", "circular") or any(int(p) < 0 for p in pad):
        return None
    x = input
    for i in range(len(pad) // 2):  # pairs from the last axis backwards, as F.pad reads them
        dim = x.dim() - 1 - i
        head, tail = _edge_rows(x, dim, int(pad[2 * i]), int(pad[2 * i + 1]), mode)
        x = torch.cat([*head, x, *tail], dim) if head or tail else x
    return x


def _integer_factors(spatial: list[int], size: Any, scale_factor: Any) -> list[int] | None:
    """The whole-number factor per spatial axis of an upsampling, or None."""
    if size is not None:
        sizes = [int(v) for v in (size if isinstance(size, (list, tuple)) else [size] * len(spatial))]
        factors = [o // i if o % i == 0 else 0 for o, i in zip(sizes, spatial, strict=True)]
    else:
        scales = scale_factor if isinstance(scale_factor, (list, tuple)) else [scale_factor] * len(spatial)
        factors = [int(f) if f is not None and float(f).is_integer() else 0 for f in scales]
    return factors if all(f >= 1 for f in factors) else None


def interpolate(input: torch.Tensor, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False) -> torch.Tensor | None:
    """Nearest upsampling by whole factors as each element repeated (unsqueeze, expand, flatten):
    ONNX Runtime 1.19.2 has no CPU kernel for ResizeGrad. None for any other mode or factor."""
    if mode != "nearest" or antialias or input.dim() < 3:
        return None
    factors = _integer_factors([int(v) for v in input.shape[2:]], size, scale_factor)
    if factors is None:
        return None
    y = input
    for axis, f in enumerate(factors, start=2):
        if f > 1:
            shape = [-1] * (y.dim() + 1)
            shape[axis + 1] = f
            y = y.unsqueeze(axis + 1).expand(shape).flatten(axis, axis + 1)
    return y


def _spaced(x: torch.Tensor, stride: tuple[int, ...], before: tuple[int, ...],
            lengths: tuple[int, ...]) -> torch.Tensor:
    """Each spatial axis of ``x`` spread out: element ``i`` to position ``before + i * stride`` of
    ``length`` zeros (a negative ``before`` crops), as a product with a constant 0/1 matrix per
    axis. Its gradient is a product again on every engine, where zeros written in by padding
    have a gradient ExecuTorch's kernels refuse (a pad by negative amounts)."""
    n = len(stride)
    for k in range(n):
        axis = k - n
        size = int(x.shape[axis])  # static: the spatial sizes are the model's
        spread = torch.tensor([[1.0 if j == before[k] + i * stride[k] else 0.0 for j in range(lengths[k])]
                               for i in range(size)], dtype=x.dtype)
        x = _times(x, axis, spread)
    return x


def _times(x: torch.Tensor, axis: int, matrix: torch.Tensor) -> torch.Tensor:
    """``x``'s ``axis`` multiplied by a constant matrix (the axis moved last and back)."""
    return x @ matrix if axis == -1 else (x.transpose(axis, -1) @ matrix).transpose(axis, -1)


def _flipped(w: torch.Tensor, n: int) -> torch.Tensor:
    """The last ``n`` axes reversed, as products with the exchange matrix: torch exports ``flip``
    as a Slice with step -1, whose gradient ORT 1.19.2 fails in (``SliceGrad``: narrowing_error)."""
    for axis in range(-n, 0):
        k = int(w.shape[axis])
        exchange = [[1.0 if i + j == k - 1 else 0.0 for j in range(k)] for i in range(k)]
        w = _times(w, axis, torch.tensor(exchange, dtype=w.dtype))
    return w


def transposed_as_conv(conv: Callable[..., torch.Tensor | None]) -> Callable[..., torch.Tensor | None]:
    """``conv_transpose1d``/``conv_transpose2d`` as the ordinary convolution ``conv`` (the
    functional signature; ExecuTorch's fast form passes its own) of the input spaced by the
    stride, padded by ``dilation * (kernel - 1) - padding`` (cropped where that is negative),
    with the kernel's in/out axes swapped per group and flipped: ORT 1.19.2 has no
    ``ConvTransposeGrad`` kernel and ExecuTorch 1.4.1's ``convolution_backward`` refuses
    ``transposed``. None for an unbatched input or an ``output_padding`` not below the stride."""

    def form(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: Any = 1,
             padding: Any = 0, output_padding: Any = 0, groups: int = 1,
             dilation: Any = 1) -> torch.Tensor | None:
        n = weight.dim() - 2
        if input.dim() != weight.dim() or n not in (1, 2):
            return None
        st, pad_, extra, dil = (_ntuple(v, n) for v in (stride, padding, output_padding, dilation))
        if any(e >= s for e, s in zip(extra, st, strict=True)):
            return None
        kernel = [int(k) for k in weight.shape[2:]]
        cin, per_group = int(weight.shape[0]), int(weight.shape[1])
        w = weight.reshape(groups, cin // groups, per_group, *kernel).transpose(1, 2)
        w = _flipped(w.reshape(groups * per_group, cin // groups, *kernel), n)
        sides = tuple(d * (k - 1) - p for d, k, p in zip(dil, kernel, pad_, strict=True))
        lengths = tuple((int(h) - 1) * s + 1 + e + 2 * q
                        for h, s, e, q in zip(input.shape[2:], st, extra, sides, strict=True))
        return conv(_spaced(input, st, sides, lengths), w, bias, 1, 0, dil, groups)

    return form


def _ntuple(v: Any, n: int) -> tuple[int, ...]:
    v = tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
    return tuple(int(i) for i in v)


def _functional_conv(x: torch.Tensor, weight: torch.Tensor, *args: Any) -> torch.Tensor:
    return (F.conv1d if weight.dim() == 3 else F.conv2d)(x, weight, *args)


FORMS: dict[Callable[..., Any], Callable[..., torch.Tensor | None]] = {
    F.silu: silu, F.mish: mish, F.softplus: softplus, F.elu: elu, F.selu: selu, torch.selu: selu,
    F.celu: celu, torch.celu: celu, F.prelu: prelu, F.group_norm: group_norm,
    F.avg_pool2d: avg_pool2d, F.adaptive_avg_pool2d: adaptive_avg_pool2d, F.instance_norm: instance_norm,
    F.pad: pad, torch._C._nn.pad: pad, F.interpolate: interpolate,
    torch.conv_transpose1d: transposed_as_conv(_functional_conv),
    torch.conv_transpose2d: transposed_as_conv(_functional_conv),
}  # torch._C._nn.pad: strict torch.export (Dynamo) hands the mode F.pad's builtin, not F.pad


class WrittenOut(TorchFunctionMode):
    """Every call of a function of ``forms`` (:data:`FORMS` by default) runs its form instead,
    unless the form returns None (calls inside a form, and every other function, run as they
    are: the mode is off while it handles a call)."""

    def __init__(self, forms: Mapping[Callable[..., Any], Callable[..., Any]] | None = None) -> None:
        super().__init__()
        self.forms = FORMS if forms is None else forms

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        form = self.forms.get(func)
        out = form(*args, **kwargs) if form is not None else None
        return func(*args, **kwargs) if out is None else out


@contextlib.contextmanager
def written_out() -> Iterator[None]:
    """Within the block the functions of :data:`FORMS` (and the modules calling them) run their forms."""
    with WrittenOut():
        yield
