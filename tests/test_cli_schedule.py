"""``mobile-lr schedule ...`` from the command line (real subprocesses where it matters)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mobile_lr.cli import main
from mobile_lr.testing.golden import build as build_golden

pytestmark = pytest.mark.core


SPEC = {"format": "mobile-lr.schedule/1", "base_lr": 0.1, "shape": {"type": "linear",
        "start_factor": 1.0, "end_factor": 0.0}}


@pytest.fixture
def spec_file(tmp_path):
    p = tmp_path / "lin.json"
    p.write_text(json.dumps(SPEC))
    return p


def run(*args):
    return subprocess.run([sys.executable, "-m", "mobile_lr.cli", *args], capture_output=True,
                          text=True)


def test_eval_json_with_replans(spec_file, capsys):
    assert main(["schedule", "eval", str(spec_file), "--steps", "6", "--total", "10",
                 "--replan", "2:4", "--json"]) == 0
    lrs = json.loads(capsys.readouterr().out)["lr"]
    assert lrs == pytest.approx([0.1, 0.09, 0.08, 0.04, 0.0, 0.0])


def test_eval_table_marks_replans(spec_file, capsys):
    assert main(["schedule", "eval", str(spec_file), "--steps", "3", "--total", "10",
                 "--replan", "1:5"]) == 0
    out = capsys.readouterr().out
    assert "re-plan: total 5" in out and out.count("\n") == 4


def test_invalid_spec_exits_2_with_the_field(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**SPEC, "shape": {"type": "linear", "end_factor": 2}}))
    res = run("schedule", "eval", str(bad), "--steps", "3", "--total", "5")
    assert res.returncode == 2
    assert "shape.end_factor" in res.stderr and "allowed" in res.stderr


def test_missing_file_and_bad_json_exit_2(tmp_path):
    assert run("schedule", "validate", str(tmp_path / "nope.json")).returncode == 2
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    res = run("schedule", "validate", str(broken))
    assert res.returncode == 2 and "not valid JSON" in res.stderr


def test_bad_replan_argument_exits_2(spec_file):
    res = run("schedule", "eval", str(spec_file), "--steps", "3", "--total", "5", "--replan", "x")
    assert res.returncode == 2 and "STEP:TOTAL" in res.stderr


def test_missing_total_exits_2(spec_file):
    res = run("schedule", "eval", str(spec_file), "--steps", "3")
    assert res.returncode == 2 and "--total" in res.stderr


def test_help_everywhere():
    for args in (["--help"], ["schedule", "--help"], ["schedule", "eval", "--help"],
                 ["schedule", "plot", "--help"], ["schedule", "golden", "--help"]):
        res = run(*args)
        assert res.returncode == 0 and "usage:" in res.stdout


def test_plot_writes_a_png(spec_file, tmp_path):
    pytest.importorskip("matplotlib")  # outside the core install
    out = tmp_path / "lr.png"
    assert main(["schedule", "plot", str(spec_file), "--total", "100", "--replan", "30:60",
                 "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_golden_is_deterministic_and_covers_every_shape():
    a, b = build_golden(), build_golden()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    kinds = {c["spec"]["shape"]["type"] for c in a["schedules"]}
    from mobile_lr.schedules import SHAPE_TYPES
    assert kinds == set(SHAPE_TYPES)
    assert sum(c["name"].startswith("random") for c in a["schedules"]) >= 200
    assert any(len(c["plan"]) > 1 for c in a["schedules"])
