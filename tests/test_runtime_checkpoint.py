"""Checkpoints: exact resume in every runtime, atomic writes, the caller's JSON kept with the weights."""

from __future__ import annotations

import numpy as np
import pytest

from mobile_lr.runtime import (
    CheckpointError,
    TrainingRuntime,
    atomic_write,
    open_runtime,
    read_checkpoint,
    write_checkpoint,
)
from mobile_lr.validation import ValidationError


def run(rt, data, steps, start=0):
    rng = np.random.default_rng(11)
    idx = [rng.choice(len(data), 32, replace=False) for _ in range(start + steps)]
    for s in range(start, start + steps):
        rt.step(data.x[idx[s]], data.y[idx[s]], 0.002 + 0.001 * (s % 4))


@pytest.mark.parametrize("kind", ["ort", "executorch", "torch"])
def test_save_load_resumes_bit_for_bit(kind, mlp_bundle, user_data, tmp_path):
    """Optimizer state (AdamW moments and step count), weights and EMA all survive: a run saved at
    step 10, loaded into a fresh runtime and continued, equals the uninterrupted run exactly."""
    train_set, test_set = user_data
    a = open_runtime(kind, mlp_bundle, ema=0.95)
    assert isinstance(a, TrainingRuntime) and a.kind == kind
    run(a, train_set, 10)
    a.save(tmp_path / "ckpt", extra={"manager": {"plan": [[0, 300]]}})
    run(a, train_set, 10, start=10)

    b = open_runtime(kind, mlp_bundle, ema=0.95)
    assert b.load(tmp_path / "ckpt") == {"manager": {"plan": [[0, 300]]}}
    assert b.step_count == 10
    run(b, train_set, 10, start=10)
    pa, pb = a.parameters(), b.parameters()
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)
    assert a.evaluate(test_set.x, test_set.y) == b.evaluate(test_set.x, test_set.y)  # EMA weights too
    c = open_runtime(kind, mlp_bundle, ema=0.95)  # a fresh one that only loads differs: not vacuous
    assert not np.array_equal(c.parameters()["fc1.weight"], pa["fc1.weight"])


def test_schedulefree_adamw_trains_evaluates_at_its_average_and_resumes(mlp_bundle, user_data, tmp_path):
    train_set, test_set = user_data
    a = open_runtime("torch", mlp_bundle, optimizer="schedulefree")
    before = a.evaluate(test_set.x, test_set.y)
    run(a, train_set, 30)
    after = a.evaluate(test_set.x, test_set.y)
    assert after["loss"] < before["loss"]
    a.save(tmp_path / "sf")
    run(a, train_set, 5, start=30)
    b = open_runtime("torch", mlp_bundle, optimizer="schedulefree")
    b.load(tmp_path / "sf")
    run(b, train_set, 5, start=30)
    assert all(np.array_equal(a.parameters()[k], b.parameters()[k]) for k in a.parameters())
    with pytest.raises(CheckpointError, match="optimizer"):
        open_runtime("torch", mlp_bundle).load(tmp_path / "sf")
    with pytest.raises(ValidationError, match="ema"):
        open_runtime("torch", mlp_bundle, optimizer="schedulefree", ema=0.9)


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "c.npz"
    write_checkpoint(path, {"runtime": "x", "step": 1}, {"w": np.zeros(3, np.float32)})

    def dies_halfway(f):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # like a signal arriving mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, dies_halfway)
    meta, arrays = read_checkpoint(path)
    assert meta["step"] == 1 and arrays["w"].tolist() == [0, 0, 0]
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary file left


def test_stale_temporaries_of_a_killed_writer_are_swept(tmp_path):
    path = tmp_path / "c.npz"
    (tmp_path / ".c.npz.abc123.tmp").write_bytes(b"left by a SIGKILL")
    write_checkpoint(path, {"step": 2}, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]


def test_a_checkpoint_is_never_unpickled(tmp_path):
    """An .npz holding an object array (which needs pickle to load) is refused, not executed."""
    path = tmp_path / "evil.npz"
    np.savez(path, __meta__=np.frombuffer(b'{"format": "mobile-lr.checkpoint/1"}', np.uint8),
             payload=np.array([object()], dtype=object))
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(path)


def test_bad_step_arguments_are_refused(mlp_bundle, user_data):
    train_set, _ = user_data
    rt = open_runtime("ort", mlp_bundle)
    with pytest.raises(ValidationError, match="lr"):
        rt.step(train_set.x[:4], train_set.y[:4], -0.1)
    with pytest.raises(ValidationError, match="lr"):
        rt.step(train_set.x[:4], train_set.y[:4], float("nan"))
    with pytest.raises(ValidationError, match="x"):
        rt.step(train_set.x[:4, :60], train_set.y[:4], 0.1)
    with pytest.raises(ValidationError, match="y"):
        rt.step(train_set.x[:4], train_set.y[:3], 0.1)
    with pytest.raises(ValidationError, match="weights"):
        rt.evaluate(train_set.x, train_set.y, weights="ema")  # no EMA configured
    assert rt.step_count == 0
