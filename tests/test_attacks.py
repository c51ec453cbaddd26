"""Attacks and careless input: a bundle is data, never code; no input ends in a traceback.

Each test reproduces one way in which a tampered bundle or a careless user broke mobile-lr
(docs/SECURITY.md lists them with the defence) and checks the defence. "Re-hashed" means the
manifest's file list was recomputed after an edit, which integrity alone cannot catch (only a
pinned identity can); the defences below hold without one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
import zipfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mobile_lr.bundle import MANIFEST, BundleError, load_bundle, verify_bundle
from mobile_lr.cli import main
from mobile_lr.onnx_wire import external_data_refs
from mobile_lr.runtime import CheckpointError, open_runtime
from mobile_lr.validation import ValidationError

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def rehash(bundle, edit=None):
    """Apply ``edit(manifest)`` and recompute every listed file's size and SHA-256."""
    m = json.loads((bundle / MANIFEST).read_text())
    if edit is not None:
        edit(m)
    for name in m.get("files", {}):
        if (bundle / name).is_file():
            data = (bundle / name).read_bytes()
            m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (bundle / MANIFEST).write_text(json.dumps(m))


@pytest.fixture
def bundle(tmp_path, mlp_sgd_bundle):
    out = tmp_path / "bundle"
    shutil.copytree(mlp_sgd_bundle, out)
    return out


def one_line_exit_2(capsys, argv):
    """Run the CLI: exit status 2 and one error line on stderr (after any progress lines), no traceback."""
    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert "Traceback" not in err and [ln for ln in lines if ": error: " in ln] == lines[-1:], err
    return lines[-1]


# ----------------------------------------------------------------------------- 1. code


def test_the_manifest_never_names_code(bundle, tmp_path, monkeypatch, user_data):
    marker = tmp_path / "imported"
    (tmp_path / "evil_mod.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef x(): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for entry in ("os:abort", "evil_mod:x"):
        rehash(bundle, lambda m, e=entry: m["model"].update(entry=e))
        assert verify_bundle(bundle).model.entry == entry  # information only
        rt = open_runtime("torch", bundle)  # the built-in recipe of the name, never the entry
        train, _ = user_data
        assert np.isfinite(rt.step(train.x[:32], train.y[:32], 0.01))
    rehash(bundle, lambda m: m["model"].update(recipe="evil_mod:x"))
    with pytest.raises(ValidationError) as err:
        open_runtime("torch", bundle)
    assert err.value.field == "model.recipe" and "never names code" in str(err.value)
    assert not marker.exists() and "evil_mod" not in sys.modules


def test_a_recipe_the_caller_allows_is_used(bundle, mlp_recipe_factory):
    from mobile_lr.recipes import load_recipe

    rehash(bundle, lambda m: m["model"].update(recipe="my-mlp"))
    with pytest.raises(ValidationError, match="not an allowed recipe"):
        open_runtime("torch", bundle)
    rt = open_runtime("torch", bundle, recipes={"my-mlp": lambda: load_recipe("digits-mlp")})
    assert rt.trainable_names == ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")


# ----------------------------------------------------------------------------- 2. external data


def external_tensor(name, location, *, n=2):
    t = TensorProto(name=name, data_type=TensorProto.UINT8, dims=[n])
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(n))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def add_initializer(path, tensor):
    model = onnx.load(str(path))
    model.graph.initializer.append(tensor)
    model.graph.node.append(helper.make_node("Identity", [tensor.name], [tensor.name + "_out"]))
    model.graph.output.append(helper.make_tensor_value_info(tensor.name + "_out", TensorProto.UINT8, [2]))
    path.write_bytes(model.SerializeToString())


@pytest.mark.parametrize("location", ["/etc/hostname", "../../../../etc/hostname", "checkpoint"])
def test_onnx_external_data_is_refused_before_any_runtime(bundle, location, monkeypatch, capsys):
    add_initializer(bundle / "eval_model.onnx", external_tensor("stolen", location))
    rehash(bundle)
    opened = []
    from onnxruntime.training import api

    monkeypatch.setattr(api, "Module", lambda *a, **k: opened.append(a))
    with pytest.raises(BundleError, match=r"eval_model\.onnx: tensor\(s\) stolen refer to external data"):
        load_bundle(bundle)
    for kind in ("ort", "torch"):
        with pytest.raises(BundleError):
            open_runtime(kind, bundle)
    assert opened == []
    assert "external data" in one_line_exit_2(capsys, ["verify", str(bundle)])


def test_the_external_data_walk_finds_every_place_a_tensor_can_sit(tmp_path):
    """Initializers, sparse initializers, Constant attributes, sub-graphs of If, functions;
    and a model saved by onnx itself with external data."""
    ext = external_tensor("t", "x.bin")
    cases = {
        "initializer": helper.make_graph([], "g", [], [], initializer=[ext]),
        "sparse": helper.make_graph([], "g", [], [], sparse_initializer=[
            helper.make_sparse_tensor(ext, helper.make_tensor("i", TensorProto.INT64, [1], [0]), [2])]),
        "attribute": helper.make_graph([helper.make_node("Constant", [], ["c"], value=ext)], "g", [], []),
        "subgraph": helper.make_graph([helper.make_node(
            "If", ["cond"], ["o"],
            then_branch=helper.make_graph([helper.make_node("Constant", [], ["c"], value=ext)], "t", [], []),
            else_branch=helper.make_graph([], "e", [], []))], "g", [], []),
    }
    for what, graph in cases.items():
        assert external_data_refs(helper.make_model(graph).SerializeToString()) == ["t"], what
    func = onnx.FunctionProto(name="f", domain="d", node=[helper.make_node("Constant", [], ["c"], value=ext)])
    model = helper.make_model(helper.make_graph([], "g", [], []), functions=[func])
    assert external_data_refs(model.SerializeToString()) == ["t"]
    # onnx's own external-data writer
    big = onnx.numpy_helper.from_array(np.zeros(4096, np.float32), "w")
    model = helper.make_model(helper.make_graph([], "g", [], [], initializer=[big]))
    onnx.save_model(model, str(tmp_path / "m.onnx"), save_as_external_data=True, location="m.data",
                    size_threshold=0)
    assert external_data_refs((tmp_path / "m.onnx").read_bytes()) == ["w"]
    inline = helper.make_model(helper.make_graph([], "g", [], [], initializer=[big]))
    assert external_data_refs(inline.SerializeToString()) == []


