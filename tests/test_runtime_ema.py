"""Iterate averaging (EMA of the trainable weights) and the inference model exported after training."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mobile_lr.runtime import open_runtime


def batches(data, n, seed=5):
    rng = np.random.default_rng(seed)
    return [rng.choice(len(data), 32, replace=False) for _ in range(n)]


def test_ema_follows_its_formula_and_is_what_evaluate_reports(mlp_bundle, user_data):
    """ema_0 = w_0, ema_t = ema_{t-1} + (1 - d) (w_t - ema_{t-1}), recomputed here from the raw weights."""
    train_set, test_set = user_data
    d = 0.8
    rt = open_runtime("torch", mlp_bundle, ema=d)
    manual = {k: v.astype(np.float64) for k, v in rt.parameters().items()}
    for i in batches(train_set, 15):
        rt.step(train_set.x[i], train_set.y[i], 0.01)
        for k, w in rt.parameters().items():
            manual[k] += (1 - d) * (w - manual[k])
    ema = rt.state_dict(weights="ema")
    raw = rt.state_dict(weights="raw")
    for k in manual:
        assert np.abs(ema[k] - manual[k]).max() < 1e-6
        assert np.abs(ema[k] - raw[k]).max() > 1e-3  # the average is not the last iterate
    assert rt.evaluate(test_set.x, test_set.y) == rt.evaluate(test_set.x, test_set.y, weights="ema")
    assert rt.evaluate(test_set.x, test_set.y)["loss"] != rt.evaluate(test_set.x, test_set.y,
                                                                       weights="raw")["loss"]


def test_ema_agrees_across_runtimes_and_evaluation_leaves_training_untouched(mlp_bundle, user_data):
    train_set, test_set = user_data
    idx = batches(train_set, 20)
    runtimes = [open_runtime(kind, mlp_bundle, ema=0.9) for kind in ("torch", "ort", "executorch")]
    plain = open_runtime("ort", mlp_bundle)  # same run, never evaluated mid-way
    for step, i in enumerate(idx):
        for rt in [*runtimes, plain]:
            rt.step(train_set.x[i], train_set.y[i], 0.003)
        if step % 5 == 0:
            for rt in runtimes:
                rt.evaluate(test_set.x, test_set.y)  # swaps EMA weights in and out
    ref = runtimes[0].predict(test_set.x)
    for rt in runtimes[1:]:
        assert np.abs(rt.predict(test_set.x) - ref).max() < 1e-4, rt.kind
    a, b = runtimes[1].parameters(), plain.parameters()
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("weights", ["auto", "raw"])
def test_exported_inference_model_predicts_what_the_trained_module_predicts(mlp_bundle, user_data,
                                                                           tmp_path, weights):
    """With EMA on, "auto" exports the EMA weights (the ones evaluate reports on); "raw" the last iterate."""
    train_set, test_set = user_data
    rt = open_runtime("ort", mlp_bundle, ema=0.9)
    for i in batches(train_set, 20):
        rt.step(train_set.x[i], train_set.y[i], 0.003)
    path = tmp_path / "inference.onnx"
    used = rt.export_inference(path, weights=weights)
    assert used == ("ema" if weights == "auto" else "raw")
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["output"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    exported = session.run(["output"], {"input": test_set.x})[0]
    trained = rt.predict(test_set.x, weights=weights)
    assert np.array_equal(exported, trained)
    other = rt.predict(test_set.x, weights="raw" if weights == "auto" else "ema")
    assert np.abs(other - exported).max() > 1e-4  # the choice of weights is visible
    # the bundle's own inference model is the untrained one
    before = ort.InferenceSession(str(mlp_bundle / "inference_model.onnx"),
                                  providers=["CPUExecutionProvider"])
    assert np.abs(before.run(["output"], {"input": test_set.x})[0] - exported).max() > 1e-3
