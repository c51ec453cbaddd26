"""The exported artifacts train to the same result as PyTorch eager.

Same pre-trained digits MLP, same 50 batches of the user's data, same learning rate sequence
(different at every step), in PyTorch eager (the reference), ONNX Runtime Training and ExecuTorch.

Tolerance, and why: all three run float32 but sum in different orders (MLAS, ATen/MKL and
ExecuTorch's portable kernels), so each step differs by a few ULPs (~1e-7 relative) and that drift
grows slowly over 50 steps. Measured on the pinned stack when these tests were written, the largest
loss difference over 50 steps was 2.4e-7 (SGD, AdamW and momentum SGD alike). TOL = 5e-6 leaves a
20x margin and is still far below what a real mismatch does: the negative controls show that the
LR sequence shifted by one step changes the curve by ~0.08, and ORT's stock AdamW variant by ~4e-5.
"""

from __future__ import annotations

import json
import shutil

import numpy as np

from mobile_lr.recipes import OptimizerSpec
from mobile_lr.runtime import open_runtime

STEPS = 50
TOL = 5e-6


def batches(train, n=STEPS, seed=3):
    rng = np.random.default_rng(seed)
    return [rng.choice(len(train), 32, replace=False) for _ in range(n)]


def lrs(base, n=STEPS):
    """A warm-up then a cosine with a wiggle: a different LR at every step."""
    t = np.arange(n)
    return base * np.minimum(1.0, (t + 1) / 5) * (0.55 + 0.45 * np.cos(np.pi * t / n)) * (1 + 0.1 * (t % 3))


def train(rt, data, idx, lr):
    return np.array([rt.step(data.x[i], data.y[i], float(r)) for i, r in zip(idx, lr, strict=True)])


def test_sgd_loss_curves_agree_across_pytorch_ort_and_executorch(mlp_sgd_bundle, mlp_bundle, user_data):
    train_set, test_set = user_data
    idx, lr = batches(train_set), lrs(0.05)
    torch_rt = open_runtime("torch", mlp_sgd_bundle)
    ort_rt = open_runtime("ort", mlp_sgd_bundle)
    et_rt = open_runtime("executorch", mlp_bundle, optimizer=OptimizerSpec("sgd"))  # same start weights
    curves = {rt.kind: train(rt, train_set, idx, lr) for rt in (torch_rt, ort_rt, et_rt)}
    ref = curves["torch"]
    assert ref[-10:].mean() < ref[:10].mean() - 0.2  # it learns
    for kind in ("ort", "executorch"):
        assert np.abs(curves[kind] - ref).max() < TOL, kind
        assert abs(et_rt.evaluate(test_set.x, test_set.y)["loss"]
                   - torch_rt.evaluate(test_set.x, test_set.y)["loss"]) < TOL
    # negative control: the same run with the LR sequence shifted by one step is clearly different
    shifted = train(open_runtime("torch", mlp_sgd_bundle), train_set, idx, np.roll(lr, 1))
    assert np.abs(shifted - ref).max() > 50 * TOL


def test_adamw_matches_torch_optim_adamw(mlp_bundle, user_data, tmp_path):
    """The exporter passes the recipe's eps (1e-8, torch's default, not onnxblock's 1e-6) and weight
    decay (0.01), and switches ORT's AdamW kernel to adam_mode=0, PyTorch's formula. With onnxblock's
    stock adam_mode=1 (Hugging Face's variant: eps on the uncorrected sqrt(v), decay after the
    update) the curves drift apart well beyond the tolerance: the negative control below."""
    import onnx

    from mobile_lr.bundle import write_manifest

    train_set, _ = user_data
    idx, lr = batches(train_set), lrs(0.003)
    curves = {kind: train(open_runtime(kind, mlp_bundle), train_set, idx, lr)
              for kind in ("torch", "ort", "executorch")}
    assert curves["torch"][-10:].mean() < curves["torch"][:10].mean() - 0.2
    assert np.abs(curves["ort"] - curves["torch"]).max() < TOL
    assert np.abs(curves["executorch"] - curves["torch"]).max() < TOL  # torch.optim.AdamW itself
    shifted = train(open_runtime("torch", mlp_bundle), train_set, idx, np.roll(lr, 1))
    assert np.abs(shifted - curves["torch"]).max() > 1000 * TOL

    hf = tmp_path / "hf"
    shutil.copytree(mlp_bundle, hf)
    proto = onnx.load(str(hf / "optimizer_model.onnx"))
    (node,) = [n for n in proto.graph.node if n.op_type == "AdamWOptimizer"]
    mode = next(a for a in node.attribute if a.name == "adam_mode")
    assert mode.i == 0
    mode.i = 1
    onnx.save(proto, str(hf / "optimizer_model.onnx"))
    manifest = json.loads((hf / "manifest.json").read_text())
    (hf / "manifest.json").unlink()
    write_manifest(hf, {k: v for k, v in manifest.items() if k not in ("format", "files")})
    stock = train(open_runtime("ort", hf), train_set, idx, lr)
    assert np.abs(stock - curves["torch"]).max() > 4 * TOL


MOMENTUM = OptimizerSpec("sgd", momentum=0.9, dampening=0.0, weight_decay=1e-3, nesterov=True)


