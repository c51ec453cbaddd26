"""``mobile-lr budgets`` (alias ``fleet``): step budgets of many simulated phones over a day
(no training)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from mobile_lr.atomic_files import write_atomic
from mobile_lr.budget import load_policy
from mobile_lr.cli.output import finite, out_dir, print_json, seed
from mobile_lr.device import BUILTIN_PROFILES
from mobile_lr.extras import optional_imports
from mobile_lr.sim.budgets import CHUNK, simulate_budgets
from mobile_lr.sim.scenario import builtin_scenarios
from mobile_lr.validation import ValidationError, check_int

JSON_NAME = "budgets.json"
FIGURE_NAME = "budgets.png"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "budgets", aliases=["fleet"],
        help="simulate many phones' step budgets over a day (vectorised, no training)",
        description="Simulate N phones living the named scenarios (the same files as "
                    "`mobile-lr simulate`, with each phone's start level, ambient and event "
                    "times spread around the scenario's): in every OS window, the steps the "
                    "manager would plan and run (battery floor, thermal pauses, time), "
                    "vectorised with numpy. Reports the distribution of affordable steps, the "
                    "stop reasons and the energy. Phones are spread evenly over every "
                    "(profile, scenario) pair.")
    p.add_argument("--profiles", default=",".join(BUILTIN_PROFILES),
                   help="comma-separated built-in profiles or .json/.toml files "
                        f"(default {','.join(BUILTIN_PROFILES)})")
    p.add_argument("--scenarios", default=None,
                   help="comma-separated built-in scenarios or scenario JSON files "
                        f"(default all: {','.join(builtin_scenarios())})")
    p.add_argument("--devices", type=int, default=1000, help="phones simulated (default 1000)")
    p.add_argument("--days", type=int, default=1, help="days per phone (default 1)")
    p.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    p.add_argument("--policy", type=Path,
                   help="policy JSON file replacing every scenario's own policy")
    p.add_argument("--cap-nominal", action="store_true",
                   help="stop a phone once it has run the scenario's nominal steps (the "
                        "manager's 'done'); default: count every affordable step")
    p.add_argument("--workers", type=int, default=0,
                   help="processes the phones' chunks are spread over (default 0: one per "
                        f"{CHUNK:,} device-days, at most the CPU count); the result does not "
                        "depend on it")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", type=Path, help=f"directory to write {JSON_NAME} and {FIGURE_NAME} into")
    p.set_defaults(func=cmd_budgets)


def _names(text: str, field: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise ValidationError(field, "empty list", "comma-separated names")
    return names


MAX_DEVICES = 1_000_000
MAX_DEVICE_DAYS = 10_000_000  # ~0.6 GB of outcomes (60 B each) and minutes; bench/budgets.py measures it


def cmd_budgets(args: argparse.Namespace) -> int:
    check_int(args.devices, "--devices", lo=1, hi=MAX_DEVICES)
    check_int(args.days, "--days", lo=1, hi=MAX_DEVICE_DAYS // args.devices)
    check_int(args.workers, "--workers", lo=0, hi=256)
    workers = args.workers or max(1, min(os.cpu_count() or 1, args.devices * args.days // CHUNK))
    profiles = _names(args.profiles, "--profiles")
    scenarios = builtin_scenarios() if args.scenarios is None \
        else _names(args.scenarios, "--scenarios")
    policy = load_policy(args.policy) if args.policy else None
    bar = None
    if not args.json and sys.stderr.isatty():  # the bar alone needs tqdm: --json runs on the core
        with optional_imports(__name__):
            from tqdm import tqdm
        bar = tqdm(total=args.devices * args.days, unit="device-day", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        out = simulate_budgets(profiles, scenarios, args.devices, args.seed, days=args.days,
                             policy=policy, cap_nominal=args.cap_nominal,
                             progress=None if bar is None else bar.update, workers=workers)
    finally:
        if bar is not None:
            bar.close()
    out["wall_seconds"] = time.perf_counter() - t0
    if args.out is not None:
        directory = out_dir(args.out)
        write_atomic(directory / JSON_NAME, json.dumps(finite(out), indent=2, allow_nan=False) + "\n")
        _figure(out, directory / FIGURE_NAME)
    if args.json:
        print_json(out, indent=2)
        return 0
    _print_table(out)
    if args.out is not None:
        print(f"wrote {args.out / JSON_NAME}" + (f" and {args.out / FIGURE_NAME}"
                                                  if (args.out / FIGURE_NAME).exists() else ""))
    return 0


def _figure(out: dict[str, Any], path: Path) -> None:
    """``budgets.png`` when the figures' extra (matplotlib) is installed; the core install (numpy
    only) writes the JSON and says why the figure is missing."""
    from mobile_lr.extras import MissingExtraError

    try:
        from mobile_lr.report import figures
    except MissingExtraError as err:
        print(f"{path.name} not written: {err}", file=sys.stderr)
        return
    figures.save(figures.fleet_figure(out), path)


def _print_table(out: dict[str, Any]) -> None:
    cfg = out["config"]
    print(f"{cfg['devices'] * cfg['days']} device-days ({cfg['devices']} phones x {cfg['days']} "
          f"day(s), seed {cfg['seed']}) in {out['wall_seconds']:.2f} s")
    head = (f"{'profile':<10} {'scenario':<20} {'n':>6} {'steps p5':>9} {'p50':>9} {'p95':>9} "
            f"{'nominal':>7} {'energy p50':>10} {'%batt':>6} {'pauses':>6}  stop reasons")
    print(head)
    for c in [*out["cells"], {"profile": "all", "scenario": "", **out["total"]}]:
        reasons = ", ".join(f"{k} {v}" for k, v in c["stop_reasons"].items() if v)
        print(f"{c['profile']:<10} {c['scenario']:<20} {c['device_days']:>6} "
              f"{c['steps']['p5']:>9.0f} {c['steps']['p50']:>9.0f} {c['steps']['p95']:>9.0f} "
              f"{c.get('nominal_steps', ''):>7} "
              f"{c['energy_j']['p50']:>9.0f}J {c['energy_pct_of_battery']['p50']:>5.1f}% "
              f"{c['thermal_pauses']['mean']:>6.1f}  {reasons}")
    tot = out["total"]
    low = "-" if tot["min_level"] is None else f"{tot['min_level']:.2%}"
    print(f"lowest battery at the end of a training step: {low}; "
          f"plans ending below the floor: {tot['floor_violations']}")
