""""ok" means it trains: the exporter refuses, with a reason naming the module, what an engine cannot
open, computes differently or dies on. Each test breaks one thing on purpose in the real exporter
(the engines themselves are never mocked) and checks that the backend is written unsupported."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from mobile_lr.bundle import verify_bundle
from mobile_lr.export import export_bundle
from mobile_lr.recipes import Recipe

ORT_FILES = {"training_model.onnx", "eval_model.onnx", "optimizer_model.onnx", "checkpoint"}


def _recipe(name: str, *layers: nn.Module, shape=(4, 1, 8, 8)) -> Recipe:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), *layers)
        with torch.no_grad():
            n = features(torch.zeros(1, *shape[1:])).numel()
        model = nn.Sequential(features, nn.Flatten(), nn.Linear(n, 3))
        return Recipe(name, model, torch.randn(shape))


def test_an_op_without_a_gradient_is_refused_naming_its_module(tmp_path, monkeypatch):
    """ONNX Runtime 1.19.2 has no gradient builder for InstanceNormalization (which the training form
    writes out as a group norm; that form is off here): the reason names the module and what to do."""
    import mobile_lr.export.written_out as written_out

    monkeypatch.setattr(written_out, "FORMS", {fn: form for fn, form in written_out.FORMS.items()
                                                if form is not written_out.instance_norm})
    recipe = _recipe("instnorm", nn.InstanceNorm2d(4, affine=True))
    manifest = export_bundle(recipe, tmp_path / "b", backends=("ort",)).to_dict()
    ort = manifest["backends"]["ort"]
    assert ort["status"] == "unsupported" and ort["files"] == []
    assert "0.1 (InstanceNorm2d)" in ort["reason"] and "InstanceNormalization" in ort["reason"]
    assert "frozen part" in ort["reason"] and "track_running_stats=False" in ort["reason"]
    assert not ORT_FILES & set(manifest["files"])
    verify_bundle(tmp_path / "b")


def test_an_artifact_the_runtime_cannot_open_is_refused(tmp_path, monkeypatch):
    """Without the frozen-BN form the ORT eval model holds a training-mode BatchNormalization, which
    ORT refuses to load: the very bundle that used to be written "ok". The proof opens it and refuses."""
    import mobile_lr.export.forms as forms

    monkeypatch.setattr(forms, "frozen_batchnorm", lambda model: contextlib.nullcontext([]))
    recipe = _recipe("bn", nn.BatchNorm2d(4), nn.ReLU())
    manifest = export_bundle(recipe, tmp_path / "b", backends=("ort",)).to_dict()
    ort = manifest["backends"]["ort"]
    assert ort["status"] == "unsupported", "a bundle ORT cannot open was written ok"
    assert "opening the bundle" in ort["reason"] and "BatchNormalization" in ort["reason"]
    assert not ORT_FILES & set(manifest["files"])


def test_an_evaluation_that_computes_another_model_is_refused(tmp_path, monkeypatch):
    """An ExecuTorch eval method exported in training mode runs dropout: the parity check refuses it."""
    import mobile_lr.export.executorch_program as program
    from mobile_lr.export.forms import training_form

    monkeypatch.setattr(program, "eval_form", lambda model: training_form(model))
    recipe = _recipe("dropout", nn.ReLU(), nn.Dropout(0.5))
    manifest = export_bundle(recipe, tmp_path / "b", backends=("executorch",)).to_dict()
    et = manifest["backends"]["executorch"]
    assert et["status"] == "unsupported"
    assert "relative difference" in et["reason"] and "PyTorch eager" in et["reason"]
    assert "model.pte" not in manifest["files"]


def test_an_engine_that_crashes_costs_the_backend_not_the_export(tmp_path, monkeypatch):
    """ONNX Runtime 1.19.2's AveragePoolGrad dies of SIGFPE on the CPU (which is why the training
    form turns average pooling into a convolution). With that rewrite off, the proof's child
    process crashes in the training step; the export goes on and says so."""
    import mobile_lr.export.written_out as written_out

    monkeypatch.setattr(written_out, "FORMS", {fn: form for fn, form in written_out.FORMS.items()
                                                if form is not written_out.avg_pool2d})
    manifest = export_bundle(_recipe("avgpool", nn.AvgPool2d(2)), tmp_path / "b", backends=("ort",)).to_dict()
    ort = manifest["backends"]["ort"]
    assert ort["status"] == "unsupported"
    assert "crashed (SIGFPE) in one training step" in ort["reason"]


@pytest.mark.parametrize("backend", ["ort", "executorch"])
def test_training_batchnorm_statistics_is_refused_naming_the_modules(tmp_path, backend):
    recipe = _recipe("bn", nn.BatchNorm2d(4), nn.ReLU())
    manifest = export_bundle(recipe, tmp_path / "b", backends=(backend,), batchnorm="train").to_dict()
    info = manifest["backends"][backend]
    assert info["status"] == "unsupported" and "0.1 (BatchNorm2d)" in info["reason"]
    assert manifest["model"]["batchnorm"] == {"mode": "train", "modules": ["0.1"],
                                              "note": manifest["model"]["batchnorm"]["note"]}


class BilinearNet(nn.Module):
    """A function the model's own ``forward`` calls, at the root: a bilinear upsampling (ORT 1.19.2 has
    no CPU kernel for ResizeGrad; only nearest upsampling by whole factors is written out)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(1, 2, 3, padding=1), nn.Linear(2 * 16 * 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = nn.functional.interpolate(self.conv(x), scale_factor=2.0, mode="bilinear")
        return self.head(torch.flatten(up, 1))


def test_a_functional_call_at_the_root_is_named_with_what_to_change(tmp_path):
    recipe = Recipe("bilinear", BilinearNet(), torch.randn(4, 1, 8, 8))
    ort = export_bundle(recipe, tmp_path / "b", backends=("ort",)).to_dict()["backends"]["ort"]
    assert ort["status"] == "unsupported"
    assert "at <model> (BilinearNet)" in ort["reason"] and "ResizeGrad" in ort["reason"]
    assert "mode='nearest'" in ort["reason"]


def test_a_model_the_onnx_exporter_cannot_write_is_one_line_naming_the_module(tmp_path):
    """An InstanceNorm keeping running statistics: torch's ONNX exporter cannot write it at a dynamic
    batch, in any mode. One clear error naming the module, not the exporter's traceback and graph."""
    from mobile_lr.validation import ValidationError

    recipe = _recipe("instnorm", nn.InstanceNorm2d(4, track_running_stats=True))
    with pytest.raises(ValidationError, match=r"inference model at 0\.1 \(InstanceNorm2d\): .*instance_norm"):
        export_bundle(recipe, tmp_path / "b", backends=("ort",))
    assert not (tmp_path / "b").exists()


def test_a_kernel_that_fails_when_the_program_runs_is_named_with_its_module(tmp_path):
    """A transposed convolution the written-out form leaves alone (an output padding not below the
    stride): ORT 1.19.2 has no ConvTransposeGrad kernel, and ExecuTorch 1.4.1's convolution_backward
    refuses ``transposed`` only when the step runs (its log names the kernel, the exporter finds
    the module calling it)."""
    recipe = _recipe("convt", nn.ConvTranspose2d(4, 4, 3, padding=2, dilation=2, output_padding=1))
    backends = export_bundle(recipe, tmp_path / "b").to_dict()["backends"]
    ort, et = backends["ort"]["reason"], backends["executorch"]["reason"]
    assert "at 0.1 (ConvTranspose2d)" in ort and "ConvTransposeGrad" in ort and "output_padding" in ort
    assert "at 0.1 (ConvTranspose2d): aten::convolution_backward" in et
    assert "Transposed Convolution Backward not supported" in et and "frozen part" in et