def test_malformed_onnx_wire_data_is_refused(bundle):
    data = bytearray((bundle / "training_model.onnx").read_bytes())
    data[:2] = b"\x3a\xff"  # a length-delimited field 7 that runs past the end
    (bundle / "training_model.onnx").write_bytes(bytes(data))
    rehash(bundle)
    with pytest.raises(BundleError, match=r"training_model\.onnx: not a well-formed ONNX protobuf"):
        load_bundle(bundle)


# ----------------------------------------------------------------------------- 3. verified bytes


def test_ort_parses_only_the_verified_bytes_at_every_open(bundle, tmp_path, mlp_bundle, monkeypatch,
                                                          user_data):
    """A swap after the check (re-hashed or not) changes nothing: ORT never opens the bundle's
    files, at construction or at load() (every rollback)."""
    from onnxruntime.training import api

    seen: list[str] = []
    for cls, method in ((api.Module, "__init__"), (api.Optimizer, "__init__")):
        real = getattr(cls, method)

        def spy(self, *args, _real=real, **kwargs):
            seen.extend(str(a) for a in args if isinstance(a, str))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, spy)
    real_load = api.CheckpointState.load_checkpoint.__func__
    monkeypatch.setattr(api.CheckpointState, "load_checkpoint",
                        classmethod(lambda cls, p: (seen.append(str(p)), real_load(cls, p))[1]))
    train, _ = user_data
    x, y = train.x[:32], train.y[:32]
    reference = open_runtime("ort", bundle)
    rt = open_runtime("ort", bundle)
    rt.save(tmp_path / "c0")
    for name in ("training_model.onnx", "optimizer_model.onnx", "checkpoint"):  # another bundle's files
        shutil.copy(mlp_bundle / name, bundle / name)
    rehash(bundle)
    rt.load(tmp_path / "c0")
    assert [rt.step(x, y, 0.05) for _ in range(3)] == [reference.step(x, y, 0.05) for _ in range(3)]
    assert seen and not any(str(bundle) in p for p in seen), seen


# ----------------------------------------------------------------------------- 4. --force


def test_force_replaces_only_a_bundle_and_atomically(tmp_path, capsys, monkeypatch):
    other = tmp_path / "thesis"
    other.mkdir()
    (other / MANIFEST).write_text("{}")
    (other / "thesis.tex").write_text("precious")
    export = ["export", "digits-mlp", "--backend", "ort", "--out"]
    err = one_line_exit_2(capsys, [*export, str(other), "--force"])
    assert "not a bundle that verifies" in err and (other / "thesis.tex").read_text() == "precious"
    (tmp_path / "afile").write_text("x")
    assert "not a directory" in one_line_exit_2(capsys, [*export, str(tmp_path / "afile")])
    out = tmp_path / "b"
    assert main(["export", "digits-mlp", "--out", str(out), "--backend", "ort"]) == 0
    first = load_bundle(out).sha256
    inode = os.stat(out).st_ino
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renames.append((a, b)), real_replace(a, b))[1])
    assert main(["export", "digits-mlp", "--out", str(out), "--backend", "ort", "--force"]) == 0
    assert load_bundle(out).sha256 != first  # new versions/labels time... or identical content
    assert os.stat(out).st_ino != inode  # the staging directory took its place
    assert not any(str(b) == str(out) for _, b in renames)  # one exchange, not remove-then-rename
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ----------------------------------------------------------------------------- 5. tracebacks


