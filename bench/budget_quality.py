"""Quality under a cut budget: final accuracy when the battery cuts a fine-tune to 5-100 % of its plan.

Run it with ``python -m bench.budget_quality`` (``--quick`` for a smoke run); it prints the
tables and writes ``bench/results/budget_quality.json``; docs/QUALITY.md holds the table of
the last full run. A battery-aware manager is only worth having if, when the phone's battery
ends a fine-tune early, the model is at least as good as what the budget-unaware peers give.

Cells: a task (:mod:`bench.budget_tasks`: the tuning tasks ``digits`` and ``new-users``,
the held-out ``ds-cnn``, ``tabular``, ``new-family`` and ``activity``) on an engine (``torch``: PyTorch
eager; ``ort``: ONNX Runtime Training; ``executorch``); every method of a cell trains in
that engine, from the task's pre-trained weights, on the same user and batches per seed
(batch 32, reshuffled each epoch; a seed changes the batch order and, except on
``digits``, the user).

Methods (the nominal plan is ``T`` steps; the budget is cut to ``C`` steps):

* peers, planned for ``T`` without knowing the cut: ``constant`` AdamW; ``cosine-T``;
  ``ort-linear-T`` (ONNX Runtime's ``LinearLRScheduler`` formula, warm-up 0, see
  :func:`ort_linear_factor`); ``sf-adamw`` (schedule-free AdamW: the runtime's
  ``optimizer="schedulefree"``, constant LR, evaluated at its average ``x``) without and
  with a T/10 warm-up (``sf-adamw-w10``). They never see the cut, so one run of ``T``
  steps evaluated after ``C`` steps *is* the cut run.
* ``--oracles``: cosine or linear decay planned for the true ``C`` from step 0.
* the manager: :class:`mobile_lr.manager.ScheduleManager` with a set-up (``manager``: the
  library's recommended set-up for the engine; ``--variants``: the candidates of
  :data:`VARIANTS`) driving the engine on a :class:`mobile_lr.device.SimulatedDevice`
  (mid-range profile, 5 W USB charger, default policy: floor 20 %). It is never told the
  cut; the battery tells it, in two scenarios: ``known`` (unplugged from the start with
  just enough charge for the cut: the first plan reveals it) and ``revealed`` (on the
  charger, so the plan is the nominal T, unplugged after ``C // 2`` steps with charge for
  exactly the rest). Start levels are found by bisection on dry runs; the bench checks that
  the manager ran exactly ``C`` steps.

LR protocol: every method gets every LR of the grid; the tables report (a) each method at
its best LR *for each cut* and (b) one LR per method, the one with the best mean over the
cuts (what an app that fixes ``base_lr`` before it knows the budget gets). A manager's LR
is the grid LR times its own factors. Mean ± sample std over seeds; the gap to the best
peer is paired over seeds with its standard error.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from bench.budget_tasks import TASKS, BenchTask
from bench.machine import RESULTS as RESULTS_DIR
from bench.machine import command_without_out, machine_info
from mobile_lr.datasets import Split
from mobile_lr.device import DeviceProfile, DeviceState, SimulatedDevice, load_profile
from mobile_lr.manager import ManagerConfig, Pause, Rollback, Run, ScheduleManager, Stop
from mobile_lr.manager.recommended import plan_warmup

RESULTS = RESULTS_DIR / "budget_quality.json"
RESULT_FORMAT = "mobile-lr.bench.budget_quality/2"
NOMINAL_STEPS = 200
CUTS = (0.05, 0.15, 0.35, 0.70, 1.00)
LR_GRID = (0.003, 0.01, 0.03, 0.1)
SEEDS = 10
BATCH = 32
PROFILE = "mid-range"
CHARGER_W = 5.0
ENGINES = ("torch", "ort", "executorch")
DEFAULT_TASKS = ("tabular", "new-family", "ds-cnn", "activity", "new-users", "digits")
#: (task, engine) cells the default run skips: ExecuTorch's portable convolution kernels take
#: ~0.1 s per DS-CNN step here (measured), 30x ORT's: 10 seeds x 5 LRs would take hours.
SKIP_CELLS = frozenset({("ds-cnn", "executorch")})
CHECKPOINT_EVERY = 10


def batch_order(seed: int, steps: int, n: int, batch: int = BATCH) -> list[np.ndarray]:
    """Indices of each step's batch: epochs of a fresh permutation, a batch may straddle two."""
    rng = np.random.default_rng([seed, 17])
    pool: list[int] = []
    out = []
    for _ in range(steps):
        while len(pool) < batch:
            pool.extend(int(i) for i in rng.permutation(n))
        out.append(np.asarray(pool[:batch]))
        del pool[:batch]
    return out


# --------------------------------------------------------------------------- LR factors


def ort_linear_factor(k: int, warmup: int, total: int) -> float:
    """ONNX Runtime's ``LinearLRScheduler`` factor for the update after ``k`` optimizer steps.

    Transcribed from ``orttraining/training_api/lr_scheduler.cc`` (docs/DEVICES.md
    §7.4): ``k / max(1, warmup)`` while ``k < warmup``, then
    ``max(0, (total - k) / max(1, total - warmup))``. Its constructor steps once, so with a
    warm-up the very first update has LR 0, as on the phone.
    """
    if k < warmup:
        return k / max(1, warmup)
    return max(0.0, (total - k) / max(1, total - warmup))


