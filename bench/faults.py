"""Faults: random SIGKILLs during training and checkpointing, fuzzed specs, profiles and
policies, tampered bundles, and NaN losses injected into managed training.

Run: ``python -m bench.faults`` (``--quick``: 50 kills and a tenth of the fuzzing).

* **Kills** (``mobile_lr.testing.killtest``, the same harness as ``python -m
  mobile_lr.testing.killtest BUNDLE --kills N --json``): a worker trains digits-mlp on ORT
  and checkpoints after every step; it is SIGKILLed at a uniform random instant in
  [0, 0.6] s after its start, and the next worker must resume at the last durable
  checkpoint (or the one whose save was in flight); after the last kill the run must be
  bit-identical to an uninterrupted one.
* **Fuzzing**: seeded random mutations (delete a field, change a value to another type,
  NaN/inf/huge/negative numbers, unknown fields, truncated or corrupted JSON text) of valid
  schedule specs (every shape of ``mobile_lr.testing.specs`` plus random valid specs),
  device profiles (the built-ins) and policies. Each input must either be accepted, and then
  work (a spec gives finite LRs >= 0 over a re-planned run; a profile plans), or be refused
  with a ``ValueError`` naming the field. Any other exception is a crash; an accepted input
  that does not work is counted apart ("accepted, unusable").
* **Tampered bundles**: a byte flipped in a random file, a file truncated, extended,
  deleted, replaced by a symlink or by a hard link to a copy outside, renamed with a trailing
  newline, an extra file, and manifest edits checked against the pinned identity: every one
  must be refused with a ``BundleError``.
* **Attacks and bad input** (:mod:`bench.attacks`, docs/SECURITY.md): a bundle that names code,
  ONNX external data, manifest fields of the wrong type, the kinds of file a careless user passes
  to every command (with and without ``--json``), hostile checkpoints, growth shapes at large
  steps; ``--attacks`` inputs per category. Every one must be refused in one clear line (or
  accepted and work): 0 crashes.
* **NaN injection**: the schedule manager drives the ORT runtime with checkpoints; NaN
  batches at random steps make the loss non-finite; the manager must roll back to the last
  checkpoint with a lower LR, or stop ("diverged") after its maximum number of failures, when
  the app restores the last checkpoint; either way the weights kept must be finite.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import print_table, write_result

_POOL: list[Any] = [None, True, False, 0, -1, 1, 2, 0.5, -0.5, 1e-300, 1e308, -1e308, math.nan,
                    math.inf, -math.inf, 10**30, "", "x", "cosine", "NONE", [], [1, 2], {}, {"a": 1},
                    "mobile-lr.schedule/1", 3.7, 1000000]


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _get(obj: Any, path: tuple) -> Any:
    for k in path:
        obj = obj[k]
    return obj


def mutate(obj: Any, rng: random.Random) -> Any:
    """1-3 random structural mutations of a JSON-like object."""
    obj = copy.deepcopy(obj)
    for _ in range(rng.randint(1, 3)):
        paths = _paths(obj)
        path = rng.choice(paths)
        if not path:
            if rng.random() < 0.1:
                return rng.choice(_POOL)
            if isinstance(obj, dict):
                obj[rng.choice(["extra", "Format", "shape ", "unknown"])] = rng.choice(_POOL)
            continue
        parent = _get(obj, path[:-1])
        key = path[-1]
        op = rng.random()
        if op < 0.25 and isinstance(parent, dict):
            del parent[key]
        elif op < 0.35 and isinstance(parent, list):
            parent.pop(key)
        elif op < 0.45 and isinstance(parent, dict):
            parent[f"{key}_x"] = rng.choice(_POOL)
        elif op < 0.6:
            val = parent[key]
            if isinstance(val, (int, float)) and not isinstance(val, bool):
                parent[key] = rng.choice([val * 10 ** rng.randint(-6, 6), -val, val + 1,
                                          int(val) if math.isfinite(val) else val, math.nan, 0])
            else:
                parent[key] = rng.choice(_POOL)
        else:
            parent[key] = rng.choice(_POOL)
    return obj


def mutate_text(text: str, rng: random.Random) -> str:
    """Corrupt the JSON text itself: cut it, drop or insert characters, swap a number."""
    op = rng.random()
    if op < 0.3:
        return text[: rng.randint(0, len(text))]
    i = rng.randrange(len(text))
    if op < 0.6:
        return text[:i] + text[i + 1:]
    if op < 0.8:
        return text[:i] + rng.choice('{}[],:"0-eE.xN\\\x00 ') + text[i:]
    return text.replace("0.", rng.choice(["NaN", "Infinity", "-0.", "1e999", "0x"]), 1)


class Unusable(Exception):
    """An input was accepted but does not work (e.g. a spec whose LR is not finite)."""


class Tally:
    def __init__(self, what: str):
        self.what = what
        self.tried = self.accepted = self.refused = 0
        self.crashes: list[str] = []
        self.unusable: list[str] = []

    def run(self, fn: Callable[[], None]) -> None:
        self.tried += 1
        try:
            fn()
        except ValueError:
            self.refused += 1
            return
        except Unusable as err:
            self.unusable.append(str(err)[:200])
            return
        except Exception as err:  # any other exception is what we count
            self.crashes.append(f"{type(err).__name__}: {err}"[:200])
            return
        self.accepted += 1

    def row(self) -> dict[str, Any]:
        return {"what": self.what, "tried": self.tried, "accepted": self.accepted,
                "refused": self.refused, "crashes": len(self.crashes),
                "crash_examples": self.crashes[:5], "accepted_unusable": len(self.unusable),
                "unusable_examples": self.unusable[:5]}


def fuzz_specs(n: int, seed: int, tmp: Path) -> list[dict[str, Any]]:
    from mobile_lr.schedules import load_spec, parse_spec
    from mobile_lr.testing.specs import EXAMPLES, random_plan, random_spec

    rng = random.Random(seed)
    seeds = list(EXAMPLES.values()) + [random_spec(random.Random(seed + i)) for i in range(50)]
    struct, text = Tally("schedule spec (structure)"), Tally("schedule spec (JSON text)")

    def use(spec_obj: Any, from_text: str | None = None) -> None:
        if from_text is None:
            sched = parse_spec(spec_obj)
        else:
            path = tmp / "spec.json"
            path.write_text(from_text, encoding="utf-8")
            sched = load_spec(path)
        plan = [tuple(e) for e in random_plan(rng)] if sched.total_steps is None else None
        hist = plan or [(0, sched.total_steps)]
        if hist[0][0] != 0:
            hist = [(0, hist[0][1]), *hist]
        lrs = sched.lrs(np.arange(0, max(2, hist[-1][1] + 5)), hist)
        if not np.all(np.isfinite(lrs)) or np.any(lrs < 0):
            raise Unusable(f"accepted spec gives LRs outside [0, inf): {spec_obj!r}")

    for _ in range(n):
        base = rng.choice(seeds)
        bad = mutate(base, rng)
        struct.run(lambda bad=bad: use(bad))
        txt = mutate_text(json.dumps(base), rng)
        text.run(lambda txt=txt: use(None, txt))
    return [struct.row(), text.row()]


def fuzz_profiles_policies(n: int, seed: int) -> list[dict[str, Any]]:
    from mobile_lr.budget import Policy, StepCost, plan
    from mobile_lr.device import BUILTIN_PROFILES, DeviceProfile, DeviceState, load_profile

    rng = random.Random(seed)
    prof_seeds = [load_profile(n).to_dict() for n in BUILTIN_PROFILES]
    pol_seeds = [Policy().to_dict(), Policy(battery_floor=0.3, max_thermal="LIGHT", window_s=900,
                                            deadline_s=3600, horizon="deadline").to_dict()]
    prof, pol = Tally("device profile"), Tally("policy")

    def use_profile(obj: Any) -> None:
        p = DeviceProfile.from_dict(obj)
        st = DeviceState.initial(p, 0.8)
        plan(p, st, Policy(), StepCost.from_profile(p), max_steps=10**6)

    def use_policy(obj: Any) -> None:
        p = load_profile("mid-range")
        policy = Policy.from_dict(obj)
        plan(p, DeviceState.initial(p, 0.8), policy, StepCost.from_profile(p), max_steps=10**6)

    for _ in range(n):
        bad = mutate(rng.choice(prof_seeds), rng)
        prof.run(lambda bad=bad: use_profile(bad))
        badp = mutate(rng.choice(pol_seeds), rng)
        pol.run(lambda badp=badp: use_policy(badp))
    return [prof.row(), pol.row()]


def tamper_bundles(bundle: Path, n: int, seed: int, tmp: Path) -> dict[str, Any]:
    from mobile_lr.bundle import BundleError, load_bundle

    rng = random.Random(seed)
    identity = load_bundle(bundle).sha256
    files = sorted(p.name for p in bundle.iterdir() if p.name != "manifest.json")
    ops = ("flip", "truncate", "extend", "delete", "symlink", "extra", "manifest", "hardlink", "name")
    counts = {op: {"tried": 0, "refused": 0, "accepted": 0, "crashes": 0} for op in ops}
    examples: list[str] = []
    for i in range(n):
        op = ops[i % len(ops)]
        work = tmp / f"t{i}"
        shutil.copytree(bundle, work)
        name = rng.choice(files)
        target = work / name
        if op == "flip":
            data = bytearray(target.read_bytes())
            j = rng.randrange(len(data))
            data[j] ^= 1 << rng.randrange(8)
            target.write_bytes(bytes(data))
        elif op == "truncate":
            data = target.read_bytes()
            target.write_bytes(data[: rng.randrange(len(data))])
        elif op == "extend":
            with target.open("ab") as fh:
                fh.write(os.urandom(rng.randint(1, 64)))
        elif op == "delete":
            target.unlink()
        elif op == "symlink":
            moved = work / f".{name}.orig"
            target.rename(moved)
            target.symlink_to(moved.name)
            moved.rename(tmp / f"orig{i}")       # the link now dangles, or points elsewhere
            target.unlink()
            target.symlink_to(bundle.resolve() / name)
        elif op == "hardlink":  # the same bytes, but a file outside the bundle can change them
            outside = tmp / f"outside{i}"
            shutil.copy(target, outside)
            target.unlink()
            os.link(outside, target)
        elif op == "name":  # "labels.json\n": the name check must match whole names
            target.rename(work / (name + "\n"))
            manifest = json.loads((work / "manifest.json").read_text())
            manifest["files"][name + "\n"] = manifest["files"].pop(name)
            (work / "manifest.json").write_text(json.dumps(manifest))
        elif op == "extra":
            (work / rng.choice(["evil.onnx", "model2.pte", ".hidden", "notes.txt"])).write_bytes(b"x")
        else:
            manifest = json.loads((work / "manifest.json").read_text())
            (work / "manifest.json").write_text(json.dumps(mutate(manifest, rng)))
        c = counts[op]
        c["tried"] += 1
        try:
            load_bundle(work, expected_sha256=identity if op == "manifest" else None)
        except BundleError:
            c["refused"] += 1
        except Exception as err:
            c["crashes"] += 1
            examples.append(f"{op}: {type(err).__name__}: {err}"[:200])
        else:
            c["accepted"] += 1
            examples.append(f"{op} on {name} accepted")
        shutil.rmtree(work)
    total = {k: sum(c[k] for c in counts.values()) for k in ("tried", "refused", "accepted", "crashes")}
    return {"by_operation": counts, **total, "examples": examples[:5]}


def nan_injection(bundle: Path, trials: int, seed: int, tmp: Path) -> dict[str, Any]:
    from mobile_lr.budget import Policy
    from mobile_lr.datasets import user_split
    from mobile_lr.device import DeviceState, SimulatedDevice, load_profile
    from mobile_lr.manager import Pause, Rollback, Run, ScheduleManager, Stop
    from mobile_lr.runtime import open_runtime

    train, _ = user_split()
    rng = np.random.default_rng(seed)
    p = load_profile("mid-range")
    spec = {"format": "mobile-lr.schedule/1", "base_lr": 0.01, "shape": {"type": "cosine"}}
    out = {"trials": trials, "nan_steps": 0, "rollbacks": 0, "finished": 0, "diverged": 0,
           "nonfinite_weights": 0, "wrong_resume_step": 0}
    for t in range(trials):
        rt = open_runtime("ort", bundle, threads=1)
        dev = SimulatedDevice(p, DeviceState.initial(p, 0.9))
        mgr = ScheduleManager(spec, p, Policy(window_s=1e6), {"nominal_steps": 60, "max_failures": 3},
                              dev.state)
        poison = set(rng.choice(60, size=int(rng.integers(1, 6)), replace=False).tolist())
        ckpt = tmp / f"nan{t}.ckpt"
        rt.save(ckpt, extra={"step": 0})
        mgr.mark_checkpoint()
        for _ in range(1000):
            d = mgr.next()
            if isinstance(d, Run):
                idx = (d.step * 32 + np.arange(32)) % len(train.x)
                x = train.x[idx].copy()
                if d.step in poison:
                    x[:] = np.nan
                    poison.discard(d.step)   # the bad batch came once (a sensor glitch)
                    out["nan_steps"] += 1
                loss = rt.step(x, train.y[idx], d.lr)
                r = dev.train_step()
                mgr.observe(loss=loss, step_seconds=r.seconds, energy_j=r.energy_j)
                mgr.update_device(dev.state)
                if math.isfinite(loss) and mgr.step % 10 == 0:
                    rt.save(ckpt, extra={"step": mgr.step})
                    mgr.mark_checkpoint()
            elif isinstance(d, Rollback):
                out["rollbacks"] += 1
                extra = rt.load(ckpt)
                if extra.get("step") != d.to_step:
                    out["wrong_resume_step"] += 1
            elif isinstance(d, Pause):
                dev.idle(d.resume_hint or 60.0)
                mgr.update_device(dev.state)
            elif isinstance(d, Stop):
                out["finished" if d.reason == "done" else "diverged"] += 1
                if d.reason == "diverged":
                    rt.load(ckpt)        # the app keeps the last good checkpoint
                break
        if not all(np.all(np.isfinite(v)) for v in rt.parameters().values()):
            out["nonfinite_weights"] += 1
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    ap.add_argument("--kills", type=int, default=500)
    ap.add_argument("--fuzz", type=int, default=2000, help="mutations per input kind")
    ap.add_argument("--tamper", type=int, default=700)
    ap.add_argument("--nan-trials", type=int, default=20)
    ap.add_argument("--attacks", type=int, default=300, help="inputs per attack category")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help="50 kills, 200 fuzz, 70 tamper, 5 NaN trials, 40 attacks per category")
    args = ap.parse_args(argv)
    if args.quick:
        args.kills, args.fuzz, args.tamper, args.nan_trials, args.attacks = 50, 200, 70, 5, 40
    from mobile_lr.export import export_bundle
    from mobile_lr.recipes import load_recipe
    from mobile_lr.testing.killtest import run_kill_trials

    result: dict[str, Any] = {"seed": args.seed,
                              "command": "python -m bench.faults" + (" --quick" if args.quick else "")}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        bundle = tmp / "mlp"
        export_bundle(load_recipe("digits-mlp"), bundle, backends=("ort",))
        t0 = time.perf_counter()
        fuzz = fuzz_specs(args.fuzz, args.seed, tmp) + fuzz_profiles_policies(args.fuzz, args.seed)
        result["fuzz"] = fuzz
        result["fuzz_seconds"] = time.perf_counter() - t0
        (tmp / "tamper").mkdir()
        result["tamper"] = tamper_bundles(bundle, args.tamper, args.seed, tmp / "tamper")
        from bench.attacks import run_all

        t0 = time.perf_counter()
        result["attacks"] = run_all(bundle, args.attacks, args.seed, tmp / "attacks")
        result["attacks_seconds"] = time.perf_counter() - t0
        result["nan_injection"] = nan_injection(bundle, args.nan_trials, args.seed, tmp)
        report = run_kill_trials(bundle, tmp / "kill", args.kills, runtime="ort", seed=args.seed)
        kill = asdict(report)
        kill["resumed"] = len(report.resumed_steps)
        kill["resumed_cleanly"] = len(report.resumed_steps) - sum(
            "resumed at" in p for p in report.problems)
        kill["resumed_steps"] = f"{len(report.resumed_steps)} values, last {report.resumed_steps[-1:]}"
        result["kills"] = kill
    tamper = {k: result["tamper"][k] for k in ("tried", "accepted", "refused", "crashes")}
    print_table([*fuzz, {"what": "bundle tampering", **tamper}, *result["attacks"]],
                [("what", "input", "s"), ("tried", "tried", ","), ("accepted", "accepted", ","),
                 ("refused", "refused (clear error)", ","), ("crashes", "crashes", "d"),
                 ("accepted_unusable", "accepted, unusable", "d")])
    k = kill
    print(f"\nSIGKILLs: {k['kills']} ({k['kills_during_save']} during a save, {k['kills_before_resume']} "
          f"while loading); workers resumed {k['resumed']}, cleanly {k['resumed_cleanly']}; final step "
          f"{k['final_step']} bit-identical to an uninterrupted run: {k['final_bit_identical']}; "
          f"problems {len(k['problems'])}; {k['elapsed_s']:.0f} s")
    nan = result["nan_injection"]
    print(f"NaN injection: {nan['trials']} managed runs, {nan['nan_steps']} NaN batches, {nan['rollbacks']} "
          f"rollbacks, {nan['finished']} finished, {nan['diverged']} stopped as diverged, "
          f"{nan['nonfinite_weights']} with non-finite weights, {nan['wrong_resume_step']} wrong resumes")
    path = write_result("faults", result)
    print(f"wrote bench/results/{path.name}")
    return result


if __name__ == "__main__":
    main()
