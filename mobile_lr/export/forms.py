"""The forms a model takes in each exported graph: training (dropout on) and evaluation (off),
with batch normalization frozen.

Why batch normalization is frozen by default: fine-tuning on a phone sees small, skewed
batches of one user's data, and re-estimating the running statistics from them hurts the
features the trunk learnt (the usual fine-tuning convention: torchvision's
``FrozenBatchNorm2d``, TinyTL). A frozen BatchNorm is the affine map of its running
statistics, ``y = x * s + (beta - mean * s)`` with ``s = gamma / sqrt(var + eps)``; its
``weight`` and ``bias`` still train when the recipe lists them.

Why the training graph writes that map out instead of using the framework's batch norm in
eval mode (checked on onnxruntime-training 1.19.2 and executorch 1.4.1):

* ONNX Runtime's gradient builder replaces every ``BatchNormalization`` of the training graph
  by ``BatchNormInternal`` with ``training_mode=1``, which normalizes with the *batch*
  statistics whatever the exported node says, and its eval model then fails to load (a
  training-mode node with one output);
* ExecuTorch has no kernel for ``_native_batch_norm_legit_functional`` (the training form),
  and the joint graph's backward of the eval form needs it too.

Mul and Add with broadcast have gradients and kernels on every engine. The evaluation
graphs (``inference_model.onnx``, ORT's eval model, ExecuTorch's ``eval`` method) compute
the same map (the eval-mode batch norm, or the frozen map itself).

The rest is written out for *functions*, whether a module calls them or the model's own
``forward`` does (``nn.SiLU`` is ``F.silu``, torchvision's squeeze-excitation calls
``F.adaptive_avg_pool2d(x, 1)``): :mod:`mobile_lr.export.written_out` holds one form per
``torch.nn.functional`` call and a ``TorchFunctionMode`` that applies them while the training
graphs are captured (both captures see it: TorchScript tracing and ``torch.export``).

Average pooling (``F.avg_pool2d``, and ``F.adaptive_avg_pool2d`` to a size that divides its
input) is a depthwise convolution with constant weights ``1/(kh kw)`` in the training graphs:
ExecuTorch 1.4.1 has no ``avg_pool2d_backward`` / ``_adaptive_avg_pool2d_backward`` kernel and
ONNX Runtime 1.19.2's ``AveragePoolGrad`` dies of SIGFPE on the CPU, while both differentiate a
convolution. A global average (output 1x1) stays a mean, which both differentiate.

Activations one engine cannot differentiate are written out in ops both do (``relu``, ``exp``,
``log``, ``sigmoid``, ``tanh``, ``mul``, ``add``) in the training graphs: ``F.silu`` as
``x * sigmoid(x)`` and ``F.mish`` (ExecuTorch 1.4.1's joint graph of their fused backward needs
``aten::empty_permuted``, which it has no kernel for, once the batch is dynamic); ``F.elu``,
``F.selu``, ``F.celu``, ``F.softplus``, ``F.prelu`` (ONNX Runtime 1.19.2 registers no gradient
for them) and ``F.group_norm`` (exported through InstanceNormalization, which it cannot
differentiate either), with the modules that call them (``nn.SiLU``, ``nn.Mish``, ``nn.ELU``,
``nn.SELU``, ``nn.CELU``, ``nn.Softplus``, ``nn.PReLU``, ``nn.GroupNorm``).
The forms never overflow where the framework's do not: ``exp`` only ever sees ``min(x, 0)``
(``x - relu(x)``), and softplus is ``relu(z) + log1p(exp(-|z|))`` (``x`` itself past
``threshold``, as torch's). ``F.hardswish``/``F.hardsigmoid`` need no form: the ONNX graph's
HardSwish/HardSigmoid nodes are rewritten as Clip (:mod:`mobile_lr.export.onnx_artifacts`), and
ExecuTorch has their backward kernels; ``F.gelu``, ``F.layer_norm`` and ``F.dropout`` train as
they are on both.

For ONNX Runtime 1.19.2's remaining gaps the forms are exact where they apply and are left out
elsewhere (the reason then names the module and what to change, ``ORT_HINTS`` in
:mod:`mobile_lr.export.onnx_artifacts`): ``F.instance_norm`` without running statistics is a
group norm with one group per channel (no InstanceNormalization gradient); ``F.pad`` in the
reflect/replicate/circular modes is the input's edge slices concatenated (its Pad gradient is
constant-mode only); ``F.interpolate`` in the nearest mode by whole factors repeats each element
(no CPU ``ResizeGrad``). GRU/LSTM layers, one direction or both, are unrolled into their cells
for the ONNX graph (:func:`unrolled_rnns`).

Dropout stays a dropout in the training graphs and disappears from the evaluation ones;
ExecuTorch's program therefore has a second method, exported in eval mode
(:mod:`mobile_lr.export.executorch_program`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    import torch
    from torch import nn

from mobile_lr.export.written_out import written_out
from mobile_lr.recipes import batchnorm_modules, model_mode

__all__ = ["BATCHNORM_MODES", "batchnorm_modules", "check_batchnorm_mode", "describe_modules", "eval_form",
           "frozen_batchnorm", "model_mode", "patched_modules", "training_form", "unrolled_rnns"]

BATCHNORM_MODES = ("frozen", "train")


def describe_modules(model: nn.Module, names: list[str], limit: int = 4) -> str:
    """``"blocks.0.bn (BatchNorm2d), head (Linear)"``: modules as a message names them."""
    parts = [f"{n or '<model>'} ({type(model.get_submodule(n)).__name__})" for n in names[:limit]]
    more = len(names) - limit
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def _frozen_forward(bn: nn.modules.batchnorm._BatchNorm):  # -> Callable[[Tensor], Tensor]
    def forward(x: torch.Tensor) -> torch.Tensor:
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError("a batch norm without running statistics cannot be frozen")
        scale = torch.rsqrt(bn.running_var + bn.eps)
        shift = -bn.running_mean * scale
        if bn.weight is not None:
            scale = scale * bn.weight
            shift = shift * bn.weight + bn.bias
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale.reshape(shape) + shift.reshape(shape)

    return forward


@contextlib.contextmanager
def frozen_batchnorm(model: nn.Module) -> Iterator[list[str]]:
    """Within the block every batch norm of ``model`` computes its frozen affine map.

    The modules' ``forward`` is replaced on the instances (and restored after), so tracing
    (the ONNX exporter) and ``torch.export`` both see the map and the parameter names stay
    those of the model. Yields the names of the modules changed.
    """
    def make(mod: nn.Module):  # -> forward | None
        return _frozen_forward(mod) if isinstance(mod, nn.modules.batchnorm._BatchNorm) else None

    with patched_modules(model, make) as names:
        yield names


def check_batchnorm_mode(mode: str) -> str:
    if mode not in BATCHNORM_MODES:
        from mobile_lr.validation import ValidationError

        raise ValidationError("batchnorm", f"unknown value {mode!r}", ", ".join(BATCHNORM_MODES))
    return mode


@contextlib.contextmanager
def _plain_attention() -> Iterator[None]:
    """Attention as matmul and softmax, which every engine runs and differentiates.

    ``nn.TransformerEncoderLayer``/``MultiheadAttention`` in eval mode take a fused "fast path"
    (``aten::_transformer_encoder_layer_fwd``), and ``scaled_dot_product_attention`` without
    dropout picks the fused flash kernel (``_scaled_dot_product_flash_attention_for_cpu``, whose
    backward ExecuTorch 1.4.1 has no kernel for); neither the ONNX exporter nor ExecuTorch knows
    them. The block disables the first and selects the math backend (same numbers to ~1e-7)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


