"""The tasks of ``bench.budget_quality``: a pre-trained model and, per seed, one user's data.

Two roles. The *tuning* tasks (``digits``, ``new-users``) are the ones earlier set-ups were
explored on. The *held-out* tasks were added with the phone-engine set-up and only measure
it (nothing in the project was tuned on them):

* ``ds-cnn``: the zoo's DS-CNN keyword spotter at width 0.25 (16 channels, 4 blocks, the
  last block and the head train: ``mode="last-k", k=1``) on its own generated keyword
  features, pre-trained on the task's population; seed ``s`` is the speaker
  ``Keywords().user(2000 + s)``. Width 0.25 (not the realistic 1.0) keeps 10 seeds x 5 LRs
  x 3 engines affordable on two shared cores; the architecture is the realistic one.
* ``tabular``: a multilayer perceptron (16-64-64-5) on generated tabular records (16
  sensor-summary features, 5 classes); a user's records come from a device of their own:
  every feature drifts by a gain and an offset and two pairs of features are mixed
  (rotated), drawn once from the seed ``3000 + s``.
* ``new-family``: digits-mlp on users of a handwriting family the project never used:
  strokes thinned (grey erosion) or blurred, the digit shifted off-centre and its ink
  contrast lowered, per-sample jitter; seed ``s`` draws the family member ``4000 + s``.
* ``activity`` (added in the third round, after every set-up choice: it only checks them): an
  MLP (18-48-48-6) on activity-recognition features of generated 3-axis accelerometer windows
  (six activities, each a gravity direction and a gait of its own frequency, amplitude and
  harmonic); a user wears the phone turned by their own rotation, walks at their own cadence
  and moves with their own vigour, drawn from the seed ``5000 + s``.

``sizes`` (``--width``) scale the zoo model; everything is deterministic given the seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from mobile_lr.datasets import USER_POOL, Split, load_digits_data, user_split

__all__ = ["TASKS", "Activity", "BenchTask", "Tabular", "new_family_split"]

N_TRAIN = 200
NEW_USER_BASE = 1000


@dataclass(frozen=True)
class BenchTask:
    """``recipe()`` builds the model at the pre-trained weights (fresh each call); ``data(seed)``
    is one seed's (train, test)."""

    name: str
    role: str  # "tuning" | "held-out"
    description: str
    recipe: Callable[[], Any]
    data: Callable[[int], tuple[Split, Split]]


# --------------------------------------------------------------------------- digits-mlp


@lru_cache(maxsize=1)
def _digits_state() -> dict[str, np.ndarray]:
    """digits-mlp pre-trained on the general population, exactly as tests/conftest.py does."""
    from mobile_lr.recipes import load_recipe, pretrain

    recipe = load_recipe("digits-mlp")
    pretrain(recipe, epochs=3, seed=0)
    return {k: v.detach().numpy().copy() for k, v in recipe.model.state_dict().items()}


def _digits_recipe() -> Any:
    from mobile_lr.recipes import load_recipe

    return load_recipe("digits-mlp", state_dict=_digits_state())


def new_family_split(seed: int, n_train: int = N_TRAIN) -> tuple[Split, Split]:
    """A user of the new handwriting family: the users' pool, thinned or blurred, shifted, faded."""
    from scipy import ndimage

    x, y = load_digits_data()
    idx = np.random.default_rng(0).permutation(len(x))[:USER_POOL]  # the users' pool (datasets' split)
    rng = np.random.default_rng([seed, 41])
    thin = bool(rng.integers(0, 2))
    shift = rng.choice([-1.0, 1.0], 2) * rng.uniform(2.0, 5.0, 2)  # pixels at 32x32
    blur = float(rng.uniform(0.8, 1.6))
    gain = float(rng.uniform(0.55, 0.8))
    jit = np.random.default_rng([seed, 42])
    out = np.empty((len(idx), 64), dtype=np.float32)
    for i, row in enumerate(x[idx]):
        big = np.kron(row.reshape(8, 8), np.ones((4, 4), dtype=np.float32))
        if thin:
            big = ndimage.grey_erosion(big, size=(2, 2))
        else:
            big = ndimage.gaussian_filter(big, blur * (1.0 + 0.2 * jit.uniform(-1, 1)))
        big = ndimage.shift(big, shift + jit.uniform(-1.0, 1.0, 2), order=1, mode="constant")
        small = big.reshape(8, 4, 8, 4).mean(axis=(1, 3)) * gain * (1.0 + 0.1 * jit.uniform(-1, 1))
        out[i] = np.clip(small, 0.0, 1.0).reshape(64)
    yd = y[idx].copy()
    return Split(out[:n_train], yd[:n_train]), Split(out[n_train:], yd[n_train:])


# --------------------------------------------------------------------------- tabular


