"""Short token sequences whose class lies in where the words stand, generated.

Four intents (``alarm``, ``weather``, ``music``, ``message``), each with eight
keyword tokens; everything else is background text drawn from a Zipf
distribution over the rest of the vocabulary. A sample holds one keyword of
its intent right after the marker token (``please``), the same intent's
keyword once more elsewhere, and one or two keywords of other intents: a bag
of words is often fooled by the distractors, a model that attends to the
token after the marker is not.

The population uses the first six keywords of each intent (the first three
most), a user mostly their own last four (two of them never seen as keywords
in the population: personal words), and their background text comes from a
user-specific shuffle of the common words.

>>> task = Intents(vocab=128, seq_len=24)
>>> train, _ = task.population()
>>> train.x.shape, train.x.dtype, float(train.x.max()) < 128, task.labels
((1000, 24), dtype('float32'), True, ('alarm', 'weather', 'music', 'message'))
>>> bool((train.x[0][1:] == KEYWORD_BASE + 8 * train.y[0] + np.arange(8)[:, None]).any())
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mobile_lr.validation import ValidationError
from mobile_lr.zoo.tasks import GeneratedTask

__all__ = ["KEYWORD_BASE", "MARKER", "Intents"]

MARKER = 1
KEYWORD_BASE = 2
_PER_INTENT = 8


class Intents(GeneratedTask):
    """``(seq_len,)`` token ids (as float32) from a ``vocab``-word vocabulary."""

    name = "intents"
    labels = ("alarm", "weather", "music", "message")

    def __init__(self, vocab: int = 256, seq_len: int = 32) -> None:
        self._background = KEYWORD_BASE + _PER_INTENT * len(self.labels)
        if vocab < self._background + 16 or seq_len < 8:
            raise ValidationError("vocab", f"vocab {vocab} / seq_len {seq_len} too small",
                                  f"vocab >= {self._background + 16}, seq_len >= 8")
        self.vocab, self.seq_len = vocab, seq_len
        self.input_shape = (seq_len,)
        ranks = np.arange(1, vocab - self._background + 1, dtype=np.float64)
        self._zipf = ranks ** -1.1 / (ranks ** -1.1).sum()

    def population_style(self, rng: np.random.Generator) -> dict[str, Any]:
        weights = np.array([3, 3, 3, 1, 1, 1, 0, 0], dtype=np.float64)
        return {"keywords": weights / weights.sum(), "words": None}

    def user_style(self, rng: np.random.Generator) -> dict[str, Any]:
        weights = np.array([0, 0, 0, 0, 1, 1, 2, 2], dtype=np.float64)
        return {"keywords": weights / weights.sum(), "words": rng.permutation(len(self._zipf))}

    def _keyword(self, rng: np.random.Generator, intent: int, style: dict[str, Any]) -> int:
        return KEYWORD_BASE + _PER_INTENT * intent + int(rng.choice(_PER_INTENT, p=style["keywords"]))

    def render(self, rng: np.random.Generator, label: int, style: Any, user: bool) -> np.ndarray:
        words = rng.choice(len(self._zipf), self.seq_len, p=self._zipf)
        if style["words"] is not None:
            words = style["words"][words]
        seq = self._background + words
        others = [c for c in range(len(self.labels)) if c != label]
        extras = [label, *rng.choice(others, int(rng.integers(1, 3)), replace=False)]
        mark = int(rng.integers(0, self.seq_len - 1))
        seq[mark] = MARKER
        seq[mark + 1] = self._keyword(rng, label, style)
        free = [i for i in range(self.seq_len) if i not in (mark, mark + 1)]
        for intent, pos in zip(extras, rng.choice(free, len(extras), replace=False), strict=True):
            seq[pos] = self._keyword(rng, int(intent), style)
        return seq.astype(np.float32)
