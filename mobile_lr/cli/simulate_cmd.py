"""``mobile-lr simulate``: a bundle's real artifacts on a simulated phone, policies side by side."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mobile_lr.bundle import Manifest, load_bundle
from mobile_lr.cli.output import out_dir, print_json, seed
from mobile_lr.device import BUILTIN_PROFILES, load_profile
from mobile_lr.extras import optional_imports
from mobile_lr.runtime import RUNTIMES
from mobile_lr.validation import ValidationError, check_zip_members

DEFAULT_POLICIES = "manager,naive,constant"


def register(sub: argparse._SubParsersAction) -> None:
    from mobile_lr.sim.scenario import builtin_scenarios
    from mobile_lr.sim.setups import SETUPS

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
                   help="user data .npz with x_train, y_train, x_test, y_test (default: a zoo model's own "
                        "task's user, else the demo's digits user)")
    p.add_argument("--policy", type=Path, help="user policy JSON (replaces the scenario's)")
    p.add_argument("--compare", default=DEFAULT_POLICIES,
                   help=f"policies to run, comma-separated, from: {', '.join(SETUPS)} "
                        f"(default {DEFAULT_POLICIES})")
    add_runtime_arguments(p)
    p.add_argument("--calibrate", action="store_true",
                   help="measure this machine's real step time for the bundle and scale it to the "
                        "profile's throughput (default: a zoo model's own FLOPs per step, any other "
                        "bundle the scenario's workload.step_factor)")
    p.add_argument("--seed", type=seed, default=0, help="mini-batch order seed (default 0)")
    p.add_argument("--out", type=Path, help="run directory (default runs/<profile>-<scenario>)")
    p.add_argument("--json", action="store_true", help="print the summaries as one JSON object")
    p.set_defaults(func=cmd_simulate)


MAX_DATA_BYTES = 1 << 30  # 1 GiB for a user's .npz, inflated
_NPZ_MEMBER = re.compile(r"(x_train|y_train|x_test|y_test|[A-Za-z0-9_.-]{1,128})\.npy")
Data = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def add_runtime_arguments(p: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--recipe``: the runtime, and the model code the PyTorch runtime may use."""
    p.add_argument("--backend", default="ort", choices=RUNTIMES, help="training runtime (default ort)")
    p.add_argument("--recipe", action="append", default=[], metavar="SPEC",
                   help="with --backend torch: a recipe you trust (package.module:function) for a bundle "
                        "exported from it; the bundle's manifest only names the recipe, it never supplies "
                        "code (the built-in recipes are always allowed; repeatable)")
    p.add_argument("--sha256", metavar="HEX",
                   help="expected bundle identity (SHA-256 of manifest.json, as printed by mobile-lr "
                        "export): a re-hashed bundle is refused")


def runtime_options(args: argparse.Namespace) -> dict[str, Any]:
    """The runtime keyword arguments ``--recipe`` and ``--sha256`` ask for (the PyTorch runtime's
    allow-list, the pinned bundle identity)."""
    pinned = {"expected_sha256": args.sha256} if args.sha256 else {}
    if not args.recipe:
        return pinned
    if args.backend != "torch":
        raise ValidationError("--recipe", "only the PyTorch runtime builds a model from a recipe",
                              "--backend torch")
    from mobile_lr.recipes import load_recipe

    recipes = [load_recipe(spec) for spec in args.recipe]
    return {**pinned, "recipes": {r.name: r for r in recipes}}


