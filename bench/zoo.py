"""Zoo: every zoo model x fine-tuning mode x engine at realistic sizes, trained and measured.

Run: ``python -m bench.zoo`` (``--quick``: the tests' small widths, a smoke run;
``--models``/``--modes``/``--engines`` pick a subset). For each model and mode the recipe is
exported once per backend (so each engine's export time is its own) into a temporary
directory and opened with ``mobile_lr.runtime.open_runtime``; PyTorch eager runs the same
recipe (``TorchRuntime``). All engines run at one thread and train on the same batch (the
recipe's batch from the default user's data, ``Recipe.user_data(7, ...)``) at LR 1e-3.

Per (model, mode, engine) the row has:

* ``trains``: the backend exported as ok, its steps run, and the loss after the timed steps is
  finite and below the first one;
* ``step_ms`` (median), ``p10_ms``/``p90_ms``, ``vs_torch`` (median ÷ PyTorch eager's, same
  run; the speed goal compares ExecuTorch's ``vs_torch`` with ORT's, see ``_goals``): every
  step timed on its own, the engines taking turns in blocks so that load from elsewhere on
  the shared machine hits them alike (``bench.speed``'s method); the number of steps adapts
  to the slowest engine (``--budget-s`` per cell, at least 5);
* ``peak_mb``: a fresh child process per cell reads its resident set before opening the
  runtime, runs one step, resets the kernel's peak counter and runs ``--mem-steps`` steps;
  the peak above the resident set before opening is what the engine holds at the top of a
  steady step (its session or program, weights, state and activations). ``baseline_mb`` is the
  same figure for ``digits-mlp`` (9.6 k parameters): the engine's fixed cost;
* ``min_mb``: parameters (float32) + gradients and AdamW's two moments of the trainable ones +
  the activations a backward pass needs (what each leaf module from the first one with a
  trainable parameter on must keep for its backward, ``bench.memory.backward_keeps``, and the
  input batch), from the PyTorch model;
* ``bundle_bytes`` (the engine's files: ORT's four artifacts, ExecuTorch's ``model.pte``)
  against ``param_bytes``; ``export_s``: that backend's export.

The goals (docs/ZOO.md): every model in every mode on both engines; ExecuTorch's step within
1.5x of ORT's; ``peak_mb <= 2 · min_mb + baseline_mb``. The table prints which are met.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.machine import RESULTS, command_without_out, print_table, write_result
from bench.memory import STATUS_FN, bundle_sizes, theoretical
from bench.speed import _interleaved

if TYPE_CHECKING:
    from mobile_lr.recipes import Recipe

ENGINES = ("ort", "executorch", "torch")
MODES = ("head", "last-k", "bias+head", "lora")
LR = 1e-3
# realistic sizes: the recipes' defaults (docs/ZOO.md), MobileNetV2 at 64 x 64
SIZES: dict[str, dict[str, Any]] = {"mobilenetv2": {}, "ds-cnn": {}, "text-transformer": {},
                                    "gru-sensor": {}, "lstm-sensor": {}}
QUICK: dict[str, dict[str, Any]] = {
    "mobilenetv2": {"width": 0.25, "stages": 2, "resolution": 16},
    "ds-cnn": {"width": 0.25, "blocks": 1},
    "text-transformer": {"width": 0.125, "layers": 1, "vocab": 64, "seq_len": 8},
    "gru-sensor": {"width": 0.125, "layers": 1, "steps": 4},
    "lstm-sensor": {"width": 0.125, "layers": 1, "steps": 4}}
_MB = 1024 * 1024
# what a result file says of the run that made it (a merged file lists them under "runs")
_RUN_KEYS = ("command", "date_utc", "steps", "budget_s", "load_before", "load_after", "seconds")

_CHILD = STATUS_FN + r"""
import json, sys
args = json.loads(sys.argv[1])
import numpy as np
import torch
torch.set_num_threads(1)
if args["engine"] == "ort":
    import onnxruntime.training.api  # the library is not the step: imported before the baseline
elif args["engine"] == "executorch":
    import executorch.extension.training
from mobile_lr.recipes import load_recipe
from mobile_lr.runtime import open_runtime
from mobile_lr.runtime.torch_rt import TorchRuntime

