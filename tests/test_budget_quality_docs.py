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
