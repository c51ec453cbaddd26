"""Memory: peak memory of an ORT training step for each demo recipe against the theoretical
minimum, and the bundle's size against the parameter bytes.

Run: ``python -m bench.memory``. For each recipe a bundle is exported into a temporary
directory. A fresh child process (one per recipe, so nothing else is resident) imports ONNX
Runtime Training, then reads its resident set (``VmRSS``) before opening the runtime, after
opening it, after the first training step; then it resets the kernel's peak counter
(``/proc/self/clear_refs`` = 5) and runs ``--steps`` more steps at batch 32, and reads the peak
(``VmHWM``). So:

* ``session_kib``: what opening the ORT training session costs (graphs, kernels, buffers);
* ``first_step_kib``: what the first step adds (arena allocations, lazy initialisation);
* ``step_peak_kib``: how far a steady-state step rises above the memory held between steps.

The theoretical minimum of a step is float32 parameters (trainable and frozen) + gradients of
the trainable ones + optimizer state (AdamW: two moments; SGD with momentum: one buffer) + the
activations of one batch (every layer's output, measured with forward hooks in PyTorch, plus
the input batch and labels): what any engine must hold at the peak of backward.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.machine import print_table, write_result

RECIPES = ("digits-mlp", "digits-cnn")

# the child processes' reader of their own resident set and its peak (KiB), shared with bench.zoo
STATUS_FN = r"""
def status():
    out = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0])
    return out
"""

_CHILD = STATUS_FN + r"""
import json, sys
import numpy as np
import onnxruntime.training.api  # imported before the baseline: the library is not the step
from mobile_lr.runtime import open_runtime
from mobile_lr.datasets import user_split

bundle, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
train, _ = user_split()
x, y = train.x[:batch].copy(), train.y[:batch].copy()
r0 = status()["VmRSS"]
rt = open_runtime("ort", bundle, threads=1)
r1 = status()["VmRSS"]
rt.step(x, y, 0.01)
r2 = status()["VmRSS"]
reset = True
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    reset = False
base = status()["VmRSS"]
for _ in range(steps):
    rt.step(x, y, 0.01)
peak = status()["VmHWM"]
print(json.dumps({"rss_before_kib": r0, "session_kib": r1 - r0, "first_step_kib": r2 - r1,
                  "step_peak_kib": peak - base if reset else None, "rss_steady_kib": base,
                  "peak_reset": reset}))