recipe = load_recipe(args["recipe"], **args["options"])
train, _ = recipe.user_data(7, recipe.batch_size)
x, y = train.x.copy(), train.y.copy()
if args["engine"] != "torch":
    del recipe
r0 = status()["VmRSS"]
if args["engine"] == "torch":
    rt = TorchRuntime(recipe, threads=1)
elif args["engine"] == "ort":
    rt = open_runtime("ort", args["bundle"], threads=1)
else:
    rt = open_runtime("executorch", args["bundle"])
rt.step(x, y, 1e-3)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
for _ in range(args["steps"]):
    rt.step(x, y, 1e-3)
print(json.dumps({"peak_kib": status()["VmHWM"] - r0}))
"""


def minimum_bytes(recipe: Recipe) -> dict[str, int]:
    """What a training step of ``recipe`` must hold at least (see the module docstring)."""
    th = theoretical(recipe, from_first_trainable=True)
    return {"params_total": th["parameters"], "params_trainable": th["trainable"],
            "param_bytes": th["param_bytes"], "min_bytes": th["minimum_bytes"]}


def _child_peak(engine: str, bundle: Path | None, name: str, options: dict[str, Any],
                steps: int) -> tuple[float | None, str | None]:
    """``(peak_mb, None)`` from a fresh child process, or ``(None, why)`` when the child fails:
    a native crash in an engine's step (a segfault) then costs the child, not the bench."""
    args = {"engine": engine, "bundle": str(bundle) if bundle else None, "recipe": name,
            "options": options, "steps": steps}
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True,
                          text=True, timeout=3600)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [""])[-1][:200]
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
        return None, f"the training step fails in a fresh process ({how}): {tail}"
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_kib"] / 1024, None


def _export(recipe: Recipe, out: Path, backend: str) -> tuple[dict[str, Any], float]:
    from mobile_lr.export import export_bundle

    t0 = time.perf_counter()
    info = export_bundle(recipe, out, backends=[backend]).backends[backend]
    return {"status": info.status, "reason": info.reason}, time.perf_counter() - t0


