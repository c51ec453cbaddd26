"""Learning-rate dropout, measured: vanilla SGD vs SGD-LRD (official rule) vs SGD-LRD (in-place momentum
masking, the unofficial re-implementation's behaviour), on two tasks, several seeds, full and cut budgets.

Run: ``python -m bench.lr_dropout`` (about a minute on two shared cores; ``--quick`` for a smoke run).
Prints a table and writes ``bench/results/lr_dropout.json``.

Tasks

* ``digits-user``: the personalisation task of mobile-lr. digits-mlp (64-128-10) pre-trained 3 epochs on
  the general population (seed 0, exactly the ``mlp_state`` test fixture), then fine-tuned, every
  parameter, on one user's 200 distorted digits (``mobile_lr.datasets.user_split()``, user seed 7) and
  evaluated on that user's 300 held-out digits.
* ``breast-cancer``: scikit-learn's Wisconsin breast-cancer set (569 x 30, standardised on the training
  part), an MLP 30-64-2 trained from scratch; a stratified 70/30 split drawn per seed.

What varies with the seed: the batch order, the LRD mask seed and, for breast-cancer, the split and the
initial weights. Methods share the seed, so differences are *paired* (same batches, same start).

Every method is ``torch.optim.SGD`` with momentum 0.9, batch 32, a cosine schedule with a linear
warm-up (5% of the steps, mobile-lr's ``SpecLR``) ending at the budget, at each LR of a small grid
(the official LRD has no 1/keep rescale, so at one LR it also takes half-size steps in expectation; a
grid keeps that from deciding the comparison alone). LRD uses keep = 0.5 (the paper's default) and the
counter-hash masks the phone's ORT graph draws. ``full`` is the full step budget, ``cut`` 25% of it
(the schedule is compressed to the cut budget, as mobile-lr's re-planning does).

The accuracy shown for "best LR" is each method's best grid LR chosen on the test set itself, so it is
optimistic for every method alike; the per-LR rows are the plain measurements.

``ort_check``: one digits-user run (LRD official, full budget, lr 0.1, seed 0) repeated on the ONNX
Runtime Training LRD bundle (``mobile-lr export --optimizer sgd-lrd``) fed the same LRs and batches; its
accuracy and largest parameter difference to the desktop run are recorded.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mobile_lr.adapters.torch_lr import SpecLR
from mobile_lr.lr_dropout import SGDLRD

RESULTS = Path(__file__).resolve().parent / "results" / "lr_dropout.json"
METHODS = ("vanilla", "lrd-official", "lrd-inplace")
KEEP = 0.5
MOMENTUM = 0.9
BATCH = 32
TASK_LRS = {"digits-user": (0.01, 0.03, 0.1, 0.3, 1.0), "breast-cancer": (0.01, 0.03, 0.1, 0.3, 1.0)}
TASK_STEPS = {"digits-user": 280, "breast-cancer": 240}  # full budgets: ~47 epochs of 200, 20 of 398
BUDGETS = {"full": 1.0, "cut": 0.25}
ORT_CHECK_LR = 0.1


# ---------------------------------------------------------------------- tasks


class Task:
    """A model factory and data; ``model(seed)`` is the start point of a run."""

    name: str

    def model(self, seed: int) -> torch.nn.Module:
        raise NotImplementedError

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


class DigitsUser(Task):
    name = "digits-user"

    def __init__(self) -> None:
        from mobile_lr.datasets import user_split
        from mobile_lr.recipes import load_recipe, pretrain

        recipe = load_recipe("digits-mlp")
        pretrain(recipe, epochs=3, seed=0)  # as the mlp_state fixture of tests/conftest.py
        self.state = {k: v.detach().clone() for k, v in recipe.model.state_dict().items()}
        train, test = user_split()
        self.x_train, self.y_train = torch.from_numpy(train.x), torch.from_numpy(train.y)
        self.x_test, self.y_test = torch.from_numpy(test.x), torch.from_numpy(test.y)

    def model(self, seed: int) -> torch.nn.Module:
        from mobile_lr.recipes import load_recipe

        recipe = load_recipe("digits-mlp", state_dict=self.state)
        for p in recipe.model.parameters():
            p.requires_grad_(True)
        return recipe.model


class BreastCancer(Task):
    name = "breast-cancer"

    def __init__(self) -> None:
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer()
        self.x_all = data.data.astype(np.float32)
        self.y_all = data.target.astype(np.int64)
        self.split(0)

    def split(self, seed: int) -> None:
        """Stratified 70/30 split drawn from ``seed``, standardised with the training part's statistics."""
        rng = np.random.default_rng(1000 + seed)
        train_idx, test_idx = [], []
        for label in np.unique(self.y_all):
            idx = rng.permutation(np.flatnonzero(self.y_all == label))
            cut = round(0.7 * len(idx))
            train_idx += list(idx[:cut])
            test_idx += list(idx[cut:])
        train_idx, test_idx = np.array(sorted(train_idx)), np.array(sorted(test_idx))
        mean = self.x_all[train_idx].mean(0)
        std = self.x_all[train_idx].std(0) + 1e-6
        norm = (self.x_all - mean) / std
        self.x_train = torch.from_numpy(norm[train_idx])
        self.y_train = torch.from_numpy(self.y_all[train_idx])
        self.x_test, self.y_test = torch.from_numpy(norm[test_idx]), torch.from_numpy(self.y_all[test_idx])

    def model(self, seed: int) -> torch.nn.Module:
        self.split(seed)
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(30, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))


