"""Exact resume: stop a run at a random step, serialise the manager to JSON, restore it in a
fresh Python process, and get the same remaining decisions and LRs as a run that never
stopped."""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from mobile_lr.manager import ScheduleManager

pytestmark = pytest.mark.core

# The same driver runs in this process and in the child: a simulated phone (its own state is
# saved next to the manager's), an event trace keyed by iteration, NaN losses now and then.
DRIVER = r'''
import json, math, sys
from dataclasses import replace
from mobile_lr.device import DeviceProfile, DeviceState, SimulatedDevice, load_profile
from mobile_lr.manager import Pause, Rollback, Run, ScheduleManager, Stop

EVENTS = {40: "unplug", 330: "plug", 130: "hot", 200: "cool"}


def new_world():
    profile = replace(load_profile("mid-range"), battery_wh=1.5, step_seconds=2.0)
    spec = {"format": "mobile-lr.schedule/1", "base_lr": 0.05, "total_steps": 400,
            "warmup": {"steps": 10}, "shape": {"type": "cosine", "eta_min": 1e-4}}
    policy = {"battery_floor": 0.25, "max_thermal": "MODERATE", "horizon": "deadline",
              "deadline_s": 9000, "window_s": 300, "window_gap_s": 60}
    config = {"range_test": {"fraction": 0.05, "min_steps": 5, "max_steps": 12},
              "peak_lr": {"type": "budget_power"}}
    dev = SimulatedDevice(profile, DeviceState.initial(profile, 0.8, charging=True),
                          ambient_c=27.0, train_power_w=5.0, step_seconds=2.5)
    return ScheduleManager(spec, profile, policy, config), dev


def sim_state(dev):
    return {"state": dev.state.to_dict(), "ambient": dev.ambient_c}


def load_sim(obj, profile):
    dev = SimulatedDevice(profile, DeviceState.from_dict(obj["state"]), ambient_c=obj["ambient"],
                          train_power_w=5.0, step_seconds=2.5)
    return dev


def loss_of(it, lr):
    """Falls fastest near lr = 0.005, diverges above 0.3, NaN now and then."""
    if it in (70, 260):
        return float("nan")
    if lr > 0.3:
        return 50.0
    return 2.0 - 0.5 * math.tanh(math.log10(lr / 0.005)) - 0.001 * it


def drive(mgr, dev, start, stop_at):
    out = []
    for it in range(start, stop_at):
        ev = EVENTS.get(it)
        if ev == "unplug":
            dev.set_charging(False)
        elif ev == "plug":
            dev.set_charging(True)
        elif ev == "hot":
            dev.set_ambient(31.0)
        elif ev == "cool":
            dev.set_ambient(22.0)
        mgr.update_device(replace(dev.state, ambient_c=None))
        d = mgr.next()
        out.append([type(d).__name__, d.to_dict()])
        if isinstance(d, Stop):
            break
        if isinstance(d, Pause):
            dev.idle(min(d.resume_hint or 60.0, 900.0))
            if d.reason == "window":
                mgr.begin_window()
            continue
        if isinstance(d, Rollback):
            continue
        if it % 25 == 0:
            mgr.mark_checkpoint()
        r = dev.train_step()
        mgr.observe(loss=loss_of(it, d.lr), step_seconds=r.seconds, energy_j=r.energy_j)
    return out


if __name__ == "__main__":
    path, start, stop_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    saved = json.load(open(path))
    mgr = ScheduleManager.from_state_dict(saved["manager"])
    dev = load_sim(saved["sim"], mgr.profile)
    remaining = [mgr.lr_at(t) for t in range(mgr.step, (mgr.planned_total or mgr.step) + 1)]
    decisions = drive(mgr, dev, start, stop_at)
    print(json.dumps({"decisions": decisions, "remaining_lrs": remaining,
                      "final": mgr.state_dict()}))
'''


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    path = tmp_path_factory.mktemp("driver") / "resume_driver.py"
    path.write_text(DRIVER)
    spec = importlib.util.spec_from_file_location("resume_driver", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def test_full_run_exercises_the_interesting_paths(driver):
    _, drv = driver
    mgr, dev = drv.new_world()
    decisions = drv.drive(mgr, dev, 0, 3000)
    kinds = {(k, d.get("reason") or d.get("phase")) for k, d in decisions}
    assert ("Run", "range-test") in kinds and ("Run", "train") in kinds
    assert ("Rollback", "range-test") in kinds and ("Rollback", "non-finite loss") in kinds
    assert ("Pause", "window") in kinds
    assert decisions[-1][0] == "Stop"
    assert len(mgr.plan_history) > 2


@pytest.mark.parametrize("cut", [7, 63, 151, 240, random.Random(3).randrange(1, 450)])
def test_resume_in_a_fresh_process_is_exact(driver, tmp_path, cut):
    path, drv = driver
    horizon = 3000
    # the run that never stopped
    mgr, dev = drv.new_world()
    whole = drv.drive(mgr, dev, 0, horizon)
    # the run killed after `cut` iterations, saved as JSON
    mgr2, dev2 = drv.new_world()
    first = drv.drive(mgr2, dev2, 0, cut)
    assert first == whole[:cut]
    saved = {"manager": mgr2.state_dict(), "sim": drv.sim_state(dev2)}
    text = json.dumps(saved)
    assert json.loads(text) == saved  # plain JSON
    remaining = [mgr2.lr_at(t) for t in range(mgr2.step, (mgr2.planned_total or mgr2.step) + 1)]
    state_file = tmp_path / "saved.json"
    state_file.write_text(text)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(path), str(state_file), str(cut), str(horizon)],
                          capture_output=True, text=True, cwd=root, check=True)
    child = json.loads(proc.stdout)
    assert child["remaining_lrs"] == remaining
    assert child["decisions"] == json.loads(json.dumps(whole[cut:]))
    assert child["final"] == mgr.state_dict()


def test_state_dict_round_trips_in_process(driver):
    _, drv = driver
    mgr, dev = drv.new_world()
    drv.drive(mgr, dev, 0, 120)
    again = ScheduleManager.from_state_dict(json.loads(json.dumps(mgr.state_dict())))
    assert again.state_dict() == mgr.state_dict()
    for t in range(mgr.step, mgr.step + 50):
        assert again.lr_at(t) == mgr.lr_at(t)
