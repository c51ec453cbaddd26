"""Tampered bundles are refused before any file reaches a parser, with the file named.

Every test works on a copy of a real exported bundle. "Nothing loaded" is checked by spying on
the entry points that would parse a bundle file (ORT's checkpoint loader, ONNX's protobuf parser,
ExecuTorch's program loader): a refused bundle must not reach any of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from mobile_lr.bundle import MANIFEST, BundleError, load_bundle, manifest_sha256, verify_bundle
from mobile_lr.cli import main
from mobile_lr.runtime import CheckpointError, open_runtime


@pytest.fixture
def bundle(tmp_path, mlp_bundle):
    out = tmp_path / "bundle"
    shutil.copytree(mlp_bundle, out)
    return out


@pytest.fixture
def parsers(monkeypatch):
    """Record every call of the functions that parse bundle files."""
    import executorch.extension.pybindings.portable_lib as et_portable
    import onnx
    from onnxruntime.training.api import CheckpointState

    calls: list[str] = []

    def spy(owner, name, label):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            calls.append(label)
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    spy(CheckpointState, "load_checkpoint", "ort.load_checkpoint")
    spy(onnx, "load_from_string", "onnx.load_from_string")
    spy(et_portable, "_load_for_executorch_from_buffer", "executorch.load")
    return calls


def flip_byte(path, offset=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def rewrite_manifest(bundle, edit):
    manifest = json.loads((bundle / MANIFEST).read_text())
    edit(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def test_the_exported_bundle_verifies_and_every_runtime_loads_it(bundle, parsers):
    manifest = verify_bundle(bundle)
    assert set(manifest.files) == {p.name for p in bundle.iterdir()} - {MANIFEST}
    for kind in ("ort", "executorch", "torch"):
        open_runtime(kind, bundle)
    # the spies see real loads: the negative tests below are not vacuous
    assert {"ort.load_checkpoint", "onnx.load_from_string", "executorch.load"} <= set(parsers)


def test_one_flipped_byte_in_each_file_is_refused_naming_it(bundle, mlp_bundle):
    names = sorted(p.name for p in mlp_bundle.iterdir() if p.name != MANIFEST)
    assert {"training_model.onnx", "eval_model.onnx", "optimizer_model.onnx", "checkpoint",
            "inference_model.onnx", "model.pte", "schedule.json", "labels.json"} <= set(names)
    for name in names:
        for offset in (0, None, -1):  # first, middle and last byte
            shutil.copyfile(mlp_bundle / name, bundle / name)
            flip_byte(bundle / name, offset)
            with pytest.raises(BundleError) as err:
                verify_bundle(bundle)
            assert err.value.file == name
            assert name in str(err.value) and "SHA-256" in str(err.value)
        shutil.copyfile(mlp_bundle / name, bundle / name)
    verify_bundle(bundle)


@pytest.mark.parametrize("kind", ["ort", "executorch", "torch"])
@pytest.mark.parametrize("victim", ["checkpoint", "model.pte", "inference_model.onnx", "training_model.onnx"])
def test_runtimes_refuse_a_changed_file_before_parsing_anything(bundle, parsers, kind, victim):
    flip_byte(bundle / victim)
    with pytest.raises(BundleError, match=victim.replace(".", r"\.")):
        open_runtime(kind, bundle)
    assert parsers == []


def test_truncated_missing_extra_and_symlinked_files(bundle, parsers):
    data = (bundle / "checkpoint").read_bytes()
    (bundle / "checkpoint").write_bytes(data[:-10])
    with pytest.raises(BundleError, match=r"checkpoint: truncated"):
        open_runtime("ort", bundle)
    (bundle / "checkpoint").write_bytes(data)

    (bundle / "model.pte").rename(bundle / "model.pte.bak")
    with pytest.raises(BundleError) as err:
        verify_bundle(bundle)
    assert err.value.file == "model.pte.bak" and "extra file" in str(err.value)
    (bundle / "model.pte.bak").unlink()
    with pytest.raises(BundleError, match=r"model\.pte: missing"):
        open_runtime("executorch", bundle)

    (bundle / "libevil.so").write_bytes(b"\x7fELF")
    with pytest.raises(BundleError, match=r"libevil\.so: extra file"):
        verify_bundle(bundle)
    (bundle / "libevil.so").unlink()
    (bundle / "notes.json").write_text("{}")  # even a harmless-looking extra file
    with pytest.raises(BundleError, match=r"notes\.json: extra file"):
        verify_bundle(bundle)
    (bundle / "notes.json").unlink()
    (bundle / "subdir").mkdir()
    with pytest.raises(BundleError, match=r"subdir"):
        verify_bundle(bundle)
    assert parsers == []


def test_a_symlink_is_refused_even_to_the_right_content(bundle, tmp_path):
    target = tmp_path / "elsewhere"
    shutil.copyfile(bundle / "labels.json", target)
    (bundle / "labels.json").unlink()
    os.symlink(target, bundle / "labels.json")
    with pytest.raises(BundleError, match=r"labels\.json: not a regular file"):
        verify_bundle(bundle)


def test_broken_manifests_are_refused(bundle):
    original = (bundle / MANIFEST).read_bytes()
    (bundle / MANIFEST).write_bytes(original[: len(original) // 2])
    with pytest.raises(BundleError, match=r"manifest\.json: not valid JSON"):
        verify_bundle(bundle)
    (bundle / MANIFEST).write_bytes(original)
    rewrite_manifest(bundle, lambda m: m.update(format="mobile-lr.bundle/2"))
    with pytest.raises(BundleError, match=r"unknown format 'mobile-lr\.bundle/2'"):
        verify_bundle(bundle)
    (bundle / MANIFEST).write_bytes(original)
    rewrite_manifest(bundle, lambda m: m["files"]["checkpoint"].update(sha256="ABC"))
    with pytest.raises(BundleError, match=r"files\.checkpoint: bad entry"):
        verify_bundle(bundle)
    (bundle / MANIFEST).unlink()
    with pytest.raises(BundleError, match=r"manifest\.json: missing"):
        verify_bundle(bundle)


def test_names_outside_the_bundle_or_of_pickle_formats_are_refused(bundle):
    """A manifest may not point outside the directory, nor list a format that could hold a pickle."""
    original = (bundle / MANIFEST).read_bytes()
    entry = {"sha256": "0" * 64, "size": 1}
    for bad in ("../etc.json", "sub/model.onnx", ".hidden.json", "weights.pt", "state.pkl", "w.npy"):
        rewrite_manifest(bundle, lambda m, bad=bad: m["files"].update({bad: entry}))
        with pytest.raises(BundleError, match=r"not an allowed bundle file name"):
            verify_bundle(bundle)
        (bundle / MANIFEST).write_bytes(original)
    # even correctly hashed and listed, a pickle-capable file is refused
    (bundle / "weights.pt").write_bytes(b"\x80\x04N.")
    digest = hashlib.sha256(b"\x80\x04N.").hexdigest()
    rewrite_manifest(bundle, lambda m: m["files"].update({"weights.pt": {"sha256": digest, "size": 4}}))
    with pytest.raises(BundleError, match=r"weights\.pt"):
        verify_bundle(bundle)


def test_a_manifest_edited_to_match_a_changed_file_is_caught_by_the_bundle_identity(bundle, parsers,
                                                                                    tmp_path):
    """Integrity alone cannot catch this (whoever edits files can edit the list); the pinned
    identity (SHA-256 of the manifest, printed by `mobile-lr export`) and checkpoints can."""
    identity = manifest_sha256(bundle)
    ort = open_runtime("ort", bundle, expected_sha256=identity)
    ckpt = tmp_path / "ckpt"
    ort.save(ckpt)
    parsers.clear()

    flip_byte(bundle / "eval_model.onnx")
    digest = hashlib.sha256((bundle / "eval_model.onnx").read_bytes()).hexdigest()
    rewrite_manifest(bundle, lambda m: m["files"]["eval_model.onnx"].update(sha256=digest))
    assert load_bundle(bundle).sha256 != identity  # integrity passes: the files match the new list
    with pytest.raises(BundleError, match=r"manifest\.json: SHA-256 .* is not the expected bundle identity"):
        open_runtime("ort", bundle, expected_sha256=identity)
    assert parsers == []
    assert main(["verify", str(bundle), "--sha256", identity]) == 2


def test_a_checkpoint_of_another_bundle_or_runtime_is_refused(tmp_path, mlp_bundle, mlp_sgd_bundle,
                                                              user_data):
    train, _ = user_data
    a = open_runtime("ort", mlp_bundle)
    a.step(train.x[:32], train.y[:32], 0.01)
    a.save(tmp_path / "a.ckpt")
    with pytest.raises(CheckpointError, match=r"belongs to bundle"):
        open_runtime("ort", mlp_sgd_bundle).load(tmp_path / "a.ckpt")
    with pytest.raises(CheckpointError, match=r"written by the 'ort' runtime"):
        open_runtime("torch", mlp_bundle).load(tmp_path / "a.ckpt")
    with pytest.raises(CheckpointError, match=r"EMA decay"):
        open_runtime("ort", mlp_bundle, ema=0.9).load(tmp_path / "a.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match=r"junk\.ckpt: not a readable checkpoint"):
        a.load(tmp_path / "junk.ckpt")


def test_cli_verify_names_the_file_and_exits_2(bundle, capsys):
    assert main(["verify", str(bundle), "--json"]) == 0
    ok = json.loads(capsys.readouterr().out)
    assert ok["ok"] is True and ok["bundle_sha256"] == manifest_sha256(bundle)
    flip_byte(bundle / "optimizer_model.onnx")
    assert main(["verify", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert "optimizer_model.onnx" in err and "SHA-256" in err
    assert main(["verify", str(bundle), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["file"] == "optimizer_model.onnx"