@pytest.fixture
def files(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    loop = tmp_path / "loop.json"
    os.symlink(loop, loop)
    through = tmp_path / "afile"
    through.write_text("{}")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    return {"deep": deep, "loop": loop, "through": through / "x.json", "proc": "/proc/self/mem",
            "long": tmp_path / ("a" * 300 + ".json"), "fifo": fifo, "dir": tmp_path}


@pytest.mark.parametrize("what", ["deep", "loop", "through", "long", "proc", "fifo", "dir"])
def test_every_input_file_kind_is_refused_in_one_line(files, what, capsys, mlp_sgd_bundle, tmp_path):
    path = str(files[what])
    for argv in (["schedule", "validate", path], ["plan", "--profile", path, "--level", "0.5",
                                                   "--step-seconds", "1"],
                 ["fleet", "--devices", "10", "--policy", path],
                 ["fleet", "--devices", "10", "--scenarios", path],
                 ["simulate", "--bundle", str(mlp_sgd_bundle), "--data", path, "--out", str(tmp_path / "r")],
                 ["verify", path]):
        one_line_exit_2(capsys, argv)
        assert main([*argv, "--json"]) == 2
        out = json.loads(capsys.readouterr().out)
        assert out["ok"] is False and out["error"]


def test_numbers_beyond_any_range(tmp_path, capsys):
    spec = tmp_path / "s.json"
    spec.write_text('{"format": "mobile-lr.schedule/1", "base_lr": 0.1, "shape": {"type": "cosine"}, '
                    '"total_steps": 1' + "0" * 400 + "}")
    assert "64-bit" in one_line_exit_2(capsys, ["schedule", "eval", str(spec), "--steps", "3"])
    from mobile_lr.schedules import parse_spec

    with pytest.raises(ValidationError, match="total_steps: an integer of 401 digits is out of range"):
        parse_spec({"format": "mobile-lr.schedule/1", "base_lr": 0.1, "shape": {"type": "cosine"},
                    "total_steps": 10**400})
    with pytest.raises(ValidationError, match="out of range"):
        parse_spec({"format": "mobile-lr.schedule/1", "base_lr": 10**400, "shape": {"type": "cosine"}})


@pytest.mark.parametrize("edit, field", [
    (lambda m: m.update(model="x"), "manifest.json: model"),
    (lambda m: m.update(backends={"ort": "ok"}), "manifest.json: backends.ort"),
    (lambda m: m["model"].pop("input"), "manifest.json: model.input"),
    (lambda m: m["model"]["labels"].update(classes="10"), "manifest.json: model.labels.classes"),
    (lambda m: m["optimizer"].update(nesterov="yes"), "manifest.json: optimizer.nesterov"),
    (lambda m: m.update(surprise={}), "manifest.json: surprise"),
    (lambda m: m["backends"]["ort"]["files"].append("ghost.onnx"), "manifest.json: backends.ort.files"),
])
def test_manifest_fields_of_the_wrong_type_or_missing(bundle, edit, field, capsys):
    rehash(bundle, edit)
    with pytest.raises(BundleError) as err:
        load_bundle(bundle)
    assert err.value.field == field
    for kind in ("ort", "torch"):
        with pytest.raises(BundleError):
            open_runtime(kind, bundle)
    one_line_exit_2(capsys, ["verify", str(bundle)])


def test_a_full_disk_is_one_line_and_keeps_the_old_files(tmp_path, capsys, monkeypatch, mlp_sgd_bundle,
                                                         user_data):
    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    rt = open_runtime("ort", mlp_sgd_bundle)
    rt.save(tmp_path / "c")
    before = (tmp_path / "c").read_bytes()
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        rt.save(tmp_path / "c")
    assert (tmp_path / "c").read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["c"]
    assert "No space left" in one_line_exit_2(capsys, ["export", "digits-mlp", "--out", str(tmp_path / "b"),
                                                       "--backend", "ort"])
    assert not (tmp_path / "b").exists()
    monkeypatch.undo()
    (tmp_path / "f").mkdir()
    target = tmp_path / "elsewhere"
    target.write_text("not ours")
    # an output is renamed into place: a planted link is replaced, its target left alone
    (tmp_path / "f" / "budgets.json").symlink_to(target)
    assert main(["fleet", "--devices", "10", "--out", str(tmp_path / "f")]) == 0
    assert target.read_text() == "not ours" and not (tmp_path / "f" / "budgets.json").is_symlink()


def test_outputs_that_are_files_and_bad_data(tmp_path, capsys, mlp_sgd_bundle):
    afile = tmp_path / "afile"
    afile.write_text("x")
    spec = tmp_path / "s.json"
    spec.write_text('{"format": "mobile-lr.schedule/1", "base_lr": 0.1, "shape": {"type": "cosine"}, '
                    '"total_steps": 10}')
    for argv in (["fleet", "--devices", "10", "--out", str(afile)],
                 ["simulate", "--bundle", str(mlp_sgd_bundle), "--out", str(afile)],
                 ["schedule", "plot", str(spec), "--out", str(tmp_path)],
                 ["schedule", "plot", str(spec), "--out", str(afile / "x.png")]):
        assert "--out" in one_line_exit_2(capsys, argv)
    for arrays in ({"x_train": np.float32(1), "y_train": np.int64(1)},
                   {"y_train": np.zeros(4, np.float64)},
                   {"y_train": np.full(4, 10)},
                   {"y_test": np.full(4, -1)}):
        data = {"x_train": np.zeros((4, 64), np.float32), "y_train": np.zeros(4, np.int64),
                "x_test": np.zeros((4, 64), np.float32), "y_test": np.zeros(4, np.int64), **arrays}
        np.savez(tmp_path / "d.npz", **data)
        for command in ("simulate", "lr-find"):
            assert "--data" in one_line_exit_2(capsys, [command, "--bundle", str(mlp_sgd_bundle), "--data",
                                                        str(tmp_path / "d.npz")])


def test_sizes_are_capped_and_the_cap_is_said(tmp_path, capsys):
    spec = tmp_path / "s.json"
    spec.write_text('{"format": "mobile-lr.schedule/1", "base_lr": 0.1, "shape": {"type": "cosine"}, '
                    '"total_steps": 10}')
    assert "10000000" in one_line_exit_2(capsys, ["schedule", "eval", str(spec), "--steps", "1000000000"])
    assert "1000000" in one_line_exit_2(capsys, ["fleet", "--devices", "1000000000"])
    assert "--days" in one_line_exit_2(capsys, ["fleet", "--devices", "10", "--days", "10000000"])
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (16 << 20) + b"{}")
    assert "16 MiB" in one_line_exit_2(capsys, ["schedule", "validate", str(big)])
    assert main(["schedule", "eval", str(spec), "--steps", "x", "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out == {"ok": False, "error": "argument --steps: invalid int value: 'x'", "field": "--steps"}


# ----------------------------------------------------------------------------- 6. growth shapes


@pytest.mark.parametrize("shape, limit", [
    ({"type": "step", "step_size": 1, "gamma": 2.0}, float("inf")),
    ({"type": "exponential", "gamma": 1.5}, float("inf")),
    ({"type": "exponential", "decay_rate": 3.0, "decay_steps": 1}, float("inf")),
    ({"type": "cyclic", "max_lr": 1.0, "step_size_up": 1, "mode": "triangular2"}, 0.1),
])
def test_growth_shapes_reach_their_limit_instead_of_overflowing(shape, limit):
    """The Kotlin core's Math.pow gives these limits (inf; 1/inf = 0 for triangular2's amplitude)."""
    from mobile_lr.schedules import parse_spec

    s = parse_spec({"format": "mobile-lr.schedule/1", "base_lr": 0.1, "shape": shape})
    plan = [(0, 10_000)]
    assert s.lr(5000, plan) == limit
    assert s.lrs(np.array([4000, 5000]), plan).tolist() == [limit, limit]


def test_the_manager_stops_on_a_growth_schedule_instead_of_crashing():
    from mobile_lr.budget import MAX_SPAN_S, Policy
    from mobile_lr.device import DeviceState, SimulatedDevice, load_profile
    from mobile_lr.manager import Run, ScheduleManager, Stop

    p = load_profile("flagship")
    dev = SimulatedDevice(p, DeviceState.initial(p, 1.0, charging=True))
    spec = {"format": "mobile-lr.schedule/1", "base_lr": 0.1, "shape": {"type": "exponential", "gamma": 2.0}}
    mgr = ScheduleManager(spec, p, Policy(window_s=MAX_SPAN_S), {"nominal_steps": 5000}, dev.state)
    for _ in range(3000):
        d = mgr.next()
        if isinstance(d, Stop):
            break
        assert isinstance(d, Run)
        r = dev.train_step()
        mgr.observe(loss=1.0, step_seconds=r.seconds, energy_j=r.energy_j)
        mgr.update_device(dev.state)
    assert isinstance(d, Stop) and d.reason == "diverged" and mgr.step > 1000


def test_multistep_counts_milestones_as_before_but_by_bisection():
    from mobile_lr.schedules._ops import ARRAY, SCALAR
    from mobile_lr.schedules.shapes import _milestones_reached

    rng = np.random.default_rng(0)
    for frac in (False, True):
        values = np.sort(rng.choice(np.arange(1, 999), 40, replace=False)).astype(float)
        values = values / 1000 if frac else values
        u, n = rng.integers(0, 1200, 300).astype(float), rng.integers(1, 1200, 300).astype(float)
        naive = ((u[:, None] >= values[None, :] * (n[:, None] if frac else 1.0)).sum(axis=1)).astype(float)
        got = _milestones_reached(ARRAY, values.tolist(), u, n if frac else None)
        assert got.tolist() == naive.tolist()
        scalar = [_milestones_reached(SCALAR, values.tolist(), a, b if frac else None)
                  for a, b in zip(u, n, strict=True)]
        assert scalar == naive.tolist()


# ----------------------------------------------------------------------------- 7. smaller


def test_bundle_names_duplicates_and_hard_links(bundle, tmp_path):
    (bundle / "labels.json").rename(bundle / "labels.json\n")
    rehash(bundle, lambda m: m["files"].update({"labels.json\n": m["files"].pop("labels.json")}))
    with pytest.raises(BundleError, match="not an allowed bundle file name"):
        load_bundle(bundle)
    (bundle / "labels.json\n").rename(bundle / "labels.json")
    text = json.dumps(json.loads((bundle / MANIFEST).read_text()))
    text = text.replace('"labels.json\\n"', '"labels.json"')
    entry = text[text.index('"labels.json"'):text.index("}", text.index('"labels.json"')) + 1]
    (bundle / MANIFEST).write_text(text.replace('"files": {', '"files": {' + entry + ", ", 1))
    with pytest.raises(BundleError, match=r"duplicate key 'labels\.json'"):
        load_bundle(bundle)
    rehash(bundle)
    outside = tmp_path / "outside.json"
    outside.write_bytes((bundle / "labels.json").read_bytes())
    (bundle / "labels.json").unlink()
    os.link(outside, bundle / "labels.json")
    with pytest.raises(BundleError, match=r"labels\.json: has 2 hard links"):
        load_bundle(bundle)


def test_a_failed_load_leaves_the_runtime_as_it_was(tmp_path, mlp_sgd_bundle, user_data):
    from mobile_lr.runtime.checkpoint import read_checkpoint, write_checkpoint

    train, _ = user_data
    for kind in ("ort", "torch"):
        rt = open_runtime(kind, mlp_sgd_bundle, ema=0.9)
        rt.step(train.x[:32], train.y[:32], 0.1)
        rt.save(tmp_path / "good")
        rt.step(train.x[32:64], train.y[32:64], 0.1)
        before, step = rt.parameters(), rt.step_count
        meta, arrays = read_checkpoint(tmp_path / "good")
        key = next(k for k in arrays if k.startswith("ema/"))
        for change in ({"arrays": {key: np.zeros(3, np.float32)}}, {"meta": {"step": -5}},
                       {"arrays": {key: np.full_like(arrays[key], np.nan)}},
                       {"arrays": {"evil": np.zeros(1)}}, {"drop": "step"}):  # found by bench.faults
            bad_meta = {**meta, **change.get("meta", {})}
            bad_meta.pop(change.get("drop"), None)
            write_checkpoint(tmp_path / "bad", bad_meta, {**arrays, **change.get("arrays", {})})
            with pytest.raises(CheckpointError):
                rt.load(tmp_path / "bad")
            after = rt.parameters()
            assert rt.step_count == step and all(np.array_equal(before[k], after[k]) for k in before), change
        rt.load(tmp_path / "good")
        assert rt.step_count == 1


def test_a_checkpoint_that_inflates_far_beyond_the_model_is_refused(tmp_path, mlp_sgd_bundle):
    rt = open_runtime("ort", mlp_sgd_bundle)
    rt.save(tmp_path / "c")
    with zipfile.ZipFile(tmp_path / "c", "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.npy", b"\0" * (64 << 20))  # 64 MiB of zeros, ~64 kB on disk
    assert os.path.getsize(tmp_path / "c") < 1 << 20
    with pytest.raises(CheckpointError, match="over the bound"):
        rt.load(tmp_path / "c")
    rt.save(tmp_path / "d")
    with zipfile.ZipFile(tmp_path / "d", "a") as zf:
        zf.writestr("notes.txt", b"hello")
    with pytest.raises(CheckpointError, match=r"unknown archive member 'notes\.txt'"):
        rt.load(tmp_path / "d")


def test_two_writers_keep_each_others_temporary_files(tmp_path):
    import subprocess

    from mobile_lr.runtime.checkpoint import atomic_write

    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / f".c.{alive.pid}.abc.tmp"
        live.write_text("being written")
        dead = tmp_path / ".c.999999999.abc.tmp"
        dead.write_text("left by a killed writer")
        atomic_write(tmp_path / "c", lambda f: f.write(b"new"))
        assert live.exists() and not dead.exists() and (tmp_path / "c").read_bytes() == b"new"
    finally:
        alive.kill()
        alive.wait()


def test_verify_json_is_json_and_a_profile_file_reaches_the_report(bundle, tmp_path, capsys):
    rehash(bundle, lambda m: m.update(lr_dropout={"format": "mobile-lr.lr-dropout/1", "kind": "sgd-lrd",
                                                  "keep": float("nan"), "seed": 0, "backends": ["ort"]}))
    assert main(["verify", str(bundle), "--json"]) == 2
    out = capsys.readouterr().out
    assert "NaN" not in out and json.loads(out)["field"] == "manifest.json: lr_dropout.keep"
    from mobile_lr.device import load_profile

    profile = load_profile("mid-range").to_dict()
    profile["name"] = "my-phone"
    (tmp_path / "p.json").write_text(json.dumps(profile))
    shutil.rmtree(bundle)
    argv = ["simulate", "--bundle", str(tmp_path / "b2"), "--profile", str(tmp_path / "p.json"),
            "--compare", "constant", "--scenario", "commute-low-battery", "--out", str(tmp_path / "run")]
    assert main(["export", "digits-mlp", "--out", str(tmp_path / "b2"), "--backend", "ort"]) == 0
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "report.md").exists()


def test_a_phone_too_hot_for_an_unmeasured_step_stops_instead_of_pausing_forever():
    """Resting at 43.8 °C (ambient 43.2, idle heat 0.6 K), the pessimistic first step (3x the
    profile's time and power) would cross the 44 °C limit, and the phone cannot cool to the resume
    temperature: no step is safe, and without one the estimate never improves. The manager used
    to pause (no resume hint) forever; it stops, naming why."""
    import dataclasses

    from mobile_lr.budget import Policy
    from mobile_lr.device import DeviceState, SimulatedDevice, load_profile
    from mobile_lr.manager import Pause, ScheduleManager, Stop

    p = load_profile("mid-range").to_dict()
    p["name"], p["thermal"]["ambient_c"], p["compute"]["step_seconds"] = "hot", 43.2, 1.0
    profile = load_profile(p)
    dev = SimulatedDevice(profile, dataclasses.replace(DeviceState.initial(profile, 0.9), temperature_c=43.8))
    spec = {"format": "mobile-lr.schedule/1", "base_lr": 0.01, "shape": {"type": "cosine"}}
    mgr = ScheduleManager(spec, profile, Policy(window_s=1e6), {"nominal_steps": 50}, dev.state)
    for _ in range(100):
        d = mgr.next()
        if not isinstance(d, Pause):
            break
        dev.idle(d.resume_hint or 60.0)
        mgr.update_device(dev.state)
    assert d == Stop("budget", "thermal: too hot at rest for an unmeasured step")


def test_a_file_the_user_cannot_read_is_one_line(tmp_path, capsys, monkeypatch):
    """Root reads any file, so the refusal of the operating system is simulated at os.open."""
    spec = tmp_path / "secret.json"
    spec.write_text("{}")
    real_open = os.open

    def guarded(path, *args, **kwargs):
        if os.fspath(path) == str(spec):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)
    assert "Permission denied" in one_line_exit_2(capsys, ["schedule", "validate", str(spec)])


