"""The demo data: deterministic splits, a real distortion, and the personalisation gap it creates."""

from __future__ import annotations

import numpy as np
import pytest

from mobile_lr.datasets import (
    GENERAL_TEST,
    GENERAL_TRAIN,
    USER_POOL,
    as_images,
    distort,
    general_split,
    load_digits_data,
    user_split,
    user_style,
)
from mobile_lr.validation import ValidationError


def test_digits_are_scaled_to_unit_range():
    x, y = load_digits_data()
    assert x.shape == (1797, 64) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0  # sklearn's digits are 0..16
    assert sorted(set(y.tolist())) == list(range(10))


def test_splits_are_disjoint_and_cover_the_data():
    x, _ = load_digits_data()
    g_train, g_test = general_split()
    u_train, u_test = user_split(n_train=200)
    assert (len(g_train), len(g_test)) == (GENERAL_TRAIN, GENERAL_TEST)
    assert len(u_train) + len(u_test) == USER_POOL
    assert len(x) == GENERAL_TRAIN + GENERAL_TEST + USER_POOL
    # general rows are exact digits rows; none of them is in the other general split
    rows = {r.tobytes() for r in g_train.x}
    assert not any(r.tobytes() in rows for r in g_test.x)


def test_user_data_is_deterministic_and_seed_dependent():
    a_train, a_test = user_split(seed=7)
    b_train, _ = user_split(seed=7)
    c_train, _ = user_split(seed=8)
    assert np.array_equal(a_train.x, b_train.x) and np.array_equal(a_train.y, b_train.y)
    assert np.array_equal(a_train.y, c_train.y)  # same digits ...
    assert not np.array_equal(a_train.x, c_train.x)  # ... in another hand
    assert a_train.x.dtype == np.float32 and a_train.x.min() >= 0.0 and a_train.x.max() <= 1.0
    assert a_test.x.shape == (USER_POOL - 200, 64)


def test_distortion_changes_the_images_and_the_identity_style_does_not():
    x, _ = load_digits_data()
    style = user_style(7)
    assert 12 <= abs(style.rotation_deg) <= 22 and 0.2 <= abs(style.shear) <= 0.4
    moved = distort(x[:50], style, seed=7)
    assert np.abs(moved - x[:50]).mean() > 0.05
    from mobile_lr.datasets import Style

    same = distort(x[:50], Style(0.0, 0.0, 1), seed=7, jitter=0.0)  # no slant, shear, dilation
    assert np.abs(same - x[:50]).max() < 1e-6


def test_shapes_and_bad_input():
    x, _ = load_digits_data()
    assert as_images(x[:3]).shape == (3, 1, 8, 8)
    with pytest.raises(ValidationError, match="n_train"):
        user_split(n_train=USER_POOL)
    with pytest.raises(ValidationError, match="x"):
        distort(np.zeros((2, 8, 8)), user_style(), seed=0)


def test_the_user_is_harder_than_the_general_population():
    """The premise of the demo: a model pre-trained on the general population does worse on the user.

    Measured for seed 7 when this test was written (20 epochs): 98% on the general test set,
    57% on the user's test set; 89% on it after 300 fine-tuning steps.
    """
    import torch

    from mobile_lr.recipes import load_recipe, pretrain

    recipe = load_recipe("digits-mlp")
    pretrain(recipe, epochs=5)
    _, g_test = general_split()
    _, u_test = user_split()
    with torch.no_grad():
        acc = [float((recipe.model(torch.from_numpy(s.x)).argmax(1).numpy() == s.y).mean())
               for s in (g_test, u_test)]
    assert acc[0] > 0.9
    assert acc[1] < acc[0] - 0.15
