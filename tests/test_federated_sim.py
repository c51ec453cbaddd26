"""A small fleet on Flower's simulation engine (Ray, 2 actors): 20 phones, 3 rounds, battery-aware
selection, 10 % of training phones killed mid-round, through ``mobile-lr fleet-train --json``."""

from __future__ import annotations

import json

import pytest

from mobile_lr.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["fleet-train", "--clients", "20", "--rounds", "3", "--fraction", "0.25",
                     "--strategy", "battery-aware", "--kill-prob", "0.1", "--seed", "0",
                     "--out", str(out), "--json"])
    assert code == 0
    return json.loads(buf.getvalue()), out


def test_rounds_run_on_the_simulation_engine(run):
    report, out = run
    assert report["format"] == "mobile-lr.fleet-run/1" and report["strategy"] == "battery-aware"
    rows = report["rows"]
    assert [r["round"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert r["queried"] == 15 and r["asked"] <= 5          # 3x overcommitted query, 5 slots
        assert r["asked"] == r["trained"] + r["declined"] + r["dropped"] + r["errors"]
        assert r["errors"] == 0
        assert 0.0 <= r["accuracy"] <= 1.0
    t = report["totals"]
    assert t["trained"] > 0 and t["steps"] > 0 and t["energy_j"] > 0
    assert t["initial_accuracy"] is not None
    # files of the run directory
    assert json.loads((out / "run.json").read_text())["rows"] == rows
    assert (out / "fleet.png").stat().st_size > 10_000
    assert "| round |" in (out / "report.md").read_text()


def test_no_phone_ever_goes_below_its_floor(run):
    """Every phone that trained or was killed reports the lowest battery it saw in the round;
    the lowest over the run stays at or above that phone's floor."""
    report, _ = run
    margins = [r["floor_margin_min"] for r in report["rows"] if r["floor_margin_min"] is not None]
    assert margins and min(margins) >= 0.0
    assert report["totals"]["floor_margin_min"] >= 0.0


def test_battery_aware_selection_only_trains_phones_that_can(run):
    """Phones are asked to train only when the planner affords them steps, so none declines;
    killed phones are counted as dropped with the energy they spent."""
    report, _ = run
    rows = report["rows"]
    assert sum(r["declined"] for r in rows) == 0
    for r in rows:
        assert r["eligible"] >= r["asked"]
        assert (r["dropped"] > 0) == (r["energy_lost_j"] > 0)
        assert all(reason == "killed" for reason in r["drop_reasons"])