JSON_REFUSALS = [
    ["schedule", "eval", "missing.json", "--steps", "3"],
    ["schedule", "validate", "missing.json"],
    ["plan", "--profile", "no-such-phone", "--level", "0.5", "--step-seconds", "1"],
    ["plan", "--profile", "mid-range", "--level", "2", "--step-seconds", "1"],
    ["export", "no.such.module:recipe", "--out", "OUT"],
    ["verify", "missing-bundle"],
    ["simulate", "--bundle", "missing-bundle"],
    ["demo", "--profiles", "no-such-phone"],
    ["lr-find", "--bundle", "missing-bundle"],
    ["fleet", "--devices", "0"],
    ["fleet-train", "--clients", "0", "--rounds", "1", "--fraction", "1"],
    ["schedule", "eval", "x.json", "--steps", "many"],  # an argument error
]


@pytest.mark.parametrize("argv", JSON_REFUSALS, ids=[" ".join(a[:2]) for a in JSON_REFUSALS])
def test_every_json_command_prints_a_refusal_object(argv, tmp_path, capsys):
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert main([*argv, "--json"]) == 2
    captured = capsys.readouterr()
    refusal = json.loads(captured.out)
    assert refusal["ok"] is False and refusal["error"] and "field" in refusal
    assert refusal["error"] in captured.err  # the same words as the stderr line


