"""``mobile-lr lr-find``: Smith's LR range test on a bundle, the way the manager runs it on the phone.

The sweep is the manager's own (:class:`mobile_lr.manager.RangeTestConfig`):
exponentially spaced LRs from ``base_lr·start_factor`` to ``base_lr·end_factor``,
the loss smoothed by a debiased EMA, stopped early on divergence, the LR at the
steepest descent suggested. It runs in the real runtime on a simulated phone on
the charger (the budget does not bind), so the numbers are those a phone would
see for the same data.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mobile_lr.cli.output import print_json
from mobile_lr.cli.simulate_cmd import add_runtime_arguments
from mobile_lr.extras import optional_imports

if TYPE_CHECKING:
    from mobile_lr.manager.range_test import RangeTest


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lr-find", help="LR range test on a bundle (the manager's sweep); suggests a base LR",
        description="Run the schedule manager's LR range test on a bundle in the real runtime and "
                    "print the suggested learning rate (steepest descent of the smoothed loss); "
                    "optionally plot loss against LR.")
    p.add_argument("--bundle", required=True, type=Path, help="bundle directory (mobile-lr export)")
    add_runtime_arguments(p)
    p.add_argument("--data", type=Path, help="user data .npz (x_train, y_train, x_test, y_test)")
    p.add_argument("--steps", type=int, default=100, help="points of the sweep (default 100)")
    p.add_argument("--start-factor", type=float, default=1e-3,
                   help="first LR as a factor of the bundle's base LR (default 1e-3)")
    p.add_argument("--end-factor", type=float, default=10.0,
                   help="last LR as a factor of the bundle's base LR (default 10)")
    p.add_argument("--smoothing", type=float, default=0.98,
                   help="EMA factor of the loss smoothing (default 0.98, fastai's)")
    p.add_argument("--plot", type=Path, help="write loss against LR to this PNG")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_lr_find)


def cmd_lr_find(args: argparse.Namespace) -> int:
    from mobile_lr.bundle import load_bundle
    from mobile_lr.cli.simulate_cmd import load_user_data, runtime_options
    from mobile_lr.device import DeviceState, SimulatedDevice, load_profile
    from mobile_lr.manager import ManagerConfig, ScheduleManager
    from mobile_lr.runtime import open_runtime
    from mobile_lr.sim.session import run_session
    from mobile_lr.sim.simulate import bundle_schedule
    from mobile_lr.validation import check_int

    steps = check_int(args.steps, "--steps", lo=10, hi=10_000)
    config = ManagerConfig.from_dict({
        "nominal_steps": 2 * steps,  # the sweep may take at most half the nominal steps
        "range_test": {"fraction": 0.5, "min_steps": 10, "max_steps": steps,
                       "start_factor": args.start_factor, "end_factor": args.end_factor,
                       "smoothing": args.smoothing},
    })
    manifest = load_bundle(args.bundle, args.sha256).manifest
    options = runtime_options(args)
    if args.data:
        (xtr, ytr), _ = load_user_data(args.data, manifest)
    else:  # a zoo model's own task's user, else the demo's digits user
        from mobile_lr.sim.workload import bundle_data

        (xtr, ytr), _ = bundle_data(manifest)
    schedule = bundle_schedule(args.bundle)
    spec = {"format": "mobile-lr.schedule/1", "base_lr": schedule["base_lr"],
            "shape": {"type": "constant"}}
    profile = load_profile("flagship")
    device = SimulatedDevice(profile, DeviceState.initial(profile, 1.0, charging=True))
    manager = ScheduleManager(spec, profile, {"window_s": 86400.0}, config, state=device.state)
    runtime = open_runtime(args.backend, args.bundle, **options)
    result = run_session(runtime, manager, device, (xtr, ytr),
                         stop_when=lambda m: m.range_test.status == "done")
    rt = manager.range_test
    points = [(r["lr"], r["loss"]) for r in result.rows
              if r["kind"] == "step" and r["note"] == "range-test"]
    warnings = sweep_warnings(rt, config.range_test.skip_start, points[-1][0] if points else None)
    out = {"base_lr": schedule["base_lr"], "suggested_lr": rt.chosen_lr,
           "how": rt.how or None, "diverged": rt.how == "diverged", "points": len(points),
           "warnings": warnings, "lrs": [p[0] for p in points], "losses": [p[1] for p in points]}
    if args.plot:
        _plot(points, rt.chosen_lr, args.smoothing, args.plot, warnings)
    if args.json:
        print_json(out)
    else:
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        if out["suggested_lr"] is None:
            print("no suggestion: the loss never fell steadily (try a wider sweep)", file=sys.stderr)
        else:
            print(f"suggested LR {out['suggested_lr']:.4g} (bundle base LR {out['base_lr']:.4g}; "
                  f"sweep of {out['points']} points, {out['how']})")
        if args.plot:
            print(f"plot: {args.plot}")
    return 0


def sweep_warnings(rt: RangeTest, skip_start: float, last_lr: float | None) -> list[str]:
    """What makes a suggestion doubtful: steepest descent at the sweep's top end while the loss
    never diverged (the best LR may lie beyond the sweep), or at the first point considered
    (it may lie below). ``rt`` is the manager's finished ``range_test``; "at the edge"
    is within the outer 5 % of the points (at least one)."""
    n, i = rt.points, rt.chosen_index
    if i is None or n == 0:
        return []
    edge = max(1, n // 20)
    out = []
    if i >= n - 1 - edge and rt.how != "diverged":
        top = f" (up to LR {last_lr:.3g})" if last_lr is not None else ""
        out.append(f"the loss never diverged in the sweep{top} and the suggestion sits at its top edge "
                   f"(point {i + 1} of {n}): a better LR may lie above it; sweep further "
                   "(a larger --end-factor)")
    elif i <= max(1, math.floor(skip_start * n)) + edge - 1:
        out.append(f"the suggestion sits at the low edge of the sweep (point {i + 1} of {n}, the first "
                   "ones considered): a better LR may lie below it; start lower (a smaller "
                   "--start-factor)")
    return out


def _plot(points: list[tuple[float, float]], chosen: float | None, beta: float, path: Path,
          warnings: Sequence[str] = ()) -> None:
    """Loss against LR (log axis), the manager's smoothed curve, the suggestion; the warnings,
    if any, under the title."""
    import textwrap

    with optional_imports(__name__):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from mobile_lr.report import figures

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    lrs = [p[0] for p in points]
    ax.plot(lrs, [p[1] for p in points], lw=0.8, alpha=0.4, label="batch loss")
    avg, smooth = 0.0, []
    for i, (_, loss) in enumerate(points):  # the manager's debiased EMA
        avg = beta * avg + (1.0 - beta) * loss
        smooth.append(avg / (1.0 - beta ** (i + 1)))
    ax.plot(lrs, smooth, lw=1.6, label=f"smoothed (debiased EMA {beta:g})")
    if chosen is not None:
        ax.axvline(chosen, color="#d62728", ls="--", label=f"suggested LR {chosen:.3g}")
    ax.set(xscale="log", xlabel="learning rate (log scale)", ylabel="training loss (cross-entropy)")
    title = "LR range test (the manager's sweep)"
    if warnings:
        title += "".join("\n" + textwrap.fill("warning: " + w, 90, break_on_hyphens=False) for w in warnings)
    ax.set_title(title, fontsize=9, loc="left", color="#b00000" if warnings else "black")
    ax.grid(alpha=0.3, lw=0.5)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    figures.save(fig, path, dpi=100)