class Tabular:
    """Generated tabular records: 16 features, 5 classes, a population and per-device users."""

    features = 16
    classes = 5

    def __init__(self) -> None:
        rng = np.random.default_rng(77)
        self.means = rng.normal(0.0, 1.0, (self.classes, self.features))
        shape = (self.classes, self.features, self.features)
        self.mix = rng.normal(0.0, 0.6, shape) / math.sqrt(self.features)

    def _draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % self.classes).astype(np.int64)
        z = rng.normal(0.0, 1.0, (n, self.features))
        x = self.means[y] + np.einsum("nij,nj->ni", self.mix[y], z) + 0.9 * z
        x = x + 0.4 * np.sin(2.0 * x[:, ::-1])  # a little nonlinearity
        return x.astype(np.float32), y

    def population(self) -> tuple[np.ndarray, np.ndarray]:
        return self._draw(np.random.default_rng([0, 5]), 1000)

    def user(self, seed: int, n_train: int = N_TRAIN) -> tuple[Split, Split]:
        rng = np.random.default_rng([seed, 6])
        gain = np.exp(rng.normal(0.0, 0.5, self.features))
        offset = rng.normal(0.0, 0.9, self.features)
        rot = np.eye(self.features)
        for _ in range(2):
            i, j = rng.choice(self.features, 2, replace=False)
            a = rng.uniform(0.4, 0.9) * rng.choice([-1, 1])
            r = np.eye(self.features)
            r[i, i] = r[j, j] = math.cos(a)
            r[i, j], r[j, i] = -math.sin(a), math.sin(a)
            rot = rot @ r
        x, y = self._draw(rng, n_train + 300)
        x = ((x @ rot.T) * gain + offset).astype(np.float32)
        return Split(x[:n_train], y[:n_train]), Split(x[n_train:], y[n_train:])


def _mlp_recipe(name: str, features: int, hidden: int, labels: tuple[str, ...], population: Any,
                seed: int, batch_size: int) -> Any:
    """MLP features-hidden-hidden-classes, every parameter trainable, AdamW (weight decay 0.01)."""
    import torch
    from torch import nn

    from mobile_lr.recipes import OptimizerSpec, Recipe

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                              nn.Linear(hidden, len(labels)))
    return Recipe(name=f"{name}-mlp", model=model, example_input=torch.zeros(batch_size, features),
                  loss="cross_entropy", optimizer=OptimizerSpec("adamw", weight_decay=0.01),
                  labels=labels, entry=f"bench.budget_tasks:{name}_mlp", pretrain_data=population)


def tabular_mlp(seed: int = 0, batch_size: int = 32) -> Any:
    """MLP 16-64-64-5 on :class:`Tabular`, every parameter trainable, AdamW (weight decay 0.01)."""
    return _mlp_recipe("tabular", 16, 64, tuple(f"class-{i}" for i in range(5)), Tabular().population,
                       seed, batch_size)


@lru_cache(maxsize=4)
def _pretrained_state(entry: str) -> dict[str, np.ndarray]:
    """The recipe at ``entry`` pre-trained on its population (10 epochs, seed 0), once per run."""
    from mobile_lr.recipes import load_recipe, pretrain

    recipe = load_recipe(entry)
    pretrain(recipe, epochs=10, seed=0)
    return {k: v.detach().numpy().copy() for k, v in recipe.model.state_dict().items()}


def _pretrained(entry: str) -> Any:
    from mobile_lr.recipes import load_recipe

    return load_recipe(entry, state_dict=_pretrained_state(entry))


def _tabular_recipe() -> Any:
    return _pretrained("bench.budget_tasks:tabular_mlp")


# --------------------------------------------------------------------------- activity


