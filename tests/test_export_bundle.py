"""The export pipeline: what a bundle holds, what its manifest says, how unsupported models are reported."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
from typing import Any

import onnx
import pytest
import torch
from torch import nn

from mobile_lr.bundle import MANIFEST, verify_bundle
from mobile_lr.cli import main
from mobile_lr.export import DEFAULT_SCHEDULE, count_flops, export_bundle
from mobile_lr.export.flops import count_step_flops
from mobile_lr.recipes import CustomLoss, OptimizerSpec, Recipe, load_recipe
from mobile_lr.validation import ValidationError

ORT_FILES = {"training_model.onnx", "eval_model.onnx", "optimizer_model.onnx", "checkpoint"}


def test_manifest_lists_every_file_with_its_hash_and_the_model_facts(mlp_bundle):
    manifest = json.loads((mlp_bundle / MANIFEST).read_text())
    assert manifest["format"] == "mobile-lr.bundle/1"
    on_disk = {p.name for p in mlp_bundle.iterdir()} - {MANIFEST}
    assert set(manifest["files"]) == on_disk
    assert on_disk == ORT_FILES | {"inference_model.onnx", "model.pte", "schedule.json", "labels.json"}
    for name, entry in manifest["files"].items():
        data = (mlp_bundle / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert set(manifest["versions"]) == {"mobile-lr", "torch", "onnx", "onnxruntime-training", "executorch"}
    assert manifest["versions"]["onnxruntime-training"] == "1.19.2"
    model = manifest["model"]
    assert model["recipe"] == "digits-mlp"
    # 64*128 + 128 + 128*10 + 10 parameters, all trainable
    assert (model["params_trainable"], model["params_frozen"]) == (9610, 0)
    # forward: 2 FLOPs per multiply-accumulate, 32 samples x (64*128 + 128*10) MACs; backward: both
    # weight gradients (the same MACs again) and fc2's input gradient (fc1's input needs none)
    assert model["flops_forward"] == 2 * 32 * (64 * 128 + 128 * 10)
    assert model["flops_backward"] == 2 * 32 * (64 * 128 + 2 * 128 * 10)
    assert model["flops_per_step"] == model["flops_forward"] + model["flops_backward"]
    assert model["input"] == {"name": "input", "shape": [-1, 64], "dtype": "float32"}
    assert model["labels"] == {"name": "labels", "dtype": "int64", "classes": 10}
    assert manifest["optimizer"] == {"type": "adamw", "betas": [0.9, 0.999], "eps": 1e-8,
                                     "weight_decay": 0.01}
    assert manifest["backends"]["ort"]["status"] == "ok"
    assert set(manifest["backends"]["ort"]["files"]) == ORT_FILES
    et = manifest["backends"]["executorch"]
    assert et["status"] == "ok" and et["files"] == ["model.pte"] and et["dynamic_batch"] is True
    assert json.loads((mlp_bundle / "schedule.json").read_text()) == DEFAULT_SCHEDULE
    assert json.loads((mlp_bundle / "labels.json").read_text())["names"] == [str(d) for d in range(10)]


def test_onnx_artifacts_follow_the_ort_rules(mlp_bundle, cnn_bundle):
    for bundle in (mlp_bundle, cnn_bundle):
        for name in (*sorted(ORT_FILES - {"checkpoint"}), "inference_model.onnx"):
            proto = onnx.load(str(bundle / name))
            assert proto.ir_version <= 10  # onnxruntime-training 1.19.2 refuses newer IR
            assert all(o.version <= 21 for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        inference = onnx.load(str(bundle / "inference_model.onnx"))
        batch = inference.graph.input[0].type.tensor_type.shape.dim[0]
        assert batch.dim_param  # dynamic batch axis
    optimizer = onnx.load(str(mlp_bundle / "optimizer_model.onnx"))
    (node,) = [n for n in optimizer.graph.node if n.op_type == "AdamWOptimizer"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["adam_mode"] == 0 and attrs["epsilon"] == pytest.approx(1e-8)
    assert attrs["weight_decay"] == pytest.approx(0.01)


def test_cnn_manifest_counts_the_frozen_trunk(cnn_bundle):
    model = json.loads((cnn_bundle / MANIFEST).read_text())["model"]
    assert model["trainable"] == ["head.weight", "head.bias"]
    assert model["params_trainable"] == 256 * 10 + 10
    assert model["params_frozen"] == (1 * 8 * 9 + 8) + (8 * 16 * 9 + 16)
    # conv1: 8x8x8 outputs x 9 MACs; conv2: 16x4x4 outputs x 72 MACs; head: 256 x 10 MACs; x2 x32;
    # the backward is the head's weight gradient alone: nothing below it trains
    assert model["flops_per_step"] == 2 * 32 * (512 * 9 + 256 * 72 + 2560) + 2 * 32 * 2560
    assert model["input"]["shape"] == [-1, 1, 8, 8]


def test_count_flops_counts_linear_and_conv_only():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, groups=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    flops = count_flops(model, torch.zeros(2, 3, 8, 8))
    assert flops == 2 * 2 * (4 * 6 * 6 * 27 + 144 * 5)


def test_schedule_and_policy_are_validated_and_written(tmp_path, mlp_recipe_factory):
    spec = {"format": "mobile-lr.schedule/1", "base_lr": 0.02,
            "shape": {"type": "linear", "start_factor": 1.0, "end_factor": 0.0}}
    out = tmp_path / "b"
    export_bundle(mlp_recipe_factory(), out, backends=("ort",), schedule=spec,
                  policy={"battery_floor": 0.3, "max_thermal": "LIGHT"})
    assert json.loads((out / "schedule.json").read_text()) == spec
    policy = json.loads((out / "policy.json").read_text())
    assert policy["format"] == "mobile-lr.policy/1" and policy["battery_floor"] == 0.3
    verify_bundle(out)
    bad = dict(spec, shape={"type": "cosine", "min_lr": -1.0})
    with pytest.raises(ValidationError, match="min_lr"):
        export_bundle(mlp_recipe_factory(), tmp_path / "c", backends=("ort",), schedule=bad)
    with pytest.raises(ValidationError, match="battery_floor"):
        export_bundle(mlp_recipe_factory(), tmp_path / "d", backends=("ort",), policy={"battery_floor": 2})
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no staging directory left behind


def test_output_directory_rules(tmp_path, mlp_recipe_factory):
    out = tmp_path / "b"
    export_bundle(mlp_recipe_factory(), out, backends=("ort",))
    with pytest.raises(ValidationError, match="not empty"):
        export_bundle(mlp_recipe_factory(), out, backends=("ort",))
    export_bundle(mlp_recipe_factory(), out, backends=("ort",), force=True)
    verify_bundle(out)
    other = tmp_path / "not-a-bundle"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(ValidationError, match="not a bundle"):
        export_bundle(mlp_recipe_factory(), other, backends=("ort",), force=True)
    assert (other / "thesis.tex").read_text() == "precious"
    with pytest.raises(ValidationError, match="backend"):
        export_bundle(mlp_recipe_factory(), tmp_path / "x", backends=("tflite",))


def test_ort_reports_unsupported_momentum_sgd_with_the_reason(tmp_path, mlp_recipe_factory):
    recipe = mlp_recipe_factory(OptimizerSpec("sgd", momentum=0.9))
    manifest = export_bundle(recipe, tmp_path / "b", backends=("ort",)).to_dict()
    ort = manifest["backends"]["ort"]
    assert ort["status"] == "unsupported" and "momentum" in ort["reason"] and ort["files"] == []
    assert set(manifest["files"]) == {"inference_model.onnx", "schedule.json", "labels.json"}
    verify_bundle(tmp_path / "b")


class MaxPooledNet(nn.Module):
    """Adaptive max pooling in the trainable path: ExecuTorch's kernel library has neither its
    forward nor its backward kernel (executorch 1.4.1); ONNX Runtime trains it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AdaptiveMaxPool2d(2)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