def check_ort_linear(bundle: Path, train: Split,
                     cases: Sequence[tuple[int, int]] = ((0, 10), (3, 10), (9, 10))) -> dict[str, Any]:
    """Run ORT's own ``LinearLRScheduler`` (Python API, real optimizer steps) and compare its LRs
    with :func:`ort_linear_factor`, both with the arguments as documented and swapped.

    onnxruntime-training 1.19.2's Python wrapper passes ``(warmup_step_count,
    total_step_count)`` positionally to a binding declared ``(total_step_count,
    warmup_step_count)`` (microsoft/onnxruntime PR #13882), so from Python the LR ramps up
    over ``total`` steps and then drops to 0. The C, C++, Java and C# APIs, which a phone
    app calls, take them in the documented order; the bench's ``ort-linear-T`` rows use
    the documented behaviour.
    """
    from onnxruntime.training.api import CheckpointState, LinearLRScheduler, Module, Optimizer

    out: dict[str, Any] = {"cases": []}
    xb, yb = train.x[:BATCH], train.y[:BATCH]
    for warmup, total in cases:
        state = CheckpointState.load_checkpoint(str(bundle / "checkpoint"))
        module = Module(str(bundle / "training_model.onnx"), state, str(bundle / "eval_model.onnx"))
        opt = Optimizer(str(bundle / "optimizer_model.onnx"), module)
        sched = LinearLRScheduler(opt, warmup, total, 1.0)
        seen = []
        for _ in range(total + 2):
            seen.append(float(opt.get_learning_rate()))
            module(xb, yb)
            opt.step()
            module.lazy_reset_grad()
            sched.step()
        documented = [ort_linear_factor(k, warmup, total) for k in range(total + 2)]
        swapped = [ort_linear_factor(k, total, warmup) for k in range(total + 2)]
        out["cases"].append({"warmup": warmup, "total": total, "lrs": seen,
                             "as_documented": bool(np.allclose(seen, documented, atol=1e-6)),
                             "arguments_swapped": bool(np.allclose(seen, swapped, atol=1e-6))})
    out["python_api_as_documented"] = all(c["as_documented"] for c in out["cases"])
    out["python_api_arguments_swapped"] = all(c["arguments_swapped"] for c in out["cases"])
    return out


def cosine_factor(t: int, total: int) -> float:
    """``CosineAnnealingLR`` with ``T_max = total``, ``eta_min = 0``, held at 0 past the end."""
    return 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))


def linear_factor(t: int, total: int) -> float:
    return max(0.0, (total - t) / total)


def warm(fraction: float, factor: Callable[[int, int], float]) -> Callable[[int, int], float]:
    """Linear warm-up over ``floor(fraction · total)`` steps from ``1/w`` (as schedulefree's)."""
    def f(t: int, total: int) -> float:
        w = math.floor(fraction * total)
        return factor(t, total) * (min(1.0, (t + 1) / w) if w > 0 else 1.0)
    return f


# --------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class ManagerSetup:
    """What a manager row runs: a schedule spec at ``base_lr = 1`` (scaled by the grid LR),
    the manager config (JSON, ``nominal_steps`` filled in per run), the runtime options."""

    name: str
    schedule: Mapping[str, Any]
    config: Mapping[str, Any]
    runtime_options: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    def spec(self, lr: float) -> dict[str, Any]:
        spec = json.loads(json.dumps(dict(self.schedule)))
        spec["base_lr"] = float(spec.get("base_lr", 1.0)) * lr
        return spec


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "peer" | "oracle" | "manager"
    optimizer: str = "recipe"  # or "schedulefree"
    factor: Callable[[int, int], float] | None = None  # (t, planned total) -> LR factor
    manager: ManagerSetup | None = None
    scenario: str = ""  # manager rows: "known" | "revealed"
    note: str = ""


_WARMUP = {"steps": 5, "start_factor": 0.1, "max_fraction": 0.05}
_PEAK = {"type": "budget_power", "power": 0.3, "max_factor": 2.5}
_SF = {"optimizer": "schedulefree"}
_WARMUP2 = {"steps": 2, "start_factor": 0.3, "max_fraction": 0.05}


def _sched(shape: Mapping[str, Any], budget: Mapping[str, Any] | None = None,
           warmup: Mapping[str, Any] | None = _WARMUP) -> dict[str, Any]:
    spec: dict[str, Any] = {"format": "mobile-lr.schedule/1", "base_lr": 1.0, "shape": dict(shape)}
    if warmup:
        spec["warmup"] = dict(warmup)
    if budget:
        spec["budget"] = dict(budget)
    return spec


_CONST = {"type": "constant", "factor": 1.0}
_LIN = {"type": "linear", "start_factor": 1.0, "end_factor": 0.0}

