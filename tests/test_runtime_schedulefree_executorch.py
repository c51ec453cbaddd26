"""Schedule-free AdamW on the ExecuTorch runtime: the ``schedulefree`` package's optimizer applied to
the program's live weights (as the PyTorch runtime applies it to the model), evaluated at its
averaged point, checkpointed exactly."""

from __future__ import annotations

import numpy as np
import pytest

from mobile_lr.runtime import CheckpointError, open_runtime
from mobile_lr.validation import ValidationError

LRS = [0.0, 0.001, 0.003, 0.01, 0.005, 0.002, 0.02, 0.001]
TOL = 5e-6  # float32 losses of two engines over a few steps (measured ~1e-7)


def _batches(user_data, n, seed=0):
    train = user_data[0]
    rng = np.random.default_rng(seed)
    return [tuple(a[idx] for a in (train.x, train.y))
            for idx in (rng.choice(len(train.x), 32, replace=False) for _ in range(n))]


@pytest.mark.parametrize("sf_r", [0.0, 1.0])
def test_matches_the_pytorch_runtime(mlp_bundle, mlp_recipe_factory, user_data, sf_r):
    et = open_runtime("executorch", mlp_bundle, optimizer="schedulefree", sf_r=sf_r)
    ref = open_runtime("torch", mlp_recipe_factory(), optimizer="schedulefree", sf_r=sf_r)
    assert et._optimizer.param_groups[0]["r"] == sf_r
    for (x, y), lr in zip(_batches(user_data, len(LRS)), LRS, strict=True):
        assert et.step(x, y, lr) == pytest.approx(ref.step(x, y, lr), abs=TOL)
    mine, theirs = et.parameters(), ref.parameters()  # both at the averaged point x
    for name in et.trainable_names:
        np.testing.assert_allclose(mine[name], theirs[name], rtol=0, atol=TOL, err_msg=name)
    test = user_data[1]
    expected = ref.evaluate(test.x, test.y)["loss"]
    assert et.evaluate(test.x, test.y)["loss"] == pytest.approx(expected, abs=1e-5)
    plain = open_runtime("executorch", mlp_bundle)
    for (x, y), lr in zip(_batches(user_data, len(LRS)), LRS, strict=True):
        plain.step(x, y, lr)
    assert max(float(np.abs(plain.parameters()[k] - mine[k]).max()) for k in mine) > 1e-3


def test_resume_is_exact_and_modes_do_not_mix(mlp_bundle, user_data, tmp_path):
    data = _batches(user_data, 8, seed=2)
    straight = open_runtime("executorch", mlp_bundle, optimizer="schedulefree")
    first = open_runtime("executorch", mlp_bundle, optimizer="schedulefree")
    for x, y in data[:4]:
        straight.step(x, y, 0.005)
        first.step(x, y, 0.005)
    first.evaluate(*data[0])  # evaluating at x must not move the training point y
    first.save(tmp_path / "sf.npz")
    resumed = open_runtime("executorch", mlp_bundle, optimizer="schedulefree")
    resumed.load(tmp_path / "sf.npz")
    again = [resumed.step(x, y, 0.005) for x, y in data[4:]]
    assert [straight.step(x, y, 0.005) for x, y in data[4:]] == again
    for name, value in straight.parameters().items():
        np.testing.assert_array_equal(value, resumed.parameters()[name], err_msg=name)
    with pytest.raises(CheckpointError, match="schedulefree"):
        open_runtime("executorch", mlp_bundle).load(tmp_path / "sf.npz")
    with pytest.raises(ValidationError, match="already averages"):
        open_runtime("executorch", mlp_bundle, optimizer="schedulefree", ema=0.9)
    with pytest.raises(ValidationError, match="optimizer"):
        open_runtime("executorch", mlp_bundle, optimizer="lion")
    with pytest.raises(ValidationError, match="sf_r"):
        open_runtime("executorch", mlp_bundle, sf_r=1.0)
