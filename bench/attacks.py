"""Attacks and bad input at scale, for ``python -m bench.faults`` (docs/SECURITY.md).

Each category builds many hostile inputs from a seeded random stream and counts what happened:
``refused`` (a ``ValueError`` naming the field, or exit status 2 with one line for the CLI),
``accepted`` (the input was fine and then worked), ``crashes`` (anything else: another
exception, a traceback, a wrong exit status, code imported from a bundle, a runtime that read a
file outside its bundle, weights changed by a refused checkpoint). The goal is 0 crashes.

* **bundle names code**: ``model.entry`` / ``model.recipe`` set to ``module:function`` strings
  (a marker module whose import leaves a file, ``os:abort`` only as the entry, which is never
  imported), re-hashed; the PyTorch runtime must build the allow-listed recipe or refuse.
* **ONNX external data**: an external tensor put at a random place (initializer, sparse
  initializer, Constant attribute, If sub-graph) of a random ONNX file, pointing at an absolute
  path, a ``../..`` path or another file of the bundle, re-hashed: refused by ``load_bundle``.
* **manifest fields**: random structural mutations of a real manifest (wrong types, missing or
  unknown fields, huge numbers), re-hashed: refused, or accepted and the ORT runtime opens it.
* **input files**: the kinds of file a careless user passes (deep nesting, a 401-digit integer,
  duplicate keys, a FIFO, a directory, a symlink loop, a path through a file, a 300-character
  name, /proc/self/mem, 17 MiB of spaces, binary garbage) to every command that reads one, with
  and without ``--json``: exit status 2, one error line, a JSON refusal under ``--json``.
* **checkpoints**: a good checkpoint with a flipped byte, cut short, with an inflating or unknown
  member, NaN or wrong-shaped arrays, a negative step or mutated metadata: ``load()`` refuses
  and leaves every weight as it was.
* **artifact kinds**: a random model file (ONNX, the ORT checkpoint) replaced by nothing,
  random bytes, a random prefix of itself, another artifact's bytes or itself with random bytes of
  its first 64 flipped, re-hashed: ``load_bundle`` refuses it naming the file, or accepts it and
  then the ORT runtime opens and steps it or refuses it with a ``BundleError`` (never the
  engine's own error).
* **growth shapes**: step/exponential/cyclic specs with growth factors evaluated at up to 10^7
  steps (scalar and arrays) and driven by the manager: no exception (an LR at its limit stops
  the run as diverged).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.faults import Tally, mutate


def rehash(bundle: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Apply ``edit`` to the manifest and recompute the listed files' sizes and SHA-256."""
    m = json.loads((bundle / "manifest.json").read_text())
    if edit is not None:
        edit(m)
    files = m.get("files") if isinstance(m, dict) else None
    if isinstance(files, dict):
        for name in list(files):
            p = bundle / name
            if isinstance(name, str) and "/" not in name and p.is_file():
                data = p.read_bytes()
                files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (bundle / "manifest.json").write_text(json.dumps(m))


def _copy(bundle: Path, work: Path) -> Path:
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(bundle, work)
    return work


def bundle_names_code(bundle: Path, n: int, seed: int, tmp: Path) -> dict[str, Any]:
    from mobile_lr.runtime import open_runtime

    rng = random.Random(seed)
    marker = tmp / "imported"
    (tmp / "evil_entry.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef x(): pass\n")
    sys.path.insert(0, str(tmp))
    tally = Tally("bundle names code")
    entries = ["evil_entry:x", "os:abort", "os:system", "this:x", "subprocess:run", "evil_entry", ""]
    try:
        for i in range(n):
            work = _copy(bundle, tmp / "code")
            field = "entry" if i % 2 == 0 else "recipe"
            value = rng.choice(entries if field == "entry" else [e for e in entries if e != "os:abort"])
            rehash(work, lambda m, f=field, v=value: m["model"].update({f: v}))

            def use(work: Path = work) -> None:
                try:
                    rt = open_runtime("torch", work)
                    rt.step(np.zeros((4, 64), np.float32), np.zeros(4, np.int64), 0.01)
                finally:
                    if marker.exists() or "evil_entry" in sys.modules:
                        marker.unlink(missing_ok=True)
                        sys.modules.pop("evil_entry", None)
                        raise RuntimeError("the bundle's code was imported")

            tally.run(use)
    finally:
        sys.path.remove(str(tmp))
    return tally.row()