def test_simulate_and_lr_find_can_pin_the_bundle_identity(bundle, capsys):
    """Integrity alone cannot catch a re-hashed manifest; a pinned identity can."""
    from mobile_lr.bundle import manifest_sha256

    identity = manifest_sha256(bundle)
    rehash(bundle, lambda m: m["model"].update(entry="os:abort"))
    for command in ("simulate", "lr-find"):
        err = one_line_exit_2(capsys, [command, "--bundle", str(bundle), "--sha256", identity])
        assert "not the expected bundle identity" in err


# ----------------------------------------------------------------------------- 8. manager state

def _manager_after(steps):
    """A manager with a range test under way and a Run pending, after ``steps`` observed steps."""
    from mobile_lr.device import DeviceState, load_profile
    from mobile_lr.manager import Run, ScheduleManager

    profile = load_profile("mid-range")
    mgr = ScheduleManager({"format": "mobile-lr.schedule/1", "base_lr": 0.05, "total_steps": 400,
                           "shape": {"type": "cosine"}}, profile, {"battery_floor": 0.2},
                          {"range_test": {"fraction": 0.05, "min_steps": 5, "max_steps": 12}})
    mgr.update_device(DeviceState.initial(profile, 0.8, charging=True))
    for i in range(steps):
        assert isinstance(mgr.next(), Run)
        mgr.observe(loss=2.0 - 0.01 * i, step_seconds=0.1, energy_j=0.5)
    mgr.next()
    return mgr


@pytest.mark.parametrize("edit, field", [   # each found by a fuzz of every leaf (no fields: a crash)
    (lambda s: s.update(pending=True), "pending"),                          # TypeError: ** of a bool
    (lambda s: s["pending"].update(status=10**6), "pending.status"),        # IndexError later
    (lambda s: s.update(stopped={"why": "x"}), "stopped.why"),
    (lambda s: s.update(pending_rollback=[1]), "pending_rollback"),
    (lambda s: s.update(spent=None), "spent"),                              # TypeError
    (lambda s: s["spent"].pop("energy_j"), "spent.energy_j"),               # KeyError steps later
    (lambda s: s["range_test"].update(n=1), "range_test.n"),                # ZeroDivisionError
    (lambda s: s["range_test"].update(n=float("inf")), "range_test.n"),     # OverflowError
    (lambda s: s["range_test"].update(lrs=[]), "range_test"),               # IndexError later
    (lambda s: s["range_test"].update(best="x"), "range_test.best"),        # TypeError later
    (lambda s: s.update(window_end_s="x"), "window_end_s"),                 # TypeError later
    (lambda s: s.update(since=None), "since"),
    (lambda s: s.pop("estimator"), "estimator"),                            # KeyError
    (lambda s: s.update(plan_history=[[0, float("inf")]]), "plan_history[0]"),
    (lambda s: s.update(step=1, plan_history=[[0, 400], [2, 300]]), "step"),  # before its plan
    (lambda s: s.update(plateau_state={}), "plateau_state"),
    (lambda s: s["config"].update(peak_lr={"type": ["x"]}), "config.peak_lr.type"),  # unhashable
    (lambda s: s.pop("config"), "config"),                                  # KeyError
])
def test_a_hostile_manager_state_is_refused_and_changes_nothing(edit, field):
    from mobile_lr.manager import ScheduleManager

    mgr = _manager_after(3)
    good = mgr.state_dict()
    bad = json.loads(json.dumps(good))
    edit(bad)
    with pytest.raises(ValidationError) as err:
        ScheduleManager.from_state_dict(bad)
    assert err.value.field.startswith(field), err.value
    if not field.startswith("config"):
        with pytest.raises(ValidationError):
            mgr.load_state_dict(bad)
        assert mgr.state_dict() == good