def test_executorch_momentum_sgd_with_a_new_lr_every_step_matches_torch(mlp_bundle, user_data):
    train_set, _ = user_data
    idx, lr = batches(train_set), lrs(0.02)
    et_rt = open_runtime("executorch", mlp_bundle, optimizer=MOMENTUM)
    torch_rt = open_runtime("torch", mlp_bundle, optimizer=MOMENTUM)
    a, b = train(et_rt, train_set, idx, lr), train(torch_rt, train_set, idx, lr)
    assert np.abs(a - b).max() < TOL
    pa, pb = et_rt.parameters(), torch_rt.parameters()
    assert all(np.abs(pa[k] - pb[k]).max() < 1e-5 for k in pa)


def _native_sgd_run(bundle, train_set, idx, lr_of_step, rebuild_each_step):
    """ExecuTorch's own SGD (C++), as its Python binding allows: fixed LR, or rebuilt every step."""
    import torch
    from executorch.extension.training import _load_for_executorch_for_training_from_buffer, get_sgd_optimizer

    program = (bundle / "model.pte").read_bytes()
    module = _load_for_executorch_for_training_from_buffer(program)
    opt = None
    for step, i in enumerate(idx):
        batch = (torch.from_numpy(train_set.x[i]), torch.from_numpy(train_set.y[i]))
        module.forward_backward("forward", batch)
        if opt is None or rebuild_each_step:
            opt = get_sgd_optimizer(module.named_parameters(), lr_of_step(step), MOMENTUM.momentum,
                                    MOMENTUM.dampening, MOMENTUM.weight_decay, MOMENTUM.nesterov)
        opt.step(module.named_gradients())
    params = {k[len("model."):]: v.numpy().copy() for k, v in module.named_parameters().items()}
    del module, program  # the program may point into its buffer: release them together
    return params


def test_our_update_is_executorchs_own_sgd_and_rebuilding_it_loses_momentum(mlp_bundle, user_data):
    """At a constant LR, the runtime's update equals ExecuTorch's C++ SGD; with a new LR every step
    the only thing ExecuTorch's binding allows (a new optimizer each step) restarts momentum and
    drifts away from torch.optim.SGD, which our runtime matches."""
    train_set, _ = user_data
    idx = batches(train_set, n=20)
    native = _native_sgd_run(mlp_bundle, train_set, idx, lambda s: 0.02, rebuild_each_step=False)
    ours = open_runtime("executorch", mlp_bundle, optimizer=MOMENTUM)
    train(ours, train_set, idx, np.full(len(idx), 0.02))
    mine = ours.parameters()
    assert all(np.abs(native[k] - mine[k]).max() < 1e-6 for k in mine)

    lr = lrs(0.02, n=len(idx))
    rebuilt = _native_sgd_run(mlp_bundle, train_set, idx, lambda s: float(lr[s]), rebuild_each_step=True)
    ref = open_runtime("torch", mlp_bundle, optimizer=MOMENTUM)
    train(ref, train_set, idx, lr)
    ours = open_runtime("executorch", mlp_bundle, optimizer=MOMENTUM)
    train(ours, train_set, idx, lr)
    want, mine = ref.parameters(), ours.parameters()
    assert max(np.abs(mine[k] - want[k]).max() for k in mine) < 1e-5
    assert max(np.abs(rebuilt[k] - want[k]).max() for k in mine) > 1e-3


def test_frozen_parameters_stay_bit_identical_and_trainable_ones_move(cnn_bundle, user_data):
    train_set, _ = user_data
    idx, lr = batches(train_set, n=20), lrs(0.01, n=20)
    ort_rt = open_runtime("ort", cnn_bundle)
    manifest_frozen = ["features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias"]
    assert ort_rt.trainable_names == ("head.weight", "head.bias")
    for kind in ("ort", "torch"):
        rt = ort_rt if kind == "ort" else open_runtime("torch", cnn_bundle)
        before = rt.parameters()
        assert set(manifest_frozen) <= set(before)
        train(rt, train_set, idx, lr)
        after = rt.parameters()
        for name in manifest_frozen:
            assert np.array_equal(before[name], after[name]), (kind, name)  # bit for bit
        for name in rt.trainable_names:
            assert np.abs(after[name] - before[name]).max() > 1e-3, (kind, name)
    # ExecuTorch: frozen parameters are constants of the program, not parameters at all; training the
    # head reaches the same model as PyTorch eager, which would not be so had the trunk moved.
    et_rt = open_runtime("executorch", cnn_bundle)
    assert set(et_rt.parameters()) == {"head.weight", "head.bias"}
    train(et_rt, train_set, idx, lr)
    torch_rt = open_runtime("torch", cnn_bundle)
    train(torch_rt, train_set, idx, lr)
    assert np.abs(et_rt.predict(train_set.x) - torch_rt.predict(train_set.x)).max() < 1e-4


def test_executorch_runtime_keeps_its_cpu_probe_off_the_terminal(mlp_bundle):
    """ExecuTorch's first run probes the CPU and reports, on x86, the ARM files it cannot open
    (``cpuinfo_utils.cpp``: five lines on every simulate): a fresh process (the probe runs once)
    that opens and steps the runtime writes nothing of it to stderr."""
    import subprocess
    import sys

    code = ("import numpy as np\nfrom mobile_lr.runtime import open_runtime\n"
            f"rt = open_runtime('executorch', {str(mlp_bundle)!r})\n"
            "print(rt.step(np.zeros((4, 64), np.float32), np.zeros(4, np.int64), 0.01))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "cpuinfo" not in run.stderr and float(run.stdout.strip().splitlines()[-1]) > 0