def load_user_data(path: Path, manifest: Manifest) -> Data:
    """A user's data file: ``x_train``, ``y_train``, ``x_test``, ``y_test`` (no pickles), in the
    bundle's input dtype (float32 features, or int64 token ids for a model that starts with an
    embedding) and shape (the runtimes' own :class:`ModelIO` conversion, so what simulates is what
    a runtime accepts).

    Refused with ``--data`` named: a file that is not an ``.npz`` of at most
    :data:`MAX_DATA_BYTES` inflated, missing arrays, 0-d arrays, inputs and labels of different
    counts, inputs that do not fit the model (shape, or floats for token ids), labels that are not
    integers or outside the model's ``[0, classes)``.
    """
    from mobile_lr.runtime.base import ModelIO

    io = ModelIO.from_manifest(manifest)
    keys = ("x_train", "y_train", "x_test", "y_test")
    check_zip_members(path, "--data", MAX_DATA_BYTES, _NPZ_MEMBER)
    try:
        with np.load(path, allow_pickle=False) as npz:
            xs = {k: np.asarray(npz[k]) for k in keys if k in npz}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValidationError("--data", f"{path.name} is not a readable .npz: {err}") from None
    missing = [k for k in keys if k not in xs]
    if missing:
        raise ValidationError("--data", f"{path.name} lacks {', '.join(missing)}",
                              "an .npz with x_train, y_train, x_test, y_test")
    out = []
    for split in ("train", "test"):
        try:   # the runtimes' own checks, so what simulates is what a runtime accepts
            x = io.x(xs[f"x_{split}"])
            out.append((x, io.y(xs[f"y_{split}"], len(x))))
        except ValidationError as err:
            raise ValidationError(f"--data.{err.field}_{split}", err.problem, err.allowed) from None
    return out[0], out[1]


def cmd_simulate(args: argparse.Namespace) -> int:
    from mobile_lr.budget import load_policy
    from mobile_lr.report import format_table, write_report
    from mobile_lr.sim.scenario import load_scenario
    from mobile_lr.sim.setups import parse_setup_list
    from mobile_lr.sim.simulate import bundle_schedule, calibrate, json_default, session_batch, simulate
    from mobile_lr.sim.workload import bundle_data, phone_step

    policies = parse_setup_list(args.compare)
    profile = load_profile(args.profile)
    scenario = load_scenario(args.scenario)
    manifest = load_bundle(args.bundle, args.sha256).manifest  # a bad bundle: up front
    data = load_user_data(args.data, manifest) if args.data else bundle_data(manifest)
    options = runtime_options(args)
    batch = session_batch(manifest, args.backend, len(data[0][1]))
    step = phone_step(manifest, profile, scenario, batch_size=batch)  # a bad FLOP count: before the work
    out = out_dir(args.out or Path("runs") / f"{profile.name}-{scenario.name}")  # before the work
    calib = None
    if args.calibrate:
        calib = calibrate(args.bundle, profile, data[0], backend=args.backend, batch_size=batch,
                          runtime_options=options)
        step = phone_step(manifest, profile, scenario, batch_size=batch, calibrated_s=calib.phone_step_s)
    show = not args.json and sys.stderr.isatty()
    bar = None
    if show:
        with optional_imports(__name__):
            from tqdm import tqdm

        bar = tqdm(desc=f"{profile.name}/{scenario.name}", unit="step", file=sys.stderr)
    runs = simulate(args.bundle, profile=profile, scenario=scenario, policies=policies,
                    backend=args.backend, data=data, policy_override=args.policy, out_dir=out,
                    seed=args.seed, on_step=None if bar is None else (lambda _n: bar.update()),
                    runtime_options=options, step=step, batch_size=batch)
    if bar is not None:
        bar.close()
    notes = [f"Bundle `{Path(args.bundle).name}`, backend {args.backend}, profile {profile.name}, "
             f"scenario {scenario.name}: {scenario.description}", step.describe(profile.name) + "."]
    shown = scenario if args.policy is None else \
        dataclasses.replace(scenario, policy=load_policy(args.policy))  # the report's limits
    report = write_report(runs, out, title=f"mobile-lr simulate: {profile.name} / {scenario.name}",
                          notes=notes, scenarios={scenario.name: shown},
                          base_lr=bundle_schedule(args.bundle)["base_lr"], resolution=100.0 / len(data[1][1]))
    summaries = [r.summary() for r in runs]
    if args.json:
        print_json({"profile": profile.name, "scenario": scenario.name, "backend": args.backend,
                    "calibration": None if calib is None else calib.to_dict(), "step_cost": step.to_dict(),
                    "runs": summaries, "run_dir": str(out), "report": str(report)}, default=json_default)
    else:
        if calib is not None:
            print(f"calibration: {calib.desktop_step_s * 1e3:.2f} ms/step here, "
                  f"{calib.desktop_gflops:.1f} GFLOPS here vs {calib.phone_gflops:.0f} on the phone "
                  f"-> {calib.phone_step_s * 1e3:.2f} ms/step on {profile.name}")
        print(step.describe(profile.name))
        print(format_table(summaries))
        print(f"\nreport: {report}")
    return 0