"""


def theoretical(recipe: Any, from_first_trainable: bool = False) -> dict[str, Any]:
    """Bytes a step must hold at least, from the PyTorch model of ``recipe`` (a name or a Recipe).

    Activations are every leaf module's output, or with ``from_first_trainable`` only those
    from the first module holding a trainable parameter on (in forward order: what backward
    needs when the layers before it are frozen; ``bench.zoo``'s fine-tuning modes) plus the
    largest frozen layer's output twice (its input and output exist together in the forward).
    """
    import torch

    from mobile_lr.recipes import load_recipe

    if isinstance(recipe, str):
        recipe = load_recipe(recipe)
    model = recipe.model
    params = dict(model.named_parameters())
    n_all = sum(p.numel() for p in params.values())
    n_train = sum(params[k].numel() for k in recipe.trainable)
    opt = recipe.optimizer
    moments = 2 if opt.type == "adamw" else (1 if opt.momentum > 0 else 0)
    acts = frozen_peak = 0
    started = not from_first_trainable

    def hook(mod, _i, out):
        nonlocal acts, started, frozen_peak
        started = started or any(p.requires_grad for p in mod.parameters(recurse=False))
        outs = out if isinstance(out, tuple) else (out,)  # a GRU returns (output, h_n)
        n = sum(t.numel() for t in outs if isinstance(t, torch.Tensor))
        if started:
            acts += n
        else:
            frozen_peak = max(frozen_peak, 2 * n)

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(recipe.example_input)
    for h in handles:
        h.remove()
    batch = recipe.batch_size
    inputs = recipe.example_input.numel() * 4 + batch * 8
    out = {"parameters": n_all, "trainable": n_train, "param_bytes": 4 * n_all,
           "grad_bytes": 4 * n_train, "optimizer_bytes": 4 * moments * n_train,
           "activation_bytes": 4 * (acts + frozen_peak) + inputs, "optimizer": opt.type, "batch": batch}
    out["minimum_bytes"] = out["param_bytes"] + out["grad_bytes"] + out["optimizer_bytes"] + \
        out["activation_bytes"]
    return out


def bundle_sizes(path: Path) -> dict[str, int]:
    """Bytes per engine: ORT artifacts (training/eval/optimizer graphs + checkpoint), the
    ExecuTorch program, the inference model, and the small metadata files."""
    groups = {"ort": 0, "executorch": 0, "inference": 0, "metadata": 0}
    for f in path.rglob("*"):
        if not f.is_file():
            continue
        size = f.stat().st_size
        if f.name in ("training_model.onnx", "eval_model.onnx", "optimizer_model.onnx", "checkpoint"):
            groups["ort"] += size
        elif f.suffix == ".pte":
            groups["executorch"] += size
        elif f.name == "inference_model.onnx":
            groups["inference"] += size
        else:
            groups["metadata"] += size
    groups["total"] = sum(groups.values())
    return groups


def run(steps: int) -> list[dict[str, Any]]:
    from mobile_lr.export import export_bundle
    from mobile_lr.recipes import load_recipe

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in RECIPES:
            recipe = load_recipe(name)
            out = Path(tmp) / name
            export_bundle(recipe, out)
            th = theoretical(recipe)
            proc = subprocess.run([sys.executable, "-c", _CHILD, str(out), str(steps), str(th["batch"])],
                                  capture_output=True, text=True, check=True)
            meas = json.loads(proc.stdout.strip().splitlines()[-1])
            sizes = bundle_sizes(out)
            row = {"recipe": name, **th, **meas, "bundle_bytes": sizes}
            row["minimum_kib"] = th["minimum_bytes"] / 1024
            held = meas["session_kib"] + meas["first_step_kib"]
            row["held_kib"] = held
            row["held_vs_minimum"] = held * 1024 / th["minimum_bytes"]
            row["ort_bundle_vs_params"] = sizes["ort"] / th["param_bytes"]
            row["pte_vs_params"] = sizes["executorch"] / th["param_bytes"]
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="20 steps")
    args = ap.parse_args(argv)
    rows = run(20 if args.quick else args.steps)
    print("ORT training step memory (batch 32, 1 thread) against the theoretical minimum")
    print_table(rows, [("recipe", "recipe", "s"), ("parameters", "params", ","),
                       ("trainable", "trainable", ","), ("minimum_kib", "minimum KiB", ".1f"),
                       ("session_kib", "session KiB", ","), ("first_step_kib", "1st step KiB", ","),
                       ("step_peak_kib", "step peak KiB", ","), ("held_vs_minimum", "held ÷ min", ".0f")])
    print("\nbundle size against parameter bytes")
    size_rows = [{"recipe": r["recipe"], "param_bytes": r["param_bytes"], "ort": r["bundle_bytes"]["ort"],
                  "pte": r["bundle_bytes"]["executorch"], "total": r["bundle_bytes"]["total"],
                  "ort_x": r["ort_bundle_vs_params"], "pte_x": r["pte_vs_params"]} for r in rows]
    print_table(size_rows, [("recipe", "recipe", "s"), ("param_bytes", "param bytes", ","),
                            ("ort", "ORT artifacts", ","), ("ort_x", "÷ params", ".2f"),
                            ("pte", ".pte", ","), ("pte_x", "÷ params", ".2f"),
                            ("total", "bundle total", ",")])
    result = {"rows": rows, "command": "python -m bench.memory" + (" --quick" if args.quick else "")}
    path = write_result("memory", result)
    print(f"wrote bench/results/{path.name}")
    return result


if __name__ == "__main__":
    main()
