"""What schedule-free AdamW can reach when the budget is known, against AdamW: why the manager trails.

Run it with ``python -m bench.budget_ceiling``; it prints a table per task and writes
``bench/results/budget_ceiling.json``. ``bench.budget_quality`` found the manager (schedule-free
AdamW) behind constant AdamW at 70-100 % of the plan on some tasks. The manager controls the LR
curve, the averaging weight and where its cool-down would go, not the optimizer's update, so
this bench asks whether *any* of those levers reaches AdamW there: schedule-free AdamW is run
with the budget ``C`` known from step 0 (the manager's best case) and the phone's LR curve for a
plan of ``C`` (:func:`mobile_lr.manager.recommended.plan_warmup`, evaluated by the schedule
code), varied one lever at a time:

* ``sf-r{0,1,2}@{x,y,z}``: the averaging weight power ``r`` and the point evaluated: the
  average ``x`` (what the runtimes evaluate and export), the gradient point ``y``, the iterate
  ``z`` (read from the optimizer; one run gives the three);
* ``sf-r1-cd20``: a linear decay to 0 over the last 20 % of ``C`` (a budget-aware end);
* ``sf-r1-b098``: the bundle's ``beta1`` 0.98 instead of 0.9 (a longer interpolation; an
  export option, not the manager's);

against ``adamw`` (the bundle's AdamW, constant LR: the peer that beats the manager at the long
cuts) and ``adamw-cosine-T`` (cosine over the nominal ``T``). Each at every LR of the grid; the
table shows each method at its best LR *per cut* (every method's ceiling) and the paired gap of
the best schedule-free variant of each cut to AdamW there. PyTorch runtime only (the three
engines give the bench's gaps to 0.01 point, docs/QUALITY.md); same tasks, users, batches and
seeds as ``bench.budget_quality``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from bench.budget_quality import BATCH, NOMINAL_STEPS, batch_order, cosine_factor
from bench.budget_tasks import TASKS
from bench.machine import RESULTS as RESULTS_DIR
from bench.machine import command_without_out, machine_info
from mobile_lr.manager.recommended import plan_warmup
from mobile_lr.schedules import parse_spec

RESULTS = RESULTS_DIR / "budget_ceiling.json"
CUTS = (10, 30, 70, 140, 200)
LR_GRID = (0.01, 0.03)
POINTS = ("x", "y", "z")


def phone_factor(t: int, cut: int) -> float:
    """The phone set-up's LR factor at step ``t`` for a plan of ``cut`` steps known from step 0."""
    spec = {"format": "mobile-lr.schedule/1", "base_lr": 1.0, "shape": plan_warmup(0.1, 0.6),
            "budget": {"mode": "replan"}}
    return float(_schedule(json.dumps(spec)).lr(t, [(0, cut)]))


_SCHEDULES: dict[str, Any] = {}


def _schedule(key: str) -> Any:
    if key not in _SCHEDULES:
        _SCHEDULES[key] = parse_spec(json.loads(key))
    return _SCHEDULES[key]


def cooldown(fraction: float) -> Callable[[int, int], float]:
    """The phone's curve times a linear decay to 0 over the last ``fraction`` of the cut."""
    def f(t: int, cut: int) -> float:
        d = round(fraction * cut)
        tail = 1.0 - (t - (cut - d) + 1) / (d + 1) if d > 0 and t >= cut - d else 1.0
        return phone_factor(t, cut) * tail
    return f


@dataclasses.dataclass(frozen=True)
class SfVariant:
    name: str
    r: float
    factor: Callable[[int, int], float]
    beta1: float | None = None  # None: the recipe's
    points: tuple[str, ...] = ("x",)


VARIANTS = (
    SfVariant("sf-r0", 0.0, phone_factor, points=POINTS),
    SfVariant("sf-r1", 1.0, phone_factor, points=POINTS),
    SfVariant("sf-r2", 2.0, phone_factor, points=POINTS),
    SfVariant("sf-r1-cd20", 1.0, cooldown(0.2)),
    SfVariant("sf-r1-b098", 1.0, phone_factor, beta1=0.98),
)


def _accuracy_at(rt: Any, test: Any, point: str) -> float:
    """Accuracy with the trainable parameters at schedule-free's ``point`` (x, y or z), restored after."""
    import torch

    opt, params = rt._optimizer, list(rt._params.values())
    saved = [p.detach().clone() for p in params]
    beta1 = opt.param_groups[0]["betas"][0]
    with torch.no_grad():
        for p in params:
            z = opt.state[p]["z"]
            if point == "z":
                p.copy_(z)
            elif point == "x":  # y = (1 - beta1) z + beta1 x
                p.copy_((p - (1.0 - beta1) * z) / beta1)
    choice, rt.optimizer_choice = rt.optimizer_choice, "recipe"  # evaluate the parameters as they are
    try:
        return 100.0 * float(rt.evaluate(test.x, test.y)["accuracy"])
    finally:
        rt.optimizer_choice = choice
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)


