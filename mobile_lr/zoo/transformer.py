"""A small transformer encoder for token sequences: embedding, pre-LN blocks, mean pooling.

Each block is ``x + attn(ln1(x))`` then ``x + ffn(ln2(x))`` with multi-head
self-attention written out of ``nn.Linear`` projections (``q``, ``k``, ``v``,
``out``), ``softmax(q k^T / sqrt(d_head)) v``: the same function as
``nn.MultiheadAttention`` without its fused ``in_proj_weight``, so LoRA can
adapt each projection and both exporters see plain MatMul/Softmax graphs. The
FFN is Linear-GELU-Linear. Positions are a learned embedding. The head is the
final LayerNorm and a linear classifier over the mean of the tokens.

Inputs are token ids carried as float32 (every recipe input is a float32
tensor); the model casts them to integers before the embedding lookup.

>>> import torch
>>> m = TextTransformer(vocab=64, seq_len=16, dim=32, heads=4, layers=2, num_classes=4)
>>> m(torch.zeros(3, 16)).shape, m.block_names
(torch.Size([3, 4]), ('layers.0', 'layers.1'))
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mobile_lr.validation import ValidationError
from mobile_lr.zoo.modes import Backbone

__all__ = ["EncoderBlock", "SelfAttention", "TextTransformer"]


class SelfAttention(nn.Module):
    """Multi-head self-attention over ``(B, T, dim)`` with separate q/k/v/out projections."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValidationError("heads", f"{heads} does not divide the width {dim}")
        self.heads, self.d_head = heads, dim // heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.reshape(b, n, self.heads, self.d_head).transpose(1, 2)  # (B, heads, T, d_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.d_head), dim=-1)
        y = (att @ v).transpose(1, 2)
        return self.out(y.reshape(x.shape))


class EncoderBlock(nn.Module):
    """Pre-LN transformer block: attention and a GELU feed-forward, each with a residual."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.ffn(self.ln2(x)))


class TextTransformer(Backbone):
    """``(B, seq_len)`` float token ids -> class logits; blocks are ``layers.0`` .. ``layers.N-1``."""

    def __init__(self, vocab: int, seq_len: int, dim: int = 64, heads: int = 4, layers: int = 2,
                 num_classes: int = 4, ffn: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(1, seq_len, dim))
        nn.init.normal_(self.pos, std=0.02)
        blocks = (EncoderBlock(dim, heads, ffn or 2 * dim, dropout) for _ in range(layers))
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))
        self.block_names = tuple(f"layers.{i}" for i in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x.to(torch.int64).clamp(0, self.vocab - 1)
        h = self.layers(self.embed(ids) + self.pos)
        return self.head(h.mean(1))