#: Candidate set-ups for the phone's engines (prototyped here with the public API; the
#: library's default is the ``manager`` row). Each is engine-independent: schedule-free runs
#: through each runtime's ``optimizer="schedulefree"``.
VARIANTS: dict[str, ManagerSetup] = {v.name: v for v in (
    ManagerSetup("ema-wsd", _sched(_LIN, {"mode": "wsd", "decay_fraction": 0.2}), {"peak_lr": _PEAK},
                 {"ema": 0.9}, "EMA 0.9, hold then cool down over the last 20 %, peak factor"),
    ManagerSetup("sf", _sched(_CONST), {"peak_lr": _PEAK}, _SF,
                 "schedule-free, warm-up <= 5 steps, peak factor (nominal/plan)^0.3"),
    ManagerSetup("sf-flat", _sched(_CONST), {}, _SF, "schedule-free, warm-up <= 5 steps, no peak factor"),
    ManagerSetup("sf-nowarm", _sched(_CONST, warmup=None), {"peak_lr": _PEAK}, _SF,
                 "schedule-free, no warm-up, peak factor"),
    ManagerSetup("sf-p05", _sched(_CONST), {"peak_lr": {**_PEAK, "power": 0.5, "max_factor": 4.0}}, _SF,
                 "schedule-free, peak factor (nominal/plan)^0.5 up to 4"),
    ManagerSetup("sf-w10", _sched(_CONST, warmup={"steps": 1000, "start_factor": 0.1, "max_fraction": 0.1}),
                 {}, _SF, "schedule-free, warm-up over 10 % of the first plan, no peak factor"),
    ManagerSetup("sf-w2", _sched(_CONST, warmup=_WARMUP2), {}, _SF,
                 "schedule-free, warm-up <= 2 steps, no peak factor"),
    # schedule-free's polynomial averaging weight: step k weighs (k + 1) ** r x lr_max ** 2
    ManagerSetup("sf-w2-r1", _sched(_CONST, warmup=_WARMUP2), {}, {**_SF, "sf_r": 1.0},
                 "sf-w2 with the averaging weight (k + 1) x lr_max^2 (sf_r 1)"),
    ManagerSetup("sf-w2-r2", _sched(_CONST, warmup=_WARMUP2), {}, {**_SF, "sf_r": 2.0},
                 "sf-w2 with the averaging weight (k + 1)^2 x lr_max^2 (sf_r 2)"),
    ManagerSetup("sf-r1-nowarm", _sched(_CONST, warmup=None), {}, {**_SF, "sf_r": 1.0},
                 "schedule-free, no warm-up, the LR held, the averaging weight (k + 1) x lr_max^2 (sf_r 1)"),
    # a plan-following warm-up: OneCycleLR's linear first phase over a share of the plan in force
    # (replan: a re-plan re-times it; a cut revealed mid-warm-up ends it), then the peak held
    # (final LR = initial / final_div_factor = the peak)
    ManagerSetup("sf-pw10", _sched(plan_warmup(0.1, 0.3), {"mode": "replan"}, warmup=None), {}, _SF,
                 "schedule-free, warm-up over 10 % of the plan in force from 0.3x, re-timed by re-plans"),
    ManagerSetup("sf-pw10-01", _sched(plan_warmup(0.1, 0.1), {"mode": "replan"}, warmup=None), {}, _SF,
                 "schedule-free, warm-up over 10 % of the plan in force from 0.1x, re-timed by re-plans"),
    ManagerSetup("sf-pw10-06", _sched(plan_warmup(0.1, 0.6), {"mode": "replan"}, warmup=None), {}, _SF,
                 "schedule-free, warm-up over 10 % of the plan in force from 0.6x, re-timed by re-plans"),
    ManagerSetup("phone", _sched(plan_warmup(0.1, 0.6), {"mode": "replan"}, warmup=None),
                 {"schedule_horizon": "battery"}, {**_SF, "sf_r": 1.0},
                 "the measured phone set-up (= sf-pw10-06 with sf_r 1): schedule-free AdamW averaging step k "
                 "with weight (k + 1) x lr_max^2, a warm-up over 10 % of the plan in force from 0.6x "
                 "(re-timed by re-plans; while charging, of the plan capped at what the battery alone "
                 "affords), then the LR held, no peak factor"),
    ManagerSetup("phone-plan", _sched(plan_warmup(0.1, 0.6), {"mode": "replan"}, warmup=None), {},
                 {**_SF, "sf_r": 1.0},
                 "the phone set-up of 2026-12-03: its warm-up a share of the plan in force even while "
                 "charging (schedule_horizon 'plan': the charger's long plan)"),
    ManagerSetup("sf-pw05", _sched(plan_warmup(0.05, 0.3), {"mode": "replan"}, warmup=None), {}, _SF,
                 "schedule-free, warm-up over 5 % of the plan in force from 0.3x, re-timed by re-plans"),
    ManagerSetup("sf-pw20", _sched(plan_warmup(0.2, 0.3), {"mode": "replan"}, warmup=None), {}, _SF,
                 "schedule-free, warm-up over 20 % of the plan in force from 0.3x, re-timed by re-plans"),
    ManagerSetup("sf-rise", _sched({"type": "linear", "start_factor": 0.5, "end_factor": 1.0},
                                   {"mode": "replan"}, warmup=_WARMUP2), {}, _SF,
                 "schedule-free, 2-step warm-up, then the LR rising 0.5x -> 1x over the plan in force "
                 "(later iterates weigh more in the average)"),
    ManagerSetup("sf-decay10", _sched(_LIN, {"mode": "wsd", "decay_fraction": 0.1}), {"peak_lr": _PEAK},
                 _SF, "schedule-free, linear decay to 0 over the last 10 % of the budget in force"),
    ManagerSetup("sf-decay05", _sched({"type": "linear", "start_factor": 1.0, "end_factor": 0.2},
                                      {"mode": "wsd", "decay_fraction": 0.05}), {"peak_lr": _PEAK},
                 _SF, "schedule-free, decay to 0.2 over the last 5 % of the budget in force"),
)}


def library_setup(engine: str, manifest: Any, nominal: int) -> ManagerSetup:
    """The library's recommended set-up for ``engine`` at base LR 1 (the grid LR scales it; for
    schedule-free the schedule's ``base_lr`` carries the set-up's LR factor)."""
    from mobile_lr.manager import recommended_setup

    s = recommended_setup(engine, manifest, 1.0, nominal)
    cfg = s.config.to_dict()
    cfg.pop("nominal_steps", None)
    return ManagerSetup("manager", s.schedule, cfg, dict(s.runtime_options),
                        f"recommended_setup({engine!r}, ...)")


def peer_methods(oracles: bool) -> list[Method]:
    const = (lambda t, total: 1.0)  # noqa: E731
    out = [
        Method("constant", "peer", factor=const, note="AdamW, constant LR"),
        Method("cosine-T", "peer", factor=cosine_factor, note="cosine planned for T"),
        Method("ort-linear-T", "peer", factor=lambda t, total: ort_linear_factor(t, 0, total),
               note="ORT LinearLRScheduler(warmup=0, total=T)"),
        Method("sf-adamw", "peer", optimizer="schedulefree", factor=const,
               note="schedule-free AdamW, constant LR"),
        Method("sf-adamw-w10", "peer", optimizer="schedulefree", factor=warm(0.1, const),
               note="schedule-free AdamW, warm-up T/10"),
    ]
    if oracles:
        out += [Method("oracle-cosine", "oracle", factor=cosine_factor, note="cosine planned for the true C"),
                Method("oracle-linear", "oracle", factor=linear_factor, note="linear planned for the true C")]
    return out


