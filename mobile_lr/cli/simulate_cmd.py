"""``mobile-lr simulate``: a bundle's real artifacts on a simulated phone, policies side by side."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mobile_lr.device import BUILTIN_PROFILES, load_profile
from mobile_lr.extras import optional_imports
from mobile_lr.runtime import RUNTIMES
from mobile_lr.validation import ValidationError

DEFAULT_POLICIES = "manager,naive,constant"


def register(sub: argparse._SubParsersAction) -> None:
    from mobile_lr.sim.policies import POLICIES
    from mobile_lr.sim.scenario import builtin_scenarios

    p = sub.add_parser(
        "simulate", help="fine-tune a bundle on a simulated phone (battery, heat, OS windows)",
        description="Run a bundle's real training artifacts in the real runtime while a simulated "
                    "phone supplies time, battery, temperature and thermal status; the schedule "
                    "manager decides every step. Prints one summary row per policy and writes a "
                    "run directory (steps.csv, final.ckpt, summary.json per policy; report.md, "
                    "report.html and PNG plots).")
    p.add_argument("--bundle", required=True, type=Path, help="bundle directory (mobile-lr export)")
    p.add_argument("--profile", default="mid-range",
                   help=f"device profile: {', '.join(BUILTIN_PROFILES)} or a .json/.toml file "
                        "(default mid-range)")
    p.add_argument("--scenario", default="unplugged-midway",
                   help=f"scenario: {', '.join(builtin_scenarios())} or a JSON file "
                        "(default unplugged-midway)")
    p.add_argument("--data", type=Path,
                   help="user data .npz with x_train, y_train, x_test, y_test (default: the demo user)")
    p.add_argument("--policy", type=Path, help="user policy JSON (replaces the scenario's)")
    p.add_argument("--compare", default=DEFAULT_POLICIES,
                   help=f"policies to run, comma-separated, from: {', '.join(POLICIES)} "
                        f"(default {DEFAULT_POLICIES})")
    p.add_argument("--backend", default="ort", choices=RUNTIMES, help="training runtime (default ort)")
    p.add_argument("--calibrate", action="store_true",
                   help="measure this machine's real step time for the bundle and scale it to the "
                        "profile's tier (instead of the scenario's workload)")
    p.add_argument("--seed", type=int, default=0, help="mini-batch order seed (default 0)")
    p.add_argument("--out", type=Path, help="run directory (default runs/<profile>-<scenario>)")
    p.add_argument("--json", action="store_true", help="print the summaries as one JSON object")
    p.set_defaults(func=cmd_simulate)


def load_user_data(path: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A user's data file: ``x_train``, ``y_train``, ``x_test``, ``y_test`` (no pickles)."""
    if not path.exists():
        raise FileNotFoundError(f"--data: {path} does not exist")
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as npz:
            xs = {k: np.asarray(npz[k]) for k in keys if k in npz}
    except (ValueError, OSError) as err:
        raise ValidationError("--data", f"{path.name} is not a readable .npz: {err}") from None
    missing = [k for k in keys if k not in xs]
    if missing:
        raise ValidationError("--data", f"{path.name} lacks {', '.join(missing)}",
                              "an .npz with x_train, y_train, x_test, y_test")
    for split in ("train", "test"):
        if len(xs[f"x_{split}"]) != len(xs[f"y_{split}"]) or len(xs[f"x_{split}"]) == 0:
            raise ValidationError(f"--data.{split}", "inputs and labels differ in count or are empty")
    return ((xs["x_train"].astype(np.float32), xs["y_train"].astype(np.int64)),
            (xs["x_test"].astype(np.float32), xs["y_test"].astype(np.int64)))


def cmd_simulate(args: argparse.Namespace) -> int:
    from mobile_lr.budget import load_policy
    from mobile_lr.report import format_table, write_report
    from mobile_lr.sim.policies import parse_policy_list
    from mobile_lr.sim.scenario import load_scenario
    from mobile_lr.sim.simulate import bundle_schedule, calibrate, json_default, simulate

    policies = parse_policy_list(args.compare)
    profile = load_profile(args.profile)
    scenario = load_scenario(args.scenario)
    data = load_user_data(args.data) if args.data else None
    if data is None:
        from mobile_lr.datasets import user_split

        train, test = user_split()
        data = ((train.x, train.y), (test.x, test.y))
    out = args.out or Path("runs") / f"{profile.name}-{scenario.name}"
    extra: dict[str, Any] = {}
    calib = None
    if args.calibrate:
        calib = calibrate(args.bundle, profile, data[0], backend=args.backend)
        extra = {"phone_step_s": calib.phone_step_s, "ignore_workload": True}
    show = not args.json and sys.stderr.isatty()
    bar = None
    if show:
        with optional_imports(__name__):
            from tqdm import tqdm

        bar = tqdm(desc=f"{profile.name}/{scenario.name}", unit="step", file=sys.stderr)
    runs = simulate(args.bundle, profile=profile, scenario=scenario, policies=policies,
                    backend=args.backend, data=data, policy_override=args.policy, out_dir=out,
                    seed=args.seed, on_step=None if bar is None else (lambda _n: bar.update()),
                    **extra)
    if bar is not None:
        bar.close()
    notes = [f"Bundle `{Path(args.bundle).name}`, backend {args.backend}, profile {profile.name}, "
             f"scenario {scenario.name}: {scenario.description}"]
    shown = scenario if args.policy is None else \
        dataclasses.replace(scenario, policy=load_policy(args.policy))  # the report's limits
    report = write_report(runs, out, title=f"mobile-lr simulate: {profile.name} / {scenario.name}",
                          notes=notes, scenarios={scenario.name: shown},
                          base_lr=bundle_schedule(args.bundle)["base_lr"], resolution=100.0 / len(data[1][1]))
    summaries = [r.summary() for r in runs]
    if args.json:
        print(json.dumps({"profile": profile.name, "scenario": scenario.name, "backend": args.backend,
                          "calibration": None if calib is None else calib.to_dict(),
                          "runs": summaries, "run_dir": str(out), "report": str(report)},
                         default=json_default))
    else:
        if calib is not None:
            print(f"calibration: {calib.desktop_step_s * 1e3:.2f} ms/step here, "
                  f"{calib.desktop_gflops:.1f} GFLOPS here vs {calib.phone_gflops:.0f} on the phone "
                  f"-> {calib.phone_step_s * 1e3:.2f} ms/step on {profile.name}")
        print(format_table(summaries))
        print(f"\nreport: {report}")
    return 0
