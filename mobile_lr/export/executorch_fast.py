"""The ExecuTorch program's fast form: its graphs call the kernels that ExecuTorch optimizes.

ExecuTorch's pip runtime (``executorch.extension.pybindings.portable_lib``) registers the
*optimized* kernel library over the portable one: ``mm``, ``bmm``, ``linear``, ``add``,
``mul``, ``sub``, ``div``, ``exp``, ``gelu``, ``_log_softmax``, ``native_layer_norm``, ``sum``
and a few more (``kernels/optimized/optimized.yaml``; matrix products through Eigen's BLAS),
and the portable kernels for everything else. The portable kernels are plain loops: measured
at one thread (batch 32), a 1x1 convolution 64 -> 128 channels on 16x16 took 482 ms against
torch's 10 ms, a 3x3 depthwise one 56 ms against 11 ms, and ``addmm`` (32x128 by 128x384, the
form every ``nn.Linear`` and every unrolled GRU gate takes) 1.8 ms against 0.35 ms for ``mm``
plus ``add``. The joint forward-backward graph is captured from the model, so the fast form is
chosen where the graph is made:

* every 1-d and 2-d convolution (``torch.conv1d``/``torch.conv2d``: the modules' and a user's
  own functional calls alike, through one ``TorchFunctionMode``) is, if dense, a matrix product
  of its weight with the input's patches (im2col written as strided slices, stacked), a grouped
  one a batched product (``bmm``, one per group), and every depthwise one (``groups`` = input =
  output channels) a sum of ``kh * kw`` products of a shifted slice with one weight per channel;
  all in a channels-first ``(C, B * H * W)`` layout, where the weight broadcasts along the last
  dimension, a case the optimized ``mul`` handles. A convolution nothing differentiates (a
  frozen layer before the first trained one; the eval method) takes its patches by two
  ``unfold_copy`` instead, which ExecuTorch cannot differentiate: a depthwise one is then one
  ``bmm``, a dense one an ``mm`` of im2col rows. Their gradients are then ``mm``/``bmm``,
  ``mul``, ``sum`` and slice scatters. Any padding: numbers, ``"same"`` (PyTorch's split, the
  extra one after), ``"valid"``, and the non-zero ``padding_mode`` s as PyTorch's module applies
  them (``F.pad`` first). The portable convolution is not only slow: in a training program with
  a dynamic batch it fails to run for ``padding="same"`` and ``groups`` other than 1 or the
  channels (``Failed to execute method forward, error: 0x12``, executorch 1.4.1), so no
  convolution is left to it;
* every ``aten.addmm`` of the captured graphs becomes ``mm`` + ``add``
  (:func:`addmm_as_mm`).

The numbers are the same sums in another order (float32 rounding, ~1e-7 relative); the
exporter's proof still checks the evaluation loss against PyTorch eager (1e-4). XNNPACK
(also in the wheel) is not used: it packs a delegated layer's weights once when the method
loads, so a trained weight updated in place would not reach it, and its partitioner has no
backward operators (docs/DECISIONS.md has the measurements).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    import torch

from mobile_lr.export.written_out import WrittenOut, transposed_as_conv

__all__ = ["FAST_FORMS", "addmm_as_mm", "fast_form"]


def _pair(v: Any, one_d: bool) -> tuple[int, int]:
    v = tuple(v) if isinstance(v, (tuple, list)) else (v,)
    return (1 if one_d else v[0], v[-1]) if len(v) == 1 or one_d else (v[0], v[1])


def _patches(xt: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
             dilation: tuple[int, int], out: tuple[int, int]) -> list[torch.Tensor]:
    """The ``kh * kw`` shifted, strided views of a padded ``(C, B, H, W)`` input, each ``(C, B, oh, ow)``."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out
    return [xt[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
            for i in range(kh) for j in range(kw)]


def _zero_pad(xt: torch.Tensor, padding: tuple[tuple[int, int], tuple[int, int]]) -> torch.Tensor:
    """Zeros around the last two axes (``(before, after)`` each), as concatenations: the gradient
    of ``constant_pad_nd`` is a pad by negative amounts, which ExecuTorch's kernel refuses; that
    of ``cat`` is slices."""
    for axis, sides in ((-2, padding[0]), (-1, padding[1])):
        parts = []
        for p in sides:
            shape = list(xt.shape)
            shape[axis] = p
            parts.append(xt.new_zeros(shape) if p else None)
        if parts[0] is not None or parts[1] is not None:
            xt = torch.cat([t for t in (parts[0], xt, parts[1]) if t is not None], dim=axis)
    return xt


def _pad(x: torch.Tensor, padding: tuple[tuple[int, int], tuple[int, int]],
         axes: tuple[int, int]) -> torch.Tensor:
    """Zeros around ``axes`` (the spatial ones) by one ``constant_pad_nd``: for tensors nothing
    differentiates (its backward, a negative pad, is what ExecuTorch refuses: :func:`_zero_pad`)."""
    if not (any(padding[0]) or any(padding[1])):
        return x
    pads = [0] * (2 * (x.dim() - axes[0]))
    for axis, sides in zip(axes, padding, strict=True):
        at = 2 * (x.dim() - 1 - axis)
        pads[at:at + 2] = sides
    return torch.nn.functional.pad(x, pads)


def _depthwise_unfolded(xt: torch.Tensor, wm: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                        padding: tuple[tuple[int, int], tuple[int, int]]) -> torch.Tensor:
    """A depthwise convolution nothing differentiates, ``(C, B * oh * ow)`` from a ``(C, B, H, W)``
    input: the patches by two ``unfold_copy`` (a tight loop; their backward has no ExecuTorch
    kernel, none is needed) and one batched product with the weights, ``(C, B*oh*ow, kh*kw) x
    (C, kh*kw, 1)``: the optimized ``bmm``, instead of ``kh * kw`` strided ``slice_copy`` (rows of
    ``ow`` numbers each), ``mul`` and ``add`` (docs/DECISIONS.md has the measurements)."""
    (kh, kw), (sh, sw) = kernel, stride
    cols = _pad(xt, padding, (2, 3)).unfold(2, kh, sh).unfold(3, kw, sw)  # (C, B, oh, ow, kh, kw)
    c = int(cols.shape[0])
    return torch.bmm(cols.reshape(c, -1, kh * kw), wm.unsqueeze(-1)).reshape(c, -1)


def _dense_unfolded(x: torch.Tensor, wm: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                    padding: tuple[tuple[int, int], tuple[int, int]]) -> torch.Tensor:
    """A dense convolution nothing differentiates (a frozen stem), ``(Cout, B * oh * ow)`` from a
    ``(B, C, H, W)`` input: in the ``(B, H, W, C)`` layout two ``unfold_copy`` give the im2col
    rows ``(B*oh*ow, C*kh*kw)`` in the weight's own order, one ``mm`` with the weight's transpose
    and one transpose of the result, instead of ``kh * kw`` strided slices and their ``stack``."""
    (kh, kw), (sh, sw) = kernel, stride
    rows = _pad(x.permute(0, 2, 3, 1), padding, (1, 2))
    rows = rows.unfold(1, kh, sh).unfold(2, kw, sw)  # (B, oh, ow, C, kh, kw)
    return torch.mm(rows.reshape(-1, int(wm.shape[1])), wm.t()).t()


def _shifted(xt: torch.Tensor, wm: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
             padding: tuple[tuple[int, int], tuple[int, int]], dilation: tuple[int, int], groups: int,
             depthwise: bool, out: tuple[int, int]) -> torch.Tensor:
    """The differentiable form, ``(Cout, B * oh * ow)`` from a ``(C, B, H, W)`` input: zeros
    concatenated, ``kh * kw`` strided slices, then a sum of per-channel products (depthwise) or
    their ``stack`` times the weight (``mm``; ``bmm`` over the groups)."""
    cin, cout = int(xt.shape[0]), int(wm.shape[0])
    parts = _patches(_zero_pad(xt, padding), kernel, stride, dilation, out)
    if depthwise:
        y = None
        for k, part in enumerate(parts):
            term = part.reshape(cin, -1) * wm[:, k:k + 1]
            y = term if y is None else y + term
        return y
    cols = parts[0] if len(parts) == 1 else torch.stack(parts, dim=1)  # (Cin, kh*kw, B, oh, ow)
    cols = cols.reshape(cin * len(parts), -1)
    if groups == 1:
        return torch.mm(wm, cols)
    # the rows of each group are contiguous in both: (g, Cout/g, .) x (g, ., N)
    return torch.bmm(wm.reshape(groups, cout // groups, -1),
                     cols.reshape(groups, cin // groups * len(parts), -1)).reshape(cout, -1)


def _sides(padding: Any, kernel: tuple[int, int], dilation: tuple[int, int], one_d: bool
           ) -> tuple[tuple[int, int], tuple[int, int]]:
    """A convolution's padding as ``(before, after)`` per spatial axis: ``"valid"`` is none,
    ``"same"`` PyTorch's split (``d * (k - 1)`` in all, the extra one after, as
    ``torch.nn.functional.conv2d`` pads an even kernel)."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        return tuple((t // 2, t - t // 2) for t in totals)  # type: ignore[return-value]
    ph, pw = _pair(padding, one_d)
    return (0 if one_d else ph, 0 if one_d else ph), (pw, pw)


def _conv_fn(kernel: tuple[int, int], stride: tuple[int, int],
             padding: tuple[tuple[int, int], tuple[int, int]], dilation: tuple[int, int],
             groups: int, one_d: bool):
    """``f(x, weight, bias)``: the convolution of this geometry in the fast form (module
    docstring); the weight is read at each call, so it is the program's parameter. ``groups``
    equal to the input and output channels is the depthwise form (one weight per channel, a
    broadcast ``mul``); other groups are a batched matrix product (``bmm``), one per group."""

    def f(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        cin, cout = int(x.shape[1]), int(weight.shape[0])
        x4 = x.unsqueeze(-2) if one_d else x
        h, w = int(x4.shape[-2]), int(x4.shape[-1])  # static: the spatial sizes are the model's
        oh = (h + sum(padding[0]) - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
        ow = (w + sum(padding[1]) - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
        wm = weight.reshape(cout, -1)  # (Cout, Cin/groups * kh*kw); (C, kh*kw) depthwise
        depthwise = groups > 1 and groups == cin == cout
        # nothing differentiates it (a frozen layer before the first trained one, the eval method)
        unfolded = not x.requires_grad and not weight.requires_grad and dilation == (1, 1)
        if unfolded and depthwise:
            y = _depthwise_unfolded(x4.transpose(0, 1), wm, kernel, stride, padding)
        elif unfolded and groups == 1 and kernel != (1, 1):
            y = _dense_unfolded(x4, wm, kernel, stride, padding)
        else:
            y = _shifted(x4.transpose(0, 1), wm, kernel, stride, padding, dilation, groups, depthwise,
                         (oh, ow))
        if bias is not None:
            y = y + bias.unsqueeze(1)
        y = y.reshape(cout, -1, oh, ow).transpose(0, 1)
        return y.squeeze(-2) if one_d else y

    return f


def _conv(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: Any = 1,
          padding: Any = 0, dilation: Any = 1, groups: int = 1) -> torch.Tensor | None:
    """``torch.conv1d``/``torch.conv2d`` (the functions every ``nn.Conv1d``/``nn.Conv2d`` and a
    user's functional call run; a module's non-zero ``padding_mode`` has padded the input
    already) in the fast form; None (run as it is) for an unbatched input."""
    one_d = weight.dim() == 3
    if input.dim() != weight.dim():
        return None
    kernel = (1, int(weight.shape[-1])) if one_d else (int(weight.shape[-2]), int(weight.shape[-1]))
    dilation = _pair(dilation, one_d)
    f = _conv_fn(kernel, _pair(stride, one_d), _sides(padding, kernel, dilation, one_d), dilation,
                 int(groups), one_d)
    return f(input, weight, bias)


#: The functions the fast form replaces (``F.conv1d`` is ``torch.conv1d``); a transposed
#: convolution is an ordinary one in the fast form (its form's docstring says how).
FAST_FORMS = {torch.conv1d: _conv, torch.conv2d: _conv,
              torch.conv_transpose1d: transposed_as_conv(_conv),
              torch.conv_transpose2d: transposed_as_conv(_conv)}


@contextlib.contextmanager
def fast_form() -> Iterator[None]:
    """Within the block every 1-d and 2-d convolution runs in the fast form: the modules' and a
    user's own functional calls alike (one ``TorchFunctionMode``, the written-out forms' own)."""
    with WrittenOut(FAST_FORMS):
        yield


def addmm_as_mm(edge: Any) -> Any:
    """``addmm(bias, a, b)`` (beta = alpha = 1) -> ``add(mm(a, b), bias)`` in every method of an
    ``EdgeProgramManager``; returns the new manager. ExecuTorch's ``addmm`` is portable, its
    ``mm`` and ``add`` are optimized."""
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import ExportPass

    addmm, mm, add = (exir_ops.edge.aten.addmm.default, exir_ops.edge.aten.mm.default,
                      exir_ops.edge.aten.add.Tensor)

    class AddmmAsMm(ExportPass):
        def call_operator(self, op: Any, args: Any, kwargs: Any, meta: Any) -> Any:
            if op is not addmm or len(args) != 3 or kwargs.get("beta", 1) != 1 or kwargs.get("alpha", 1) != 1:
                return super().call_operator(op, args, kwargs, meta)
            bias, a, b = args
            return super().call_operator(add, (super().call_operator(mm, (a, b), {}, meta), bias), {}, meta)

    return edge.transform([AddmmAsMm(), _one_transpose_per_weight])


def _one_transpose_per_weight(gm: Any) -> Any:
    """Every ``permute_copy`` of the same tensor with the same axes computed once: the unrolled
    GRU/LSTM multiplies by its recurrent weight's transpose at every time step, and ExecuTorch's
    ``permute_copy`` is an element-by-element copy (28 % of a gru-sensor step before this)."""
    from executorch.exir.dialects._ops import ops as exir_ops
    from torch.fx.passes.infra.pass_base import PassResult

    permute = exir_ops.edge.aten.permute_copy.default
    seen: dict[tuple[Any, ...], Any] = {}
    changed = False
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not permute or node.kwargs:
            continue
        key = (node.args[0], tuple(node.args[1]))
        if key in seen:
            node.replace_all_uses_with(seen[key])
            gm.graph.erase_node(node)
            changed = True
        else:
            seen[key] = node
    if changed:
        gm.graph.lint()
        gm.recompile()
    return PassResult(gm, changed)
