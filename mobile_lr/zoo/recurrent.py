"""A recurrent sensor classifier: ``(B, T, channels)`` windows -> activity logits.

A linear input projection with ReLU, ``layers`` single-layer GRUs (or LSTMs)
stacked as separate modules (so ``last-k`` can pick the upper ones), a
Linear+ReLU feature layer on the last time step's hidden state, and a linear
head. LoRA adapts the two Linear layers (the recurrent weights are not
``nn.Linear``); ``bias+head`` trains the recurrent biases too.

>>> import torch
>>> m = SensorRNN(channels=3, hidden=32, layers=2, num_classes=6)
>>> m(torch.zeros(4, 50, 3)).shape, m.block_names
(torch.Size([4, 6]), ('proj', 'rnn.0', 'rnn.1', 'fc'))
>>> SensorRNN(3, 32, cell="lstm").rnn[0].__class__.__name__
'LSTM'
"""

from __future__ import annotations

import torch
from torch import nn

from mobile_lr.validation import ValidationError
from mobile_lr.zoo.modes import Backbone

__all__ = ["CELLS", "SensorRNN"]

CELLS = ("gru", "lstm")


class SensorRNN(Backbone):
    """Projection, stacked GRU/LSTM layers, a feature layer and a head."""

    def __init__(self, channels: int, hidden: int = 64, layers: int = 2, num_classes: int = 6,
                 cell: str = "gru") -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValidationError("cell", f"unknown value {cell!r}", ", ".join(CELLS))
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.proj = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU())
        self.rnn = nn.ModuleList(rnn(hidden, hidden, batch_first=True) for _ in range(layers))
        self.fc = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)
        self.block_names = ("proj", *(f"rnn.{i}" for i in range(layers)), "fc")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        for layer in self.rnn:
            h, _ = layer(h)
        return self.head(self.fc(h[:, -1]))
