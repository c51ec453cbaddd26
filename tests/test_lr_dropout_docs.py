"""The LR-dropout result stated in docs/LR_DROPOUT.md is the one the benchmark wrote
(bench/results/lr_dropout.json, made by ``python -m bench.lr_dropout``), and the stated command is it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = json.loads((ROOT / "bench" / "results" / "lr_dropout.json").read_text(encoding="utf-8"))
METHODS = ("vanilla", "lrd-official", "lrd-inplace")
CELL = re.compile(r"([\d.]+) ± ([\d.]+) \(lr ([\d.]+)\)")


def _best() -> dict[tuple[str, str, str], dict]:
    return {(b["task"], b["budget"], b["method"]): b for b in RESULTS["best_lr"]}


def _table_rows(text: str, anchor: str) -> list[list[str]]:
    block = text.split(anchor, 1)[1]
    rows = []
    for line in block.splitlines():
        if line.startswith("| digits-user") or line.startswith("| breast-cancer"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows and not line.startswith("|"):
            break
    return rows


@pytest.mark.parametrize(("doc", "anchor", "cells"), [
    ("docs/LR_DROPOUT.md", "at each method's best grid LR", (2, 3, 5)),
])
def test_best_lr_tables_are_the_benchmark_json(doc, anchor, cells):
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert "python -m bench.lr_dropout" in text and RESULTS["command"] == "python -m bench.lr_dropout"
    best = _best()
    rows = _table_rows(text, anchor)
    assert len(rows) == 4
    for row in rows:
        task, budget = row[0], row[1].split(",")[0]
        for method, col in zip(METHODS, cells, strict=True):
            mean, std, lr = CELL.fullmatch(row[col]).groups()
            b = best[(task, budget, method)]
            assert (float(mean), float(std), float(lr)) == (
                round(100 * b["accuracy"]["mean"], 2), round(100 * b["accuracy"]["std"], 2), b["lr"]), \
                (doc, task, budget, method)


def test_paired_differences_in_the_doc_are_the_benchmark_json():
    text = (ROOT / "docs" / "LR_DROPOUT.md").read_text(encoding="utf-8")
    best = _best()
    for row in _table_rows(text, "at each method's best grid LR"):
        task, budget = row[0], row[1]
        for method, col in (("lrd-official", 4), ("lrd-inplace", 6)):
            mean, std, wins, losses = re.fullmatch(r"([+-][\d.]+) ± ([\d.]+), (\d+)/(\d+)", row[col]).groups()
            b = best[(task, budget, method)]
            d = b["diff_vs_best_vanilla"]
            assert (float(mean), float(std), int(wins), int(losses)) == (
                round(100 * d["mean"], 2) + 0.0, round(100 * d["std"], 2), b["wins_vs_best_vanilla"],
                b["losses_vs_best_vanilla"]), (task, budget, method)


def test_the_benchmark_covers_what_the_issue_asks():
    """Two tasks, >= 5 seeds, full and cut budgets, the three methods, and the ORT run agrees."""
    summary = RESULTS["summary"]
    assert {r["task"] for r in summary} == {"digits-user", "breast-cancer"}
    assert {r["budget"] for r in summary} == {"full", "cut"}
    assert {r["method"] for r in summary} == set(METHODS)
    assert min(r["seeds"] for r in summary) >= 5
    check = RESULTS["ort_check"]
    assert check["ort_accuracy"] == pytest.approx(check["desktop_accuracy"], abs=1e-6)
    assert check["max_param_diff"] < 1e-5
