"""Generated, seeded data sets with the personalisation set-up: a population and its users.

Every zoo model trains on a :class:`Task`. The *population* data (1000 train,
300 test) is what a model is pre-trained on, on the desktop: each sample comes
from a different person (a style drawn per sample from the population's
spread). A *user* (identified by a seed) has one style of their own, drawn once
and further from the population's centre, and every one of their samples
varies a little around it: their 200 training samples are what the phone
fine-tunes on, their 300 held-out samples measure the result. Nothing is
downloaded; the same seed gives the same arrays on every machine.

A :class:`Task` supplies the class names, the input shape, ``population()`` and
``user(seed, n_train)``. A :class:`GeneratedTask` makes both from three methods:
``population_style(rng)``, ``user_style(rng)`` and ``render(rng, label, style,
user)`` (one sample, jittered around ``style`` when the style is a user's).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mobile_lr.datasets import DEFAULT_USER_SEED, Split
from mobile_lr.validation import ValidationError

__all__ = ["POPULATION_TEST", "POPULATION_TRAIN", "USER_TEST", "GeneratedTask", "Task"]

POPULATION_TRAIN = 1000
POPULATION_TEST = 300
USER_TEST = 300
_POPULATION_SEED = 0


class Task:
    """A classification task with population data and per-user data (see the module docstring)."""

    name: ClassVar[str] = ""
    labels: ClassVar[tuple[str, ...]] = ()
    input_shape: tuple[int, ...] = ()

    def population(self) -> tuple[Split, Split]:
        """The population's (pre-training set, test set)."""
        raise NotImplementedError

    def user(self, seed: int = DEFAULT_USER_SEED, n_train: int = 200) -> tuple[Split, Split]:
        """One user's (fine-tuning set, held-out test set)."""
        raise NotImplementedError

    def pretrain_data(self) -> tuple[np.ndarray, np.ndarray]:
        """The population's training set as ``(x, y)`` (a recipe's ``pretrain_data``)."""
        train, _ = self.population()
        return train.x, train.y


class GeneratedTask(Task):
    """A task whose samples are drawn one by one from a style (see the module docstring)."""

    # ------------------------------------------------------------------ what a subclass supplies

    def population_style(self, rng: np.random.Generator) -> Any:
        """The style of one member of the population (one per sample)."""
        raise NotImplementedError

    def user_style(self, rng: np.random.Generator) -> Any:
        """One user's style, drawn once from their seed."""
        raise NotImplementedError

    def render(self, rng: np.random.Generator, label: int, style: Any, user: bool) -> np.ndarray:
        """One sample of class ``label`` in ``style`` (``user``: jitter around the user's style)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the splits

    def _labels(self, rng: np.random.Generator, n: int) -> np.ndarray:
        y = np.arange(n, dtype=np.int64) % len(self.labels)
        return rng.permutation(y)

    def _samples(self, rng: np.random.Generator, n: int, style: Any | None) -> Split:
        y = self._labels(rng, n)
        rows = [self.render(rng, int(label), self.population_style(rng) if style is None else style,
                            style is not None) for label in y]
        return Split(np.stack(rows).astype(np.float32), y)

    def population(self) -> tuple[Split, Split]:
        rng = np.random.default_rng([_POPULATION_SEED, 0])
        return (self._samples(rng, POPULATION_TRAIN, None), self._samples(rng, POPULATION_TEST, None))

    def user(self, seed: int = DEFAULT_USER_SEED, n_train: int = 200) -> tuple[Split, Split]:
        if isinstance(n_train, bool) or not isinstance(n_train, int) or not 1 <= n_train <= 10_000:
            raise ValidationError("n_train", f"{n_train!r} is out of range", "an integer in [1, 10000]")
        rng = np.random.default_rng([seed, 1])
        style = self.user_style(rng)
        return self._samples(rng, n_train, style), self._samples(rng, USER_TEST, style)
