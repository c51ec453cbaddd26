"""DS-CNN keyword spotter (Zhang et al., 2017, "Hello Edge: Keyword Spotting on Microcontrollers").

Input: ``(B, 1, frames, bands)`` spectrogram-like features (the paper: 49
frames of 10 MFCCs). A 10x4 stride-2 convolution with BatchNorm and ReLU, then
``blocks`` depthwise-separable blocks (3x3 depthwise + BN + ReLU, 1x1 pointwise
+ BN + ReLU), global average pooling and a linear classifier. 64 channels
and 4 blocks are the layout of the paper's small model (DS-CNN-S), 276
channels and 5 blocks of its large one.

>>> import torch
>>> m = DSCNN()
>>> sum(p.numel() for p in m.parameters()), m.block_names
(23180, ('blocks.0', 'blocks.1', 'blocks.2', 'blocks.3'))
>>> m(torch.zeros(2, 1, 49, 10)).shape
torch.Size([2, 12])
"""

from __future__ import annotations

import torch
from torch import nn

from mobile_lr.zoo.modes import Backbone

__all__ = ["DSCNN", "DepthwiseSeparable"]


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv + BN + ReLU, then 1x1 pointwise conv + BN + ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.depthwise(x)))
        return torch.relu(self.bn2(self.pointwise(x)))


class DSCNN(Backbone):
    """Spectrogram ``(B, 1, T, F)`` -> keyword logits; blocks are ``blocks.0`` .. ``blocks.N-1``."""

    def __init__(self, channels: int = 64, blocks: int = 4, num_classes: int = 12) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, channels, (10, 4), stride=2, padding=(5, 1), bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU())
        self.blocks = nn.Sequential(*(DepthwiseSeparable(channels) for _ in range(blocks)))
        self.head = nn.Linear(channels, num_classes)
        self.block_names = tuple(f"blocks.{i}" for i in range(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))
