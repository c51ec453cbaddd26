"""The demo's data: scikit-learn's bundled 8x8 digits and one user's handwriting.

The story the demo tells is personalisation: a recogniser pre-trained on the
general population (most of the digits data set) is fine-tuned on the phone of
one user whose handwriting differs. The user's "handwriting" is a fixed, seeded
distortion of held-out digits: every user has a style (a slant, a shear and a
stroke thickness drawn once from their seed) and every sample gets a small
jitter around that style, the way one person's digits vary a little.

Everything is deterministic given the seeds and needs no download (the digits
ship inside scikit-learn). Pixel values 0..16 are scaled to [0, 1] float32; the
MLP takes rows of 64 (``(B, 64)``), the CNN images (``(B, 1, 8, 8)``, see
:func:`as_images`). Labels are int64 class indices, as ONNX Runtime's
cross-entropy wants them.

The split (a fixed permutation with seed 0): 500 samples are the users' pool
(never seen in pre-training); the remaining 1297 are the general population,
1000 for pre-training and 297 for its test. A user's train set is the first
``n_train`` of the pool and their test set the rest, both distorted.

>>> gen_train, gen_test = general_split()
>>> gen_train.x.shape, gen_train.x.dtype, gen_train.y.dtype, gen_test.x.shape
((1000, 64), dtype('float32'), dtype('int64'), (297, 64))
>>> u_train, u_test = user_split(seed=7)
>>> u_train.x.shape, u_test.x.shape, float(u_train.x.min()) >= 0.0, float(u_train.x.max()) <= 1.0
((200, 64), (300, 64), True, True)
>>> bool((user_split(seed=7)[0].x == u_train.x).all())
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mobile_lr.extras import optional_imports, require

with optional_imports(__name__):
    from scipy import ndimage

from mobile_lr.validation import ValidationError

require(__name__, "sklearn")

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_USER_SEED",
    "GENERAL_TEST",
    "GENERAL_TRAIN",
    "USER_POOL",
    "Split",
    "Style",
    "as_images",
    "distort",
    "general_split",
    "load_digits_data",
    "user_split",
    "user_style",
]

CLASS_NAMES = tuple(str(d) for d in range(10))
DEFAULT_USER_SEED = 7
USER_POOL = 500  # digits held out of pre-training for the simulated users
GENERAL_TRAIN = 1000
GENERAL_TEST = 297
_SPLIT_SEED = 0
_UPSCALE = 4  # distort at 32x32 so that a small rotation or a thicker stroke is not lost in 8x8 pixels


@dataclass(frozen=True)
class Split:
    """Inputs ``x`` (float32, ``(N, 64)``, in [0, 1]) and labels ``y`` (int64, ``(N,)``)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Style:
    """One user's handwriting: slant (degrees), shear, and stroke dilation (pixels at 32x32)."""

    rotation_deg: float
    shear: float
    thickness: int


@lru_cache(maxsize=1)
def load_digits_data() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits: ``x`` float32 ``(1797, 64)`` scaled to [0, 1], ``y`` int64."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (np.asarray(data.data, dtype=np.float32) / 16.0).astype(np.float32)
    y = np.asarray(data.target, dtype=np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _permutation() -> np.ndarray:
    x, _ = load_digits_data()
    return np.random.default_rng(_SPLIT_SEED).permutation(len(x))


def general_split() -> tuple[Split, Split]:
    """The general population: (pre-training set of 1000, test set of 297), undistorted."""
    x, y = load_digits_data()
    idx = _permutation()[USER_POOL:]
    tr, te = idx[:GENERAL_TRAIN], idx[GENERAL_TRAIN:GENERAL_TRAIN + GENERAL_TEST]
    return Split(x[tr].copy(), y[tr].copy()), Split(x[te].copy(), y[te].copy())


def user_style(seed: int = DEFAULT_USER_SEED) -> Style:
    """A user's handwriting style, drawn once from their seed.

    The slant is 12..22 degrees either way, the shear 0.2..0.4 either way and
    the stroke dilation 2..4 pixels (at 32x32):
    large enough that a model pre-trained on the general population loses a
    good part of its accuracy, small enough that the digits stay legible.
    """
    rng = np.random.default_rng([seed, 1])
    sign = rng.choice([-1.0, 1.0], size=2)
    return Style(rotation_deg=float(sign[0] * rng.uniform(12.0, 22.0)),
                 shear=float(sign[1] * rng.uniform(0.2, 0.4)),
                 thickness=int(rng.integers(2, 5)))


def _affine(rotation_deg: float, shear: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Matrix and offset for ``ndimage.affine_transform`` about the image centre."""
    a = math.radians(rotation_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    sh = np.array([[1.0, 0.0], [shear, 1.0]])  # (row, col): columns move with the row = a slant
    m = rot @ sh
    inv = np.linalg.inv(m)  # affine_transform maps output coordinates to input coordinates
    c = np.full(2, (size - 1) / 2.0)
    return inv, c - inv @ c


def distort(x: np.ndarray, style: Style, seed: int, jitter: float = 0.25) -> np.ndarray:
    """Apply a handwriting style to rows of 64 pixels, with per-sample jitter.

    Each image is upscaled to 32x32 (pixel blocks: the identity style gives the
    image back exactly), rotated and sheared by the style
    (times a factor ``1 ± jitter`` drawn per sample), its strokes thickened by a
    grey dilation, and averaged back down to 8x8, then clipped to [0, 1].
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != 64:
        raise ValidationError("x", f"expected shape (N, 64), got {x.shape}")
    rng = np.random.default_rng([seed, 2])
    size = 8 * _UPSCALE
    out = np.empty_like(x)
    for i, row in enumerate(x):
        big = np.kron(row.reshape(8, 8), np.ones((_UPSCALE, _UPSCALE), dtype=np.float32))
        f_rot, f_shear = 1.0 + jitter * rng.uniform(-1.0, 1.0, size=2)
        matrix, offset = _affine(style.rotation_deg * f_rot, style.shear * f_shear, size)
        big = ndimage.affine_transform(big, matrix, offset=offset, order=1, mode="constant", cval=0.0)
        if style.thickness > 1:
            big = ndimage.grey_dilation(big, size=(style.thickness, style.thickness))
        small = big.reshape(8, _UPSCALE, 8, _UPSCALE).mean(axis=(1, 3))
        out[i] = np.clip(small, 0.0, 1.0).reshape(64)
    return out


def user_split(seed: int = DEFAULT_USER_SEED, n_train: int = 200) -> tuple[Split, Split]:
    """One user's (train, held-out test) sets: the pool's digits in the user's style."""
    if not 1 <= n_train < USER_POOL:
        raise ValidationError("n_train", f"{n_train} is out of range", f"an integer in [1, {USER_POOL - 1}]")
    x, y = load_digits_data()
    idx = _permutation()[:USER_POOL]
    xd = distort(x[idx], user_style(seed), seed)
    yd = y[idx].copy()
    return Split(xd[:n_train], yd[:n_train]), Split(xd[n_train:], yd[n_train:])


def as_images(x: np.ndarray) -> np.ndarray:
    """Rows of 64 pixels as ``(N, 1, 8, 8)`` images for the CNN (a view, no copy)."""
    x = np.asarray(x)
    return x.reshape(len(x), 1, 8, 8)