def _runtimes(recipe: Recipe, bundles: dict[str, Path],
              status: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from mobile_lr.runtime import open_runtime
    from mobile_lr.runtime.torch_rt import TorchRuntime

    out: dict[str, Any] = {"torch": TorchRuntime(recipe, threads=1)}
    for engine, path in bundles.items():
        if status[engine]["status"] != "ok":  # unsupported, or crashes in the child
            continue
        try:
            out[engine] = open_runtime(engine, path, **({"threads": 1} if engine == "ort" else {}))
        except Exception as err:  # an engine that exports but cannot open: recorded, not fatal
            status[engine] = {"status": "fails to open", "reason": str(err).splitlines()[0][:300]}
    return out


def _time_steps(rts: dict[str, Any], x: np.ndarray, y: np.ndarray, steps: int,
                budget_s: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Losses of a first and a last step per engine, and interleaved step times."""
    first, probe = {}, {}
    for engine, rt in list(rts.items()):
        try:
            t0 = time.perf_counter()
            first[engine] = rt.step(x, y, LR)
            probe[engine] = time.perf_counter() - t0
        except Exception as err:
            first[engine] = math.nan
            probe[engine] = str(err).splitlines()[0][:200]
            del rts[engine]
    slowest = max([p for p in probe.values() if isinstance(p, float)] or [1.0])
    n = int(max(5, min(steps, budget_s / max(slowest, 1e-6) / max(1, len(rts)))))
    fns: dict[str, Callable[[], Any]] = {e: (lambda rt=rt: rt.step(x, y, LR)) for e, rt in rts.items()}
    times = _interleaved(fns, n, warmup=2, rounds=min(20, n)) if fns else {}
    last = {e: rt.step(x, y, LR) for e, rt in rts.items()}
    errors = {e: p for e, p in probe.items() if isinstance(p, str)}
    return {"first": first, "last": last, "errors": errors}, times


def cell(name: str, options: dict[str, Any], mode: str, engines: tuple[str, ...], tmp: Path,
         steps: int, budget_s: float, mem_steps: int) -> list[dict[str, Any]]:
    """The rows of one (model, mode): one per engine."""
    from mobile_lr.recipes import load_recipe

    opts = {**options, "mode": mode}
    recipe = load_recipe(name, **opts)
    facts = minimum_bytes(recipe)
    train, _ = recipe.user_data(7, recipe.batch_size)
    x, y = train.x, train.y
    bundles, status, export_s = {}, {}, {}
    for engine in (e for e in engines if e != "torch"):
        bundles[engine] = tmp / f"{name}-{mode.replace('+', '-')}-{engine}"
        status[engine], export_s[engine] = _export(recipe, bundles[engine], engine)
    status["torch"] = {"status": "ok", "reason": None}
    peaks = {}
    for engine in engines:  # first in a child: an engine crashing in its step is left out below
        if status[engine]["status"] == "ok":
            peaks[engine], failure = _child_peak(engine, bundles.get(engine), name, opts, mem_steps)
            if failure:
                status[engine] = {"status": "crashes", "reason": failure}
    rts = _runtimes(recipe, bundles, status)
    losses, times = _time_steps(rts, x, y, steps, budget_s)
    torch_ms = times.get("torch", {}).get("median_us", math.nan) / 1e3
    rows = []
    for engine in engines:
        t = times.get(engine, {})
        first, last = losses["first"].get(engine, math.nan), losses["last"].get(engine, math.nan)
        trains = engine in times and math.isfinite(last) and last < first
        reason = status[engine]["reason"] or losses["errors"].get(engine)
        sizes = bundle_sizes(bundles[engine]) if engine in bundles and bundles[engine].exists() else {}
        step_ms = t.get("median_us", math.nan) / 1e3
        row = {"model": name, "mode": mode, "engine": engine, **facts, "trains": bool(trains),
               "status": status[engine]["status"], "reason": reason,
               "step_ms": step_ms if t else None, "p10_ms": t["p10_us"] / 1e3 if t else None,
               "p90_ms": t["p90_us"] / 1e3 if t else None, "steps_timed": t.get("n"),
               "vs_torch": step_ms / torch_ms if t and math.isfinite(torch_ms) else None,
               "loss_first": first, "loss_last": last,
               "min_mb": facts["min_bytes"] / _MB, "export_s": export_s.get(engine),
               "bundle_bytes": sizes.get(engine) if engine != "torch" else None,
               "options": opts}
        if row["bundle_bytes"]:
            row["bundle_vs_params"] = row["bundle_bytes"] / facts["param_bytes"]
        row["peak_mb"] = peaks.get(engine)
        rows.append(row)
    return rows


def baselines(engines: tuple[str, ...], tmp: Path, mem_steps: int) -> dict[str, float]:
    """Each engine's fixed cost: the steady-step peak for digits-mlp (9.6 k parameters)."""
    from mobile_lr.recipes import load_recipe

    out = {}
    for engine in engines:
        path = None
        if engine != "torch":
            path = tmp / f"baseline-{engine}"
            _export(load_recipe("digits-mlp"), path, engine)
        out[engine] = _child_peak(engine, path, "digits-mlp", {}, mem_steps)[0]
    return out


def _goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The goals' tally; a row's memory goal is judged against its own run's engine baseline.

    ``et_vs_ort`` (the speed goal's ratio) is ExecuTorch's ``vs_torch`` over ORT's: each engine
    against PyTorch eager in the run that measured it, so that a merged file's rows, measured in
    runs at different machine loads, are compared at equal load. ``et_vs_ort_step`` is the plain
    ratio of the two median steps, which mixes those loads when the rows come from different
    runs (recorded to show the difference, not judged)."""
    by = {(r["model"], r["mode"], r["engine"]): r for r in rows}
    cells = sorted({(r["model"], r["mode"]) for r in rows})
    trains_both = [c for c in cells if all(by.get((*c, e), {}).get("trains") for e in ("ort", "executorch"))]
    both = [(m, mode, by[(m, mode, "executorch")], by[(m, mode, "ort")]) for m, mode in cells
            if all(by.get((m, mode, e), {}).get("trains") for e in ("executorch", "ort"))]
    # the goal's ratio: each engine's step over PyTorch eager's in its own run, so that two rows
    # measured in different runs at different loads compare at equal load
    ratio = {f"{m}/{mode}": et["vs_torch"] / ort["vs_torch"] for m, mode, et, ort in both
             if et.get("vs_torch") and ort.get("vs_torch")}
    direct = {f"{m}/{mode}": et["step_ms"] / ort["step_ms"] for m, mode, et, ort in both}
    memory = {f"{r['model']}/{r['mode']}/{r['engine']}":
              r["peak_mb"] <= 2 * r["min_mb"] + r["baseline_mb"]
              for r in rows if r["peak_mb"] is not None and math.isfinite(r["peak_mb"])}
    return {"cells": len(cells), "train_on_both": len(trains_both),
            "et_vs_ort": ratio, "et_vs_ort_step": direct,
            "et_within_1_5x_ort": sum(v <= 1.5 for v in ratio.values()),
            "memory_within_goal": sum(memory.values()), "memory_measured": len(memory), "memory": memory}


def _override(sizes: dict[str, dict[str, Any]], item: str) -> None:
    """``MODEL:KEY=VALUE`` -> ``sizes[MODEL][KEY] = json(VALUE)``; a bad item is one line, exit 2."""
    model, _, rest = item.partition(":")
    key, eq, value = rest.partition("=")
    if model not in sizes or not key or not eq:
        raise ValueError(f"--size {item!r}: expected MODEL:KEY=VALUE with MODEL one of {', '.join(sizes)}")
    try:
        sizes[model][key] = json.loads(value)
    except json.JSONDecodeError:
        sizes[model][key] = value


def _load() -> list[float] | None:
    """The 1/5/15-minute load averages (the machine is shared: say it next to the times)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _report(result: dict[str, Any]) -> None:
    """The table, the rows that do not train and the goals' tally of a result."""
    rows, base, goals = result["rows"], result["baselines_mb"], result["goals"]
    print("zoo: model x mode x engine (1 thread; step on the recipe's batch; memory in a fresh process)")
    print_table(rows, [("model", "model", "s"), ("mode", "mode", "s"), ("engine", "engine", "s"),
                       ("params_total", "params", ","), ("params_trainable", "trainable", ","),
                       ("trains", "trains", ""), ("step_ms", "step ms", ".2f"), ("p10_ms", "p10", ".2f"),
                       ("p90_ms", "p90", ".2f"), ("vs_torch", "÷ torch", ".2f"),
                       ("peak_mb", "peak MB", ".1f"), ("min_mb", "min MB", ".1f"),
                       ("bundle_vs_params", "bundle ÷ params", ".2f"), ("export_s", "export s", ".1f")])
    for r in rows:
        if not r["trains"]:
            print(f"  {r['model']} {r['mode']} {r['engine']}: {r['status']}: {(r['reason'] or '')[:160]}")
    print("\nengine baselines (digits-mlp steady-step peak, MB): "
          + ", ".join(f"{k} {v:.1f}" for k, v in base.items() if v is not None))
    print(f"goals: {goals['train_on_both']}/{goals['cells']} cells train on both engines; "
          f"ExecuTorch within 1.5x of ORT in {goals['et_within_1_5x_ort']}/{len(goals['et_vs_ort'])}; "
          f"peak <= 2 x min + baseline in {goals['memory_within_goal']}/{goals['memory_measured']}")


def _order(row: dict[str, Any]) -> tuple[int, int, int]:
    return (list(SIZES).index(row["model"]), MODES.index(row["mode"]), ENGINES.index(row["engine"]))


def merge(paths: list[Path], out: Path) -> dict[str, Any]:
    """Combine result files of runs over parts of the zoo (one model or mode per process) into
    one: their rows by (model, mode, engine), a later file's row replacing an earlier one's (a
    re-run); each row keeps the engine baseline of its own run, against which its memory goal
    is judged; the goals are recomputed over all rows; ``runs`` lists each run's command, date,
    load and settings (a merged file merged again keeps its runs)."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    runs: list[dict[str, Any]] = []
    base: dict[str, float] = {}
    sizes: dict[str, Any] = {}
    for p in paths:
        doc = json.loads(p.read_text(encoding="utf-8"))
        if doc.get("bench") != "zoo" or not isinstance(doc.get("rows"), list):
            raise SystemExit(f"error: {p.name} is not a bench.zoo result")
        for r in doc["rows"]:
            r.setdefault("baseline_mb", doc["baselines_mb"].get(r["engine"]))
            rows[(r["model"], r["mode"], r["engine"])] = r
        runs += doc.get("runs") or [{k: doc.get(k) for k in _RUN_KEYS}]
        base.update({k: v for k, v in doc["baselines_mb"].items() if v is not None})
        sizes.update(doc.get("sizes", {}))
    merged = sorted(rows.values(), key=_order)
    result = {"rows": merged, "baselines_mb": base, "goals": _goals(merged), "threads": 1, "lr": LR,
              "sizes": sizes, "runs": [{**r, "command": command_without_out(r["command"])} for r in runs],
              "command": " ; ".join(command_without_out(r["command"]) for r in runs)}
    write_result("zoo", result, out)
    _report(result)
    print(f"merged {len(paths)} files into {out.name}: {len(merged)} rows", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m bench.zoo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the tests' small widths, few steps")
    ap.add_argument("--models", default=",".join(SIZES), help="comma-separated zoo recipes")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated engines")
    ap.add_argument("--steps", type=int, default=100, help="timed steps per engine at most")
    ap.add_argument("--budget-s", type=float, default=60.0, help="seconds of timed steps per cell")
    ap.add_argument("--mem-steps", type=int, default=5, help="steady steps in the memory child")
    ap.add_argument("--size", action="append", default=[], metavar="MODEL:KEY=VALUE",
                    help="a recipe option for one model (JSON value, repeatable), over the default "
                         "(realistic) or --quick sizes, e.g. gru-sensor:steps=16")
    ap.add_argument("--out", type=Path, default=RESULTS / "zoo.json",
                    help="the result file, rewritten after every cell (a run cut short keeps its cells)")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="FILE",
                    help="combine these result files (runs over parts of the zoo) into --out and exit")
    args = ap.parse_args(argv)
    if args.merge:
        missing = [str(p) for p in args.merge if not p.is_file()]
        if missing:
            ap.error(f"--merge: no such file: {', '.join(missing)}")
        return merge(args.merge, args.out)
    import torch

    torch.set_num_threads(1)
    sizes = {m: dict(o) for m, o in (QUICK if args.quick else SIZES).items()}
    for item in args.size:
        try:
            _override(sizes, item)
        except ValueError as err:
            ap.error(str(err))  # one line, exit 2
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    engines = tuple(e.strip() for e in args.engines.split(",") if e.strip())
    for what, items, allowed in (("model", models, SIZES), ("mode", modes, MODES),
                                 ("engine", engines, ENGINES)):
        bad = [i for i in items if i not in allowed]
        if bad:
            ap.error(f"unknown {what} {', '.join(bad)} (choose from {', '.join(allowed)})")
    if "torch" not in engines:
        engines = (*engines, "torch")  # the reference of vs_torch
    steps, budget = (10, 5.0) if args.quick else (args.steps, args.budget_s)
    command = ("python -m bench.zoo " + " ".join(sys.argv[1:] if argv is None else argv)).strip()
    run = {"command": command, "steps": steps, "budget_s": budget, "load_before": _load()}
    rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()

    def document() -> dict[str, Any]:
        return {"rows": rows, "baselines_mb": base, "goals": _goals(rows), "threads": 1, "lr": LR,
                "sizes": {m: sizes[m] for m in models}, **run, "load_after": _load(),
                "seconds": time.perf_counter() - t_all}

    with tempfile.TemporaryDirectory() as tmp:
        base = baselines(engines, Path(tmp), args.mem_steps)
        for name in models:
            for mode in modes:
                t0 = time.perf_counter()
                new = cell(name, sizes[name], mode, engines, Path(tmp), steps, budget, args.mem_steps)
                rows += [{**r, "baseline_mb": base[r["engine"]]} for r in new]
                write_result("zoo", document(), args.out)  # a run cut short keeps the cells done
                print(f"  {name} {mode}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    result = document()
    path = write_result("zoo", result, args.out)
    _report(result)
    print(f"wrote {path.name}")
    return result


if __name__ == "__main__":
    main()
