"""The cut-budget table in bench/README.md ("Quality under a cut budget") is the one the benchmark wrote
(bench/results/budget_quality.json, made by ``python -m bench.budget_quality``), and the command
it states is that one."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = json.loads((ROOT / "bench" / "results" / "budget_quality.json").read_text(encoding="utf-8"))
CELL = re.compile(r"(?:\*\*)?([\d.]+)(?:\*\*)? ± ([\d.]+)")


def _table() -> dict[str, list[str]]:
    text = (ROOT / "bench" / "README.md").read_text(encoding="utf-8")
    block = text.split("## Quality under a cut budget (`python -m bench.budget_quality`)", 1)[1]
    rows = {}
    for line in block.split("\n\n| method |", 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[re.match(r"`([^`]+)`", cells[0]).group(1)] = cells[1:]
    return rows


def test_readme_cut_budget_table_is_the_benchmark_json():
    assert RESULTS["command"] == "python -m bench.budget_quality"
    rows = _table()
    summary = {t: RESULTS["tasks"][t]["summary"]["best_lr_per_cut"] for t in ("digits", "new-users")}
    assert set(rows) == set(summary["digits"])           # every method of the run, no other
    cuts = [str(c) for c in RESULTS["config"]["cuts"]]
    for name, cells in rows.items():
        expected = [summary[t][name][c] for t in ("digits", "new-users") for c in cuts]
        assert len(cells) == len(expected) == 8
        for cell, want in zip(cells, expected, strict=True):
            mean, std = CELL.fullmatch(cell).groups()
            assert (mean, std) == (f"{want['mean']:.1f}", f"{want['std']:.1f}"), (name, cell)


def test_bold_cells_are_the_best_of_their_column():
    rows = _table()
    for col in range(8):
        means = {n: float(CELL.fullmatch(c[col]).group(1)) for n, c in rows.items()}
        bold = {n for n, c in rows.items() if c[col].startswith("**")}
        assert bold == {n for n, m in means.items() if m == max(means.values())}, col