@pytest.mark.parametrize("group, key, value", [   # each a ZeroDivisionError/OverflowError in the physics
    ("battery", "capacity_mah", 1e9), ("thermal", "resistance_k_per_w", 1e308),
    ("thermal", "capacity_j_per_k", 1e308), ("compute", "step_seconds", 5e-324),
    ("compute", "step_seconds", 1e308), ("charging", "cv_taper", 1e-300)])
def test_a_profile_beyond_physics_is_refused(group, key, value, tmp_path, capsys):
    import mobile_lr
    from mobile_lr.device import load_profile

    with open(os.path.join(os.path.dirname(mobile_lr.__file__), "data", "profiles", "low-end.json")) as f:
        prof = json.load(f)
    prof[group][key] = value
    (tmp_path / "p.json").write_text(json.dumps(prof))
    with pytest.raises(ValidationError):
        load_profile(str(tmp_path / "p.json"))
    assert group in one_line_exit_2(capsys, ["plan", "--profile", str(tmp_path / "p.json"), "--level", "0.5",
                                           "--step-seconds", "1"])


def _npy(shape: str, descr: str = "<f4") -> bytes:
    """An .npy member of a header alone: ``shape`` as written in the header."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()


def test_user_data_that_is_not_real_finite_numbers_is_refused(tmp_path, capsys, mlp_sgd_bundle):
    good = {"x_train": np.zeros((4, 64), np.float32), "y_train": np.zeros(4, np.int64),
            "x_test": np.zeros((4, 64), np.float32), "y_test": np.zeros(4, np.int64)}
    for arrays in ({"x_train": np.zeros((4, 64), np.complex64)},     # imaginary part dropped silently
                   {"x_train": np.full((4, 64), "1.5")},             # text parsed as numbers
                   {"x_test": np.full((4, 64), np.nan, np.float32)},
                   {"x_train": np.full((4, 64), 1e308)},             # inf as float32
                   {"y_train": np.zeros(4, "m8[s]")}):               # numpy's timedelta is an "integer"
        np.savez(tmp_path / "d.npz", **{**good, **arrays})
        assert "--data" in one_line_exit_2(capsys, ["simulate", "--bundle", str(mlp_sgd_bundle), "--data",
                                                    str(tmp_path / "d.npz")])
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as zf:   # numpy allocated the declared shape first
        for name, a in good.items():
            zf.writestr(f"{name}.npy", _npy("(1000000000000, 64)") if name == "x_train" else
                        _npy(str(a.shape), a.dtype.str) + a.tobytes())
    assert "declares shape" in one_line_exit_2(capsys, ["lr-find", "--bundle", str(mlp_sgd_bundle), "--data",
                                                        str(tmp_path / "d.npz")])


@pytest.mark.parametrize("kind, name", [("ort", "eval_model.onnx"), ("ort", "optimizer_model.onnx"),
                                        ("executorch", None)])
def test_a_rehashed_model_file_the_engine_cannot_load_is_one_line(kind, name, tmp_path, mlp_bundle, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(mlp_bundle, bundle)
    if name is None:
        name = next(n for n in os.listdir(bundle) if n.endswith(".pte"))
    data = (bundle / name).read_bytes()
    for cut in (b"", data[: len(data) // 2]):   # empty is a well-formed (empty) ONNX protobuf
        (bundle / name).write_bytes(cut)
        rehash(bundle)
        with pytest.raises(BundleError) as err:   # (half an ONNX file: the wire walk refuses it)
            open_runtime(kind, bundle)
        assert name in err.value.field
        assert name in one_line_exit_2(capsys, ["lr-find", "--bundle", str(bundle), "--backend",
                                                            kind, "--steps", "10"])


@pytest.mark.parametrize("name, text", [("schedule.json", '{"format": "mobile-lr.schedule/1"}'),
                                        ("schedule.json", "[" * 100 + "]" * 100),
                                        ("labels.json", '{"format": "mobile-lr.labels/1", "names": [1]}'),
                                        ("labels.json", "")])
def test_a_rehashed_json_file_of_the_wrong_kind_does_not_verify(bundle, name, text, capsys):
    (bundle / name).write_text(text)
    rehash(bundle)
    with pytest.raises(BundleError) as err:
        load_bundle(bundle)
    assert err.value.field == name
    assert name in one_line_exit_2(capsys, ["verify", str(bundle)])


def test_plan_numbers_beyond_any_step(capsys):
    plan = ["plan", "--profile", "low-end", "--level", "0.5"]
    assert "64-bit" in one_line_exit_2(capsys, [*plan, "--step-seconds", "1", "--max-steps", str(10**23)])
    assert "--step-seconds" in one_line_exit_2(capsys, [*plan, "--step-seconds", "1e-320"])


@pytest.mark.parametrize("change", [   # each a TypeError/AttributeError from torch.optim, or accepted
    {"groups": True}, {"groups": [1]}, {"group": {"betas": None}}, {"group": {"params": None}},
    {"group": {"params": [[], 1, 2, 3]}}, {"group": {"amsgrad": "yes"}},
    {"array": ("param/fc1.weight", lambda a: np.full(a.shape, "x"))},
    {"array": ("param/fc1.weight", lambda a: a.astype(np.complex64))},
    {"array": ("opt/0/exp_avg", lambda a: a.reshape(-1)[:-1])}])
def test_a_hostile_torch_checkpoint_is_refused(change, tmp_path, mlp_bundle, user_data):
    from mobile_lr.runtime.checkpoint import read_checkpoint, write_checkpoint

    train, _ = user_data
    rt = open_runtime("torch", mlp_bundle)   # AdamW: betas and moments
    rt.step(train.x[:8], train.y[:8], 0.1)
    rt.save(tmp_path / "good")
    meta, arrays = read_checkpoint(tmp_path / "good")
    groups = meta["engine"]["optimizer"]["param_groups"]
    groups[0].update(change.get("group", {}))
    meta["engine"]["optimizer"]["param_groups"] = change.get("groups", groups)
    if "array" in change:
        key, edit = change["array"]
        arrays[key] = edit(arrays[key])
    write_checkpoint(tmp_path / "bad", meta, arrays)
    with pytest.raises(CheckpointError):
        rt.load(tmp_path / "bad")


# ----------------------------------------------------------------------------- 9. labels, artifact kinds


def test_labels_are_one_check_for_every_runtime_and_for_data(mlp_sgd_bundle, user_data):
    from mobile_lr.runtime.base import ModelIO

    train, _ = user_data
    rt = open_runtime("ort", mlp_sgd_bundle)
    for y in (np.zeros(4, "m8[s]"),             # numpy's timedelta is an "integer": trained as class 0
              np.zeros(4, bool), np.zeros(4, np.float32), np.array([0, 1, 2, 10]), np.array([-1, 0, 0, 0]),
              np.full(4, 2**63, np.uint64)):     # beyond int64: wrapped to a negative index
        with pytest.raises(ValidationError) as err:
            rt.step(train.x[:4], y, 0.01)
        assert err.value.field == "y"
    unknown = ModelIO((2,), (3,), "t", "int64")   # the number of classes unknown: still int64 indices >= 0
    for y in (np.full(4, 2**63, np.uint64), np.full(4, -1)):
        with pytest.raises(ValidationError, match="outside"):
            unknown.y(y, 4)
    regression = ModelIO((2,), (3,), "t", "float32")
    for y in (np.full((4, 3), np.nan), np.zeros((4, 3), np.complex64), np.full((4, 3), "1.5"),
              np.full((4, 3), 1e308)):
        with pytest.raises(ValidationError) as err:
            regression.y(y, 4)
        assert err.value.field == "y"
    assert regression.y(np.ones((4, 3), np.int64), 4).dtype == np.float32
    tokens = ModelIO((6,), (2,), "t", "int64", 2, input_dtype="int64")
    for ids in (np.zeros((4, 6), "m8[s]"), np.full((4, 6), -1)):
        with pytest.raises(ValidationError) as err:
            tokens.x(ids)
        assert err.value.field == "x"


def _garbage(data):
    """A re-hashed artifact's replacements: empty, zeros, text, the first half, another kind's bytes."""
    return {"empty": b"", "zeros": b"\0" * 100, "text": b"not a model at all " * 8,
            "half": data[: len(data) // 2]}


@pytest.mark.parametrize("name", ["inference_model.onnx", "training_model.onnx", "checkpoint", "model.pte"])
def test_verify_refuses_an_artifact_that_is_not_what_its_name_claims(name, tmp_path, mlp_bundle, capsys):
    data = (mlp_bundle / name).read_bytes()
    other = (mlp_bundle / ("model.pte" if name == "checkpoint" else "checkpoint")).read_bytes()
    for label, bad in {**_garbage(data), "other kind": other}.items():
        if name == "checkpoint" and label == "half":
            continue   # the identifier and root offset are intact: ORT refuses it at open (engine_loads)
        bundle = tmp_path / label
        shutil.copytree(mlp_bundle, bundle)
        (bundle / name).write_bytes(bad)
        rehash(bundle)
        with pytest.raises(BundleError) as err:
            load_bundle(bundle)
        assert err.value.field == name, (label, err.value)
        assert name in one_line_exit_2(capsys, ["verify", str(bundle)])


@pytest.mark.parametrize("argv, field", [
    (["plan", "--window", "1e308"], "--window"), (["plan", "--margin", "1e23"], "--margin"),
    (["plan", "--window", "1e23"], "--window"), (["plan", "--step-joules", "1e308"], "--step-joules"),
    (["budgets", "--devices", "4", "--seed", "-1"], "--seed"),   # numpy's line named no option
    (["budgets", "--devices", "4", "--seed", str(2**32)], "--seed"),
    (["fleet-train", "--clients", "1000000000", "--rounds", "1", "--fraction", "1"], "clients"),
    (["fleet-train", "--clients", "4", "--rounds", "1", "--fraction", "1", "--lr", "1e308"], "lr"),
    (["fleet-train", "--clients", "4", "--rounds", "1", "--fraction", "1", "--step-factor", "1e308"],
     "step-factor"),
    (["fleet-train", "--clients", "4", "--rounds", "10001", "--fraction", "1"], "num-rounds"),
    (["fleet-train", "--clients", "4", "--rounds", "1", "--fraction", "1", "--actors", "100000"], "--actors"),
])
def test_numeric_options_have_a_sane_range(argv, field, capsys, monkeypatch):
    if argv[0] == "fleet-train":   # a regressed bound fails here at once, not after starting Ray
        import mobile_lr.federated.run as run

        def reached(*args, **kwargs):
            raise AssertionError(f"{field} was accepted: the fleet was about to start")

        monkeypatch.setattr(run, "prepare_bundle", reached)
        monkeypatch.setattr(run, "simulate", reached)
    if argv[0] == "plan":
        argv = [*argv, "--profile", "low-end", "--level", "0.5", "--step-seconds", "1"]
    assert field in one_line_exit_2(capsys, argv)


@pytest.mark.parametrize("record, field, value", [
    ("policy", "window_s", 1e308), ("policy", "deadline_s", 1e308), ("policy", "window_gap_s", 1e23),
    ("policy", "thermal_margin_c", 1e308), ("range_test", "end_factor", 1e23),
    ("range_test", "start_factor", 1e-320), ("scenario", "end_s", 1e308),
    ("scenario", "nominal_steps", 10**12),
    ("scenario", "workload.step_factor", 1e308), ("fleet", "overcommit", float("nan")),
    ("fleet", "start_hour", 1e308), ("fleet", "num_rounds", 10000)])   # 10^4 daily rounds: beyond a year
def test_config_numbers_have_a_sane_range(record, field, value):
    from mobile_lr.budget import Policy
    from mobile_lr.federated.fleet import FleetConfig
    from mobile_lr.manager.config import RangeTestConfig
    from mobile_lr.sim.scenario import load_scenario

    with pytest.raises(ValidationError) as err:
        if record == "policy":
            Policy.from_dict({field: value})
        elif record == "range_test":
            RangeTestConfig.from_dict({field: value})
        elif record == "fleet":
            FleetConfig(**{field: value, "round_interval_s": 86400.0})
        else:
            doc = load_scenario("hot-day").to_dict()
            group, _, key = field.rpartition(".")
            (doc[group] if group else doc)[key] = value
            load_scenario(doc)
    assert field.rpartition(".")[2].replace("_", "-") in str(err.value).replace("_", "-")


def test_a_refusal_is_one_line_whatever_the_name_holds(tmp_path, capsys):
    name = tmp_path / "a\nb\x1b[31m.json"   # a newline split the line; an ANSI escape reached the terminal
    for argv in (["plan", "--profile", str(name), "--level", "0.5", "--step-seconds", "1"],
                 ["schedule", "validate", str(name)]):
        line = one_line_exit_2(capsys, argv)
        assert "\x1b" not in line and "a\\nb\\x1b[31m.json" in line


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "..", "x" * 65, "", "a\nb", ".hidden"])
def test_profile_and_scenario_names_are_plain_names(name, tmp_path):
    """Run directories are named after them (``<out>/<profile>/<scenario>/``): ``../../escaped``
    wrote a run outside ``--out``."""
    import mobile_lr
    from mobile_lr.device import load_profile
    from mobile_lr.sim.scenario import load_scenario

    with open(os.path.join(os.path.dirname(mobile_lr.__file__), "data", "profiles", "low-end.json")) as f:
        prof = json.load(f)
    with pytest.raises(ValidationError) as err:
        load_profile({**prof, "name": name})
    assert err.value.field == "name"
    with pytest.raises(ValidationError) as err:
        load_scenario({**load_scenario("hot-day").to_dict(), "name": name})
    assert err.value.field == "name"
    assert load_scenario({**load_scenario("hot-day").to_dict(), "name": "my-day_2.v1"}).name == "my-day_2.v1"


def test_a_full_disk_leaves_no_half_written_output(tmp_path, capsys, monkeypatch):
    """budgets.json (and every report, summary and figure) is written whole or not at all: a
    full disk left a truncated budgets.json that read as a result."""
    out = tmp_path / "b"
    assert main(["budgets", "--devices", "4", "--out", str(out)]) == 0
    before = (out / "budgets.json").read_bytes()
    capsys.readouterr()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert "No space left" in one_line_exit_2(capsys, ["budgets", "--devices", "5", "--out", str(out)])
    assert (out / "budgets.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["budgets.json", "budgets.png"]


def test_demo_refuses_a_seed_whose_last_run_has_no_valid_seed(tmp_path, capsys):
    out = tmp_path / "demo"   # --seed 2^32 - 1 and a second run: seed 2^32 reached numpy after pre-training
    line = one_line_exit_2(capsys, ["demo", "--seed", str(2**32 - 1), "--seeds", "2", "--out", str(out)])
    assert "--seed" in line and str(2**32 - 2) in line
    assert not out.exists()


def test_export_checks_every_flag_before_pre_training(tmp_path, capsys, monkeypatch):
    import mobile_lr.recipes

    ran = []
    monkeypatch.setattr(mobile_lr.recipes, "pretrain", lambda *a, **k: ran.append(a))  # a spy: no work
    export = ["export", "digits-mlp", "--out", str(tmp_path / "b")]
    assert "--pretrain-epochs" in one_line_exit_2(capsys, [*export, "--pretrain-epochs", "1000000000"])
    assert "--lr-dropout-keep" in one_line_exit_2(capsys, [*export, "--pretrain-epochs", "3",
                                                           "--optimizer", "sgd-lrd"])
    for flag, value in (("--lr-dropout-keep", "1.5"), ("--lr-dropout-keep", "nan"),
                        ("--lr-dropout-seed", "-1"), ("--lr-dropout-seed", str(2**32))):
        lrd = ["--optimizer", "sgd-lrd", "--lr-dropout-keep", "0.5", flag, value]
        assert flag in one_line_exit_2(capsys, [*export, "--pretrain-epochs", "3", *lrd])
    assert ran == [] and not (tmp_path / "b").exists()


@pytest.mark.parametrize("edit, field", [
    # 2^31 elements per sample were accepted: ExecuTorch's opening zero batch of that shape is 8 GiB
    (lambda m: m["model"]["input"].update(shape=[-1, 2**31]), "model.input.shape"),
    (lambda m: m["model"]["output"].update(shape=[-1, 2**12, 2**12 + 1]), "model.output.shape"),
    # within the per-sample limit, but a fixed batch of 2^20 of them is 2^44 elements
    (lambda m: (m["model"]["input"].update(shape=[-1, 2**12, 2**12]),
                m["backends"]["executorch"].update(max_batch=2**20, dynamic_batch=False)),
     "backends.executorch.max_batch"),
])
def test_a_manifest_cannot_declare_a_huge_tensor(edit, field, tmp_path, mlp_bundle):
    bundle = tmp_path / "b"
    shutil.copytree(mlp_bundle, bundle)
    rehash(bundle, edit)
    with pytest.raises(BundleError) as err:
        load_bundle(bundle)
    assert field in err.value.field


@pytest.mark.parametrize("steps", [True, 1.5, "100", None, 0])
def test_recommended_setup_refuses_a_step_count_that_is_not_one(steps):
    from mobile_lr.manager.recommended import recommended_setup

    with pytest.raises(ValidationError) as err:   # int() made True one step and 1.5 one step
        recommended_setup("ort", None, 0.1, steps)
    assert err.value.field == "nominal_steps"


@pytest.mark.parametrize("kwargs, field", [
    ({"recipe": 5}, "recipe"),                       # AttributeError: 'int' has no 'batch_size'
    ({"schedule": [1]}, "schedule"), ({"policy": 3.5}, "policy"),   # TypeError from os.fspath
    ({"out_dir": 5}, "out_dir"),
    ({"backends": "ort"}, "backend"),                # read as o, r, t
])
def test_export_bundle_names_the_argument_of_a_wrong_type(kwargs, field, tmp_path):
    from mobile_lr.export import export_bundle

    args = {"recipe": "digits-mlp", "out_dir": tmp_path / "b", "backends": ["ort"], **kwargs}
    with pytest.raises(ValidationError) as err:
        export_bundle(**args)
    assert err.value.field == field
    assert "o,r,t" not in str(err.value)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("args, field", [((5,), "bundle_dir"), ((None,), "bundle_dir")])
def test_open_runtime_names_a_bundle_argument_of_the_wrong_type(args, field, mlp_bundle):
    for kind in ("ort", "torch"):   # os.fspath's TypeError, an int identity's AttributeError
        with pytest.raises(ValidationError) as err:
            open_runtime(kind, *args)
        assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        open_runtime("ort", mlp_bundle, expected_sha256=5)
    assert err.value.field == "expected_sha256"