def test_executorch_unsupported_model_is_reported_with_the_missing_kernel_and_module(tmp_path):
    recipe = Recipe(name="pooled", model=MaxPooledNet(), example_input=torch.zeros(4, 1, 8, 8))
    manifest = export_bundle(recipe, tmp_path / "b").to_dict()
    et = manifest["backends"]["executorch"]
    assert et["status"] == "unsupported"
    assert "aten::adaptive_max_pool2d_backward" in et["reason"] and "pool (AdaptiveMaxPool2d)" in et["reason"]
    assert manifest["backends"]["ort"]["status"] == "ok"  # the other backend is still written
    assert "model.pte" not in manifest["files"]


def test_custom_loss_and_mse_targets(tmp_path):
    """A custom loss carries a torch function and an onnxblock; MSE targets are float and shaped like
    the output. Both train in ORT and agree with PyTorch eager."""
    import numpy as np
    from onnxruntime.training import onnxblock

    from mobile_lr.runtime import open_runtime

    class HalfMSE(onnxblock.Block):
        def __init__(self):
            super().__init__()
            self._mse = onnxblock.loss.MSELoss()
            self._mul = onnxblock.blocks.Mul()

        def build(self, output_name):
            return self._mul(self._mse(output_name), onnxblock.blocks.Constant(0.5)())

    def regressor(loss):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))
        return Recipe(name="reg", model=model, example_input=torch.zeros(16, 6), loss=loss,
                      optimizer=OptimizerSpec("sgd"))

    half = CustomLoss("half_mse", lambda out, t: 0.5 * nn.functional.mse_loss(out, t), onnx_block=HalfMSE)
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 6), dtype=np.float32), rng.random((16, 2), dtype=np.float32)
    for loss in ("mse", half):
        out = tmp_path / (loss if isinstance(loss, str) else loss.name)
        manifest = export_bundle(regressor(loss), out).to_dict()
        assert manifest["model"]["labels"] == {"name": "target", "dtype": "float32", "shape": [-1, 2]}
        runtimes = [open_runtime(kind, out) for kind in ("ort", "executorch")]
        runtimes.append(open_runtime("torch", regressor(loss)))
        curves = np.array([[rt.step(x, y, 0.1) for _ in range(10)] for rt in runtimes])
        assert np.abs(curves - curves[-1]).max() < 1e-5
        assert "accuracy" not in runtimes[0].evaluate(x, y)


