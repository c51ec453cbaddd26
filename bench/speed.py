"""Speed: one training step with ONNX Runtime, ExecuTorch and PyTorch eager side by side; the
schedule manager's overhead per step against ``torch.optim.lr_scheduler``; the end-to-end step
(manager + ORT step) against a bare ORT step.

Run: ``python -m bench.speed`` (``--quick``: fewer repetitions). For each demo recipe
(digits-mlp, digits-cnn) a bundle is exported into a temporary directory with
``export.export_bundle`` and opened with every runtime (``mobile_lr.runtime.open_runtime``),
all at one thread (ORT intra-op 1, ``torch.set_num_threads(1)``; ExecuTorch's portable kernels
are single-threaded). Every runtime trains on the same batch (the recipe's batch of 32 from
the default user's data) at the same LR. Each measurement is a median over ``--steps``
individually timed calls after ``--warmup`` untimed ones, with the 10th-90th percentile
spread; the runtimes take turns in 20 blocks so that load from elsewhere on a shared
machine hits them alike.

Manager overhead: ``ScheduleManager.next()`` + ``observe()`` (which re-plans the budget from
the device state every step) on the mid-range profile with a cosine schedule, against
``CosineAnnealingLR.step()`` on an SGD optimizer. End-to-end: the same manager driving the ORT
runtime (next, step at the manager's LR, observe) against ``rt.step`` alone.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import print_table, write_result

RECIPES = ("digits-mlp", "digits-cnn")
RUNTIME_KINDS = ("ort", "executorch", "torch")
SPEC = {"format": "mobile-lr.schedule/1", "base_lr": 0.05, "shape": {"type": "cosine"}}


def _stats(ts: list[float], steps: int) -> dict[str, float]:
    q = np.percentile(ts, [10, 50, 90])
    return {"median_us": float(q[1]) * 1e6, "p10_us": float(q[0]) * 1e6, "p90_us": float(q[2]) * 1e6,
            "n": steps}


def _interleaved(fns: dict[str, Callable[[], Any]], steps: int, warmup: int,
                 rounds: int = 20) -> dict[str, dict[str, float]]:
    """Time every function in turns (``rounds`` blocks each), so that a burst of load from
    elsewhere on the machine hits all of them alike; every call is timed on its own."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    ts: dict[str, list[float]] = {k: [] for k in fns}
    clock = time.perf_counter
    per = max(1, steps // rounds)
    for _ in range(rounds):
        for k, fn in fns.items():
            for _ in range(per):
                t0 = clock()
                fn()
                ts[k].append(clock() - t0)
    return {k: _stats(v, len(v)) for k, v in ts.items()}


def _time(fn: Callable[[], Any], steps: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    ts = []
    clock = time.perf_counter
    for _ in range(steps):
        t0 = clock()
        fn()
        ts.append(clock() - t0)
    return _stats(ts, steps)


def _manager():
    from mobile_lr.budget import Policy
    from mobile_lr.device import DeviceState, load_profile
    from mobile_lr.manager import ScheduleManager

    p = load_profile("mid-range")
    mgr = ScheduleManager(SPEC, p, Policy(window_s=1e9), {"nominal_steps": 10**8},
                          DeviceState.initial(p, 0.9))
    return mgr, p


def runtime_steps(steps: int, warmup: int) -> list[dict[str, Any]]:
    import torch

    from mobile_lr.datasets import user_split
    from mobile_lr.export import export_bundle
    from mobile_lr.recipes import load_recipe
    from mobile_lr.runtime import open_runtime

    torch.set_num_threads(1)
    train, _ = user_split()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in RECIPES:
            recipe = load_recipe(name)
            batch = recipe.batch_size
            x, y = train.x[:batch], train.y[:batch]
            out = Path(tmp) / name
            export_bundle(recipe, out)
            fns: dict[str, Callable[[], Any]] = {}
            for kind in RUNTIME_KINDS:
                opts = {"threads": 1} if kind in ("ort", "torch") else {}
                rt = open_runtime(kind, out, **opts)
                fns[f"{kind} step"] = lambda rt=rt, x=x, y=y: rt.step(x, y, 0.01)
            # end-to-end: the manager driving the ORT runtime, against the bare ORT step
            rt = open_runtime("ort", out, threads=1)
            mgr, p = _manager()

            def managed(rt=rt, mgr=mgr, p=p, x=x, y=y):
                d = mgr.next()
                loss = rt.step(x, y, d.lr)
                mgr.observe(loss=loss, step_seconds=p.step_seconds, energy_j=p.step_joules)

            fns["bare ORT step"] = lambda rt=rt, x=x, y=y: rt.step(x, y, 0.01)
            fns["manager + ORT step"] = managed
            times = _interleaved(fns, steps, warmup)
            base = times["torch step"]["median_us"]
            for what, t in times.items():
                row = {"recipe": name, "what": what, "batch": batch, **t}
                if what.endswith(" step") and what.split()[0] in RUNTIME_KINDS:
                    row["vs_torch"] = t["median_us"] / base
                if what == "manager + ORT step":
                    row["vs_bare_ort"] = t["median_us"] / times["bare ORT step"]["median_us"]
                rows.append(row)
    return rows


def scheduler_overhead(steps: int, warmup: int) -> list[dict[str, Any]]:
    import torch

    mgr, p = _manager()

    def manager_step():
        mgr.next()
        mgr.observe(loss=1.0, step_seconds=p.step_seconds, energy_j=p.step_joules)

    w = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([w], lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10**8)
    opt.step()          # torch warns when the scheduler steps before the optimizer
    torch_t = _time(sched.step, steps, warmup)
    mgr_t = _time(manager_step, steps, warmup)
    return [{"what": "torch CosineAnnealingLR.step()", **torch_t},
            {"what": "ScheduleManager.next()+observe()", **mgr_t,
             "vs_torch": mgr_t["median_us"] / torch_t["median_us"]}]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="100 steps, 20 warm-up")
    args = ap.parse_args(argv)
    steps, warmup = (100, 20) if args.quick else (args.steps, args.warmup)
    rt_rows = runtime_steps(steps, warmup)
    sch_rows = scheduler_overhead(max(steps, 2000), warmup)
    cols = [("recipe", "recipe", "s"), ("what", "what", "s"), ("median_us", "median µs", ".0f"),
            ("p10_us", "p10", ".0f"), ("p90_us", "p90", ".0f"), ("vs_torch", "÷ torch", ".2f"),
            ("vs_bare_ort", "÷ bare ORT", ".2f")]
    print(f"training step, batch 32, 1 thread, median of {steps}")
    print_table(rt_rows, cols)
    print("\nLR scheduling per step")
    print_table(sch_rows, [("what", "what", "s"), ("median_us", "median µs", ".1f"),
                           ("p10_us", "p10", ".1f"), ("p90_us", "p90", ".1f"),
                           ("vs_torch", "÷ torch", ".1f")])
    result = {"runtime_steps": rt_rows, "scheduler_overhead": sch_rows, "threads": 1,
              "steps": steps, "warmup": warmup,
              "command": "python -m bench.speed" + (" --quick" if args.quick else "")}
    path = write_result("speed", result)
    print(f"wrote bench/results/{path.name}")
    return result


if __name__ == "__main__":
    main()
