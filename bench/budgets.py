"""Scale: the budget simulation's time and memory for 1k to 1M device-days, and how they grow.

Run: ``python -m bench.budgets`` (``--quick``: 1k and 10k only; ``--workers N``, default 2).
Every size runs the whole simulation (3 profiles x the 4 named scenarios, phones spread evenly
over the 12 cells, one day each, seed 0) through :func:`mobile_lr.sim.budgets.simulate_budgets`
in a fresh interpreter (so its peak resident memory is its own), with the phones in chunks of
``CHUNK`` spread over ``--workers`` processes; the time is the best of ``--repeat`` runs (one
at 100k and above). The growth exponent ``b`` in ``time ∝ N^b`` is fitted between consecutive
sizes (1 means linear). Goal: 1,000,000 device-days in at most 20 s on 2 cores; the floor
invariant (no plan's last step ends below its floor) is counted on every plan.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import subprocess
import sys
import time
from typing import Any

from bench.machine import print_table, write_result

SIZES = (1_000, 10_000, 100_000, 1_000_000)
GOAL_S = 20.0


def one(n: int, workers: int) -> dict[str, Any]:
    """One run in this process: wall and CPU seconds, peak memory, the invariant's count."""
    from mobile_lr.device import BUILTIN_PROFILES
    from mobile_lr.sim.budgets import CHUNK, simulate_budgets
    from mobile_lr.sim.scenario import builtin_scenarios

    t0, c0 = time.perf_counter(), time.process_time()
    out = simulate_budgets(list(BUILTIN_PROFILES), builtin_scenarios(), n, seed=0,
                           workers=workers)
    wall = time.perf_counter() - t0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    tot = out["total"]
    return {"device_days": n, "seconds": wall,
            "cpu_seconds": time.process_time() - c0 + kids.ru_utime + kids.ru_stime,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_peak_rss_mb": kids.ru_maxrss / 1024, "workers": workers, "chunk": CHUNK,
            "plans": tot["plans"], "steps_p50": tot["steps"]["p50"],
            "floor_violations": tot["floor_violations"]}


def run(sizes: tuple[int, ...] = SIZES, repeat: int = 3, workers: int = 2) -> dict[str, Any]:
    rows = []
    for n in sizes:
        runs = []
        for _ in range(repeat if n <= 10_000 else 1):
            proc = subprocess.run([sys.executable, "-m", "bench.budgets", "--one", str(n),
                                   "--workers", str(workers)], capture_output=True, text=True,
                                  check=True)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        row = min(runs, key=lambda r: r["seconds"])
        row["runs"] = len(runs)
        row["us_per_device_day"] = 1e6 * row["seconds"] / n
        rows.append(row)
    for prev, row in itertools.pairwise(rows):
        row["growth_exponent"] = math.log(row["seconds"] / prev["seconds"]) / \
            math.log(row["device_days"] / prev["device_days"])
    from mobile_lr.device import BUILTIN_PROFILES
    from mobile_lr.sim.scenario import builtin_scenarios

    million = [r for r in rows if r["device_days"] == 1_000_000]
    return {"rows": rows, "profiles": list(BUILTIN_PROFILES), "scenarios": builtin_scenarios(),
            "seed": 0, "workers": workers, "goal_1m_seconds": GOAL_S,
            "goal_met": bool(million) and million[0]["seconds"] <= GOAL_S,
            "command": "python -m bench.budgets" + ("" if workers == 2 else f" --workers {workers}")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m bench.budgets", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="1k and 10k device-days only")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)   # a single size, in this process
    args = ap.parse_args(argv)
    if args.one is not None:
        row = one(args.one, args.workers)
        print(json.dumps(row))
        return row
    load = os.getloadavg()
    result = run(SIZES[:2] if args.quick else SIZES, args.repeat, args.workers)
    result["load_before"], result["load_after"] = load, os.getloadavg()
    print(f"budget simulation (3 profiles x 4 scenarios, one day per phone, {args.workers} "
          f"processes), load {load[0]:.1f} before / {result['load_after'][0]:.1f} after")
    print_table(result["rows"], [("device_days", "device-days", ","),
                                 ("seconds", "seconds", ".2f"), ("cpu_seconds", "CPU s", ".2f"),
                                 ("us_per_device_day", "µs/device-day", ".1f"),
                                 ("growth_exponent", "growth b (t∝N^b)", ".2f"),
                                 ("peak_rss_mb", "peak MB", ".0f"),
                                 ("worker_peak_rss_mb", "worker MB", ".0f"),
                                 ("plans", "plans", ","), ("floor_violations", "floor viol.", "d")])
    million = [r for r in result["rows"] if r["device_days"] == 1_000_000]
    if million:
        verdict = "met" if result["goal_met"] else "MISSED"
        print(f"goal: 1M device-days <= {GOAL_S:.0f} s: {verdict} ({million[0]['seconds']:.1f} s)")
    path = write_result("budgets", result)
    print(f"wrote bench/results/{path.name}")
    return result


if __name__ == "__main__":
    main()
