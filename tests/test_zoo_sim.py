"""A zoo model on a simulated phone costs its own step: its FLOPs over the phone's throughput, or
with ``--calibrate`` its step measured here; any other bundle the scenario's ``step_factor``.

Small widths of the real DS-CNN, exported through the CLI and trained in ORT on the simulated phone.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mobile_lr.bundle import load_bundle
from mobile_lr.cli import main
from mobile_lr.device import load_profile
from mobile_lr.export.flops import count_step_flops
from mobile_lr.export.forms import eval_form
from mobile_lr.recipes import load_recipe
from mobile_lr.sim.workload import PHONE_GFLOPS, STEP_OVERHEAD_S, bundle_data
from mobile_lr.zoo.catalog import task_for

# a short day on battery whose step_factor would charge 1000 reference steps (30 s on low-end) per step
SCENARIO = {"format": "mobile-lr.scenario/1", "name": "short", "start": {"level": 0.6},
            "policy": {"battery_floor": 0.2}, "workload": {"step_factor": 1000},
            "end_s": 900, "nominal_steps": 12}
WIDTHS = (0.25, 0.5)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "short.json"
    path.write_text(json.dumps(SCENARIO))
    return path


@pytest.fixture(scope="module")
def kws(tmp_path_factory) -> dict[float, Path]:
    """DS-CNN keyword spotters at two widths, last block and head trainable, exported by the CLI."""
    out = {}
    for width in WIDTHS:
        path = tmp_path_factory.mktemp("kws") / f"kws-{width}"
        assert main(["export", "ds-cnn", "--mode", "last-k", "--option", "k=1", "--option", f"width={width}",
                     "--option", "blocks=2", "--backend", "ort", "--out", str(path)]) == 0
        out[width] = path
    return out


def _simulate(bundle: Path, scenario: Path, out: Path, capsys, *extra: str) -> dict:
    capsys.readouterr()
    assert main(["simulate", "--bundle", str(bundle), "--profile", "low-end", "--scenario", str(scenario),
                 "--compare", "manager", "--json", "--out", str(out), *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _steps(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "low-end" / "short" / "manager" / "steps.csv", newline="") as fh:
        return [row for row in csv.DictReader(fh) if row["kind"] == "step"]


def test_a_zoo_models_step_costs_its_flops_and_the_energy_follows(kws, scenario, tmp_path, capsys):
    per_step, energy = {}, {}
    for width, bundle in kws.items():
        model = load_bundle(bundle).manifest.model
        recipe = load_recipe("ds-cnn", **model.info["options"])
        with eval_form(recipe.model):  # the manifest's count is the recipe's, for its trainable split
            assert sum(count_step_flops(recipe.model, recipe.example_input, recipe.trainable)) == \
                model.flops_per_step
        doc = _simulate(bundle, scenario, tmp_path / str(width), capsys)
        cost = doc["step_cost"]
        assert cost["rule"] == "zoo-flops" and cost["step_factor"] is None  # the 1000 does not apply
        assert cost["batch_size"] == 32 == model.info["flops_batch"] and cost["phone_gflops"] == 3.0
        assert cost["phone_step_s"] == pytest.approx(model.flops_per_step / 3e9 + STEP_OVERHEAD_S, rel=1e-12)
        rows = _steps(tmp_path / str(width))
        assert len(rows) == doc["runs"][0]["steps"] == 12  # nothing binds: the step is milliseconds
        assert all(r["thermal_status"] == "NONE" for r in rows)
        seconds = [float(r["seconds"]) for r in rows]
        assert seconds == pytest.approx([cost["phone_step_s"]] * len(rows), rel=1e-9)
        per_step[width] = cost["phone_step_s"] - STEP_OVERHEAD_S
        energy[width] = sum(float(r["energy_j"]) for r in rows)
        summary = json.loads((tmp_path / str(width) / "low-end" / "short" / "manager" / "summary.json")
                             .read_text())
        assert summary["step_seconds"] == cost["phone_step_s"] and summary["step_cost"] == cost
    narrow, wide = (load_bundle(kws[w]).manifest.model.flops_per_step for w in WIDTHS)
    assert wide > 2 * narrow  # twice the channels: about 3x the FLOPs of a step
    assert per_step[0.5] / per_step[0.25] == pytest.approx(wide / narrow, rel=1e-9)
    full = {w: per_step[w] + STEP_OVERHEAD_S for w in WIDTHS}  # power x time: the battery follows
    assert energy[0.5] / energy[0.25] == pytest.approx(full[0.5] / full[0.25], rel=1e-6)


def test_a_zoo_bundle_trains_on_its_own_tasks_user(kws):
    manifest = load_bundle(kws[0.25]).manifest
    (x, _), (_, yt) = bundle_data(manifest)
    train, test = task_for("ds-cnn", manifest.model.info["options"]).user()
    assert x.shape == (200, 1, 49, 10) and np.array_equal(x, train.x) and np.array_equal(yt, test.y)


def test_calibrate_charges_the_step_measured_here(kws, scenario, tmp_path, capsys):
    doc = _simulate(kws[0.25], scenario, tmp_path / "c", capsys, "--calibrate")
    cal, cost = doc["calibration"], doc["step_cost"]
    assert cost["rule"] == "calibrated" and cost["step_factor"] is None and cost["flops_per_step"] is None
    assert cost["phone_step_s"] == cal["phone_step_s"] == pytest.approx(
        cal["desktop_step_s"] * max(cal["desktop_gflops"] / 3.0, 1.0), rel=1e-12)
    assert cal["phone_gflops"] == PHONE_GFLOPS["low-end"] and 0 < cal["desktop_step_s"] < 1.0
    seconds = [float(r["seconds"]) for r in _steps(tmp_path / "c")]
    assert seconds == pytest.approx([cost["phone_step_s"]] * len(seconds), rel=1e-9)


def test_an_executorch_bundle_with_a_smaller_batch_trains_at_its_largest(scenario, tmp_path, capsys):
    """The simulator's batch (32) is capped at the program's ``max_batch``: a recipe exported at
    batch 16 trains in ExecuTorch instead of having every step refused, and its step costs 16."""
    bundle = tmp_path / "kws16"
    assert main(["export", "ds-cnn", "--mode", "head", "--option", "width=0.25", "--option", "blocks=1",
                 "--option", "batch_size=16", "--backend", "executorch", "--out", str(bundle)]) == 0
    assert load_bundle(bundle).manifest.max_train_batch("executorch") == 16
    doc = _simulate(bundle, scenario, tmp_path / "s", capsys, "--backend", "executorch")
    cost = doc["step_cost"]
    assert cost["batch_size"] == 16
    model = load_bundle(bundle).manifest.model
    assert cost["flops_per_step"] == round(model.flops_per_step * 16 / model.info["flops_batch"])
    rows = _steps(tmp_path / "s")
    assert len(rows) == doc["runs"][0]["steps"] == 12 and all(np.isfinite(float(r["loss"])) for r in rows)


def test_a_bundle_of_another_recipe_still_costs_the_step_factor(mlp_sgd_bundle, scenario, tmp_path, capsys):
    doc = _simulate(mlp_sgd_bundle, scenario, tmp_path / "m", capsys)
    cost = doc["step_cost"]
    assert cost["rule"] == "step-factor" and cost["step_factor"] == 1000
    assert cost["phone_step_s"] == load_profile("low-end").step_seconds * 1000
    seconds = [float(r["seconds"]) for r in _steps(tmp_path / "m")]
    assert seconds and seconds == pytest.approx([30.0] * len(seconds), rel=1e-9)


@pytest.mark.parametrize(("edit", "field"), [
    (lambda m: m["model"].update(flops_per_step=0), "model.flops_per_step"),
    (lambda m: m["model"].pop("flops_per_step"), "model.flops_per_step"),
    (lambda m: m["model"].update(flops_batch=0), "model.flops_batch"),
    (lambda m: m["model"]["options"].update(width=-1), "width"),
    (lambda m: m["model"].update(options=[1]), "model.options"),
])
def test_bad_zoo_manifest_values_get_one_line_and_exit_2(kws, scenario, tmp_path, capsys, edit, field):
    bundle = tmp_path / "b"
    shutil.copytree(kws[0.25], bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    code = main(["simulate", "--bundle", str(bundle), "--scenario", str(scenario),
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and field in err, err
    assert not (tmp_path / "r").exists()  # refused before any work


def test_a_profile_without_a_throughput_is_refused(kws, scenario, tmp_path, capsys):
    """A profile that is no built-in tier gets the throughput its reference step implies; a step
    no longer than the fixed overhead implies none."""
    profile = json.loads(json.dumps(load_profile("low-end").to_dict()))
    profile["name"] = "pocket"
    profile["compute"]["step_seconds"] = STEP_OVERHEAD_S
    (tmp_path / "pocket.json").write_text(json.dumps(profile))
    capsys.readouterr()
    code = main(["simulate", "--bundle", str(kws[0.25]), "--profile", str(tmp_path / "pocket.json"),
                 "--scenario", str(scenario), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "compute.step_seconds" in err, err


ZOO_DOC = Path(__file__).resolve().parents[1] / "docs" / "ZOO.md"
# the documented run at a small width of the same architecture (later options win)
SMALL = {"mobilenetv2": ["--option", "width=0.25", "--option", "stages=2", "--option", "resolution=16",
                         "--pretrain-epochs", "1"]}


def test_the_documented_zoo_run_on_a_simulated_phone_runs_at_a_small_width(tmp_path, monkeypatch, capsys):
    """docs/ZOO.md's "On a simulated phone": its two commands run as written (with a small width
    appended), print the zoo step cost and the table of the policies it shows."""
    import re
    import shlex

    section = ZOO_DOC.read_text(encoding="utf-8").split("## On a simulated phone", 1)[1].split("\n## ", 1)[0]
    block, shown = re.findall(r"```(?:sh|text)\n(.*?)```", section, re.S)[:2]
    commands = [shlex.split(line.removeprefix("$ "))
                for line in block.replace("\\\n", " ").splitlines() if line.startswith("$ mobile-lr ")]
    assert [c[1] for c in commands] == ["export", "simulate"]
    export, simulate = (c[1:] for c in commands)
    assert "--backend" in export and export[export.index("--backend") + 1] == "ort,executorch"
    monkeypatch.chdir(tmp_path)
    assert main([*export, *SMALL[export[1]]]) == 0
    capsys.readouterr()
    assert main(simulate) == 0
    out = capsys.readouterr().out
    cost = next(line for line in out.splitlines() if line.startswith("step cost:"))
    doc_cost = next(line for line in shown.splitlines() if line.startswith("step cost:"))
    assert cost.startswith("step cost: the zoo model's own,") and doc_cost.startswith(cost.split(",")[0])
    assert cost.endswith("(the scenario's step_factor does not apply)") and doc_cost.endswith(cost[-40:])
    policies = simulate[simulate.index("--compare") + 1].split(",")
    profile, scenario = simulate[simulate.index("--profile") + 1], simulate[simulate.index("--scenario") + 1]
    for policy in policies:  # one row per policy, in the doc and here
        row = re.compile(rf"^{profile}\s+{scenario}\s+{policy}\s", re.M)
        assert row.search(out) and row.search(shown)
    out_dir = Path(simulate[simulate.index("--out") + 1])
    assert (out_dir / "report.md").is_file() and (out_dir / f"run-{profile}-{scenario}.png").is_file()
