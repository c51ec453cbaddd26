"""``mobile-lr plan`` and ``mobile-lr profiles``: output, JSON keys, and exit code 2 with the
offending field named on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mobile_lr.cli import main

pytestmark = pytest.mark.core


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_plan_json(capsys):
    code, out, _ = run(capsys, "plan", "--profile", "mid-range", "--level", "0.55", "--temp",
                       "34", "--floor", "0.3", "--window", "600", "--step-seconds", "0.5",
                       "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"profile", "state", "policy", "cost", "plan"}
    plan = data["plan"]
    assert set(plan) == {"steps", "limiting_factor", "energy_j", "seconds", "end_level",
                         "end_temperature_c", "end_status", "detail"}
    # 600 s of 0.5 s steps at 3.5 W: time-limited, 1200 steps, 2100 J (docs/DEVICES.md §6 numbers)
    assert plan["limiting_factor"] == "time" and plan["steps"] == 1200
    assert plan["energy_j"] == pytest.approx(1200 * 0.5 * 3.5)


def test_plan_text_and_charging(capsys):
    code, out, _ = run(capsys, "plan", "--profile", "flagship", "--level", "0.5", "--charging",
                       "--max-thermal", "LIGHT", "--step-seconds", "1", "--step-joules", "8")
    assert code == 0
    assert "limited by       thermal" in out and "charging" in out


def test_plan_with_a_profile_file_and_policy_file(tmp_path, capsys):
    from mobile_lr.device import load_profile
    prof = load_profile("low-end").to_dict()
    prof["name"] = "my-phone"
    (tmp_path / "p.json").write_text(json.dumps(prof))
    (tmp_path / "pol.json").write_text(json.dumps({"battery_floor": 0.45}))
    code, out, _ = run(capsys, "plan", "--profile", str(tmp_path / "p.json"), "--level", "0.5",
                       "--policy", str(tmp_path / "pol.json"), "--window", "100000",
                       "--step-seconds", "10", "--json")
    data = json.loads(out)
    assert code == 0 and data["profile"] == "my-phone"
    assert data["policy"]["battery_floor"] == 0.45
    assert data["plan"]["limiting_factor"] == "battery"


def test_profiles(capsys):
    code, out, _ = run(capsys, "profiles")
    assert code == 0 and all(n in out for n in ("low-end", "mid-range", "flagship"))
    code, out, _ = run(capsys, "profiles", "--json")
    data = json.loads(out)
    assert [p["name"] for p in data["profiles"]] == ["low-end", "mid-range", "flagship"]
    assert all(p["sources"] for p in data["profiles"])


@pytest.mark.parametrize(("args", "field"), [
    (["--profile", "potato"], "profile"),
    (["--level", "1.5"], "--level"),
    (["--floor", "1.0"], "--floor"),
    (["--floor", "-0.1"], "--floor"),
    (["--max-thermal", "HOT"], "--max-thermal"),
    (["--status", "WARM"], "--status"),
    (["--step-seconds", "0"], "--step-seconds"),
    (["--step-joules", "-2"], "--step-joules"),
    (["--window", "0"], "--window"),
])
def test_plan_errors_exit_2_with_the_field(capsys, args, field):
    argv = {"--profile": "mid-range", "--level": "0.5", "--step-seconds": "1"}
    argv.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = ["plan"] + [x for kv in argv.items() for x in kv]
    code, _, err = run(capsys, *flat)
    assert code == 2
    assert f"error: {field}" in err


def test_invalid_profile_file_exit_2(tmp_path, capsys):
    from mobile_lr.device import load_profile
    prof = load_profile("low-end").to_dict()
    prof["battery"] = {"capacity_wh": -3}
    (tmp_path / "neg.json").write_text(json.dumps(prof))
    code, _, err = run(capsys, "plan", "--profile", str(tmp_path / "neg.json"), "--level", "0.5",
                       "--step-seconds", "1")
    assert code == 2 and "battery.capacity_wh" in err


def test_the_installed_command_exits_non_zero():
    proc = subprocess.run([sys.executable, "-m", "mobile_lr.cli", "plan", "--profile", "nope",
                           "--level", "0.5", "--step-seconds", "1"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown profile 'nope'" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "mobile_lr.cli", "plan", "--level", "0.5"],
                          capture_output=True, text=True)
    assert proc.returncode == 2  # argparse: missing required --profile
