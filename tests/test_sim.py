"""The desktop phone simulation: real ORT artifacts, the manager, a simulated device.

Reference numbers: the energy of an interval is the integral of power over time
(the device model's constant-power pieces); the skin temperature under constant
heat follows the RC closed form T(t) = T_amb + P·R + (T0 - T_amb - P·R)·exp(-t/(R·C))
(docs/DEVICES.md §5.2).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mobile_lr.cli import main
from mobile_lr.device import SimulatedDevice, ThermalStatus, load_profile
from mobile_lr.manager import ScheduleManager
from mobile_lr.runtime import open_runtime
from mobile_lr.sim.scenario import builtin_scenarios, load_scenario, parse_scenario
from mobile_lr.sim.session import run_session
from mobile_lr.sim.setups import SETUPS, SF_LR_FACTOR, make_setup, parse_setup_list
from mobile_lr.sim.simulate import bundle_schedule, simulate

SCENARIO = {
    "format": "mobile-lr.scenario/1", "name": "t", "start": {"level": 0.5},
    "end_s": 600, "nominal_steps": 50,
}


@pytest.fixture(scope="module")
def data(user_data):
    train, test = user_data
    return (train.x, train.y), (test.x, test.y)


def _session(bundle, profile_name="mid-range", *, level=0.8, step_factor=100.0, policy=None,
             nominal=60, background_w=0.0, ambient=None, data=None, **kw):
    import dataclasses

    prof = load_profile(profile_name)
    prof = dataclasses.replace(prof, step_seconds=prof.step_seconds * step_factor)
    from mobile_lr.device import DeviceState

    state = DeviceState.initial(prof, level, ambient_c=ambient)
    device = SimulatedDevice(prof, state, ambient_c=ambient, background_w=background_w)
    pol = make_setup("manager", bundle_schedule(bundle), nominal)
    manager = ScheduleManager(pol.spec, prof, policy or {}, pol.config, state=device.state)
    runtime = open_runtime("ort", bundle)
    result = run_session(runtime, manager, device, data[0], eval_data=data[1], **kw)
    return result, device, prof


def test_energy_balances_with_the_integral_of_power(mlp_sgd_bundle, data):
    """Every step's energy is its power times its duration, and the session's total is the sum of
    the steps' and the rests' (within rounding): nothing is drawn that is not accounted for."""
    result, _device, prof = _session(mlp_sgd_bundle, background_w=0.7, data=data)
    steps = [r for r in result.rows if r["kind"] == "step"]
    assert len(steps) == result.steps > 10
    total = 0.0
    for r in steps:
        # the power of a step: idle + (train - idle) x throughput of the status at its start
        # + background; its duration: work / throughput.
        m = prof.step_seconds / r["seconds"]
        power = prof.idle_power_w + (prof.train_power_w - prof.idle_power_w) * m + 0.7
        assert r["energy_j"] == pytest.approx(power * r["seconds"], rel=1e-9)
        total += r["energy_j"]
    assert result.energy_j == pytest.approx(total, rel=1e-12)
    rests = [(a, b) for a, b in zip(result.rows, result.rows[1:], strict=False)
             if a["kind"] == "pause" and b["kind"] == "resume"]
    rest_j = sum((prof.idle_power_w + 0.7) * (b["time_s"] - a["time_s"]) for a, b in rests)
    assert result.energy_total_j == pytest.approx(total + rest_j, rel=1e-9)
    # battery bookkeeping: what the battery lost is what the phone drew (no charger here)
    assert (result.battery_start - result.battery_end) * prof.battery_j == pytest.approx(
        result.energy_total_j, rel=1e-9)


def test_temperature_follows_the_rc_closed_form_under_constant_power(mlp_sgd_bundle, data):
    """While the status stays NONE every step runs at the same power: the logged temperatures lie
    on the RC closed form from the starting temperature."""
    result, _device, prof = _session(mlp_sgd_bundle, ambient=20.0, data=data, nominal=40)
    steps = [r for r in result.rows if r["kind"] == "step" and r["thermal_status"] == "NONE"]
    assert len(steps) > 10
    power = prof.train_power_w
    r_k, tau = prof.thermal_resistance_k_per_w, prof.tau_s
    t0 = 20.0
    for r in steps:
        expected = 20.0 + power * r_k + (t0 - 20.0 - power * r_k) * math.exp(-r["time_s"] / tau)
        assert r["temperature_c"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("name", builtin_scenarios())
def test_manager_never_crosses_the_floor_in_any_builtin_scenario(mlp_sgd_bundle, data, name):
    for profile in ("low-end", "flagship"):
        (run,) = simulate(mlp_sgd_bundle, profile=profile, scenario=name, policies=["manager"],
                          data=data)
        s = run.summary()
        assert s["battery_min"] >= s["battery_floor"] - 1e-12, (profile, name, s)
        assert s["steps"] > 0
        assert ThermalStatus[s["max_thermal"]] <= ThermalStatus.SEVERE
        assert s["accuracy"] > s["accuracy_before"]


def test_builtin_scenarios_are_the_four_of_the_issue():
    assert set(builtin_scenarios()) == {"overnight-charging", "commute-low-battery", "hot-day",
                                        "unplugged-midway"}
    commute = load_scenario("commute-low-battery")
    assert (commute.level, commute.charging, commute.policy.battery_floor) == (0.35, False, 0.2)
    assert load_scenario("hot-day").ambient_c == 35.0
    assert any(e.type == "unplug" for e in load_scenario("unplugged-midway").events)
    assert len(load_scenario("overnight-charging").windows(load_profile("mid-range"))) > 1


@pytest.mark.parametrize("patch, field", [
    ({"format": "mobile-lr.scenario/9"}, "format"),
    ({"start": {"level": 1.5}}, "start.level"),
    ({"start": {"level": 0.5, "charging": "yes"}}, "start.charging"),
    ({"start": {"level": 0.5, "colour": 1}}, "start.colour"),
    ({"events": [{"at_s": 10, "type": "explode"}]}, "events[0].type"),
    ({"events": [{"at_s": 10, "type": "ambient"}]}, "events[0].ambient_c"),
    ({"events": [{"at_s": 9999, "type": "plug"}]}, "events[0].at_s"),
    ({"windows": {"count": 3}}, "windows.every_s"),
    ({"windows": {"first_s": 700}}, "windows.first_s"),
    ({"workload": {"step_factor": 0}}, "workload.step_factor"),
    ({"policy": {"battery_floor": 2}}, "policy.battery_floor"),
    ({"nominal_steps": 0}, "nominal_steps"),
    ({"end_s": -1}, "end_s"),
])
def test_bad_scenario_fields_are_refused_by_name(patch, field):
    with pytest.raises(ValueError) as err:
        parse_scenario({**SCENARIO, **patch})
    assert str(err.value).startswith(field + ":"), str(err.value)


def test_bad_scenario_file_exits_2_with_the_field(tmp_path, mlp_sgd_bundle, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**SCENARIO, "start": {"level": -0.1}}))
    assert main(["simulate", "--bundle", str(mlp_sgd_bundle), "--scenario", str(bad)]) == 2
    assert "start.level" in capsys.readouterr().err
    assert main(["simulate", "--bundle", str(mlp_sgd_bundle), "--scenario", "nope"]) == 2
    assert main(["simulate", "--bundle", str(mlp_sgd_bundle), "--compare", "manager,psychic"]) == 2


def test_policy_list_and_policies_share_the_bundle_base_lr(mlp_sgd_bundle):
    assert parse_setup_list("manager, naive,manager") == ["manager", "naive"]
    base = bundle_schedule(mlp_sgd_bundle)["base_lr"]
    for name in SETUPS:
        # the manager on any bundle (no manifest given) is schedule-free AdamW: the same convention
        factor = SF_LR_FACTOR if name in ("sf-adamw", "manager") else 1.0
        assert make_setup(name, bundle_schedule(mlp_sgd_bundle), 100).spec["base_lr"] == factor * base


def test_simulate_cli_json_and_run_directory(mlp_sgd_bundle, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["simulate", "--bundle", str(mlp_sgd_bundle), "--profile", "low-end", "--scenario",
                 "hot-day", "--compare", "manager,naive", "--json", "--out", str(out)])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["policy"] for r in doc["runs"]] == ["manager", "naive"]
    keys = {"profile", "scenario", "policy", "steps", "sim_minutes", "energy_j", "energy_pct_battery",
            "energy_total_j", "battery_start", "battery_end", "battery_min", "battery_floor",
            "max_thermal", "stop_reason", "final_loss", "accuracy_before", "accuracy", "rollbacks",
            "replans"}
    assert keys <= set(doc["runs"][0])
    run_dir = out / "low-end" / "hot-day" / "manager"
    for name in ("steps.csv", "final.ckpt", "summary.json"):
        assert (run_dir / name).is_file()
    for name in ("report.md", "report.html", "accuracy.png", "run-low-end-hot-day.png"):
        assert (out / name).is_file()
    lines = (run_dir / "steps.csv").read_text().splitlines()
    assert lines[0].startswith("kind,step,time_s,lr,loss")
    assert sum(1 for ln in lines if ln.startswith("step,")) == doc["runs"][0]["steps"]
    # the final checkpoint resumes in a fresh runtime with the same weights
    rt = open_runtime("ort", mlp_sgd_bundle, ema=0.9)  # the manager's recommended EMA on ORT
    rt.load(run_dir / "final.ckpt")
    assert rt.step_count == doc["runs"][0]["steps"]


def test_calibration_measures_a_real_step(mlp_sgd_bundle, data, tmp_path, capsys):
    code = main(["simulate", "--bundle", str(mlp_sgd_bundle), "--scenario", "hot-day", "--compare",
                 "manager", "--calibrate", "--json", "--out", str(tmp_path / "c")])
    assert code == 0
    cal = json.loads(capsys.readouterr().out)["calibration"]
    assert 0 < cal["desktop_step_s"] < 1.0 and cal["desktop_gflops"] > 0
    assert cal["phone_step_s"] >= cal["desktop_step_s"]


def test_demo_quick_runs_end_to_end(tmp_path, capsys):
    """The demo's main job in its quick form: pre-train, export, simulate, report."""
    code = main(["demo", "--quick", "--json", "--out", str(tmp_path / "demo")])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["manager_above_floor"] is True
    assert {r["scenario"] for r in doc["runs"]} == set(builtin_scenarios())
    assert all(r["accuracy"] > r["accuracy_before"] for r in doc["runs"])
    assert (tmp_path / "demo" / "report.html").is_file()
    assert np.isfinite([r["energy_j"] for r in doc["runs"]]).all()
    # The verdict is generated from the results: every cell, the peers, the spread over 3 orders.
    from mobile_lr.cli.demo_cmd import DEMO_POLICIES, QUICK_SEEDS

    assert {r["policy"] for r in doc["runs"]} == set(DEMO_POLICIES) >= {"sf-adamw", "constant"}
    assert all(len(r["accuracy_seeds"]) == QUICK_SEEDS for r in doc["runs"])
    head, rows = doc["table"]["head"], doc["table"]["rows"]
    assert [r[1] for r in rows] == builtin_scenarios()
    for row in rows:
        cell = [r for r in doc["runs"] if r["scenario"] == row[1]]
        best = max((r for r in cell if r["policy"] != "manager"), key=lambda r: r["accuracy"])
        assert row[head.index("strongest peer")] == best["policy"]
        assert " ± " in row[head.index("gain (points)")]
        assert row[head.index("verdict")] in ("ahead", "tied", "behind")
    assert doc["verdict"][0].startswith("In the ")
    md = (tmp_path / "demo" / "verdict.md").read_text()
    assert all(f"| {' | '.join(r)} |" in md for r in rows)


