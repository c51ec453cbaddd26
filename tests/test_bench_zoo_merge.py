"""``python -m bench.zoo --merge``: runs over parts of the zoo combine into one result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import zoo


def _row(model: str, mode: str, engine: str, step_ms: float, peak_mb: float,
         torch_ms: float = 2.0) -> dict:
    return {"model": model, "mode": mode, "engine": engine, "trains": True, "status": "ok", "reason": None,
            "step_ms": step_ms, "vs_torch": step_ms / torch_ms, "peak_mb": peak_mb, "min_mb": 1.0,
            "params_total": 10, "params_trainable": 2}


def _part(path: Path, rows: list[dict], base: dict, command: str) -> Path:
    path.write_text(json.dumps({"bench": "zoo", "date_utc": "2026-12-03T07:00:00Z", "rows": rows,
                                "baselines_mb": base, "sizes": {}, "command": command, "steps": 30,
                                "budget_s": 20.0, "load_before": [1.0, 1.0, 1.0],
                                "load_after": [2.0, 2.0, 2.0], "seconds": 5.0}), encoding="utf-8")
    return path


def test_merge_joins_rows_keeps_each_runs_baseline_and_recomputes_goals(tmp_path, capsys):
    old = [_row("ds-cnn", "head", e, ms, 13.0)
           for e, ms in (("ort", 1.0), ("executorch", 4.0), ("torch", 2.0))]
    new = [_row("mobilenetv2", "head", e, ms, 20.0) for e, ms in (("ort", 2.0), ("executorch", 2.5),
                                                                  ("torch", 2.0))]
    # a re-run replaces the earlier row; its run was faster (eager 1.0 ms against 2.0 ms)
    redo = [_row("ds-cnn", "head", "executorch", 1.2, 13.0, torch_ms=1.0)]
    small = {"ort": 10.0, "executorch": 10.0, "torch": 80.0}
    a = _part(tmp_path / "a.json", old, small, "python -m bench.zoo")
    b = _part(tmp_path / "b.json", new, {"ort": 20.0, "executorch": 20.0, "torch": 80.0},
              f"python -m bench.zoo --models mobilenetv2 --out {tmp_path / 'b.json'}")
    c = _part(tmp_path / "c.json", redo, small, "python -m bench.zoo")
    out = tmp_path / "zoo.json"
    result = zoo.main(["--merge", str(a), str(b), str(c), "--out", str(out)])
    assert json.loads(out.read_text(encoding="utf-8"))["rows"] == result["rows"]
    assert [(r["model"], r["engine"]) for r in result["rows"]] == [
        ("mobilenetv2", "ort"), ("mobilenetv2", "executorch"), ("mobilenetv2", "torch"),
        ("ds-cnn", "ort"), ("ds-cnn", "executorch"), ("ds-cnn", "torch")]
    # the goal compares each engine's ratio to eager in its own run (1.2 / 0.5), the plain ratio
    # of the steps (1.2 / 1.0) is recorded beside it
    assert result["goals"]["et_vs_ort"] == {"ds-cnn/head": pytest.approx(2.4), "mobilenetv2/head": 1.25}
    assert result["goals"]["et_vs_ort_step"] == {"ds-cnn/head": pytest.approx(1.2), "mobilenetv2/head": 1.25}
    assert result["goals"]["et_within_1_5x_ort"] == 1
    # 13 MB <= 2 * 1 + 10 fails against ds-cnn's own baseline; 20 <= 2 + 20 passes against its run's
    assert result["goals"]["memory"]["ds-cnn/head/ort"] is False
    assert result["goals"]["memory"]["mobilenetv2/head/ort"] is True
    assert len(result["runs"]) == 3 and str(tmp_path) not in result["command"]
    assert "merged 3 files" in capsys.readouterr().err


def test_merge_refuses_a_file_that_is_not_a_zoo_result(tmp_path):
    bad = tmp_path / "speed.json"
    bad.write_text(json.dumps({"bench": "speed", "rows": []}), encoding="utf-8")
    with pytest.raises(SystemExit, match=r"not a bench\.zoo result"):
        zoo.main(["--merge", str(bad), "--out", str(tmp_path / "zoo.json")])