# ---------------------------------------------------------------------- one run


def schedule(lr: float, steps: int) -> dict[str, Any]:
    return {"format": "mobile-lr.schedule/1", "base_lr": lr, "total_steps": steps,
            "warmup": {"steps": max(1, steps // 20), "start_factor": 0.1}, "shape": {"type": "cosine"}}


def batch_order(n: int, steps: int, seed: int) -> list[np.ndarray]:
    """``steps`` batches of ``BATCH`` indices: epochs of fresh permutations, partial batches dropped."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    while len(out) < steps:
        perm = rng.permutation(n)
        out += [perm[i:i + BATCH] for i in range(0, n - BATCH + 1, BATCH)]
    return out[:steps]


def make_optimizer(method: str, params: list[torch.nn.Parameter], lr: float,
                   seed: int) -> torch.optim.Optimizer:
    if method == "vanilla":
        return torch.optim.SGD(params, lr=lr, momentum=MOMENTUM)
    rule = {"lrd-official": "official", "lrd-inplace": "inplace"}[method]
    return SGDLRD(params, lr=lr, momentum=MOMENTUM, keep=KEEP, seed=seed, rule=rule, mask="counter")


def run(task: Task, method: str, lr: float, steps: int, seed: int) -> dict[str, Any]:
    """Train one configuration; returns test accuracy/loss, final train loss and the LRs used."""
    model = task.model(seed)
    opt = make_optimizer(method, list(model.parameters()), lr, seed)
    sched = SpecLR(opt, schedule(lr, steps))
    lrs, last_losses = [], []
    model.train()
    for idx in batch_order(len(task.y_train), steps, seed):
        lrs.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(task.x_train[idx]), task.y_train[idx])
        loss.backward()
        opt.step()
        sched.step()
        last_losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        logits = model(task.x_test)
        test_loss = float(torch.nn.functional.cross_entropy(logits, task.y_test))
        acc = float((logits.argmax(1) == task.y_test).float().mean())
    tail = max(1, len(last_losses) // 10)
    return {"accuracy": acc, "test_loss": test_loss, "train_loss": float(np.mean(last_losses[-tail:])),
            "lrs": lrs, "model": model}


def ort_check(task: DigitsUser, lr: float, steps: int) -> dict[str, Any]:
    """The digits-user LRD-official run (seed 0) on the ORT LRD bundle, against the desktop run."""
    from mobile_lr.export.lr_dropout_block import export_lrd_bundle
    from mobile_lr.recipes import load_recipe
    from mobile_lr.runtime import open_runtime

    seed = 0
    desk = run(task, "lrd-official", lr, steps, seed)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bundle"
        export_lrd_bundle(load_recipe("digits-mlp", state_dict=task.state), out, "sgd-lrd", KEEP, seed=seed)
        rt = open_runtime("ort", out)
        for idx, step_lr in zip(batch_order(len(task.y_train), steps, seed), desk["lrs"], strict=True):
            rt.step(task.x_train[idx].numpy(), task.y_train[idx].numpy(), step_lr)
        ort_eval = rt.evaluate(task.x_test.numpy(), task.y_test.numpy())
        ort_params = rt.parameters()
    named = dict(desk["model"].named_parameters())
    diff = max(float(np.abs(ort_params[n] - named[n].detach().numpy()).max()) for n in ort_params)
    return {"task": task.name, "method": "lrd-official", "lr": lr, "steps": steps, "seed": seed,
            "desktop_accuracy": desk["accuracy"], "ort_accuracy": ort_eval["accuracy"],
            "desktop_test_loss": desk["test_loss"], "ort_test_loss": ort_eval["loss"],
            "max_param_diff": diff}


# ---------------------------------------------------------------------- summary


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max())}


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, budget, lr, method): accuracy stats and the paired difference to vanilla."""
    rows = []
    keys = sorted({(r["task"], r["budget"], r["lr"]) for r in runs},
                  key=lambda k: (k[0], -BUDGETS[k[1]], k[2]))
    for task, budget, lr in keys:
        group = {m: sorted((r for r in runs if (r["task"], r["budget"], r["lr"], r["method"])
                            == (task, budget, lr, m)), key=lambda r: r["seed"]) for m in METHODS}
        base = [r["accuracy"] for r in group["vanilla"]]
        for method in METHODS:
            acc = [r["accuracy"] for r in group[method]]
            diff = [a - b for a, b in zip(acc, base, strict=True)]
            rows.append({"task": task, "budget": budget, "steps": group[method][0]["steps"], "lr": lr,
                         "method": method, "seeds": len(acc), "accuracy": _stats(acc),
                         "test_loss": _stats([r["test_loss"] for r in group[method]]),
                         "train_loss": _stats([r["train_loss"] for r in group[method]]),
                         "diff_vs_vanilla": _stats(diff),
                         "wins_vs_vanilla": sum(d > 0 for d in diff),
                         "losses_vs_vanilla": sum(d < 0 for d in diff)})
    return rows


def best_lr(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each method's best grid LR (by mean test accuracy; optimistic for every method alike), and the
    paired difference (same seeds) to vanilla at *its* best LR."""

    def accs(task: str, budget: str, method: str, lr: float) -> list[float]:
        key = (task, budget, method, lr)
        sel = [r for r in runs if (r["task"], r["budget"], r["method"], r["lr"]) == key]
        return [r["accuracy"] for r in sorted(sel, key=lambda r: r["seed"])]

    out: list[dict[str, Any]] = []
    for task, budget in sorted({(r["task"], r["budget"]) for r in rows},
                               key=lambda k: (k[0], -BUDGETS[k[1]])):
        for method in METHODS:
            cands = [r for r in rows if (r["task"], r["budget"], r["method"]) == (task, budget, method)]
            best = max(cands, key=lambda r: r["accuracy"]["mean"])
            if method == "vanilla":
                base = accs(task, budget, method, best["lr"])
            diff = [a - b for a, b in zip(accs(task, budget, method, best["lr"]), base, strict=True)]
            out.append({"task": task, "budget": budget, "method": method, "lr": best["lr"],
                        "accuracy": best["accuracy"], "diff_vs_best_vanilla": _stats(diff),
                        "wins_vs_best_vanilla": sum(d > 0 for d in diff),
                        "losses_vs_best_vanilla": sum(d < 0 for d in diff)})
    return out


def table(rows: list[dict[str, Any]], best: list[dict[str, Any]]) -> str:
    lines = [f"{'task':<14} {'budget':<5} {'steps':>5} {'lr':>6} {'method':<13} {'acc mean':>8} {'std':>6} "
             f"{'min':>6} {'max':>6} {'d vs van':>9} {'(std)':>6} {'W/L':>5}"]
    for r in rows:
        a, d = r["accuracy"], r["diff_vs_vanilla"]
        dv = "" if r["method"] == "vanilla" else f"{100 * d['mean']:+9.2f} {100 * d['std']:6.2f} " \
                                                 f"{r['wins_vs_vanilla']:>2}/{r['losses_vs_vanilla']:<2}"
        lines.append(f"{r['task']:<14} {r['budget']:<5} {r['steps']:>5} {r['lr']:>6g} {r['method']:<13} "
                     f"{100 * a['mean']:8.2f} {100 * a['std']:6.2f} {100 * a['min']:6.2f} "
                     f"{100 * a['max']:6.2f} {dv}")
    lines.append("")
    lines.append("best grid LR per method (chosen on the test set: optimistic for all alike)")
    for b in best:
        a = b["accuracy"]
        d = b["diff_vs_best_vanilla"]
        vs = "" if b["method"] == "vanilla" else f"   d vs best vanilla {100 * d['mean']:+.2f} " \
            f"+- {100 * d['std']:.2f}  W/L {b['wins_vs_best_vanilla']}/{b['losses_vs_best_vanilla']}"
        lines.append(f"{b['task']:<14} {b['budget']:<5} {b['method']:<13} lr {b['lr']:<6g} "
                     f"acc {100 * a['mean']:6.2f} +- {100 * a['std']:.2f}{vs}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lr_dropout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per configuration (default 10)")
    parser.add_argument("--quick", action="store_true", help="2 seeds, lr 0.1 only, no JSON (smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument("--no-ort", action="store_true", help="skip the ONNX Runtime check")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny models: one thread is faster on shared cores
    seeds = list(range(2 if args.quick else args.seeds))
    start = time.perf_counter()
    tasks: list[Task] = [DigitsUser(), BreastCancer()]
    configs = []
    for task in tasks:
        lrs = (ORT_CHECK_LR,) if args.quick else TASK_LRS[task.name]
        for budget, frac in BUDGETS.items():
            steps = max(1, math.ceil(frac * TASK_STEPS[task.name]))
            configs += [(task, budget, steps, lr, m, s) for lr in lrs for m in METHODS for s in seeds]
    runs = []
    for task, budget, steps, lr, method, seed in tqdm(configs, unit="run", disable=not sys.stderr.isatty()):
        r = run(task, method, lr, steps, seed)
        runs.append({"task": task.name, "budget": budget, "steps": steps, "lr": lr, "method": method,
                     "seed": seed, "accuracy": r["accuracy"], "test_loss": r["test_loss"],
                     "train_loss": r["train_loss"]})
    rows = summarise(runs)
    best = best_lr(rows, runs)
    check = None if args.no_ort else ort_check(tasks[0], ORT_CHECK_LR,
                                               TASK_STEPS["digits-user"])
    elapsed = time.perf_counter() - start
    print(table(rows, best))
    if check:
        print(f"\nORT check (digits-user, LRD official, lr {check['lr']}, {check['steps']} steps, seed 0): "
              f"desktop acc {100 * check['desktop_accuracy']:.2f}, "
              f"ORT acc {100 * check['ort_accuracy']:.2f}, "
              f"max parameter difference {check['max_param_diff']:.2e}")
    print(f"\n{len(runs)} runs in {elapsed:.0f} s")
    if not args.quick:
        from mobile_lr.export.pipeline import versions

        result = {"format": "mobile-lr.bench.lr_dropout/1", "command": "python -m bench.lr_dropout",
                  "config": {"keep": KEEP, "momentum": MOMENTUM, "batch": BATCH, "seeds": seeds,
                             "lrs": {k: list(v) for k, v in TASK_LRS.items()},
                             "full_steps": TASK_STEPS, "budgets": BUDGETS, "mask": "counter",
                             "schedule": "cosine, linear warm-up over 5% of the steps from 0.1x"},
                  "versions": versions(), "machine": {"python": platform.python_version(),
                                                      "processor": platform.machine(), "torch_threads": 1},
                  "elapsed_s": round(elapsed, 1), "summary": rows, "best_lr": best, "ort_check": check,
                  "runs": runs}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