def test_lr_find_sweeps_the_managers_range_and_plots(mlp_sgd_bundle, tmp_path, capsys):
    png = tmp_path / "lr.png"
    assert main(["lr-find", "--bundle", str(mlp_sgd_bundle), "--steps", "30", "--json",
                 "--plot", str(png)]) == 0
    doc = json.loads(capsys.readouterr().out)
    base = doc["base_lr"]
    assert 10 <= doc["points"] <= 30 and png.stat().st_size > 0
    lrs = doc["lrs"]
    assert lrs[0] == pytest.approx(base * 1e-3) and all(np.diff(lrs) > 0)
    assert doc["suggested_lr"] is None or lrs[0] <= doc["suggested_lr"] <= lrs[-1]
    assert main(["lr-find", "--bundle", str(mlp_sgd_bundle), "--steps", "3"]) == 2


def test_user_data_file_is_checked_by_name(tmp_path, mlp_sgd_bundle, capsys):
    part = tmp_path / "part.npz"
    np.savez(part, x_train=np.zeros((4, 64), np.float32), y_train=np.zeros(4, np.int64))
    assert main(["simulate", "--bundle", str(mlp_sgd_bundle), "--data", str(part)]) == 2
    assert "--data: part.npz lacks x_test, y_test" in capsys.readouterr().err
    junk = tmp_path / "junk.npz"
    junk.write_text("not an archive")
    assert main(["simulate", "--bundle", str(mlp_sgd_bundle), "--data", str(junk)]) == 2
    assert "not a readable .npz" in capsys.readouterr().err