def run_task(name: str, seeds: int, grid: Sequence[float], t0: float) -> dict[str, Any]:
    from mobile_lr.runtime.torch_rt import TorchRuntime

    task = TASKS[name]
    recipe = task.recipe()
    acc: dict[str, dict[str, dict[str, list[float]]]] = {}

    def put(method: str, lr: float, cut: int, value: float) -> None:
        acc.setdefault(method, {}).setdefault(f"{lr:g}", {}).setdefault(str(cut), []).append(value)

    for seed in range(seeds):
        train, test = task.data(seed)
        batches = batch_order(seed, NOMINAL_STEPS, len(train))
        for lr in grid:
            for v in VARIANTS:
                rec = recipe if v.beta1 is None else dataclasses.replace(
                    recipe, optimizer=dataclasses.replace(recipe.optimizer,
                                                          betas=(v.beta1, recipe.optimizer.betas[1])))
                for cut in CUTS:
                    rt = TorchRuntime(rec, optimizer="schedulefree", sf_r=v.r)
                    for t in range(cut):
                        b = batches[t]
                        rt.step(train.x[b], train.y[b], lr * v.factor(t, cut))
                    for point in v.points:
                        name = v.name if point == "x" else f"{v.name}@{point}"
                        put(name, lr, cut, _accuracy_at(rt, test, point))
            for method, factor in (("adamw", lambda t: 1.0), ("adamw-cosine-T",
                                                              lambda t: cosine_factor(t, NOMINAL_STEPS))):
                rt = TorchRuntime(recipe)
                for t in range(max(CUTS)):
                    b = batches[t]
                    rt.step(train.x[b], train.y[b], lr * factor(t))
                    if t + 1 in CUTS:
                        put(method, lr, t + 1, 100.0 * float(rt.evaluate(test.x, test.y)["accuracy"]))
        print(f"[{time.perf_counter() - t0:6.0f}s] {name} seed {seed} done", file=sys.stderr, flush=True)
    return {"task": name, "per_seed": acc, "summary": summarise(acc)}


def summarise(acc: Mapping[str, Mapping[str, Mapping[str, list[float]]]]) -> dict[str, Any]:
    """Every method at its best LR per cut; the best schedule-free method of each cut and its
    paired gap (over seeds) to AdamW at AdamW's best LR of that cut."""
    best: dict[str, dict[str, Any]] = {}
    for m, by_lr in acc.items():
        best[m] = {}
        for c in map(str, CUTS):
            lr = max(by_lr, key=lambda r, c=c: np.mean(by_lr[r][c]))
            best[m][c] = {"lr": float(lr), "mean": float(np.mean(by_lr[lr][c]))}
    gaps = {}
    for c in map(str, CUTS):
        sf = max((m for m in acc if m.startswith("sf-")), key=lambda m, c=c: best[m][c]["mean"])
        a, b = (np.asarray(acc[m][f"{best[m][c]['lr']:g}"][c]) for m in (sf, "adamw"))
        d = a - b
        gaps[c] = {"best_sf": sf, "mean": float(d.mean()), "se": float(d.std(ddof=1) / math.sqrt(len(d)))
                   if len(d) > 1 else 0.0}
    return {"best_lr_per_cut": best, "best_sf_minus_adamw": gaps}


def format_task(cell: Mapping[str, Any]) -> str:
    s = cell["summary"]
    lines = [f"== {cell['task']}: accuracy % at each method's best LR per cut",
             f"{'method':20s} " + " ".join(f"{c:>12d}" for c in CUTS)]
    for m, row in s["best_lr_per_cut"].items():
        lines.append(f"{m:20s} " + " ".join(f"{row[str(c)]['mean']:5.1f} [{row[str(c)]['lr']:g}]".rjust(12)
                                             for c in CUTS))
    g = s["best_sf_minus_adamw"]
    gaps = [f"{g[str(c)]['mean']:+.1f}±{g[str(c)]['se']:.1f}".rjust(12) for c in CUTS]
    lines.append(f"{'best sf - adamw':20s} " + " ".join(gaps))
    lines.append(f"{'(best sf variant)':20s} " + " ".join(g[str(c)]["best_sf"].rjust(12) for c in CUTS))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.budget_ceiling", description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="tabular,digits,new-users,new-family,activity",
                    help="comma-separated tasks of bench.budget_tasks")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--lrs", default=",".join(f"{x:g}" for x in LR_GRID), help="comma-separated LR grid")
    ap.add_argument("--out", default=str(RESULTS), help="JSON output path")
    ap.add_argument("--quick", action="store_true", help="smoke run: activity, 2 seeds, LR 0.03")
    args = ap.parse_args(argv)
    if args.quick:
        args.tasks, args.seeds, args.lrs = "activity", 2, "0.03"
    tasks = [t for t in args.tasks.split(",") if t]
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        print(f"error: unknown task {', '.join(bad)} (choose from {', '.join(TASKS)})", file=sys.stderr)
        return 2
    try:
        grid = [float(x) for x in args.lrs.split(",") if x]
    except ValueError:
        print(f"error: --lrs must be numbers, not {args.lrs!r}", file=sys.stderr)
        return 2
    if args.seeds < 2 or not grid:
        print("error: --seeds must be at least 2 and --lrs not empty", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    cells = {}
    for name in tasks:
        cells[name] = run_task(name, args.seeds, grid, t0)
        print(format_task(cells[name]) + "\n")
    doc = {"format": "mobile-lr.bench.budget_ceiling/1", "bench": "budget_ceiling",
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "command": command_without_out(" ".join(["python -m bench.budget_ceiling", *sys.argv[1:]])),
           "machine": {**machine_info(), "torch_threads": 1},
           "load_average": [round(x, 2) for x in os.getloadavg()],
           "elapsed_s": round(time.perf_counter() - t0, 1),
           "config": {"nominal_steps": NOMINAL_STEPS, "cuts": list(CUTS), "seeds": args.seeds,
                      "lr_grid": grid, "batch": BATCH, "variants": [v.name for v in VARIANTS]},
           "cells": cells}
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
