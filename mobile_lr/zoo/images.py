"""Colour photos of handwritten digits: scikit-learn's 8x8 digits, upsampled to the model's input.

The population is the digits set's general population (:func:`mobile_lr.datasets.general_split`),
each digit photographed in its own light: dark ink of a random grey-brown on
light paper of a random tint. A user is :func:`mobile_lr.datasets.user_split`'s
handwriting (their slant, shear and stroke thickness) photographed the way
their phone does it: one coloured pen, one paper tint and camera noise.
Images are ``(3, size, size)`` in [0, 1], bilinearly upsampled.

>>> task = DigitImages(size=32)
>>> train, test = task.population()
>>> train.x.shape, train.x.dtype, test.x.shape, train.y[:5].tolist()
((1000, 3, 32, 32), dtype('float32'), (297, 3, 32, 32), [5, 1, 5, 8, 8])
>>> u_train, u_test = task.user(seed=7)
>>> u_train.x.shape, u_test.x.shape, 0.0 <= float(u_train.x.min()) <= float(u_train.x.max()) <= 1.0
((200, 3, 32, 32), (300, 3, 32, 32), True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from mobile_lr.datasets import CLASS_NAMES, DEFAULT_USER_SEED, Split, general_split, user_split
from mobile_lr.validation import ValidationError
from mobile_lr.zoo.tasks import Task

__all__ = ["DigitImages"]


class DigitImages(Task):
    """Digits as RGB photos of side ``size`` (16..224)."""

    name = "digit-photos"
    labels = CLASS_NAMES

    def __init__(self, size: int = 64) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 224:
            raise ValidationError("resolution", f"{size!r} is out of range", "an integer in [16, 224]")
        self.size = size
        self.input_shape = (3, size, size)

    def population_style(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"ink": rng.uniform(0.0, 0.3) + rng.uniform(-0.1, 0.1, 3),
                "paper": rng.uniform(0.75, 1.0) - rng.uniform(0.0, 0.1, 3), "noise": 0.02}

    def user_style(self, rng: np.random.Generator) -> dict[str, Any]:
        ink = np.full(3, rng.uniform(0.05, 0.2))
        ink[rng.integers(3)] += rng.uniform(0.3, 0.4)  # a coloured pen (blue, red or green)
        return {"ink": ink, "paper": rng.uniform(0.7, 0.9, 3), "noise": 0.06}

    def photos(self, rng: np.random.Generator, rows: np.ndarray, style: dict[str, Any] | None) -> np.ndarray:
        """Rows of 64 pixels in [0, 1] as ``(N, 3, size, size)`` photos (``style`` None: the population's)."""
        out = np.empty((len(rows), *self.input_shape), dtype=np.float32)
        zoom = self.size / 8
        for i, row in enumerate(rows):
            s = self.population_style(rng) if style is None else style
            ink = np.asarray(s["ink"]).reshape(3, 1, 1)
            paper = np.asarray(s["paper"]).reshape(3, 1, 1)
            v = np.clip(ndimage.zoom(row.reshape(8, 8), zoom, order=1, mode="nearest"), 0.0, 1.0)
            img = paper * (1.0 - v) + ink * v + rng.normal(0.0, s["noise"], (3, self.size, self.size))
            out[i] = np.clip(img, 0.0, 1.0)
        return out

    def population(self) -> tuple[Split, Split]:
        rng = np.random.default_rng([0, 0])
        train, test = general_split()
        return (Split(self.photos(rng, train.x, None), train.y),
                Split(self.photos(rng, test.x, None), test.y))

    def user(self, seed: int = DEFAULT_USER_SEED, n_train: int = 200) -> tuple[Split, Split]:
        rng = np.random.default_rng([seed, 1])
        style = self.user_style(rng)
        train, test = user_split(seed, n_train)
        return (Split(self.photos(rng, train.x, style), train.y),
                Split(self.photos(rng, test.x, style), test.y))