def test_sf_adamw_peer_runs_schedulefree_and_is_refused_on_an_sgd_bundle(mlp_bundle, mlp_sgd_bundle,
                                                                        data, capsys):
    """The schedule-free AdamW peer trains with the runtime's schedule-free optimizer (its LR is
    constant at SF_LR_FACTOR x the base LR, its weights differ from AdamW's), and an SGD bundle on
    ORT is refused."""
    runs = simulate(mlp_bundle, profile="mid-range", scenario="hot-day", data=data,
                    policies=("sf-adamw", "constant"))
    sf, const = (r.result for r in runs)
    lrs = {r["lr"] for r in sf.rows if r["kind"] == "step"}
    assert lrs == {SF_LR_FACTOR * bundle_schedule(mlp_bundle)["base_lr"]}
    assert sf.steps == const.steps and sf.final_loss != const.final_loss
    assert main(["simulate", "--bundle", str(mlp_sgd_bundle), "--compare", "sf-adamw"]) == 2
    assert "sf-adamw on ORT needs a plain AdamW bundle" in capsys.readouterr().err


@pytest.fixture(scope="module")
def untrained_bundle(tmp_path_factory):
    """digits-mlp at its initial weights (ORT only): its loss falls faster the higher the LR."""
    from mobile_lr.export import export_bundle
    from mobile_lr.recipes import load_recipe

    out = tmp_path_factory.mktemp("bundles") / "mlp-untrained"
    export_bundle(load_recipe("digits-mlp", seed=0), out, backends=("ort",))
    return out