def _external_tensor(location: str) -> Any:
    from onnx import TensorProto

    t = TensorProto(name="x", data_type=TensorProto.UINT8, dims=[2])
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "2")):
        e = t.external_data.add()
        e.key, e.value = key, value
    return t


def _place(model: Any, tensor: Any, where: str) -> None:
    from onnx import helper

    g = model.graph
    if where == "initializer":
        g.initializer.append(tensor)
    elif where == "sparse":
        idx = helper.make_tensor("i", 7, [1], [0])
        g.sparse_initializer.append(helper.make_sparse_tensor(tensor, idx, [2]))
    elif where == "attribute":
        g.node.append(helper.make_node("Constant", [], ["c_ext"], value=tensor))
    else:
        branch = helper.make_graph([helper.make_node("Constant", [], ["c_ext"], value=tensor)], "t", [], [])
        g.node.append(helper.make_node("If", ["cond"], ["o"], then_branch=branch,
                                       else_branch=helper.make_graph([], "e", [], [])))


def onnx_external_data(bundle: Path, n: int, seed: int, tmp: Path) -> dict[str, Any]:
    import onnx

    from mobile_lr.bundle import load_bundle

    rng = random.Random(seed)
    names = sorted(p.name for p in bundle.glob("*.onnx"))
    tally = Tally("ONNX external data")
    for _ in range(n):
        work = _copy(bundle, tmp / "ext")
        name = rng.choice(names)
        model = onnx.load(str(work / name), load_external_data=False)
        location = rng.choice(["/etc/hostname", "../" * rng.randint(1, 6) + "etc/hostname", "checkpoint",
                               "labels.json", str(bundle / "checkpoint")])
        _place(model, _external_tensor(location), rng.choice(["initializer", "sparse", "attribute", "if"]))
        (work / name).write_bytes(model.SerializeToString())
        rehash(work)

        def use(work: Path = work) -> None:
            load_bundle(work)
            raise RuntimeError("a bundle with external data verified")

        tally.run(use)
    return tally.row()


def manifest_fields(bundle: Path, n: int, seed: int, tmp: Path) -> dict[str, Any]:
    from mobile_lr.runtime import open_runtime

    rng = random.Random(seed)
    base = json.loads((bundle / "manifest.json").read_text())
    tally = Tally("manifest fields")
    for _ in range(n):
        work = _copy(bundle, tmp / "mf")
        bad = mutate({k: v for k, v in base.items() if k != "files"}, rng)
        if isinstance(bad, dict):
            bad = {**bad, "files": base["files"]}
        (work / "manifest.json").write_text(json.dumps(bad))
        rehash(work)
        tally.run(lambda work=work: open_runtime("ort", work).step(
            np.zeros((4, 64), np.float32), np.zeros(4, np.int64), 0.01))
    return tally.row()


def _bad_files(tmp: Path) -> dict[str, str]:
    d = tmp / "inputs"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "digits.json").write_text('{"format": "mobile-lr.schedule/1", "base_lr": 0.1, "shape": {"type": '
                                   '"cosine"}, "total_steps": 1' + "0" * 400 + "}")
    (d / "dup.json").write_text('{"format": "x", "format": "y"}')
    (d / "spaces.json").write_bytes(b" " * (17 << 20))
    (d / "garbage.json").write_bytes(os.urandom(4096))
    os.mkfifo(d / "fifo.json")
    os.symlink(d / "loop.json", d / "loop.json")
    (d / "afile").write_text("{}")
    return {"deep": str(d / "deep.json"), "401 digits": str(d / "digits.json"),
            "duplicate keys": str(d / "dup.json"), "17 MiB": str(d / "spaces.json"),
            "garbage": str(d / "garbage.json"), "FIFO": str(d / "fifo.json"),
            "symlink loop": str(d / "loop.json"),
            "through a file": str(d / "afile" / "x.json"), "300 characters": str(d / ("a" * 300 + ".json")),
            "directory": str(d), "/proc/self/mem": "/proc/self/mem"}


