"""Run every benchmark in sequence: ``python -m bench`` (what ``make bench`` runs).

``--quick`` passes ``--quick`` to each (a smoke run, minutes instead of tens of minutes);
``--only speed,budgets`` runs a subset. Each bench prints its table and writes
``bench/results/<name>.json``; a bench module that is not there is skipped with a note.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

# In order: the quick ones first, the long kill/fuzz run last.
BENCHES = ("speed", "budgets", "memory", "zoo", "budget_quality", "budget_ceiling", "fleet_train", "faults")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a short smoke run of every bench")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHES)}")
    args = ap.parse_args(argv)
    names = BENCHES if not args.only else tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"python -m bench: error: unknown bench {unknown[0]!r}; allowed: {', '.join(BENCHES)}",
              file=sys.stderr)
        return 2
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"bench.{name}":
                raise
            print(f"== {name}: not present, skipped\n")
            continue
        print(f"== {name}")
        t0 = time.perf_counter()
        module.main(["--quick"] if args.quick else [])
        print(f"== {name} took {time.perf_counter() - t0:.0f} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
