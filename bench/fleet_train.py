"""Federated fleet on Flower's simulation engine: strategies compared over seeds, and scale.

Run: ``python -m bench.fleet_train`` (``--quick``: one seed, small fleets). Every run is a
whole ``flwr.simulation.run_simulation`` (Ray, 2 actors of 1 CPU) of
:mod:`mobile_lr.federated` on one exported bundle:

* compare: the three strategies (battery-aware selection, FedAvg weighted by steps with
  manager-driven phones, Flower's default FedAvg with fixed local epochs) on the same fleets
  (40 phones, 5 rounds, 25 % asked per round, 5 % of training phones killed mid-round), seeds
  0-2, each at the local learning rates 0.05, 0.1 and 0.2; the two manager-driven strategies
  once per local schedule (``--schedules``, default all of ``LOCAL_SCHEDULES``: the
  recommended WSD with the peak-LR rule, WSD without it, a per-round cosine), fixed epochs at
  a constant LR. The summary takes each (strategy, schedule) at its best LR (mean final
  accuracy over the seeds). Accuracy is on held-out users; "gain/kJ" is the accuracy gained
  over the initial model per kJ the asked phones spent; "lost" the share of that energy spent
  by phones that failed mid-round (their work discarded).
* scale: battery-aware (default schedule), 10 % asked per round, 3 rounds, growing fleets; and
  one long run (1,000 phones, 20 rounds) with its wall time. Wall time includes Ray's start
  (about 10 s).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import statistics
import tempfile
import time
from typing import Any

from bench.machine import print_table, write_result
from mobile_lr.federated.fleet import LOCAL_SCHEDULES, STRATEGIES, FleetConfig
from mobile_lr.federated.run import prepare_bundle, simulate


def _one(cfg: FleetConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    report = simulate(cfg, actors=2)
    t = report["totals"]
    schedule = "constant" if cfg.strategy == "fedavg-fixed" else cfg.local_schedule
    print(f"  {cfg.strategy} ({schedule}) seed {cfg.seed} lr {cfg.lr:g}, {cfg.clients} phones x "
          f"{cfg.num_rounds} rounds: "
          f"accuracy {t['final_accuracy']:.3f}, {time.perf_counter() - t0:.0f} s", flush=True)
    return {"strategy": cfg.strategy, "schedule": schedule, "seed": cfg.seed, "lr": cfg.lr,
            "clients": cfg.clients, "rounds": cfg.num_rounds,
            "fraction": cfg.fraction, "initial_acc": t["initial_accuracy"], "final_acc": t["final_accuracy"],
            "energy_kj": t["energy_j"] / 1000, "lost_share": t["lost_share"],
            "gain_per_kj": t["accuracy_gain_per_kj"], "trained": t["trained"], "declined": t["declined"],
            "dropped": t["dropped"], "steps": t["steps"], "steps_lost": t["steps_lost"],
            "floor_margin_min": t["floor_margin_min"], "wall_s": time.perf_counter() - t0,
            "round_wall_s": [r["wall_s"] for r in report["rows"]],
            "accuracy_per_round": [r["accuracy"] for r in report["rows"]]}


def _variants(schedules: tuple[str, ...]) -> list[tuple[str, str]]:
    """(strategy, local schedule) pairs: fixed epochs have no manager, so one constant-LR run."""
    return [(s, sch) for s in STRATEGIES
            for sch in (("constant",) if s == "fedavg-fixed" else schedules)]


def run(seeds: tuple[int, ...], lrs: tuple[float, ...], compare_clients: int, compare_rounds: int,
        scale: tuple[int, ...], long_run: tuple[int, int] | None,
        schedules: tuple[str, ...] = LOCAL_SCHEDULES) -> dict[str, Any]:
    variants = _variants(schedules)
    with tempfile.TemporaryDirectory() as tmp:
        bundle, sha = prepare_bundle(f"{tmp}/bundle")
        base = FleetConfig(clients=compare_clients, num_rounds=compare_rounds, fraction=0.25,
                           bundle_dir=bundle, bundle_sha256=sha, kill_prob=0.05)
        compare = [_one(dataclasses.replace(base, strategy=s, seed=seed, lr=lr,
                                            local_schedule=base.local_schedule if sch == "constant" else sch))
                   for lr, seed, (s, sch) in itertools.product(lrs, seeds, variants)]
        by_lr = []
        for (s, sch), lr in itertools.product(variants, lrs):
            rows = [r for r in compare if r["strategy"] == s and r["schedule"] == sch and r["lr"] == lr]
            by_lr.append({"strategy": s, "schedule": sch, "lr": lr, "runs": len(rows),
                          **{k: statistics.mean(r[k] for r in rows)
                             for k in ("final_acc", "energy_kj", "lost_share", "gain_per_kj", "trained",
                                       "declined", "dropped", "steps", "steps_lost")},
                          "floor_margin_min": min(r["floor_margin_min"] for r in rows)})
        summary = [max((r for r in by_lr if (r["strategy"], r["schedule"]) == v),
                       key=lambda r: r["final_acc"]) for v in variants]
        scaling = [_one(dataclasses.replace(base, clients=n, num_rounds=3, fraction=0.1,
                                            strategy="battery-aware")) for n in scale]
        for prev, row in itertools.pairwise(scaling):
            row["growth_exponent"] = math.log(row["wall_s"] / prev["wall_s"]) / \
                math.log(row["clients"] / prev["clients"])
        long = None
        if long_run is not None:
            n, r = long_run
            long = _one(dataclasses.replace(base, clients=n, num_rounds=r, fraction=0.1,
                                            strategy="battery-aware"))
    return {"compare": compare, "by_lr": by_lr, "summary": summary, "scale": scaling, "long_run": long,
            "settings": {k: v for k, v in base.to_run_config().items()
                         if k not in ("bundle-dir", "bundle-sha256", "out-dir")},
            "schedules": list(schedules), "command": "python -m bench.fleet_train"}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m bench.fleet_train", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="one seed, 20 phones x 3 rounds, small scale")
    ap.add_argument("--no-long", action="store_true", help="skip the 1,000-phone, 20-round run")
    ap.add_argument("--schedules", default=",".join(LOCAL_SCHEDULES),
                    help="manager-driven phones' local schedules to compare, comma-separated "
                         f"(default: {','.join(LOCAL_SCHEDULES)})")
    args = ap.parse_args(argv)
    schedules = tuple(x.strip() for x in args.schedules.split(",") if x.strip())
    for sch in schedules:
        FleetConfig(local_schedule=sch)  # ValidationError on an unknown name
    if args.quick:
        result = run((0,), (0.1,), 20, 3, (50, 100), None, schedules)
    else:
        result = run((0, 1, 2), (0.05, 0.1, 0.2), 40, 5, (100, 300, 1000),
                     None if args.no_long else (1000, 20), schedules)
    cols = [("strategy", "strategy", ""), ("schedule", "schedule", ""), ("lr", "lr", "g"),
            ("seed", "seed", ""),
            ("final_acc", "accuracy", ".3f"),
            ("energy_kj", "energy kJ", ".1f"), ("lost_share", "lost", ".0%"),
            ("gain_per_kj", "gain/kJ", "+.4f"),
            ("trained", "trained", ""), ("declined", "declined", ""), ("dropped", "dropped", ""),
            ("floor_margin_min", "floor margin", "+.3f"), ("wall_s", "wall s", ".0f")]
    print("fleet-train: strategies on the same fleets (per run)")
    print_table(result["compare"], cols)
    mean_cols = [c for c in cols if c[0] not in ("seed", "wall_s")]
    mean_cols[6:6] = [("steps", "steps", ".0f"), ("steps_lost", "lost steps", ".0f")]
    for c in ("trained", "declined", "dropped"):
        mean_cols = [(k, h, ".1f" if k == c else f) for k, h, f in mean_cols]
    print("\nmean over seeds, per LR")
    print_table(result["by_lr"], mean_cols)
    print("\neach (strategy, schedule) at its best LR")
    print_table(result["summary"], mean_cols)
    print("\nscale (battery-aware, 10 % per round, 3 rounds)")
    print_table(result["scale"], [("clients", "phones", ""), ("wall_s", "wall s", ".0f"),
                                  ("growth_exponent", "growth b", ".2f"), ("trained", "trained", "")])
    if result["long_run"]:
        lr_ = result["long_run"]
        print(f"\nlong run: {lr_['clients']} phones, {lr_['rounds']} rounds: {lr_['wall_s']:.0f} s wall, "
              f"accuracy {lr_['initial_acc']:.3f} -> {lr_['final_acc']:.3f}, "
              f"{lr_['energy_kj']:.0f} kJ, floor margin {lr_['floor_margin_min']:+.3f}")
    path = write_result("fleet_train" + ("_quick" if args.quick else ""), result)
    print(f"\nwrote {path.name}")
    return result


if __name__ == "__main__":
    main()
