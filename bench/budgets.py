"""Scale: the budget simulation's time for 1k, 10k and 100k device-days, and how it grows.

Run: ``python -m bench.budgets`` (``--quick``: 1k and 10k only). Every size runs the whole
simulation (3 profiles x the 4 named scenarios, phones spread evenly over the 12 cells, one
day each, seed 0) through :func:`mobile_lr.sim.budgets.simulate_budgets`; the time is the best of
``--repeat`` runs. The growth exponent ``b`` in ``time ∝ N^b`` is fitted between
consecutive sizes (1 means linear).
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from typing import Any

from bench.machine import print_table, write_result
from mobile_lr.device import BUILTIN_PROFILES
from mobile_lr.sim.budgets import simulate_budgets
from mobile_lr.sim.scenario import builtin_scenarios

SIZES = (1_000, 10_000, 100_000)


def run(sizes: tuple[int, ...] = SIZES, repeat: int = 3) -> dict[str, Any]:
    rows = []
    for n in sizes:
        times = []
        for _ in range(repeat if n <= 10_000 else 1):
            t0 = time.perf_counter()
            out = simulate_budgets(list(BUILTIN_PROFILES), builtin_scenarios(), n, seed=0)
            times.append(time.perf_counter() - t0)
        tot = out["total"]
        rows.append({"device_days": n, "seconds": min(times), "runs": len(times),
                     "us_per_device_day": 1e6 * min(times) / n, "plans": tot["plans"],
                     "steps_p50": tot["steps"]["p50"], "floor_violations": tot["floor_violations"]})
    for prev, row in itertools.pairwise(rows):
        row["growth_exponent"] = math.log(row["seconds"] / prev["seconds"]) / \
            math.log(row["device_days"] / prev["device_days"])
    return {"rows": rows, "profiles": list(BUILTIN_PROFILES), "scenarios": builtin_scenarios(),
            "seed": 0, "command": "python -m bench.budgets"}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m bench.budgets", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="1k and 10k device-days only")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    result = run(SIZES[:2] if args.quick else SIZES, args.repeat)
    print("budget simulation (3 profiles x 4 scenarios, one day per phone)")
    print_table(result["rows"], [("device_days", "device-days", ","), ("seconds", "seconds", ".3f"),
                                 ("us_per_device_day", "µs/device-day", ".1f"),
                                 ("growth_exponent", "growth b (t∝N^b)", ".2f"),
                                 ("plans", "plans", ","), ("floor_violations", "floor viol.", "d")])
    path = write_result("budgets", result)
    print(f"wrote bench/results/{path.name}")
    return result


if __name__ == "__main__":
    main()