def test_cli_export_prints_identity_and_exit_codes(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["export", "digits-mlp", "--out", str(out), "--backend", "ort", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["bundle_sha256"] == hashlib.sha256((out / MANIFEST).read_bytes()).hexdigest()
    assert printed["manifest"]["backends"]["ort"]["status"] == "ok"
    assert main(["export", "digits-mlp", "--out", str(out), "--backend", "ort"]) == 2  # not empty
    assert "not empty" in capsys.readouterr().err
    assert main(["export", "no.such.module:recipe", "--out", str(tmp_path / "c")]) == 2
    assert "cannot import" in capsys.readouterr().err


def test_max_batch_bounds_the_executorch_program_and_a_larger_batch_is_refused_naming_the_flag(
        tmp_path, capsys, mlp_bundle):
    """ExecuTorch plans a step's memory at the program's largest batch: by default the recipe's,
    ``--max-batch N`` for more; the manifest records it and the runtime refuses a larger batch."""
    import numpy as np

    from mobile_lr.runtime import open_runtime

    x, y = np.zeros((64, 64), np.float32), np.zeros(64, np.int64)
    out = tmp_path / "b48"
    assert main(["export", "digits-mlp", "--backend", "executorch", "--max-batch", "48", "--out", str(out),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["manifest"]["backends"]["executorch"]["max_batch"] == 48
    for bundle, largest in ((mlp_bundle, 32), (out, 48)):  # mlp_bundle: the default, digits-mlp's batch
        assert json.loads((bundle / MANIFEST).read_text())["backends"]["executorch"]["max_batch"] == largest
        rt = open_runtime("executorch", bundle)
        assert np.isfinite(rt.step(x[:largest], y[:largest], 0.01))
        with pytest.raises(ValidationError, match=f"batch of {largest + 1} samples; this program takes at "
                                                  f"most {largest}; allowed: .*--max-batch N"):
            rt.step(x[:largest + 1], y[:largest + 1], 0.01)
        assert np.isfinite(rt.evaluate(x, y)["loss"])  # evaluation runs in chunks of max_batch
    for bad in ("0", "16", str((1 << 20) + 1)):  # below the recipe's batch (32), above the manifest's bound
        assert main(["export", "digits-mlp", "--max-batch", bad, "--out", str(tmp_path / "bad")]) == 2
        ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mobile-lr")]
        assert ours == [f"mobile-lr export: error: --max-batch: {bad} is out of range; allowed: an integer "
                        "from the recipe's batch (32) to 1048576"]  # the runtime's own log lines aside
        assert not (tmp_path / "bad").exists()
    with pytest.raises(ValidationError, match="max_batch: True is out of range"):
        export_bundle(load_recipe("digits-mlp"), tmp_path / "c", max_batch=True)


def test_recipes_validate_their_fields():
    recipe = load_recipe("digits-mlp")
    with pytest.raises(ValidationError, match="trainable"):
        dataclasses.replace(recipe, trainable=("fc3.weight",))
    with pytest.raises(ValidationError, match="loss"):
        dataclasses.replace(recipe, loss="hinge")
    with pytest.raises(ValidationError, match=r"optimizer\.type"):
        OptimizerSpec("adam")
    with pytest.raises(ValidationError, match="nesterov"):
        OptimizerSpec("sgd", nesterov=True)
    with pytest.raises(ValidationError, match="state_dict"):
        load_recipe("digits-mlp", state_dict={"fc1.weight": torch.zeros(128, 64)})
    with pytest.raises(ValidationError, match="unknown recipe"):
        load_recipe("digits-transformer")


class _Recurrent(nn.Module):
    def __init__(self, cell: type[nn.RNNBase]) -> None:
        super().__init__()
        self.rnn, self.head = cell(3, 8, batch_first=True), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def test_step_flops_follow_the_trainable_split_and_see_what_hooks_miss():
    """Counted from what autograd runs: a frozen trunk gets no backward, a bias alone needs the input
    gradients but no weight gradient, a depthwise convolution's weight gradient costs its forward
    (torch's own formula said C times that), and a GRU's or LSTM's gate matmuls count."""
    n = 2
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    x = torch.zeros(n, 4, 8, 8)
    conv, head = 2 * n * 4 * 36 * 9, 2 * n * 144 * 5  # forward FLOPs of each
    assert count_step_flops(model, x) == (conv + head, conv + 2 * head)  # input needs no gradient
    assert count_step_flops(model, x, ["3.weight", "3.bias"]) == (conv + head, head)
    assert count_step_flops(model, x, ["0.bias", "3.bias"]) == (conv + head, head)  # head's input grad
    assert all(p.requires_grad and p.grad is None for p in model.parameters())  # left as it was
    steps, seq = 5, torch.zeros(n, 5, 3)
    for cell, gates in ((nn.GRU, 3), (nn.LSTM, 4)):
        forward, _ = count_step_flops(_Recurrent(cell), seq, ["head.weight", "head.bias"])
        assert forward == 2 * n * steps * gates * 8 * (3 + 8) + 2 * n * 8 * 2
        assert count_flops(_Recurrent(cell), seq) == forward


class _Pair(nn.Module):
    """Returns (logits, features): what many user models (and Hugging Face's with
    ``return_dict=False``) do."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc(x), x


class _Argmax(_Pair):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.fc(x).argmax(1)


class _Output(_Pair):
    """Returns an output object with ``.logits``, as Hugging Face's models do."""

    def forward(self, x: torch.Tensor) -> Any:  # type: ignore[override]
        return types.SimpleNamespace(logits=self.fc(x))


def _nan_linear() -> nn.Module:
    m = nn.Linear(4, 3)
    with torch.no_grad():
        m.weight[0, 0] = float("nan")
    return m


@pytest.mark.parametrize(("model", "x", "labels", "match"), [
    (nn.Linear(4, 3), torch.zeros(8, 5), ("a", "b", "c"),
     r"recipe\.model: fails on example_input of shape \(8, 5\): RuntimeError: mat1 and mat2"),
    (_Pair(), torch.zeros(8, 4), ("a", "b", "c"), "recipe.model: forward returns tuple, not one tensor"),
    (_Output(), torch.zeros(8, 4), ("a", "b", "c"),
     r"forward returns SimpleNamespace, not one tensor; return its \.logits"),
    (_Argmax(), torch.zeros(8, 4), ("a", "b", "c"), r"forward returns a torch\.int64 tensor of shape \(8,\)"),
    (_nan_linear(), torch.zeros(8, 4), ("a", "b", "c"), "output at example_input is not finite"),
    (nn.Linear(4, 3), torch.zeros(8, 4), ("a", "b"), "recipe.labels: 2 names for a model of 3 classes"),
    (nn.Linear(4, 3), torch.zeros(8, 2, 4), (), r"cross_entropy needs logits \(8, classes\)"),
])
def test_a_model_no_engine_could_train_is_refused_in_one_line_before_any_work(tmp_path, model, x, labels,
                                                                                match):
    recipe = Recipe(name="user", model=model, example_input=x, loss="cross_entropy", labels=labels)
    with pytest.raises(ValidationError, match=match):
        export_bundle(recipe, tmp_path / "b")
    assert not (tmp_path / "b").exists() and not list(tmp_path.iterdir())  # no staging left behind


def test_recipes_that_cannot_be_built_get_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    """A user's recipe module or function that fails, an empty batch, a model without parameters:
    the CLI names the recipe and the error's first line, never a traceback."""
    (tmp_path / "user_recipes.py").write_text(
        "import torch\nfrom torch import nn\nfrom mobile_lr.recipes import Recipe\n\n"
        "def raises():\n    raise RuntimeError('a bug in the user code')\n\n"
        "def empty():\n"
        "    return Recipe(name='e', model=nn.Linear(4, 3), example_input=torch.zeros(0, 4))\n\n"
        "def no_params():\n    return Recipe(name='n', model=nn.ReLU(), example_input=torch.zeros(8, 4), "
        "loss='mse')\n")
    (tmp_path / "broken_recipes.py").write_text("def f(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec, line in (
            ("user_recipes:raises",
             "recipe: 'user_recipes:raises' failed: RuntimeError: a bug in the user code"),
            ("user_recipes:empty", "recipe.example_input: an empty batch; allowed: at least one sample"),
            ("user_recipes:no_params", "recipe.model: ReLU has no parameters to train"),
            ("broken_recipes:f", "recipe: importing 'broken_recipes' failed: SyntaxError: ")):
        capsys.readouterr()
        assert main(["export", spec, "--out", str(tmp_path / "out"), "--backend", "ort"]) == 2
        err = capsys.readouterr().err
        assert f"mobile-lr export: error: {line}" in err and "Traceback" not in err, err
        assert not (tmp_path / "out").exists()


def test_the_output_check_leaves_every_modules_own_mode():
    model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5))
    model.train()
    model[1].eval()   # a user's mixed modes (e.g. a frozen trunk kept in eval)
    Recipe(name="modes", model=model, example_input=torch.zeros(8, 4), labels=("a", "b", "c")).check_output()
    assert model.training and model[0].training and not model[1].training
