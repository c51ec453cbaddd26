"""``mobile-lr schedule eval|plot|validate|golden``: look at a schedule spec."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mobile_lr.cli.output import out_file, print_json
from mobile_lr.extras import optional_imports
from mobile_lr.schedules import Schedule, load_spec
from mobile_lr.validation import ValidationError, check_int


def _replan(text: str) -> tuple[int, int]:
    try:
        step, total = text.split(":")
        pair = int(step), int(total)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected STEP:TOTAL with integers, got {text!r}") from None
    if pair[0] < 0 or pair[1] < 0:
        raise argparse.ArgumentTypeError(f"STEP and TOTAL must be >= 0, got {text!r}")
    return pair


MAX_EVAL_STEPS = 10_000_000  # `schedule eval` prints one line (or JSON number) per step
MAX_PLOT_STEPS = 1_000_000


def _plan(sched: Schedule, total: int | None, replans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    if total is None:
        total = sched.total_steps
    if total is None:
        raise ValidationError("--total", "the spec has no total_steps", "--total T (T >= 1)")
    check_int(total, "--total", lo=1)
    for step, new_total in replans:
        check_int(step, "--replan", lo=0)
        check_int(new_total, "--replan", lo=0)
    return [(0, total), *sorted(replans)]


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", type=Path, help="schedule spec (JSON, format mobile-lr.schedule/1)")
    p.add_argument("--total", type=int, help="planned total steps (default: the spec's total_steps)")
    p.add_argument("--replan", type=_replan, action="append", default=[], metavar="STEP:TOTAL",
                   help="a budget change: at STEP the planned total becomes TOTAL (repeatable)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schedule", help="evaluate, plot or validate a schedule spec",
                       description="Evaluate, plot or validate a schedule spec.")
    ssub = p.add_subparsers(dest="schedule_command", metavar="SUBCOMMAND")
    ssub.required = True

    ev = ssub.add_parser("eval", help="print the LR of steps 0..N-1",
                         description="Print the learning rate of steps 0..N-1 (the value "
                                     "PyTorch's get_last_lr() gives after t scheduler steps).")
    _add_common(ev)
    ev.add_argument("--steps", type=int, required=True, help="number of steps N to print")
    ev.add_argument("--json", action="store_true", help='print {"lr": [N floats]}')
    ev.set_defaults(func=cmd_eval)

    pl = ssub.add_parser("plot", help="draw the LR curve to a PNG",
                         description="Draw the LR curve, with re-plan events marked.")
    _add_common(pl)
    pl.add_argument("--steps", type=int, help="steps to draw (default: the largest total + 10%%)")
    pl.add_argument("--out", type=Path, required=True, help="PNG file to write")
    pl.set_defaults(func=cmd_plot)

    va = ssub.add_parser("validate", help="check a spec and exit 0 (valid) or 2 (invalid)")
    va.add_argument("spec", type=Path)
    va.add_argument("--json", action="store_true")
    va.set_defaults(func=cmd_validate)

    go = ssub.add_parser("golden", help="write the golden vectors shared with the Kotlin core",
                         description="Write the golden vectors (specs with their Python LRs, "
                                     "refused specs, planner and manager cases) that the Kotlin "
                                     "core's tests must reproduce.")
    go.add_argument("--out", type=Path, required=True)
    go.set_defaults(func=cmd_golden)


def cmd_eval(args: argparse.Namespace) -> int:
    sched = load_spec(args.spec)
    check_int(args.steps, "--steps", lo=0, hi=MAX_EVAL_STEPS)
    plan = _plan(sched, args.total, args.replan)
    lrs = sched.lrs(np.arange(args.steps), plan)
    if args.json:
        print_json({"lr": [float(x) for x in lrs]})  # an LR at a growth shape's limit is null
        return 0
    print(f"{'step':>6}  {'lr':>14}")
    events = {t: total for t, total in plan[1:]}
    for t, lr in enumerate(lrs):
        mark = f"  <- re-plan: total {events[t]}" if t in events else ""
        print(f"{t:>6}  {lr:>14.8g}{mark}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    with optional_imports(__name__):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from mobile_lr.report import figures

    sched = load_spec(args.spec)
    plan = _plan(sched, args.total, args.replan)
    horizon = args.steps or min(int(max(total for _, total in plan) * 1.1) + 1, MAX_PLOT_STEPS)
    check_int(horizon, "--steps", lo=1, hi=MAX_PLOT_STEPS)
    out_file(args.out)
    steps = np.arange(horizon)
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=120)
    if len(plan) > 1:
        ax.plot(steps, sched.lrs(steps, plan[:1]), color="0.65", lw=1.2, ls="--",
                label=f"as first planned (total {plan[0][1]})")
    ax.plot(steps, sched.lrs(steps, plan), color="C0", lw=2, label="learning rate")
    for t, total in plan[1:]:
        ax.axvline(t, color="C3", lw=1, ls=":")
        ax.annotate(f"re-plan → {total}", (t, ax.get_ylim()[1]), rotation=90, va="top", ha="right",
                    fontsize=8, color="C3")
    ax.axvline(plan[-1][1], color="0.3", lw=1, ls="-.", label=f"planned end ({plan[-1][1]})")
    shape = sched.to_dict()["shape"]["type"]
    ax.set(xlabel="step", ylabel="learning rate",
           title=f"{args.spec.name}: {shape}, budget mode {sched.budget_mode}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    figures.save(fig, args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    sched = load_spec(args.spec)
    info = {"valid": True, "shape": sched.to_dict()["shape"]["type"],
            "budget_mode": sched.budget_mode, "follows_plan": sched.follows_plan}
    if args.json:
        print_json(info)
    else:
        print(f"{args.spec}: valid ({info['shape']}, budget mode {info['budget_mode']})")
    return 0


def cmd_golden(args: argparse.Namespace) -> int:
    from mobile_lr.testing import golden

    data = golden.build()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    n = len(data["schedules"])
    print(f"wrote {args.out}: {n} schedules, {len(data['invalid_specs'])} refused specs"
          + "".join(f", {len(v)} {k}" for k, v in data.items()
                    if k not in ("format", "schedules", "invalid_specs")), file=sys.stderr)
    return 0
