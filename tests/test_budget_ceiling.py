"""bench/budget_ceiling: bad input is one line and exit 2; its result's summary is what its per-seed
accuracies say, and docs/DECISIONS.md quotes the command that made it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.budget_ceiling import CUTS, main, summarise

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "budget_ceiling.json"


@pytest.mark.parametrize("argv", [["--tasks", "nope"], ["--lrs", "a,b"], ["--seeds", "1"]])
def test_bad_input_is_one_line_and_exit_2(argv, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_summary_is_recomputed_from_the_per_seed_accuracies():
    doc = json.loads(RESULT.read_text(encoding="utf-8"))
    assert doc["command"] in (ROOT / "docs" / "DECISIONS.md").read_text(encoding="utf-8")
    for cell in doc["cells"].values():
        again = summarise(cell["per_seed"])
        for c in map(str, CUTS):
            want = cell["summary"]["best_sf_minus_adamw"][c]
            assert again["best_sf_minus_adamw"][c]["best_sf"] == want["best_sf"]
            assert np.isclose(again["best_sf_minus_adamw"][c]["mean"], want["mean"])
