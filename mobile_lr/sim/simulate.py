"""Policies x (profile, scenario) on one bundle: the engine of ``mobile-lr simulate`` and ``demo``.

For each policy a fresh runtime opens the bundle (verified first: a tampered
bundle is refused before anything is loaded), a fresh simulated phone starts in
the scenario's state, and :func:`mobile_lr.sim.session.run_session` trains. With
``out_dir`` each run leaves ``steps.csv`` (every step, pause and event),
``final.ckpt`` (the runtime's checkpoint) and ``summary.json``.

The phone's step time follows the one rule of :mod:`mobile_lr.sim.workload`: calibrated
(the bundle's real step measured here, scaled by this machine's FP32 throughput over the
phone's), a zoo model's own FLOPs per step over the phone's throughput, or, for any other
bundle, the profile's reference step times the scenario's ``workload.step_factor``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mobile_lr.atomic_files import write_atomic
from mobile_lr.bundle import Manifest, load_bundle
from mobile_lr.device import DeviceProfile, SimulatedDevice, load_profile
from mobile_lr.manager import ScheduleManager
from mobile_lr.runtime import open_runtime
from mobile_lr.sim.scenario import Scenario, load_scenario
from mobile_lr.sim.session import LOG_COLUMNS, SessionResult, run_session
from mobile_lr.sim.setups import make_setup
from mobile_lr.sim.workload import PHONE_GFLOPS, Data, PhoneStep, bundle_data, phone_gflops, phone_step

__all__ = ["BATCH_SIZE", "PHONE_GFLOPS", "Calibration", "PolicyRun", "bundle_schedule", "calibrate",
           "json_default", "session_batch", "simulate", "write_steps_csv"]

@dataclass(frozen=True)
class PolicyRun:
    profile: str
    scenario: str
    policy: str
    result: SessionResult
    run_dir: str | None = None
    device: DeviceProfile | None = None  # the profile itself (a file's profile is not a built-in name)

    def summary(self) -> dict[str, Any]:
        return {"profile": self.profile, "scenario": self.scenario, "policy": self.policy,
                **self.result.summary()}


@dataclass(frozen=True)
class Calibration:
    desktop_step_s: float     # median real step time of the bundle here
    desktop_gflops: float     # measured FP32 matmul throughput here
    phone_gflops: float       # the phone's effective throughput (workload.phone_gflops)
    phone_step_s: float       # what the simulated phone is charged per step

    def to_dict(self) -> dict[str, float]:
        return {"desktop_step_s": self.desktop_step_s, "desktop_gflops": self.desktop_gflops,
                "phone_gflops": self.phone_gflops, "phone_step_s": self.phone_step_s}


BATCH_SIZE = 32  # the simulated sessions' mini-batch (fewer when the user has fewer samples)


def session_batch(manifest: Manifest, backend: str, samples: int, wanted: int = BATCH_SIZE) -> int:
    """The simulated session's mini-batch: ``wanted``, at most the user's ``samples`` and at most
    the largest batch ``backend``'s artifacts take (an ExecuTorch bundle from a recipe with a smaller
    batch plans its buffers for that one)."""
    cap = manifest.max_train_batch(backend)
    return max(1, min(wanted, samples, wanted if cap is None else cap))


def bundle_schedule(bundle_dir: str | Path) -> dict[str, Any]:
    """The bundle's verified ``schedule.json`` (the base LR every compared policy shares)."""
    bundle = load_bundle(bundle_dir)
    return json.loads(bundle.read_verified("schedule.json"))


def _matmul_gflops(n: int = 256, seconds: float = 0.3) -> float:
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = a.T.copy()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2.0 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def calibrate(bundle_dir: str | Path, profile: DeviceProfile, data: tuple[np.ndarray, np.ndarray], *,
              backend: str = "ort", steps: int = 30, batch_size: int = 32,
              runtime_options: Mapping[str, Any] | None = None) -> Calibration:
    """Measure the bundle's real step here (the median of ``steps`` after 5 warm-up steps, LR 0 so
    the weights stay) and scale it to the phone: times this machine's measured FP32 throughput over
    :func:`mobile_lr.sim.workload.phone_gflops` (never faster than here)."""
    runtime = open_runtime(backend, bundle_dir, **(runtime_options or {}))
    x, y = data
    idx = np.arange(min(batch_size, len(x)))
    for _ in range(5):
        runtime.step(x[idx], y[idx], 0.0)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        runtime.step(x[idx], y[idx], 0.0)
        times.append(time.perf_counter() - t0)
    desk = float(np.median(times))
    gflops = _matmul_gflops()
    phone = phone_gflops(profile)
    return Calibration(desk, gflops, phone, desk * max(gflops / phone, 1.0))


