"""docs/QUALITY.md's tables are the ones bench/budget_quality makes from bench/results/budget_quality.json,
the result covers at least 4 tasks on the 3 engines, and its per-cut gaps are what its per-seed
accuracies say (the summary is recomputed here from the raw numbers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.budget_quality import accuracy_markdown, markdown, summarise

ROOT = Path(__file__).resolve().parents[1]
RESULTS = json.loads((ROOT / "bench" / "results" / "budget_quality.json").read_text(encoding="utf-8"))
DOC = (ROOT / "docs" / "QUALITY.md").read_text(encoding="utf-8")


def test_docs_tables_are_the_benchmark_json():
    for protocol in ("one_lr_per_method", "best_lr_per_cut"):
        assert markdown(RESULTS, protocol) in DOC, protocol
        assert accuracy_markdown(RESULTS, protocol) in DOC, protocol
    assert RESULTS["command"].split(" ;")[0].startswith("python -m bench.budget_quality")
    assert f"`{RESULTS['command']}`" in DOC


def test_result_covers_the_three_engines_and_held_out_tasks():
    cells = {tuple(k.split("/")) for k in RESULTS["cells"]}
    engines = {e for _, e in cells}
    assert engines == {"torch", "ort", "executorch"}
    for engine in engines:
        tasks = [t for t, e in cells if e == engine]
        assert any(RESULTS["tasks"][t]["role"] == "held-out" for t in tasks), engine
    assert len([t for t, e in cells if e == "ort"]) >= 4
    assert RESULTS["config"]["seeds"] >= 10
    assert all(len(v) == RESULTS["config"]["seeds"] for cell in RESULTS["cells"].values()
               for by_lr in cell["per_seed"].values() for by_c in by_lr.values() for v in by_c.values())


def test_summary_is_recomputed_from_the_per_seed_accuracies():
    cuts = RESULTS["config"]["cuts"]
    for key, cell in RESULTS["cells"].items():
        acc = {n: {float(lr): {int(c): v for c, v in by_c.items()} for lr, by_c in by_lr.items()}
               for n, by_lr in cell["per_seed"].items()}
        kinds = {n: RESULTS["methods"][n]["kind"] for n in acc}
        again = summarise(acc, kinds, cuts)
        for protocol, rows in again.items():
            for n, row in rows.items():
                want = cell["summary"][protocol][n]
                for c in map(str, cuts):
                    assert np.isclose(row[c]["mean"], want[c]["mean"]), (key, n, c)
                    if "paired_gap_to_best_peer" in row[c]:
                        assert np.isclose(row[c]["paired_gap_to_best_peer"]["mean"],
                                          want[c]["paired_gap_to_best_peer"]["mean"]), (key, n, c)


def test_manager_rows_are_the_recommended_setup_of_every_engine():
    """The measured `phone` rows are what `recommended_setup` gives each engine: the same runtime
    options and manager config, and the same LR at every step (up to the set-up's stated LR factor
    over the bundle's base LR) under the plan histories a cut budget makes."""
    from mobile_lr.manager import ManagerConfig, recommended_setup
    from mobile_lr.schedules import parse_spec

    nominal = RESULTS["config"]["nominal_steps"]
    rows = {n: m for n, m in RESULTS["methods"].items() if m["kind"] == "manager"}
    assert rows
    plans = ([(0, nominal)], [(0, 11), (3, 9), (6, 10)], [(0, nominal), (5, 10)],
             [(0, 140), (3, 116), (30, 121)], [(0, 30), (3, 25), (7, 26)])
    for engine in RESULTS["engines"]:
        rec = recommended_setup(engine, None, 1.0, nominal)
        for name, m in rows.items():
            assert rec.runtime_options == m["runtime_options"], (engine, name)
            want = ManagerConfig.from_dict({**m["config"], "nominal_steps": nominal}).to_dict()
            assert rec.config.to_dict() == want, (engine, name)
            ours, theirs = parse_spec(m["schedule"]), parse_spec(rec.schedule)
            k = rec.schedule["base_lr"] / m["schedule"]["base_lr"]
            for plan in plans:
                assert all(abs(theirs.lr(t, plan) - k * ours.lr(t, plan)) <= 1e-12 * k
                           for t in range(plan[-1][1])), (engine, name, plan)