@contextlib.contextmanager
def training_form(model: nn.Module, batchnorm: str = "frozen") -> Iterator[None]:
    """The model as a training graph captures it: train mode (dropout on), batch norm frozen
    unless ``batchnorm="train"`` (then it normalizes with the batch and updates its statistics)."""
    check_batchnorm_mode(batchnorm)
    with model_mode(model, True), _plain_attention(), written_out():
        if batchnorm == "train":
            yield
        else:
            with frozen_batchnorm(model):
                yield


@contextlib.contextmanager
def eval_form(model: nn.Module) -> Iterator[None]:
    """The model as evaluation graphs capture it: eval mode (no dropout, batch norm on its
    running statistics), no fused attention fast path."""
    with model_mode(model, False), _plain_attention():
        yield


def _gru_cell(x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
              b_ih: torch.Tensor | None, b_hh: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.nn.GRU``'s update (gates r, z, n in that order of the weight rows)."""
    f = torch.nn.functional
    xr, xz, xn = f.linear(x, w_ih, b_ih).chunk(3, -1)
    hr, hz, hn = f.linear(h, w_hh, b_hh).chunk(3, -1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    h = (1 - z) * n + z * h
    return h, h


def _lstm_cell(x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], w_ih: torch.Tensor,
               w_hh: torch.Tensor, b_ih: torch.Tensor | None,
               b_hh: torch.Tensor | None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """``torch.nn.LSTM``'s update (gates i, f, g, o in that order of the weight rows)."""
    f = torch.nn.functional
    h, c = state
    i, fg, g, o = (f.linear(x, w_ih, b_ih) + f.linear(h, w_hh, b_hh)).chunk(4, -1)
    c = torch.sigmoid(fg) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, (h, c)


def _rnn_as_cells(rnn: nn.Module):  # -> Callable | None
    """A GRU/LSTM (one or both directions, no projection) as its cell unrolled over the sequence.

    ONNX Runtime 1.19.2's fused GRUGrad/LSTMGrad crash (SIGSEGV) in the training step unless every
    weight of the layer trains and no gradient flows into its input, and its LSTM kernel refuses a
    bidirectional layer ("only supports the forward direction"); the unrolled cell is MatMul,
    Sigmoid and Tanh, which it differentiates. Same equations as PyTorch's (rounding aside): the
    reverse direction (weights ``*_reverse``) runs from the last step, its outputs are
    concatenated after the forward ones, and the final states are ordered layer by layer,
    forward first, as ``h_n``'s."""
    if not isinstance(rnn, (nn.GRU, nn.LSTM)) or getattr(rnn, "proj_size", 0):
        return None
    lstm = isinstance(rnn, nn.LSTM)
    cell = _lstm_cell if lstm else _gru_cell
    directions = 2 if rnn.bidirectional else 1

    def run(seq: torch.Tensor, state: Any, weights: list[Any], reverse: bool) -> tuple[torch.Tensor, Any]:
        steps = int(seq.shape[0])  # static length: the graph is unrolled
        outs: list[Any] = [None] * steps
        for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
            outs[t], state = cell(seq[t], state, *weights)
        return torch.stack(outs), state

    def forward(x: torch.Tensor, hx: Any = None) -> tuple[torch.Tensor, Any]:
        seq = x.transpose(0, 1) if rnn.batch_first else x  # (T, B, F)
        zeros = seq.new_zeros(rnn.num_layers * directions, seq.shape[1], rnn.hidden_size)
        if hx is None:
            hx = (zeros, zeros) if lstm else zeros
        finals: list[Any] = []
        for layer in range(rnn.num_layers):
            outs = []
            for d in range(directions):
                weights = [getattr(rnn, f"{k}_l{layer}{'_reverse' if d else ''}", None)
                           for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                k = layer * directions + d
                out, state = run(seq, (hx[0][k], hx[1][k]) if lstm else hx[k], weights, bool(d))
                outs.append(out)
                finals.append(state)
            seq = torch.cat(outs, -1) if directions == 2 else outs[0]
            if rnn.dropout and layer < rnn.num_layers - 1:
                seq = torch.nn.functional.dropout(seq, rnn.dropout, rnn.training)
        output = seq.transpose(0, 1) if rnn.batch_first else seq
        if lstm:
            return output, (torch.stack([s[0] for s in finals]), torch.stack([s[1] for s in finals]))
        return output, torch.stack(finals)

    return forward


@contextlib.contextmanager
def unrolled_rnns(model: nn.Module) -> Iterator[list[str]]:
    """Within the block every GRU/LSTM of ``model`` runs as its unrolled cell (see :func:`_rnn_as_cells`)."""
    with patched_modules(model, _rnn_as_cells) as names:
        yield names


@contextlib.contextmanager
def patched_modules(model: nn.Module, make) -> Iterator[list[str]]:  # make: module -> forward | None
    """Within the block every module ``make`` gives a forward for runs it (restored after)."""
    changed = []
    for name, mod in model.named_modules():
        forward = make(mod)
        if forward is not None:
            mod.forward = forward
            changed.append((name, mod))
    try:
        yield [name for name, _ in changed]
    finally:
        for _, mod in changed:
            del mod.forward