def manager_methods(setups: Sequence[ManagerSetup]) -> list[Method]:
    return [Method(f"{s.name}[{sc}]", "manager", optimizer=s.runtime_options.get("optimizer", "recipe"),
                   manager=s, scenario=sc, note=s.note) for s in setups for sc in ("known", "revealed")]


DECAY_PEERS = ("cosine-T", "ort-linear-T")


# --------------------------------------------------------------------------- engines


class Engines:
    """A task's pre-trained recipe and its bundle; a fresh runtime at those weights per run."""

    def __init__(self, task: BenchTask, engines: Sequence[str]) -> None:
        self.recipe = task.recipe()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.bundle: Path | None = None
        self.manifest: Any = None
        if any(e != "torch" for e in engines):
            from mobile_lr.bundle import load_bundle
            from mobile_lr.export import export_bundle

            self._tmp = tempfile.TemporaryDirectory(prefix="mobile-lr-bench-")
            self.bundle = Path(self._tmp.name) / task.name
            backends = tuple(e for e in engines if e != "torch")
            export_bundle(self.recipe, self.bundle, backends=backends)
            self.manifest = load_bundle(self.bundle).manifest
            if "executorch" in backends:
                from executorch.extension.pybindings import portable_lib

                portable_lib._unsafe_reset_threadpool(1)  # one thread, as torch and ORT here

    def make(self, engine: str, optimizer: str, ema: float | None = None, sf_r: float = 0.0) -> Any:
        if engine == "torch":
            from mobile_lr.runtime.torch_rt import TorchRuntime

            return TorchRuntime(self.recipe, optimizer=optimizer, ema=ema, sf_r=sf_r)
        from mobile_lr.runtime import open_runtime

        assert self.bundle is not None
        return open_runtime(engine, self.bundle, optimizer=optimizer, ema=ema, sf_r=sf_r)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def accuracy(rt: Any, test: Split) -> float:
    return 100.0 * float(rt.evaluate(test.x, test.y)["accuracy"])


def run_planned(eng: Engines, engine: str, m: Method, lr: float, train: Split, test: Split,
                batches: Sequence[np.ndarray], cuts: Sequence[int]) -> dict[int, float]:
    """A peer (planned for T, evaluated after each cut) or an oracle (one run per cut)."""
    assert m.factor is not None
    out: dict[int, float] = {}
    if m.kind == "oracle":
        for c in cuts:
            rt = eng.make(engine, m.optimizer)
            for t in range(c):
                b = batches[t]
                rt.step(train.x[b], train.y[b], lr * m.factor(t, c))
            out[c] = accuracy(rt, test)
        return out
    rt = eng.make(engine, m.optimizer)
    total = max(cuts)
    for t in range(total):
        b = batches[t]
        rt.step(train.x[b], train.y[b], lr * m.factor(t, total))
        if t + 1 in cuts:
            out[t + 1] = accuracy(rt, test)
    return out


# --------------------------------------------------------------------------- the manager on a phone


@lru_cache(maxsize=1)
def phone_profile() -> DeviceProfile:
    """The mid-range profile with a 5 W USB charger.

    On it, training drains nothing (0.88 x 5 W is above the 3.5 W training power, with the
    manager's 10 % margin too), so while plugged in the plan is the nominal T; the level rises
    a little, and the bisection of :func:`scenario_for` accounts for it."""
    d = load_profile(PROFILE).to_dict()
    d["name"] = f"{PROFILE}-usb-charger"
    d["charging"]["power_w"] = CHARGER_W
    return load_profile(d)


@dataclass
class Scenario:
    """A simulated phone whose battery ends the run after ``cut`` steps of this manager."""

    level: float
    charging: bool
    unplug_after: int | None


class Trainer:
    """The engine side of a manager run: trains a step, keeps the checkpoint a rollback returns to."""

    def __init__(self, make: Callable[[], Any], train: Split, batches: Sequence[np.ndarray],
                 checkpoints: bool) -> None:
        self.make, self.train, self.batches = make, train, batches
        self.rt = make()
        self._tmp = tempfile.TemporaryDirectory(prefix="mobile-lr-ckpt-") if checkpoints else None
        self.rollbacks: list[dict[str, Any]] = []

    def step(self, t: int, lr: float) -> float:
        b = self.batches[t]
        return float(self.rt.step(self.train.x[b], self.train.y[b], lr))

    def checkpoint(self, mgr: ScheduleManager, done: int) -> None:
        if self._tmp is not None and done % CHECKPOINT_EVERY == 0:
            self.rt.save(Path(self._tmp.name) / "last.ckpt")
            mgr.mark_checkpoint()

    def roll_back(self, d: Rollback) -> None:
        self.rollbacks.append(d.to_dict())
        if d.to_step == 0 or self._tmp is None:
            self.rt = self.make()
        else:
            self.rt.load(Path(self._tmp.name) / "last.ckpt")

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def drive(setup: ManagerSetup, lr: float, scenario: Scenario, nominal: int,
          trainer: Trainer | None) -> tuple[int, list[tuple[int, int]], float, list[float]]:
    """Run the manager on a simulated mid-range phone (``trainer`` None: a dry run, loss 1).
    Returns (Run decisions, the plan history, the peak factor, the LRs run)."""
    profile = phone_profile()
    dev = SimulatedDevice(profile, DeviceState.initial(profile, scenario.level, charging=scenario.charging))
    cfg = ManagerConfig.from_dict({**setup.config, "nominal_steps": nominal})
    mgr = ScheduleManager(setup.spec(lr), profile, None, cfg, dev.state)
    done = 0
    lrs: list[float] = []
    while True:
        d = mgr.next()
        if isinstance(d, Run):
            loss = 1.0 if trainer is None else trainer.step(d.step, d.lr)
            lrs.append(d.lr)
            res = dev.train_step()
            mgr.observe(loss, res.seconds, res.energy_j)
            done += 1
            if trainer is not None:
                trainer.checkpoint(mgr, done)
            if scenario.unplug_after is not None and done == scenario.unplug_after:
                dev.set_charging(False)
            mgr.update_device(dev.state)
        elif isinstance(d, Stop | Pause):
            break  # the battery is at the floor: the budget is spent
        elif isinstance(d, Rollback):
            if trainer is None:
                raise RuntimeError(f"rollback in a dry run: {d}")
            trainer.roll_back(d)
    return done, list(mgr.plan_history), float(mgr.peak_factor or 1.0), lrs


