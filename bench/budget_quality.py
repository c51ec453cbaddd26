"""Quality under a cut budget: final accuracy when training is cut to 10/25/50/100 % of the plan.

Run it with ``python -m bench.budget_quality`` (``--quick`` for a smoke run); it prints
the tables and writes ``bench/results/budget_quality.json``. A battery-aware manager
is only worth having if, when the phone's battery ends a fine-tune early, the model
is at least as good as what the peers give.

Tasks (both start from digits-mlp pre-trained as ``tests/conftest.py`` does it:
``pretrain(epochs=3, seed=0)`` on the general population):

* ``digits``: the default user (``user_split(seed=7)``, 200 training samples, 300
  held-out); a seed changes the order of the batches (batch 32, reshuffled each epoch).
* ``new-users``: a handwriting style the project never tuned on: seed ``s`` is the
  user ``user_split(seed=1000 + s)`` (its own slant, shear and stroke), with its own
  batch order.

Methods (the nominal plan is ``T`` steps; the budget is cut to ``C`` steps):

* peers, planned for ``T`` without knowing the cut: ``constant`` AdamW; ``cosine-T``;
  ``ort-linear-T`` (ONNX Runtime's ``LinearLRScheduler``: its formula, with warm-up 0 and
  with 10 % of T, see :func:`ort_linear_factor`); ``sf-adamw`` (``schedulefree``'s
  AdamWScheduleFree, constant LR, evaluated at its average ``x``; with and without a
  10 % warm-up). These never see the cut, so one run of ``T`` steps evaluated after
  ``C`` steps *is* the cut run: the bench evaluates one trajectory at every cut.
* the oracle: cosine or linear decay planned for the true ``C`` from step 0.
* references (not peers): constant LR with an EMA of the weights (0.9).
* the manager: :class:`mobile_lr.manager.ScheduleManager` with the recommended set-up
  (``mobile_lr.manager.RECOMMENDED_*``) driving a real runtime on a
  :class:`mobile_lr.device.SimulatedDevice` (mid-range profile with a 5 W USB charger,
  default policy: floor 20 %): ``manager`` is the PyTorch runtime with schedule-free AdamW,
  ``manager-ort`` the ONNX Runtime Training runtime (a bundle exported here) with an EMA
  and a re-planned cool-down, ``manager-ort-sf`` the ORT runtime with schedule-free AdamW
  through its parameter buffers (the same bundle: :mod:`mobile_lr.runtime.ort_schedulefree`)
  and the schedule-free set-up's schedule (``RECOMMENDED_AVERAGING["ort"]`` says which of the
  two the app uses). The manager is never told the cut; the battery tells it. Two
  scenarios: ``known`` (the phone starts unplugged with just enough charge for the cut:
  the first plan reveals it) and ``revealed`` (the phone starts on the charger, so the
  plan is the nominal T, and is unplugged after ``C // 2`` steps with charge for exactly
  the rest: the manager learns the cut half-way and re-plans). The start levels are found
  by bisection on dry runs of the same manager and device (no training), so the manager
  runs exactly ``C`` steps;
  the bench checks it.

LR protocol: every method gets every LR of the same grid; the tables report (a) each
method at its best LR *for each cut* (its ceiling) and (b) one LR per method, the one
with the best mean over the cuts (what a deployed app, which must fix ``base_lr``
before it knows the budget, gets). A manager's LR is the grid LR times its peak-LR
factor. Mean ± sample standard deviation over seeds; the gaps are differences of means,
in accuracy points, and the gap to the best peer also comes paired over seeds with its
standard error. ``--seeds`` (default 10) and ``--no-ort`` make shorter runs; ``--methods``
keeps the named rows (plus the peers and oracles, which every gap needs).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import RESULTS as RESULTS_DIR
from bench.machine import machine_info
from mobile_lr.datasets import Split, user_split
from mobile_lr.device import DeviceProfile, DeviceState, SimulatedDevice, load_profile
from mobile_lr.manager import ManagerConfig, Pause, Rollback, Run, ScheduleManager, Stop
from mobile_lr.schedules import FORMAT

RESULTS = RESULTS_DIR / "budget_quality.json"
RESULT_FORMAT = "mobile-lr.bench.budget_quality/1"
NOMINAL_STEPS = 300
CUTS = (0.10, 0.25, 0.50, 1.00)
LR_GRID = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
SEEDS = 10
BATCH = 32
N_TRAIN = 200
PROFILE = "mid-range"
CHARGER_W = 5.0
NEW_USER_BASE = 1000


# --------------------------------------------------------------------------- data


@lru_cache(maxsize=1)
def pretrained_state() -> dict[str, np.ndarray]:
    """digits-mlp pre-trained on the general population, exactly as tests/conftest.py does."""
    from mobile_lr.recipes import load_recipe, pretrain

    recipe = load_recipe("digits-mlp")
    pretrain(recipe, epochs=3, seed=0)
    return {k: v.detach().numpy().copy() for k, v in recipe.model.state_dict().items()}


def task_data(task: str, seed: int) -> tuple[Split, Split]:
    """(train, test) of one seed of a task (see the module docstring)."""
    if task == "digits":
        return user_split(n_train=N_TRAIN)
    if task == "new-users":
        return user_split(seed=NEW_USER_BASE + seed, n_train=N_TRAIN)
    raise ValueError(f"unknown task {task!r}")


def batch_order(seed: int, steps: int, n: int = N_TRAIN, batch: int = BATCH) -> list[np.ndarray]:
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
    """What the manager rows run: a schedule (``base_lr`` filled in per grid point), a config,
    the runtime kind and its averaging option, and the budget scenario."""

    shape: Mapping[str, Any]
    config: Mapping[str, Any]
    scenario: str  # "known" | "revealed"
    runtime: str = "torch"
    warmup: Mapping[str, Any] | None = None
    budget: Mapping[str, Any] | None = None

    def spec(self, lr: float) -> dict[str, Any]:
        spec: dict[str, Any] = {"format": FORMAT, "base_lr": lr, "shape": dict(self.shape)}
        if self.warmup:
            spec["warmup"] = dict(self.warmup)
        if self.budget:
            spec["budget"] = dict(self.budget)
        return spec


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "peer" | "oracle" | "reference" | "manager"
    optimizer: str = "recipe"  # or "schedulefree"
    ema: float | None = None
    factor: Callable[[int, int], float] | None = None  # (t, planned total) -> LR factor
    manager: ManagerSetup | None = None
    note: str = ""


#: the manager rows: (row name, runtime, averaging flavour); the torch row takes the recommended one
MANAGER_ROWS = (("manager", "torch", None), ("manager-ort", "ort", "ema"),
                ("manager-ort-sf", "ort", "schedulefree"))


def manager_methods(with_ort: bool) -> list[Method]:
    """The manager with the recommended set-up (``mobile_lr.manager.RECOMMENDED_*``) on the
    PyTorch runtime, and on the ORT runtime with both averaging flavours (an EMA and a
    re-planned cool-down; schedule-free AdamW); each in both budget scenarios."""
    from mobile_lr.manager import (
        RECOMMENDED_AVERAGING,
        RECOMMENDED_CONFIG,
        recommended_runtime_options,
        recommended_schedule,
    )

    out = []
    for name, runtime, flavour in MANAGER_ROWS:
        if runtime == "ort" and not with_ort:
            continue
        averaging = flavour or RECOMMENDED_AVERAGING[runtime]
        sched = recommended_schedule(1.0, averaging)
        opts = recommended_runtime_options(averaging)
        for scenario in ("known", "revealed"):
            setup = ManagerSetup(shape=sched["shape"], warmup=sched.get("warmup"),
                                 budget=sched.get("budget"), config=RECOMMENDED_CONFIG,
                                 scenario=scenario, runtime=runtime)
            out.append(Method(f"{name}[{scenario}]", "manager",
                              optimizer=opts.get("optimizer", "recipe"), ema=opts.get("ema"),
                              manager=setup, note=f"set-up for {averaging}, {runtime} runtime"))
    return out


def methods(with_ort: bool) -> list[Method]:
    const = (lambda t, total: 1.0)  # noqa: E731
    out = [
        Method("constant", "peer", factor=const),
        Method("cosine-T", "peer", factor=cosine_factor, note="cosine planned for T"),
        Method("ort-linear-T", "peer", factor=lambda t, total: ort_linear_factor(t, 0, total),
               note="ORT LinearLRScheduler(warmup=0, total=T)"),
        Method("ort-linear-T-w10", "peer",
               factor=lambda t, total: ort_linear_factor(t, total // 10, total),
               note="ORT LinearLRScheduler(warmup=T/10, total=T)"),
        Method("sf-adamw", "peer", optimizer="schedulefree", factor=const,
               note="schedulefree AdamWScheduleFree, constant LR"),
        Method("sf-adamw-w10", "peer", optimizer="schedulefree", factor=warm(0.1, const),
               note="schedulefree AdamWScheduleFree, warm-up T/10"),
        Method("oracle-cosine", "oracle", factor=cosine_factor, note="cosine planned for the true C"),
        Method("oracle-linear", "oracle", factor=linear_factor, note="linear planned for the true C"),
        Method("constant+ema", "reference", ema=0.9, factor=const, note="constant LR, EMA 0.9"),
    ]
    return out + manager_methods(with_ort)


# --------------------------------------------------------------------------- runtimes


class Runtimes:
    """Builds a fresh runtime at the pre-trained weights for each run."""

    def __init__(self, need_ort: bool) -> None:
        from mobile_lr.recipes import load_recipe

        self.recipe = load_recipe("digits-mlp", state_dict=pretrained_state())
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.bundle: Path | None = None
        if need_ort:
            from mobile_lr.export import export_bundle

            self._tmp = tempfile.TemporaryDirectory(prefix="mobile-lr-bench-")
            self.bundle = Path(self._tmp.name) / "digits-mlp"
            export_bundle(self.recipe, self.bundle, backends=("ort",))

    def make(self, kind: str, optimizer: str, ema: float | None) -> Any:
        if kind == "ort":
            from mobile_lr.runtime.ort_rt import OrtRuntime

            assert self.bundle is not None
            return OrtRuntime(self.bundle, optimizer=optimizer, ema=ema)
        from mobile_lr.runtime.torch_rt import TorchRuntime

        return TorchRuntime(self.recipe, optimizer=optimizer, ema=ema)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def accuracy(rt: Any, test: Split) -> float:
    return 100.0 * float(rt.evaluate(test.x, test.y)["accuracy"])


def run_planned(rts: Runtimes, m: Method, lr: float, train: Split, test: Split,
                batches: Sequence[np.ndarray], cuts: Sequence[int]) -> dict[int, float]:
    """A peer (planned for T, evaluated after each cut) or the oracle (one run per cut)."""
    assert m.factor is not None
    out: dict[int, float] = {}
    if m.kind == "oracle":
        for c in cuts:
            rt = rts.make("torch", m.optimizer, m.ema)
            for t in range(c):
                b = batches[t]
                rt.step(train.x[b], train.y[b], lr * m.factor(t, c))
            out[c] = accuracy(rt, test)
        return out
    rt = rts.make("torch", m.optimizer, m.ema)
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


def drive(setup: ManagerSetup, lr: float, scenario: Scenario, nominal: int,
          step: Callable[[int, float], float] | None) -> tuple[int, list[tuple[int, int]], float]:
    """Run the manager on a simulated mid-range phone; ``step(t, lr) -> loss`` trains (None: a
    dry run). Returns (training steps run, the plan history, the peak factor)."""
    profile = phone_profile()
    dev = SimulatedDevice(profile, DeviceState.initial(profile, scenario.level,
                                                       charging=scenario.charging))
    cfg = ManagerConfig.from_dict({**setup.config, "nominal_steps": nominal})
    mgr = ScheduleManager(setup.spec(lr), profile, None, cfg, dev.state)
    done = 0
    while True:
        d = mgr.next()
        if isinstance(d, Run):
            loss = 1.0 if step is None else step(d.step, d.lr)
            res = dev.train_step()
            mgr.observe(loss, res.seconds, res.energy_j)
            done += 1
            if scenario.unplug_after is not None and done == scenario.unplug_after:
                dev.set_charging(False)
            mgr.update_device(dev.state)
        elif isinstance(d, Stop | Pause):
            break  # the battery is at the floor: the budget is spent
        elif isinstance(d, Rollback):
            raise RuntimeError(f"unexpected rollback: {d}")
    return done, list(mgr.plan_history), float(mgr.peak_factor or 1.0)


_SCENARIOS: dict[str, Scenario] = {}


def scenario_for(setup: ManagerSetup, cut: int, nominal: int) -> Scenario:
    """The start level that makes this manager run exactly ``cut`` steps (bisection on dry runs).

    ``known``: unplugged from the start. ``revealed``: on the charger until ``cut // 2`` steps
    are done (the plan is the nominal T until then), unplugged with charge for the rest.
    A cut of the whole plan is a phone on the charger throughout (or with a full battery).
    """
    key = json.dumps([setup.spec(1.0), dict(setup.config), setup.scenario, cut, nominal])
    if key not in _SCENARIOS:
        _SCENARIOS[key] = _find_scenario(setup, cut, nominal)
    return _SCENARIOS[key]


def _find_scenario(setup: ManagerSetup, cut: int, nominal: int) -> Scenario:
    if cut >= nominal:
        return Scenario(0.9, setup.scenario == "revealed", None)
    floor = 0.2
    if setup.scenario == "known":
        def make(level: float) -> Scenario:
            return Scenario(level, False, None)
    else:
        def make(level: float) -> Scenario:
            return Scenario(level, True, max(1, cut // 2))
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


def run_manager(rts: Runtimes, m: Method, lr: float, train: Split, test: Split,
                batches: Sequence[np.ndarray], cuts: Sequence[int], nominal: int
                ) -> tuple[dict[int, float], dict[int, dict[str, Any]]]:
    setup = m.manager
    assert setup is not None
    out: dict[int, float] = {}
    info: dict[int, dict[str, Any]] = {}
    for c in cuts:
        rt = rts.make(setup.runtime, m.optimizer, m.ema)

        def step(t: int, rate: float, rt: Any = rt) -> float:
            b = batches[t]
            return float(rt.step(train.x[b], train.y[b], rate))

        done, hist, peak = drive(setup, lr, scenario_for(setup, c, nominal), nominal, step)
        if done != c:
            raise RuntimeError(f"{m.name}: ran {done} steps, the cut is {c}")
        out[c] = accuracy(rt, test)
        info[c] = {"plan_history": hist, "peak_factor": peak}
    return out, info


# --------------------------------------------------------------------------- tables


def summarise(acc: Mapping[str, Mapping[float, Mapping[int, list[float]]]], kinds: Mapping[str, str],
              cuts: Sequence[int]) -> dict[str, Any]:
    """Best-LR-per-cut and one-LR-per-method tables with the gaps to the oracle and best peer.

    The gaps are differences of means; ``paired_gap_to_best_peer`` is the mean and standard
    error of the per-seed differences (both methods saw the same user and batches per seed),
    which says whether a gap is more than seed noise. The best peer is the best of six per cut,
    so it is favoured by selection."""
    def stats(vals: list[float]) -> dict[str, float]:
        a = np.asarray(vals)
        return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                "min": float(a.min()), "max": float(a.max())}

    out: dict[str, Any] = {}
    for protocol in ("best_lr_per_cut", "one_lr_per_method"):
        rows: dict[str, dict[str, Any]] = {}
        for name, by_lr in acc.items():
            if protocol == "one_lr_per_method":
                lr = max(by_lr, key=lambda r: np.mean([np.mean(by_lr[r][c]) for c in cuts]))
                chosen = {c: lr for c in cuts}
            else:
                chosen = {c: max(by_lr, key=lambda r, c=c: np.mean(by_lr[r][c])) for c in cuts}
            rows[name] = {str(c): {"lr": chosen[c], **stats(by_lr[chosen[c]][c])} for c in cuts}
        for cut in cuts:
            c = str(cut)
            oracle = max(rows[n][c]["mean"] for n in rows if kinds[n] == "oracle")
            for n, row in rows.items():
                best = max((p for p in rows if kinds[p] == "peer" and p != n),
                           key=lambda p: rows[p][c]["mean"])
                row[c]["gap_to_oracle"] = row[c]["mean"] - oracle
                row[c]["gap_to_best_peer"] = row[c]["mean"] - rows[best][c]["mean"]
                row[c]["best_peer"] = best
                diff = (np.asarray(acc[n][row[c]["lr"]][cut])
                        - np.asarray(acc[best][rows[best][c]["lr"]][cut]))
                se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
                row[c]["paired_gap_to_best_peer"] = {"mean": float(diff.mean()), "se": se}
        out[protocol] = rows
    return out


def format_table(task: str, protocol: str, rows: Mapping[str, Any], kinds: Mapping[str, str],
                 cuts: Sequence[int], nominal: int) -> str:
    head = f"{'method':22s} " + " ".join(f"{f'{100 * c / nominal:.0f}% ({c})':>21s}" for c in cuts)
    lines = [f"== {task}: {protocol.replace('_', ' ')} (accuracy %, mean ± std [LR])", head]
    for n, row in rows.items():
        cells = [f"{row[str(c)]['mean']:5.1f} ± {row[str(c)]['std']:3.1f} [{row[str(c)]['lr']:g}]"
                 for c in cuts]
        lines.append(f"{n:22s} " + " ".join(f"{x:>21s}" for x in cells))
    for n, row in rows.items():
        if kinds[n] != "manager":
            continue
        cells = [row[str(c)] for c in cuts]
        g_o = " ".join(f"{x['gap_to_oracle']:+5.1f}" for x in cells)
        g_p = "  ".join(f"{x['gap_to_best_peer']:+4.1f} ± {x['paired_gap_to_best_peer']['se']:.1f}"
                        f" ({x['best_peer']})" for x in cells)
        lines.append(f"  {n}: gap to oracle {g_o} | to best peer (± paired s.e.) {g_p}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.budget_quality", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 3 LRs, digits only")
    ap.add_argument("--seeds", type=int, default=None, help=f"seeds per task (default {SEEDS})")
    ap.add_argument("--no-ort", action="store_true", help="skip the manager rows on ONNX Runtime")
    ap.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    ap.add_argument("--methods", default=None,
                    help="comma-separated manager/reference rows to keep (peers and oracles always run)")
    args = ap.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        ap.error("--seeds must be at least 1")

    seeds = args.seeds or (2 if args.quick else SEEDS)
    grid = (0.005, 0.02, 0.05) if args.quick else LR_GRID
    tasks = ("digits",) if args.quick else ("digits", "new-users")
    nominal = NOMINAL_STEPS
    cuts = [max(1, round(f * nominal)) for f in CUTS]
    all_methods = methods(with_ort=not args.no_ort)
    if args.methods:
        wanted = set(args.methods.split(","))
        all_methods = [m for m in all_methods if m.name in wanted or m.kind == "oracle" or m.kind == "peer"]
    kinds = {m.name: m.kind for m in all_methods}
    t0 = time.perf_counter()
    rts = Runtimes(need_ort=any(m.manager is not None and m.manager.runtime == "ort" for m in all_methods))
    results: dict[str, Any] = {}
    ort_check = None
    try:
        if rts.bundle is not None:
            ort_check = check_ort_linear(rts.bundle, task_data("digits", 0)[0])
            print(f"ORT LinearLRScheduler (Python API) as documented: "
                  f"{ort_check['python_api_as_documented']}, with warm-up and total swapped: "
                  f"{ort_check['python_api_arguments_swapped']}", file=sys.stderr)
        for task in tasks:
            task_methods = all_methods
            acc: dict[str, dict[float, dict[int, list[float]]]] = {
                m.name: {lr: {c: [] for c in cuts} for lr in grid} for m in task_methods}
            manager_info: dict[str, Any] = {}
            for seed in range(seeds):
                train, test = task_data(task, seed)
                batches = batch_order(seed, nominal)
                for m in task_methods:
                    for lr in grid:
                        if m.manager is not None:
                            got, info = run_manager(rts, m, lr, train, test, batches, cuts, nominal)
                            manager_info.setdefault(m.name, {str(c): info[c] for c in cuts})
                        else:
                            got = run_planned(rts, m, lr, train, test, batches, cuts)
                        for c in cuts:
                            acc[m.name][lr][c].append(got[c])
                print(f"[{time.perf_counter() - t0:6.0f}s] {task} seed {seed} done", file=sys.stderr,
                      flush=True)
            summary = summarise(acc, kinds, cuts)
            results[task] = {
                "summary": summary,
                "per_seed": {n: {f"{lr:g}": {str(c): v for c, v in by_c.items()}
                                 for lr, by_c in by_lr.items()} for n, by_lr in acc.items()},
                "manager_runs": manager_info,
            }
            for protocol, rows in summary.items():
                print(format_table(task, protocol, rows, kinds, cuts, nominal))
                print()
    finally:
        rts.close()
    elapsed = time.perf_counter() - t0
    doc = {
        "format": RESULT_FORMAT,
        "bench": "budget_quality",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m bench.budget_quality" + (" --quick" if args.quick else ""),
        "machine": {**machine_info(), "torch_threads": 1, "ort_threads": 1},
        "elapsed_s": round(elapsed, 1),
        "config": {"nominal_steps": nominal, "cuts": cuts, "seeds": seeds, "lr_grid": list(grid),
                   "batch": BATCH, "n_train": N_TRAIN, "profile": f"{PROFILE}, charger {CHARGER_W} W",
                   "tasks": list(tasks),
                   "recipe": "digits-mlp, pretrain(epochs=3, seed=0)"},
        "methods": {m.name: {"kind": m.kind, "optimizer": m.optimizer, "ema": m.ema, "note": m.note,
                             **({"scenario": m.manager.scenario, "runtime": m.manager.runtime,
                                 "schedule": m.manager.spec(1.0), "config": dict(m.manager.config)}
                                if m.manager else {})}
                    for m in all_methods},
        "ort_linear_scheduler_check": ort_check,
        "tasks": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out.name} in {elapsed:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
