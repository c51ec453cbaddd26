"""``mobile-lr fleet-train``: a federated fleet of simulated phones on Flower."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from mobile_lr.cli.output import seed
from mobile_lr.extras import optional_imports
from mobile_lr.federated.fleet import LOCAL_SCHEDULES, STRATEGIES, FleetConfig
from mobile_lr.validation import ValidationError, check_int

ENGINES = ("simulation", "deployment")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fleet-train", help="federated training over a fleet of simulated phones (Flower)",
        description="Federated learning over N simulated phones with Flower. Each phone draws a "
                    "profile, a day (battery, charger, ambient) and its user's handwriting, and "
                    "trains the exported digits model under the schedule manager for as many "
                    "steps as its budget allows; the server runs FedAvg with the chosen client "
                    "selection. Prints a per-round table; --out writes run.json, report.md and "
                    "fleet.png. --engine deployment writes a Flower app for a SuperLink and "
                    "SuperNodes instead of running.")
    p.add_argument("--clients", type=int, required=True, help="phones in the fleet")
    p.add_argument("--rounds", type=int, required=True, help="federated rounds")
    p.add_argument("--fraction", type=float, required=True,
                   help="fraction of the phones asked to train per round, in (0, 1]")
    p.add_argument("--strategy", default="battery-aware", choices=STRATEGIES,
                   help="battery-aware selection, FedAvg weighted by steps run, or Flower's "
                        "default FedAvg with fixed local epochs (default: battery-aware)")
    p.add_argument("--engine", default="simulation", choices=ENGINES,
                   help="simulation: Flower's simulation engine here; deployment: write the Flower "
                        "app and print the SuperLink/SuperNode commands (default: simulation)")
    p.add_argument("--seed", type=seed, default=0, help="fleet seed (phones, days, users, sampling)")
    p.add_argument("--lr", type=float, help="local SGD learning rate (default 0.1)")
    p.add_argument("--local-schedule", choices=LOCAL_SCHEDULES,
                   help="manager-driven phones' local LR schedule (default wsd-peak: the recommended "
                        "WSD with the peak-LR rule; fedavg-fixed always runs a constant LR)")
    p.add_argument("--local-epochs", type=int, help="local epochs of a full round (default 7)")
    p.add_argument("--kill-prob", type=float,
                   help="chance a training phone's app is killed mid-round (default 0.05)")
    p.add_argument("--step-factor", type=float,
                   help="simulated cost of a local step, in profile reference steps (default 500)")
    p.add_argument("--runtime", choices=("ort", "torch"), default="ort", help="training runtime")
    p.add_argument("--actors", type=int, default=2, help="Ray actors running ClientApps (1 CPU each)")
    p.add_argument("--out", type=Path, help="run directory (bundle, run.json, report.md, fleet.png)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=cmd_fleet_train)


def _config(args: argparse.Namespace, bundle: str, sha: str, out: str) -> FleetConfig:
    kw: dict[str, Any] = {"clients": args.clients, "num_rounds": args.rounds, "fraction": args.fraction,
                          "strategy": args.strategy, "seed": args.seed, "runtime": args.runtime,
                          "bundle_dir": bundle, "bundle_sha256": sha, "out_dir": out}
    for name in ("lr", "local_schedule", "local_epochs", "kill_prob", "step_factor"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    return FleetConfig(**kw)


def _deployment(args: argparse.Namespace) -> int:
    from mobile_lr.federated.run import prepare_bundle, write_flower_app

    if args.out is None:
        raise ValidationError("--out", "missing", "a run directory for the bundle and the Flower app")
    bundle, sha = prepare_bundle(args.out / "bundle", seed=args.seed)
    cfg = _config(args, str(Path(bundle).resolve()), sha, str(args.out.resolve()))
    app_dir = write_flower_app(cfg, args.out)
    # Flower 1.42: the SuperLink serves its Fleet, Control and Runtime APIs on one HTTP port (8000);
    # each SuperNode on a machine needs its own --port for its ClientApp runtime API
    commands = [
        "flower-superlink --insecure",
        *(f"flower-supernode --insecure --superlink <superlink-host>:8000 --port {9094 + i} "
          f"--node-config 'partition-id={i} num-partitions={cfg.clients}'"
          for i in range(min(cfg.clients, 3))),
        f"flwr run {app_dir} <connection> --stream  # [superlink.<connection>] address = "
        f"\"<superlink-host>:8000\", insecure = true in $FLWR_HOME/config.toml (default ~/.flwr)",
    ]
    if args.json:
        print(json.dumps({"engine": "deployment", "app_dir": str(app_dir), "bundle_sha256": sha,
                          "config": cfg.to_run_config(), "commands": commands}, indent=2))
        return 0
    print(f"Flower app written to {app_dir} (run config = this run's settings)")
    print(f"one SuperNode per phone, partition-id 0..{cfg.clients - 1}; e.g.:")
    for c in commands:
        print("  " + c)
    return 0


def cmd_fleet_train(args: argparse.Namespace) -> int:
    check_int(args.actors, "--actors", lo=1, hi=256)   # Ray actors of 1 CPU each (budgets' --workers bound)
    if args.engine == "deployment":
        return _deployment(args)
    from mobile_lr.federated.report import format_table
    from mobile_lr.federated.run import prepare_bundle, simulate

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.out if args.out is not None else Path(tmp)
        # validate the settings before the seconds of pre-training and export
        _config(args, "", "", "")
        bundle, sha = prepare_bundle(run_dir / "bundle", seed=args.seed)
        cfg = _config(args, bundle, sha, str(args.out) if args.out is not None else "")
        bar = None
        if not args.json and sys.stderr.isatty():
            with optional_imports(__name__):
                from tqdm import tqdm

            bar = tqdm(total=cfg.num_rounds, desc="rounds", unit="round", file=sys.stderr)

        def progress(row: dict[str, Any]) -> None:
            if bar is not None:
                bar.set_postfix(acc=f"{row.get('accuracy', 0.0):.3f}", trained=row["trained"])
                bar.update(1)

        try:
            report = simulate(cfg, actors=args.actors, progress=progress)
        finally:
            if bar is not None:
                bar.close()
    if args.json:
        print(json.dumps(report))
        return 0
    print(format_table(report))
    if args.out is not None:
        print(f"report: {args.out / 'report.md'}")
    return 0
