"""MobileNetV2 (Sandler et al., 2018): inverted residuals, depthwise convolutions, BatchNorm.

The layer table is the paper's (and torchvision's ``mobilenet_v2``): a 3x3
stride-2 stem, seventeen inverted-residual blocks (1x1 expansion, 3x3
depthwise, 1x1 linear projection; a residual connection where the shape
allows), a 1x1 convolution to the last width, global average pooling, dropout
and a linear classifier. At ``width=1`` and 10 classes it has 2.24 M
parameters. Two V3-style options: ``activation="hardswish"`` and ``se=True``
(squeeze-excite in every expanded block, Howard et al., 2019).

Differences from torchvision, each for a reason:

* ``depth`` scales every stage's repeat count (at least one block per stage)
  and ``stages`` keeps the first stages of the table (all seven by default),
  so tests can run the same blocks in a shorter network;
* the last 1x1 convolution is ``1280 · width`` wide (torchvision keeps 1280 for
  widths below 1), so small widths are small everywhere;
* global pooling is ``mean`` over the spatial axes, not ``AdaptiveAvgPool2d``:
  the same numbers, and its backward is an ordinary reduction both engines have
  (ExecuTorch 1.4.1's portable kernels lack ``_adaptive_avg_pool2d_backward``).

>>> import torch
>>> m = MobileNetV2(width=1.0, num_classes=10)
>>> sum(p.numel() for p in m.parameters())
2236682
>>> len(m.block_names), m.block_names[-1]
(18, 'features.18')
>>> small = MobileNetV2(width=0.25, depth=0.3, stages=4)
>>> small(torch.zeros(2, 3, 16, 16)).shape, small.block_names
(torch.Size([2, 10]), ('features.1', 'features.2', 'features.3', 'features.4', 'features.5', 'features.6'))
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mobile_lr.validation import ValidationError
from mobile_lr.zoo.modes import Backbone

__all__ = ["ACTIVATIONS", "MobileNetV2", "make_divisible"]

ACTIVATIONS = ("relu6", "hardswish")
# (expansion t, output channels c, repeats n, first stride s): the paper's Table 2
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never below 90 % of ``value`` (the paper's code)."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


def _act(name: str) -> nn.Module:
    return nn.ReLU6() if name == "relu6" else nn.Hardswish()


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
             act: str | None = "relu6") -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(c_out)]
    if act is not None:
        layers.append(_act(act))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention: ``x · hardsigmoid(W2 relu(W1 mean(x)))`` (MobileNetV3's form)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = make_divisible(channels / 4)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    """1x1 expansion (skipped when t = 1), 3x3 depthwise, optional SE, 1x1 linear projection."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int, act: str, se: bool) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(c_in, hidden, 1, act=act))
        layers.append(_conv_bn(hidden, hidden, 3, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcite(hidden))
        layers.append(_conv_bn(hidden, c_out, 1, act=None))
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


class MobileNetV2(Backbone):
    """(B, in_channels, H, W) images -> class logits; blocks are ``features.1`` .. ``features.N``."""

    def __init__(self, width: float = 1.0, num_classes: int = 10, *, depth: float = 1.0,
                 stages: int = len(_SETTINGS), in_channels: int = 3, activation: str = "relu6",
                 se: bool = False, dropout: float = 0.2) -> None:
        super().__init__()
        if not 0 < width <= 8 or not 0 < depth <= 1 or not 1 <= stages <= len(_SETTINGS):
            raise ValidationError("width", f"width {width} / depth {depth} / stages {stages} out of range",
                                  f"0 < width <= 8, 0 < depth <= 1, 1 <= stages <= {len(_SETTINGS)}")
        if activation not in ACTIVATIONS:
            raise ValidationError("activation", f"unknown value {activation!r}", ", ".join(ACTIVATIONS))
        c = make_divisible(32 * width)
        features: list[nn.Module] = [_conv_bn(in_channels, c, 3, 2, act=activation)]
        for t, ch, n, s in _SETTINGS[:stages]:
            c_out = make_divisible(ch * width)
            for i in range(max(1, math.ceil(n * depth))):
                features.append(InvertedResidual(c, c_out, s if i == 0 else 1, t, activation, se and t != 1))
                c = c_out
        last = make_divisible(1280 * width)
        features.append(_conv_bn(c, last, 1, act=activation))
        self.features = nn.Sequential(*features)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        self.block_names = tuple(f"features.{i}" for i in range(1, len(features)))
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))