def test_lr_find_warns_when_the_suggestion_sits_at_the_edge_of_an_undiverged_sweep(
        untrained_bundle, tmp_path, capsys):
    """A sweep that stops at 0.1 x the base LR never diverges on an untrained model and its
    steepest descent is its last point: the suggestion may be too low, and lr-find says so."""
    png = tmp_path / "lr.png"
    assert main(["lr-find", "--bundle", str(untrained_bundle), "--end-factor", "0.1", "--json",
                 "--plot", str(png)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["diverged"] is False and doc["suggested_lr"] == doc["lrs"][-1]
    assert len(doc["warnings"]) == 1 and "never diverged" in doc["warnings"][0]
    assert "--end-factor" in doc["warnings"][0] and png.stat().st_size > 0
    assert main(["lr-find", "--bundle", str(untrained_bundle), "--end-factor", "0.1"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: the loss never diverged in the sweep (up to LR 0.001)")
    # A sweep that diverges says nothing of the kind.
    assert main(["lr-find", "--bundle", str(untrained_bundle), "--end-factor", "100000", "--json"]) == 0
    wide = json.loads(capsys.readouterr().out)
    assert wide["diverged"] is True and not any("never diverged" in w for w in wide["warnings"])


def test_an_own_models_bundle_needs_its_data_and_trains_on_it(tmp_path, capsys):
    """The digits user fits the digits recipes only: an own model's bundle without ``--data`` gets
    one line naming the flag (not the runtime's shape error for data the user never gave), and
    with ``--data`` it trains."""
    import torch
    from torch import nn

    from mobile_lr.export import export_bundle
    from mobile_lr.recipes import Recipe

    torch.manual_seed(0)
    bundle = tmp_path / "own"
    export_bundle(Recipe("own", nn.Sequential(nn.Linear(5, 8), nn.SiLU(), nn.Linear(8, 3)), torch.randn(8, 5),
                         labels=("a", "b", "c")), bundle, backends=("ort",))
    assert main(["simulate", "--bundle", str(bundle), "--profile", "mid-range", "--scenario", "hot-day"]) == 2
    assert ("mobile-lr simulate: error: data: the bundle's model 'own' has no built-in user data (the digits "
            "recipes and the zoo have); allowed: --data FILE.npz") in capsys.readouterr().err
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    data = tmp_path / "own.npz"
    np.savez(data, x_train=x[:80], y_train=y[:80], x_test=x[80:], y_test=y[80:])
    assert main(["simulate", "--bundle", str(bundle), "--profile", "mid-range", "--scenario", "hot-day",
                 "--data", str(data), "--compare", "manager", "--json", "--out", str(tmp_path / "r")]) == 0
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    assert run["steps"] > 0 and 0.0 <= run["accuracy"] <= 1.0


def test_an_own_token_models_data_keeps_its_integer_ids(tmp_path, capsys):
    """A model that starts with an embedding simulates on the user's int64 token ids (they were
    cast to float32 on the way and refused by the runtime); float features for it, or ids of the
    wrong length, are one line naming the array."""
    import torch
    from torch import nn

    from mobile_lr.export import export_bundle
    from mobile_lr.recipes import Recipe

    class Bag(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb, self.head = nn.Embedding(20, 8), nn.Linear(8, 2)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.emb(ids).mean(1))

    torch.manual_seed(0)
    bundle = tmp_path / "tokens"
    export_bundle(Recipe("tokens", Bag(), torch.randint(0, 20, (8, 6)), labels=("a", "b")), bundle,
                  backends=("ort",))
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 20, (90, 6))
    y = (ids[:, 0] < 10).astype(np.int64)
    data = tmp_path / "ids.npz"
    np.savez(data, x_train=ids[:60], y_train=y[:60], x_test=ids[60:], y_test=y[60:])
    args = ["simulate", "--bundle", str(bundle), "--profile", "mid-range", "--scenario", "hot-day",
            "--compare", "manager", "--json", "--out", str(tmp_path / "r")]
    assert main([*args, "--data", str(data)]) == 0
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    assert run["steps"] > 0 and 0.0 <= run["accuracy"] <= 1.0
    for name, x in (("floats", ids.astype(np.float32)), ("short", ids[:, :4])):
        bad = tmp_path / f"{name}.npz"
        np.savez(bad, x_train=x[:60], y_train=y[:60], x_test=x[60:], y_test=y[60:])
        assert main([*args, "--data", str(bad)]) == 2
        assert "mobile-lr simulate: error: --data.x_train: " in capsys.readouterr().err