def input_files(bundle: Path, tmp: Path) -> dict[str, Any]:
    from mobile_lr.cli import main

    files = _bad_files(tmp)
    commands = {
        "spec": lambda p: ["schedule", "eval", p, "--steps", "3"],
        "profile": lambda p: ["plan", "--profile", p, "--level", "0.5", "--step-seconds", "1"],
        "policy": lambda p: ["fleet", "--devices", "10", "--policy", p],
        "scenario": lambda p: ["fleet", "--devices", "10", "--scenarios", p],
        "data": lambda p: ["simulate", "--bundle", str(bundle), "--data", p, "--out", str(tmp / "run")],
        "bundle": lambda p: ["verify", p],
    }
    tally = Tally("input files (CLI)")
    for path in files.values():
        for build in commands.values():
            for json_flag in ([], ["--json"]):
                argv = [*build(path), *json_flag]

                def use(argv: list[str] = argv, as_json: bool = bool(json_flag)) -> None:
                    out, err = io.StringIO(), io.StringIO()
                    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                        rc = main(argv)
                    lines = err.getvalue().strip().splitlines()
                    if rc != 2 or "Traceback" in err.getvalue() or not lines or ": error: " not in lines[-1]:
                        raise RuntimeError(f"{argv[:2]}: exit {rc}, stderr {err.getvalue()[-200:]!r}")
                    if as_json and json.loads(out.getvalue()).get("ok") is not False:
                        raise RuntimeError(f"{argv[:2]}: no JSON refusal")
                    raise ValueError("refused in one line")

                tally.run(use)
    return tally.row()


def checkpoints(bundle: Path, n: int, seed: int, tmp: Path) -> dict[str, Any]:
    from mobile_lr.runtime import open_runtime
    from mobile_lr.runtime.checkpoint import read_checkpoint, write_checkpoint

    rng = random.Random(seed)
    rt = open_runtime("ort", bundle, ema=0.9)
    rt.step(np.zeros((4, 64), np.float32), np.zeros(4, np.int64), 0.01)
    good = tmp / "good.ckpt"
    rt.save(good)
    rt.step(np.ones((4, 64), np.float32), np.ones(4, np.int64), 0.01)
    rt.save(tmp / "keep.ckpt")
    before = rt.parameters()
    meta, arrays = read_checkpoint(good)
    data = good.read_bytes()
    tally = Tally("checkpoints")
    ops = ("flip", "truncate", "bomb", "unknown member", "nan", "shape", "step", "meta")
    for i in range(n):
        op, bad = ops[i % len(ops)], tmp / "bad.ckpt"
        if op == "flip":
            b = bytearray(data)
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            bad.write_bytes(bytes(b))
        elif op == "truncate":
            bad.write_bytes(data[:rng.randrange(len(data))])
        elif op in ("bomb", "unknown member"):
            bad.write_bytes(data)
            with zipfile.ZipFile(bad, "a", compression=zipfile.ZIP_DEFLATED) as zf:
                member = ("bomb.npy", 64 << 20) if op == "bomb" else ("notes.txt", 9)
                zf.writestr(member[0], b"\0" * member[1])
        else:
            key = rng.choice(sorted(arrays))
            new_meta, new_arrays = dict(meta), dict(arrays)
            if op == "nan" and arrays[key].dtype.kind == "f":
                new_arrays[key] = np.full_like(arrays[key], np.nan)
            elif op == "shape":
                new_arrays[key] = np.zeros(3, np.float32)
            elif op == "step":
                new_meta["step"] = rng.choice([-5, 2**70, 1.5, "3", None])
            else:
                new_meta = mutate(meta, rng)
                if not isinstance(new_meta, dict):
                    new_meta = {"value": new_meta}
            write_checkpoint(bad, {k: v for k, v in new_meta.items() if k != "format"}, new_arrays)

        def use(bad: Path = bad) -> None:
            rt.load(tmp / "keep.ckpt")  # the state before every attempt
            try:
                rt.load(bad)  # accepted: an intact copy (a flip the archive's CRC does not cover)
            except ValueError:
                after = rt.parameters()
                if not all(np.array_equal(before[k], after[k]) for k in before) or rt.step_count != 2:
                    raise RuntimeError("a refused checkpoint changed the runtime") from None
                raise

        tally.run(use)
    return tally.row()