class Activity:
    """Generated accelerometer windows (64 samples at 20 Hz, 3 axes) summarised as 18 features
    (per axis: mean, standard deviation and the log energy of four frequency bands), 6 activities;
    a user's phone is rotated, their cadence and vigour scaled."""

    features = 18
    classes = 6
    rate_hz = 20.0
    window = 64

    def __init__(self) -> None:
        rng = np.random.default_rng(91)
        g = np.array([0.0, 0.0, 1.0]) + rng.normal(0.0, 0.35, (self.classes, 3))  # upright, tilted a little
        self.gravity = 9.8 * g / np.linalg.norm(g, axis=1, keepdims=True)
        self.freq = np.array([0.3, 1.8, 2.6, 1.5, 1.7, 1.2])  # Hz: still .. cycling
        vigour = np.array([[0.1], [1], [2.5], [1.2], [1.4], [0.8]])
        self.amp = rng.uniform(0.5, 3.0, (self.classes, 3)) * vigour
        self.harmonic = rng.uniform(0.1, 0.6, self.classes)
        x, _ = self._draw(np.random.default_rng([0, 9]), 600, np.eye(3), 1.0, 1.0)
        self.mu, self.sd = x.mean(axis=0), x.std(axis=0) + 1e-6

    def _draw(self, rng: np.random.Generator, n: int, rot: np.ndarray, cadence: float,
              vigour: float) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % self.classes).astype(np.int64)
        t = np.arange(self.window) / self.rate_hz
        f = (self.freq[y] * cadence * rng.uniform(0.8, 1.2, n))[:, None, None]
        phase = rng.uniform(0.0, 2 * math.pi, (n, 3, 1))
        wave = (np.sin(2 * math.pi * f * t + phase)
                + self.harmonic[y][:, None, None] * np.sin(4 * math.pi * f * t))
        sig = self.gravity[y][:, :, None] + vigour * self.amp[y][:, :, None] * wave
        sig = np.einsum("ij,njt->nit", rot, sig) + rng.normal(0.0, 2.5, (n, 3, self.window))
        spec = np.abs(np.fft.rfft(sig - sig.mean(axis=2, keepdims=True), axis=2)) ** 2
        bands = [spec[:, :, a:b].sum(axis=2) for a, b in ((1, 4), (4, 8), (8, 14), (14, 33))]
        x = np.concatenate([sig.mean(axis=2), sig.std(axis=2)] + [np.log1p(b) for b in bands], axis=1)
        if hasattr(self, "mu"):
            x = (x - self.mu) / self.sd
        return x.astype(np.float32), y

    def population(self) -> tuple[np.ndarray, np.ndarray]:
        return self._draw(np.random.default_rng([0, 10]), 1200, np.eye(3), 1.0, 1.0)

    def user(self, seed: int, n_train: int = N_TRAIN) -> tuple[Split, Split]:
        rng = np.random.default_rng([seed, 11])
        axis = rng.normal(0.0, 1.0, 3)
        axis /= np.linalg.norm(axis)
        a = rng.uniform(0.3, 0.8)  # radians: how the phone sits in the user's pocket
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        rot = np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * k @ k
        cadence, vigour = float(rng.uniform(0.8, 1.25)), float(rng.uniform(0.7, 1.4))
        x, y = self._draw(rng, n_train + 300, rot, cadence, vigour)
        return Split(x[:n_train], y[:n_train]), Split(x[n_train:], y[n_train:])


def activity_mlp(seed: int = 0, batch_size: int = 32) -> Any:
    """MLP 18-48-48-6 on :class:`Activity`, every parameter trainable, AdamW (weight decay 0.01)."""
    return _mlp_recipe("activity", 18, 48, ("still", "walk", "run", "stairs-up", "stairs-down", "cycle"),
                       Activity().population, seed, batch_size)


def _activity_recipe() -> Any:
    return _pretrained("bench.budget_tasks:activity_mlp")


# --------------------------------------------------------------------------- ds-cnn

DSCNN_OPTIONS: dict[str, Any] = {"width": 0.25, "mode": "last-k", "k": 1}


@lru_cache(maxsize=1)
def _dscnn_state() -> dict[str, np.ndarray]:
    from mobile_lr.recipes import load_recipe, pretrain

    recipe = load_recipe("ds-cnn", **DSCNN_OPTIONS)
    pretrain(recipe, epochs=3, seed=0)
    return {k: v.detach().numpy().copy() for k, v in recipe.model.state_dict().items()}


def _dscnn_recipe() -> Any:
    from mobile_lr.recipes import load_recipe

    return load_recipe("ds-cnn", state_dict=_dscnn_state(), **DSCNN_OPTIONS)


def _dscnn_data(seed: int) -> tuple[Split, Split]:
    from mobile_lr.zoo.catalog import task_for

    return task_for("ds-cnn", DSCNN_OPTIONS).user(2000 + seed, N_TRAIN)


TASKS: dict[str, BenchTask] = {t.name: t for t in (
    BenchTask("digits", "tuning", "digits-mlp, the default user (seed = batch order)", _digits_recipe,
              lambda s: user_split(n_train=N_TRAIN)),
    BenchTask("new-users", "tuning", "digits-mlp, user_split(1000 + s)", _digits_recipe,
              lambda s: user_split(seed=NEW_USER_BASE + s, n_train=N_TRAIN)),
    BenchTask("ds-cnn", "held-out", "zoo DS-CNN width 0.25, last block + head, speaker 2000 + s",
              _dscnn_recipe, _dscnn_data),
    BenchTask("tabular", "held-out", "MLP 16-64-64-5 on generated records, device 3000 + s",
              _tabular_recipe, lambda s: Tabular().user(3000 + s)),
    BenchTask("new-family", "held-out", "digits-mlp, a new handwriting family, user 4000 + s",
              _digits_recipe, lambda s: new_family_split(4000 + s)),
    BenchTask("activity", "held-out", "MLP 18-48-48-6 on generated accelerometer windows, user 5000 + s",
              _activity_recipe, lambda s: Activity().user(5000 + s)),
)}