_SCENARIOS: dict[str, Scenario] = {}


def scenario_for(setup: ManagerSetup, scenario: str, cut: int, nominal: int) -> Scenario:
    """The start level that makes this manager run exactly ``cut`` steps (bisection on dry runs).

    ``known``: unplugged from the start. ``revealed``: on the charger until ``cut // 2`` steps
    are done (the plan is the nominal T until then), unplugged with charge for the rest.
    A cut of the whole plan is a phone on the charger throughout (or with a full battery).
    """
    key = json.dumps([setup.spec(1.0), dict(setup.config), scenario, cut, nominal])
    if key not in _SCENARIOS:
        _SCENARIOS[key] = _find_scenario(setup, scenario, cut, nominal)
    return _SCENARIOS[key]


def _find_scenario(setup: ManagerSetup, scenario: str, cut: int, nominal: int) -> Scenario:
    if cut >= nominal:
        return Scenario(0.9, scenario == "revealed", None)
    if scenario == "known":
        return _bisect(setup, cut, nominal, lambda level: Scenario(level, False, None))
    # The step count is not always continuous in the start level (the first plans are made
    # with the cost prior); unplugging a step earlier or later than half-way then finds it.
    half = max(1, cut // 2)
    err: RuntimeError | None = None
    for unplug in (half, half - 1, half + 1, half - 2, half + 2):
        if 1 <= unplug < cut:
            try:
                return _bisect(setup, cut, nominal, lambda level, u=unplug: Scenario(level, True, u))
            except RuntimeError as e:
                err = e
    assert err is not None
    raise err


def _bisect(setup: ManagerSetup, cut: int, nominal: int, make: Callable[[float], Scenario]) -> Scenario:
    floor = 0.2
    lo, hi = floor, floor + 0.002
    while drive(setup, 1e-3, make(hi), nominal, None)[0] < cut:
        hi = floor + 2 * (hi - floor)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if drive(setup, 1e-3, make(mid), nominal, None)[0] >= cut:
            hi = mid
        else:
            lo = mid
    sc = make(hi)
    got = drive(setup, 1e-3, sc, nominal, None)[0]
    if got != cut:
        raise RuntimeError(f"no start level gives exactly {cut} steps (got {got})")
    return sc


def run_manager(eng: Engines, engine: str, m: Method, lr: float, train: Split, test: Split,
                batches: Sequence[np.ndarray], cuts: Sequence[int], nominal: int
                ) -> tuple[dict[int, float], dict[int, dict[str, Any]]]:
    setup = m.manager
    assert setup is not None
    opts = dict(setup.runtime_options)
    out: dict[int, float] = {}
    info: dict[int, dict[str, Any]] = {}
    for c in cuts:
        trainer = Trainer(lambda: eng.make(engine, opts.get("optimizer", "recipe"), opts.get("ema"),
                                           opts.get("sf_r", 0.0)),
                          train, batches, checkpoints="divergence" in setup.config)
        try:
            done, hist, peak, lrs = drive(setup, lr, scenario_for(setup, m.scenario, c, nominal), nominal,
                                          trainer)
            if done != c and not trainer.rollbacks:
                raise RuntimeError(f"{m.name}: ran {done} steps, the cut is {c}")
            out[c] = accuracy(trainer.rt, test)
            info[c] = {"plan_history": hist, "peak_factor": peak, "steps_run": done,
                       "zero_lr_steps": sum(1 for x in lrs if x == 0.0), "last_lr": lrs[-1] if lrs else None,
                       "rollbacks": trainer.rollbacks}
        finally:
            trainer.close()
    return out, info


# --------------------------------------------------------------------------- tables


def _paired(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    diff = np.asarray(a) - np.asarray(b)
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
    return {"mean": float(diff.mean()), "se": se}


def summarise(acc: Mapping[str, Mapping[float, Mapping[int, list[float]]]], kinds: Mapping[str, str],
              cuts: Sequence[int]) -> dict[str, Any]:
    """Best-LR-per-cut and one-LR-per-method tables with the paired gaps.

    Per cut, every manager row gets the gap to the best peer of that cut (paired over seeds:
    both saw the same user and batches, so the standard error says whether a gap is more
    than seed noise; the best of five is favoured by selection), to the better decay peer
    (``cosine-T``, ``ort-linear-T``) and, with ``--oracles``, to the oracle. ``mean_over_cuts``
    compares the mean accuracy over the cuts with the peer whose mean is best, paired too."""
    def stats(vals: list[float]) -> dict[str, float]:
        a = np.asarray(vals)
        return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0}

    out: dict[str, Any] = {}
    peers = [n for n in acc if kinds[n] == "peer"]
    for protocol in ("best_lr_per_cut", "one_lr_per_method"):
        rows: dict[str, dict[str, Any]] = {}
        chosen: dict[str, dict[int, float]] = {}
        for name, by_lr in acc.items():
            if protocol == "one_lr_per_method":
                lr = max(by_lr, key=lambda r: np.mean([np.mean(by_lr[r][c]) for c in cuts]))
                chosen[name] = {c: lr for c in cuts}
            else:
                chosen[name] = {c: max(by_lr, key=lambda r, c=c: np.mean(by_lr[r][c])) for c in cuts}
            rows[name] = {str(c): {"lr": chosen[name][c], **stats(by_lr[chosen[name][c]][c])} for c in cuts}

        def vals(n: str, c: int, chosen: Mapping[str, Mapping[int, float]] = chosen) -> list[float]:
            return list(acc[n][chosen[n][c]][c])

        def over_cuts(n: str, vals: Callable[[str, int], list[float]] = vals) -> list[float]:
            return list(np.mean([vals(n, c) for c in cuts], axis=0))

        for n in rows:
            rows[n]["mean_over_cuts"] = stats(over_cuts(n))
        best_mean_peer = max(peers, key=lambda p: rows[p]["mean_over_cuts"]["mean"])
        for n, row in rows.items():
            if kinds[n] != "manager":
                continue
            for cut in cuts:
                c = str(cut)
                best = max(peers, key=lambda p, c=c: rows[p][c]["mean"])
                decay = (max(DECAY_PEERS, key=lambda p, c=c: rows[p][c]["mean"])
                         if set(DECAY_PEERS) <= set(rows) else None)
                row[c]["best_peer"] = best
                row[c]["paired_gap_to_best_peer"] = _paired(vals(n, cut), vals(best, cut))
                if decay is not None:
                    row[c]["best_decay_peer"] = decay
                    row[c]["paired_gap_to_best_decay"] = _paired(vals(n, cut), vals(decay, cut))
                oracles = [o for o in rows if kinds[o] == "oracle"]
                if oracles:
                    row[c]["gap_to_oracle"] = row[c]["mean"] - max(rows[o][c]["mean"] for o in oracles)
            row["mean_over_cuts"]["best_peer"] = best_mean_peer
            mean_gap = _paired(over_cuts(n), over_cuts(best_mean_peer))
            row["mean_over_cuts"]["paired_gap_to_best_peer"] = mean_gap
            gaps = [row[str(c)]["paired_gap_to_best_peer"]["mean"] for c in cuts]
            decays = [row[str(c)].get("paired_gap_to_best_decay", {"mean": math.inf})["mean"] for c in cuts]
            row["goal"] = {"worst_gap_to_best_peer": min(gaps),
                           "every_cut_within_0.2": min(gaps) >= -0.2,
                           "ahead_on_mean_over_cuts": mean_gap["mean"] > 0,
                           "ahead_of_every_decay_schedule": min(decays) > 0}
        out[protocol] = rows
    return out


def format_table(title: str, protocol: str, rows: Mapping[str, Any], kinds: Mapping[str, str],
                 cuts: Sequence[int], nominal: int) -> str:
    head = f"{'method':22s} " + " ".join(f"{f'{100 * c / nominal:.0f}% ({c})':>19s}" for c in cuts) + \
        f" {'mean':>11s}"
    lines = [f"== {title}: {protocol.replace('_', ' ')} (accuracy %, mean ± std [LR])", head]
    for n, row in rows.items():
        cells = [f"{row[str(c)]['mean']:5.1f} ± {row[str(c)]['std']:3.1f} [{row[str(c)]['lr']:g}]"
                 for c in cuts]
        lines.append(f"{n:22s} " + " ".join(f"{x:>19s}" for x in cells)
                     + f" {row['mean_over_cuts']['mean']:11.2f}")
    for n, row in rows.items():
        if kinds[n] != "manager":
            continue
        cells = [row[str(c)]["paired_gap_to_best_peer"] for c in cuts]
        mo = row["mean_over_cuts"]["paired_gap_to_best_peer"]
        g_p = "  ".join(f"{x['mean']:+4.1f} ± {x['se']:.1f}" for x in cells)
        lines.append(f"  {n}: to best peer {g_p} | mean {mo['mean']:+.2f} ± {mo['se']:.2f}"
                     f" ({row['mean_over_cuts']['best_peer']})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def run_cell(task: BenchTask, engine: str, eng: Engines, methods: Sequence[Method], seeds: int,
             grid: Sequence[float], cuts: Sequence[int], nominal: int,
             data: Callable[[int], tuple[Split, Split]], t0: float) -> dict[str, Any]:
    acc: dict[str, dict[float, dict[int, list[float]]]] = {
        m.name: {lr: {c: [] for c in cuts} for lr in grid} for m in methods}
    manager_info: dict[str, Any] = {}
    for seed in range(seeds):
        train, test = data(seed)
        batches = batch_order(seed, nominal, len(train))
        for m in methods:
            for lr in grid:
                if m.manager is not None:
                    got, info = run_manager(eng, engine, m, lr, train, test, batches, cuts, nominal)
                    runs = manager_info.setdefault(m.name, {})
                    for c in cuts:
                        runs.setdefault(str(c), []).append({"seed": seed, "lr": lr, **info[c]})
                else:
                    got = run_planned(eng, engine, m, lr, train, test, batches, cuts)
                for c in cuts:
                    acc[m.name][lr][c].append(got[c])
        print(f"[{time.perf_counter() - t0:6.0f}s] {task.name}/{engine} seed {seed} done", file=sys.stderr,
              flush=True)
    kinds = {m.name: m.kind for m in methods}
    summary = summarise(acc, kinds, cuts)
    for protocol, rows in summary.items():
        print(format_table(f"{task.name} / {engine}", protocol, rows, kinds, cuts, nominal))
        print()
    # keep the per-run details small: the plan histories of the first seed at one LR per row
    slim = {n: {c: [r for r in runs if r["seed"] == 0] for c, runs in by_c.items()}
            for n, by_c in manager_info.items()}
    runs = [r for by_c in manager_info.values() for rs in by_c.values() for r in rs]
    return {"task": task.name, "engine": engine, "summary": summary,
            "per_seed": {n: {f"{lr:g}": {str(c): v for c, v in by_c.items()} for lr, by_c in by_lr.items()}
                         for n, by_lr in acc.items()},
            "manager_runs": slim,
            "rollbacks": sum(len(r["rollbacks"]) for r in runs),
            "zero_lr_steps": sum(r["zero_lr_steps"] for r in runs)}


def markdown(doc: Mapping[str, Any], protocol: str = "one_lr_per_method") -> str:
    """The docs' tables of a result file: every manager row's paired gap to the best peer per cut
    and on the mean over the cuts, and its worst paired gap to a decay peer (docs/QUALITY.md)."""
    cuts = doc["config"]["cuts"]
    nominal = doc["config"]["nominal_steps"]
    head = ("| task | engine | set-up | " + " | ".join(f"{100 * c / nominal:.0f} %" for c in cuts)
            + " | mean over cuts | worst vs decay |")
    lines = [head, "|" + "---|" * 3 + "---:|" * (len(cuts) + 2)]
    for cell in doc["cells"].values():
        rows = cell["summary"][protocol]
        for name, row in rows.items():
            if doc["methods"][name]["kind"] != "manager":
                continue
            gaps = [row[str(c)]["paired_gap_to_best_peer"] for c in cuts]
            mo = row["mean_over_cuts"]["paired_gap_to_best_peer"]
            decay = min((row[str(c)]["paired_gap_to_best_decay"] for c in cuts), key=lambda g: g["mean"])
            cells = [f"{g['mean']:+.1f} ± {g['se']:.1f}" for g in gaps]
            cells += [f"{mo['mean']:+.2f} ± {mo['se']:.2f}", f"{decay['mean']:+.1f} ± {decay['se']:.1f}"]
            lines.append(f"| {cell['task']} | {cell['engine']} | `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def accuracy_markdown(doc: Mapping[str, Any], protocol: str = "one_lr_per_method") -> str:
    """Mean accuracy over the cuts of every method in every cell (its LR in brackets)."""
    cells = doc["cells"]
    names = list(next(iter(cells.values()))["summary"][protocol])
    lines = ["| method | " + " | ".join(f"{c['task']} / {c['engine']}" for c in cells.values()) + " |",
             "|---|" + "---:|" * len(cells)]
    for n in names:
        vals = []
        for c in cells.values():
            row = c["summary"][protocol].get(n)
            vals.append("" if row is None else
                        f"{row['mean_over_cuts']['mean']:.1f} [{row[str(doc['config']['cuts'][0])]['lr']:g}]")
        lines.append(f"| `{n}` | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def _csv(value: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [v for v in value.split(",") if v]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise SystemExit(f"error: unknown {what} {', '.join(bad)} (choose from {', '.join(allowed)})")
    return items


def merge(paths: Sequence[Path], out: Path, keep: Sequence[float] | None = None) -> int:
    """Combine partial result files into one: cells run in different processes, or one cell's
    LR grid split over processes (its per-seed accuracies are joined and the summary recomputed).
    ``keep``: the LR grid of the result (a run with a larger grid contributes those LRs only)."""
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    if keep is not None:
        wanted = {f"{x:g}" for x in keep}
        for d in docs:
            d["config"]["lr_grid"] = [x for x in d["config"]["lr_grid"] if f"{x:g}" in wanted]
            for cell in d["cells"].values():
                cell["per_seed"] = {n: {lr: v for lr, v in by_lr.items() if lr in wanted}
                                    for n, by_lr in cell["per_seed"].items()}
                cell["manager_runs"] = {n: {c: [r for r in runs if f"{r['lr']:g}" in wanted]
                                            for c, runs in by_c.items()}
                                        for n, by_c in cell["manager_runs"].items()}
    doc = docs[0]
    same = ("nominal_steps", "cuts", "seeds", "batch", "profile")
    grid = set(doc["config"]["lr_grid"])
    for other in docs[1:]:
        if any(other["config"][k] != doc["config"][k] for k in same):
            raise SystemExit(f"error: {paths[0].name} and another file were run with different configs")
        grid |= set(other["config"]["lr_grid"])
        for key, cell in other["cells"].items():
            mine = doc["cells"].setdefault(key, cell)
            if mine is not cell:
                for name, by_lr in cell["per_seed"].items():
                    mine["per_seed"].setdefault(name, {}).update(by_lr)
                for name, by_c in cell["manager_runs"].items():
                    for c, runs in by_c.items():
                        mine["manager_runs"].setdefault(name, {}).setdefault(c, []).extend(runs)
                mine["rollbacks"] += cell["rollbacks"]
                mine["zero_lr_steps"] += cell["zero_lr_steps"]
        doc["methods"].update(other["methods"])
        doc["tasks"].update(other["tasks"])
        doc["engines"] = [e for e in ENGINES if e in {*doc["engines"], *other["engines"]}]
        doc["load_average"] = [max(a, b) for a, b in
                               zip(doc["load_average"], other["load_average"], strict=True)]
        doc["elapsed_s"] = round(doc["elapsed_s"] + other["elapsed_s"], 1)
        doc["command"] = doc["command"] + " ; " + other["command"]
        doc["ort_linear_scheduler_check"] = (doc["ort_linear_scheduler_check"]
                                             or other["ort_linear_scheduler_check"])
    doc["config"]["lr_grid"] = sorted(grid)
    doc["command"] = " ; ".join(command_without_out(c.strip()) for c in doc["command"].split(" ; "))
    cuts = doc["config"]["cuts"]
    kinds = {n: m["kind"] for n, m in doc["methods"].items()}
    for key, cell in doc["cells"].items():
        lrs = {lr for by_lr in cell["per_seed"].values() for lr in by_lr}
        if lrs != {f"{x:g}" for x in grid}:
            raise SystemExit(f"error: cell {key} has the LRs {sorted(lrs)}, not the whole grid")
        acc = {n: {float(lr): {int(c): v for c, v in by_c.items()} for lr, by_c in by_lr.items()}
               for n, by_lr in cell["per_seed"].items()}
        cell["summary"] = summarise(acc, kinds, cuts)
    order: dict[str, int] = {}
    for name in (*DEFAULT_TASKS, *TASKS):
        order.setdefault(name, len(order))
    doc["cells"] = dict(sorted(doc["cells"].items(), key=lambda kv: (
        order[kv[1]["task"]], ENGINES.index(kv[1]["engine"]))))
    doc["tasks"] = dict(sorted(doc["tasks"].items(), key=lambda kv: order[kv[0]]))
    doc["date_utc"] = max(d["date_utc"] for d in docs)
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"merged {len(paths)} files into {out.name}: {len(doc['cells'])} cells", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.budget_quality", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 2 LRs, digits on torch and ort")
    ap.add_argument("--seeds", type=int, default=None, help=f"seeds per cell (default {SEEDS})")
    ap.add_argument("--steps", type=int, default=NOMINAL_STEPS,
                    help=f"nominal plan T (default {NOMINAL_STEPS})")
    ap.add_argument("--lrs", default=None, help="comma-separated LR grid (default " +
                    ",".join(f"{x:g}" for x in LR_GRID) + ")")
    ap.add_argument("--tasks", default=None,
                    help="comma-separated tasks (default " + ",".join(DEFAULT_TASKS) + ")")
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated engines (default all)")
    ap.add_argument("--variants", default="", help="candidate set-ups to add: " + ",".join(VARIANTS))
    ap.add_argument("--no-library", action="store_true", help="leave out the library's recommended set-up")
    ap.add_argument("--oracles", action="store_true", help="add the decay-over-the-true-cut oracles")
    ap.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    ap.add_argument("--markdown", type=Path, default=None,
                    help="print the docs' tables of this result file and exit")
    ap.add_argument("--merge", type=Path, nargs="+", default=None,
                    help="combine these partial result files into --out and exit (with --lrs: keep those)")
    args = ap.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out, [float(x) for x in args.lrs.split(",")] if args.lrs else None)
    if args.markdown:
        doc = json.loads(args.markdown.read_text(encoding="utf-8"))
        for protocol in ("one_lr_per_method", "best_lr_per_cut"):
            print(f"{protocol}:\n\n{markdown(doc, protocol)}\n\n{accuracy_markdown(doc, protocol)}\n")
        return 0
    if args.seeds is not None and args.seeds < 1:
        ap.error("--seeds must be at least 1")
    if args.steps < 20:
        ap.error("--steps must be at least 20")
    seeds = args.seeds or (2 if args.quick else SEEDS)
    try:
        grid = tuple(float(x) for x in args.lrs.split(",")) if args.lrs else \
            ((0.003, 0.03) if args.quick else LR_GRID)
    except ValueError:
        ap.error(f"--lrs must be numbers, not {args.lrs!r}")
    tasks = (_csv(args.tasks, tuple(TASKS), "task") if args.tasks
             else ["digits"] if args.quick else list(DEFAULT_TASKS))
    engines = _csv(args.engines, ENGINES, "engine") if not args.quick else ["torch", "ort"]
    variants = [VARIANTS[v] for v in _csv(args.variants, tuple(VARIANTS), "variant")]
    nominal = args.steps
    cuts = sorted({max(1, round(f * nominal)) for f in CUTS})
    import torch

    # One thread for the whole process: the runtimes' per-step thread limit then changes nothing
    # (switching torch's pool from 2 threads to 1 and back around each ExecuTorch optimizer step
    # cost ~40 ms of CPU per step here, 25x the step).
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    cells: dict[str, Any] = {}
    all_methods: dict[str, Method] = {}
    data_cache: dict[tuple[str, int], tuple[Split, Split]] = {}
    ort_check = None
    doc: dict[str, Any] = {}
    for tname in tasks:
        task = TASKS[tname]
        cell_engines = [e for e in engines if (tname, e) not in SKIP_CELLS or args.tasks]
        eng = Engines(task, cell_engines)

        def data(seed: int, task: BenchTask = task) -> tuple[Split, Split]:
            key = (task.name, seed)
            if key not in data_cache:
                data_cache[key] = task.data(seed)
            return data_cache[key]

        try:
            if ort_check is None and eng.bundle is not None and "ort" in cell_engines:
                ort_check = check_ort_linear(eng.bundle, data(0)[0])
            for engine in cell_engines:
                library = [] if args.no_library else [library_setup(engine, eng.manifest, nominal)]
                setups = library + variants
                methods = peer_methods(args.oracles) + manager_methods(setups)
                all_methods.update({m.name: m for m in methods})
                cells[f"{tname}/{engine}"] = run_cell(task, engine, eng, methods, seeds, grid, cuts, nominal,
                                                      data, t0)
                doc = _document(args, cells, all_methods, tasks, engines, seeds, grid, cuts, nominal,
                                ort_check, time.perf_counter() - t0)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        finally:
            eng.close()
    print(f"wrote {args.out.name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


def _document(args: argparse.Namespace, cells: Mapping[str, Any], methods: Mapping[str, Method],
              tasks: Sequence[str], engines: Sequence[str], seeds: int, grid: Sequence[float],
              cuts: Sequence[int], nominal: int, ort_check: Any, elapsed: float) -> dict[str, Any]:
    argv = " ".join(sys.argv[1:]) if Path(sys.argv[0]).name in ("budget_quality.py", "__main__.py") else ""
    argv = command_without_out(argv)
    return {
        "format": RESULT_FORMAT,
        "bench": "budget_quality",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": ("python -m bench.budget_quality " + argv).strip(),
        "machine": {**machine_info(), "torch_threads": 1, "ort_threads": 1, "executorch_threads": 1},
        "load_average": [round(x, 2) for x in __import__("os").getloadavg()],
        "elapsed_s": round(elapsed, 1),
        "config": {"nominal_steps": nominal, "cuts": list(cuts), "seeds": seeds, "lr_grid": list(grid),
                   "batch": BATCH, "profile": f"{PROFILE}, charger {CHARGER_W} W"},
        "tasks": {t: {"role": TASKS[t].role, "description": TASKS[t].description} for t in tasks},
        "engines": list(engines),
        "methods": {m.name: {"kind": m.kind, "optimizer": m.optimizer, "note": m.note,
                             **({"scenario": m.scenario, "schedule": m.manager.spec(1.0),
                                 "config": dict(m.manager.config),
                                 "runtime_options": dict(m.manager.runtime_options)} if m.manager else {})}
                    for m in methods.values()},
        "ort_linear_scheduler_check": ort_check,
        "cells": dict(cells),
    }


if __name__ == "__main__":
    sys.exit(main())