def artifact_kinds(bundle: Path, n: int, seed: int, tmp: Path) -> dict[str, Any]:
    from mobile_lr.bundle import BundleError, load_bundle
    from mobile_lr.runtime import open_runtime

    rng = random.Random(seed)
    tally = Tally("artifact kinds")
    names = sorted(p.name for p in bundle.iterdir() if p.suffix == ".onnx" or p.name == "checkpoint")
    originals = {name: (bundle / name).read_bytes() for name in names}
    for i in range(n):
        name = rng.choice(names)
        data = originals[name]
        kind = rng.choice(["empty", "random", "prefix", "other", "head flips"])
        if kind == "empty":
            bad = b""
        elif kind == "random":
            bad = rng.randbytes(rng.randint(1, 4096))
        elif kind == "prefix":
            bad = data[: rng.randint(0, len(data) - 1)]
        elif kind == "other":
            bad = originals[rng.choice([m for m in names if m != name])]
        else:
            head = bytearray(data[:64])
            for _ in range(rng.randint(1, 8)):
                head[rng.randrange(len(head))] = rng.randrange(256)
            bad = bytes(head) + data[64:]
        work = _copy(bundle, tmp / "artifact")
        (work / name).write_bytes(bad)
        rehash(work)

        def use(work: Path = work, name: str = name, i: int = i) -> None:
            try:
                load_bundle(work)
            except BundleError as err:
                if name not in err.field:
                    raise RuntimeError(f"refused naming {err.field}, not {name}") from None
                raise
            if i % 5:   # accepted (e.g. a flip inside a doc string): open it now and then
                return
            rt = open_runtime("ort", work)   # a BundleError naming the file, or it trains
            rt.step(np.zeros((4, 64), np.float32), np.zeros(4, np.int64), 0.01)

        tally.run(use)
    return tally.row()


def growth_shapes(n: int, seed: int) -> dict[str, Any]:
    from mobile_lr.budget import MAX_SPAN_S, Policy
    from mobile_lr.device import DeviceState, SimulatedDevice, load_profile
    from mobile_lr.manager import Run, ScheduleManager
    from mobile_lr.schedules import parse_spec

    rng = random.Random(seed)
    tally = Tally("growth shapes")
    p = load_profile("flagship")
    for i in range(n):
        shape = rng.choice([{"type": "step", "step_size": rng.randint(1, 5), "gamma": rng.uniform(1.01, 50)},
                            {"type": "exponential", "gamma": rng.uniform(1.001, 10)},
                            {"type": "exponential", "decay_rate": rng.uniform(1.01, 10), "decay_steps": 1},
                            {"type": "cyclic", "max_lr": 1.0, "step_size_up": 1, "mode": "triangular2"},
                            {"type": "multistep", "milestones": list(range(1, 2000)), "gamma": 1.5}])
        spec = {"format": "mobile-lr.schedule/1", "base_lr": 0.1, "shape": shape}

        def use(spec: dict[str, Any] = spec, i: int = i) -> None:
            s = parse_spec(spec)
            steps = np.array([0, 10, 1000, 10**5, 10**7])
            s.lrs(steps, [(0, 10**7)])
            for t in steps:
                s.lr(int(t), [(0, 10**7)])
            if i % 10 == 0:  # the manager until it stops (a growth LR at its limit: diverged)
                dev = SimulatedDevice(p, DeviceState.initial(p, 1.0, charging=True))
                mgr = ScheduleManager(spec, p, Policy(window_s=MAX_SPAN_S), {"nominal_steps": 3000},
                                      dev.state)
                for _ in range(3000):
                    d = mgr.next()
                    if not isinstance(d, Run):
                        break
                    r = dev.train_step()
                    mgr.observe(loss=1.0, step_seconds=r.seconds, energy_j=r.energy_j)

        tally.run(use)
    return tally.row()


def run_all(bundle: Path, n: int, seed: int, tmp: Path) -> list[dict[str, Any]]:
    """Every category above; ``n`` inputs per random category."""
    tmp.mkdir(parents=True, exist_ok=True)
    return [bundle_names_code(bundle, max(10, n // 10), seed, tmp),
            onnx_external_data(bundle, n, seed, tmp),
            manifest_fields(bundle, n, seed, tmp),
            input_files(bundle, tmp),
            checkpoints(bundle, n, seed, tmp),
            artifact_kinds(bundle, n, seed, tmp),
            growth_shapes(max(20, n // 5), seed)]
