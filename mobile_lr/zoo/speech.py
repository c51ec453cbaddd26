"""Spoken keywords as spectrogram-like features ``(1, frames, bands)``, generated.

Twelve classes, as in the Speech Commands keyword-spotting benchmark: ten
keywords, ``_silence_`` and ``_unknown_``. A keyword is a fixed sequence of
three of eight "phonemes"; a phoneme is a spectral envelope of two formants
(Gaussian bumps over the bands). A sample places the phonemes one after the
other at a random onset, each for a random share of the word's duration,
smooths the transitions, adds background noise and takes ``log(1 + energy)``.
``_silence_`` is background alone, ``_unknown_`` a random phoneme sequence
that is no keyword.

A speaker's style is a formant shift (in bands), a speaking rate, a spectral
tilt and a noise level; the population's are spread around zero shift and
rate 1, a user's voice is further out, and their room adds a steady hum in
one band.

>>> task = Keywords()
>>> train, test = task.population()
>>> train.x.shape, train.x.dtype, len(task.labels), sorted(set(train.y.tolist())) == list(range(12))
((1000, 1, 49, 10), dtype('float32'), 12, True)
>>> u_train, _ = task.user(seed=7)
>>> u_train.x.shape, bool((task.user(seed=7)[0].x == u_train.x).all())
((200, 1, 49, 10), True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from mobile_lr.zoo.tasks import GeneratedTask

__all__ = ["KEYWORDS", "Keywords"]

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
_PHONEMES = 8
_WORD_LEN = 3


def _inventory(bands: int) -> tuple[np.ndarray, np.ndarray]:
    """The phonemes' formants ``(8, 2, 2)`` (centre, width) and the keywords' sequences ``(10, 3)``."""
    rng = np.random.default_rng(12)
    centres = np.sort(rng.uniform(0.5, bands - 1.5, (_PHONEMES, 2)), axis=1)
    widths = rng.uniform(0.7, 1.4, (_PHONEMES, 2))
    words: list[tuple[int, ...]] = []
    while len(words) < len(KEYWORDS):
        w = tuple(int(p) for p in rng.choice(_PHONEMES, _WORD_LEN, replace=False))
        if w not in words:
            words.append(w)
    return np.stack([centres, widths], axis=-1), np.array(words)


class Keywords(GeneratedTask):
    """``(1, frames, bands)`` keyword features; the defaults are Hello Edge's 49 x 10."""

    name = "keywords"
    labels = (*KEYWORDS, "_silence_", "_unknown_")

    def __init__(self, frames: int = 49, bands: int = 10) -> None:
        self.frames, self.bands = frames, bands
        self.input_shape = (1, frames, bands)
        self._formants, self._words = _inventory(bands)

    def population_style(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"shift": rng.normal(0.0, 0.35), "rate": rng.uniform(0.85, 1.15),
                "tilt": rng.normal(0.0, 0.15), "noise": rng.uniform(0.03, 0.1), "hum": None}

    def user_style(self, rng: np.random.Generator) -> dict[str, Any]:
        sign = rng.choice([-1.0, 1.0], size=3)
        return {"shift": sign[0] * rng.uniform(0.9, 1.3), "rate": 1.0 + sign[1] * rng.uniform(0.2, 0.3),
                "tilt": sign[2] * rng.uniform(0.3, 0.5), "noise": 0.12,
                "hum": (int(rng.integers(self.bands)), rng.uniform(0.4, 0.7))}

    def _sequence(self, rng: np.random.Generator, label: int) -> np.ndarray | None:
        if label < len(KEYWORDS):
            return self._words[label]
        if label == len(KEYWORDS):
            return None  # silence
        while True:
            w = rng.choice(_PHONEMES, _WORD_LEN, replace=False)
            if not (self._words == w).all(axis=1).any():
                return w

    def render(self, rng: np.random.Generator, label: int, style: Any, user: bool) -> np.ndarray:
        jitter = 0.1 if user else 0.0
        shift = style["shift"] + jitter * rng.normal()
        rate = style["rate"] * (1.0 + jitter * rng.normal())
        energy = np.zeros((self.frames, self.bands))
        seq = self._sequence(rng, label)
        if seq is not None:
            duration = int(np.clip(rng.uniform(24, 34) / rate, 9, self.frames - 1))
            onset = int(rng.integers(0, self.frames - duration + 1))
            shares = np.cumsum(np.r_[0, rng.dirichlet([4.0] * _WORD_LEN)])
            cuts = onset + np.round(shares * duration).astype(int)
            bands = np.arange(self.bands)
            for p, a, b in zip(seq, cuts[:-1], cuts[1:], strict=True):
                (c1, w1), (c2, w2) = self._formants[p]
                env = (np.exp(-0.5 * ((bands - c1 - shift) / w1) ** 2)
                       + 0.7 * np.exp(-0.5 * ((bands - c2 - shift) / w2) ** 2))
                tilt = 1.0 + style["tilt"] * (bands / self.bands - 0.5)
                energy[a:b] += rng.uniform(2.0, 3.0) * env * tilt
            energy = ndimage.gaussian_filter1d(energy, 1.0, axis=0)
        if style["hum"] is not None:
            band, level = style["hum"]
            energy[:, band] += level
        energy = np.abs(energy + rng.normal(0.0, style["noise"], energy.shape)) + style["noise"]
        return np.log1p(energy)[None].astype(np.float32)