def write_steps_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    fh = io.StringIO(newline="")
    w = csv.DictWriter(fh, fieldnames=list(LOG_COLUMNS))
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in LOG_COLUMNS})
    write_atomic(path, fh.getvalue())


def simulate(bundle_dir: str | Path, *, profile: str | DeviceProfile, scenario: str | Scenario,
             policies: Sequence[str] = ("manager", "naive", "constant"), backend: str = "ort",
             data: Data | None = None,
             policy_override: Any = None, out_dir: str | Path | None = None, seed: int = 0,
             step: PhoneStep | None = None, batch_size: int = BATCH_SIZE,
             on_step: Callable[[str], None] | None = None,
             runtime_options: Mapping[str, Any] | None = None) -> list[PolicyRun]:
    """Run each policy on ``bundle_dir`` for (``profile``, ``scenario``); see the module doc.

    ``data`` is ``((x_train, y_train), (x_test, y_test))`` (default: the bundle's own user,
    :func:`mobile_lr.sim.workload.bundle_data`). ``policy_override`` replaces the scenario's user
    policy. ``step`` is the phone's step cost (default: :func:`mobile_lr.sim.workload.phone_step`
    without calibration, at ``batch_size``). ``runtime_options`` go to every runtime (e.g. the
    PyTorch runtime's ``recipes`` allow-list).
    """
    from mobile_lr.budget import Policy, load_policy

    prof = load_profile(profile)
    scen = load_scenario(scenario)
    user_policy = scen.policy if policy_override is None else (
        policy_override if isinstance(policy_override, Policy) else load_policy(policy_override))
    schedule = bundle_schedule(bundle_dir)
    manifest = load_bundle(bundle_dir).manifest  # the manager's averaging depends on the optimizer
    if data is None:
        data = bundle_data(manifest)
    batch_size = session_batch(manifest, backend, len(data[0][1]), batch_size)
    if step is None:
        step = phone_step(manifest, prof, scen, batch_size=batch_size)
    step_s = step.phone_step_s
    # The app knows its model's step cost (calibrated on the phone): the manager's profile
    # carries it, so the first plan is sized right; the observed steps refine it.
    prof = dataclasses.replace(prof, step_seconds=step_s)
    runs = []
    for name in policies:
        setup = make_setup(name, schedule, scen.nominal_steps, backend, manifest)
        runtime = open_runtime(backend, bundle_dir, **{**(runtime_options or {}), **setup.runtime_options})
        state = scen.initial_state(prof)
        device = SimulatedDevice(prof, state, ambient_c=scen.ambient_c,
                                 background_w=scen.background_w)
        manager = ScheduleManager(setup.spec, prof, user_policy, setup.config, state=device.state)
        run_dir = None
        ckpt_dir = None
        if out_dir is not None:
            run_dir = Path(out_dir) / prof.name / scen.name / name
            run_dir.mkdir(parents=True, exist_ok=True)
            ckpt_dir = run_dir / "checkpoints"
        result = run_session(runtime, manager, device, data[0], eval_data=data[1], seed=seed,
                             batch_size=batch_size,
                             windows=scen.windows(prof), events=scen.events, end_s=scen.end_s,
                             checkpoint_dir=ckpt_dir,
                             on_step=None if on_step is None else (lambda _d, _l, n=name: on_step(n)))
        run = PolicyRun(prof.name, scen.name, name, result, None if run_dir is None else str(run_dir), prof)
        if run_dir is not None:
            write_steps_csv(run_dir / "steps.csv", result.rows)
            runtime.save(run_dir / "final.ckpt", {"manager": manager.state_dict()})
            write_atomic(run_dir / "summary.json", json.dumps(
                {**run.summary(), "plan_history": result.plan_history,
                 "spec": setup.spec, "user_policy": user_policy.to_dict(), "step_seconds": step_s,
                 "step_cost": step.to_dict()},
                indent=2, default=json_default) + "\n")
        runs.append(run)
    return runs


def json_default(obj: Any) -> Any:
    """``json.dumps(..., default=json_default)``: numpy scalars in summaries become plain numbers."""
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
