"""``bench.memory.backward_keeps``: the activations a fine-tuning step's backward must keep."""

from __future__ import annotations

import torch
from torch import nn

from bench.memory import backward_keeps


def _keeps(mod: nn.Module, x: torch.Tensor) -> int:
    out = mod(x)
    return backward_keeps(mod, (x,), out if isinstance(out, tuple) else (out,))


def test_a_frozen_layer_keeps_nothing_a_trained_weight_its_input_a_bias_nothing():
    x = torch.randn(4, 8, 5, 5)
    bn = nn.BatchNorm2d(8).eval().requires_grad_(False)
    conv = nn.Conv2d(8, 8, 1).requires_grad_(False)
    assert _keeps(bn, x) == 0 and _keeps(conv, x) == 0  # an input's gradient needs only weights
    conv.bias.requires_grad_(True)
    assert _keeps(conv, x) == 0  # TinyTL: a bias's gradient needs no activation
    conv.weight.requires_grad_(True)
    assert _keeps(conv, x) == x.numel()
    bn.weight.requires_grad_(True)
    assert _keeps(bn, x) == x.numel()  # a trained scale needs the normalised input


def test_nonlinearities_layernorm_and_recurrent_layers_keep_what_their_derivative_needs():
    x = torch.randn(4, 6, 8)
    assert _keeps(nn.ReLU6(), x) == x.numel()
    assert _keeps(nn.LayerNorm(8).requires_grad_(False), x) == x.numel()
    gru, lstm = nn.GRU(8, 3, batch_first=True), nn.LSTM(8, 3, batch_first=True)
    assert _keeps(gru.requires_grad_(False), x) == 4 * 4 * 6 * 3  # 3 gates + the previous state
    assert _keeps(lstm.requires_grad_(False), x) == 5 * 4 * 6 * 3  # 4 gates + the cell
    assert _keeps(lstm.requires_grad_(True), x) == 5 * 4 * 6 * 3 + x.numel()
