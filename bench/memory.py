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


# leaf modules whose backward needs their output (the derivative of a pointwise nonlinearity)
_NONLINEAR = ("ReLU", "ReLU6", "Hardswish", "Hardsigmoid", "GELU", "Sigmoid", "SiLU", "Tanh")
# per element of a recurrent layer's output, the states its backward keeps for every step:
# a GRU's reset, update and new gates and the previous hidden state; an LSTM's four gates and cell
_RECURRENT = {"GRU": 4, "LSTM": 5}


def backward_keeps(mod: Any, inputs: tuple[Any, ...], outs: tuple[Any, ...]) -> int:
    """Elements a leaf module's backward needs kept from its forward, when the gradient flows
    through it: its input where a weight (not only a bias) trains (a weight's gradient is the
    input times the output's gradient; a bias's needs no activation: TinyTL's point), a
    nonlinearity's output, a LayerNorm's (or a trained BatchNorm scale's) normalised input, a
    recurrent layer's per-step gates and states, a dropout's mask (a byte: a quarter of a float).
    A frozen convolution, linear layer, eval-mode BatchNorm or pooling needs nothing: its input's
    gradient needs only its weights. Functional operations inside a module (attention's softmax,
    a squeeze-excite product) are not counted: this is a lower bound."""
    import torch

    size = sum(t.numel() for t in outs if isinstance(t, torch.Tensor))
    first_in = next((t.numel() for t in inputs if isinstance(t, torch.Tensor)), 0)
    name = type(mod).__name__
    weight_trains = any(p.requires_grad for n, p in mod.named_parameters(recurse=False) if n != "bias")
    if name in _RECURRENT:
        return _RECURRENT[name] * outs[0].numel() + (first_in if weight_trains else 0)
    if name in _NONLINEAR:
        return size
    if name == "LayerNorm" or (name.startswith("BatchNorm") and weight_trains):
        return first_in
    if name.startswith("Dropout"):
        return size // 4 if mod.p > 0 else 0
    return first_in if weight_trains and name != "Embedding" else 0


def theoretical(recipe: Any, from_first_trainable: bool = False) -> dict[str, Any]:
    """Bytes a step must hold at least, from the PyTorch model of ``recipe`` (a name or a Recipe).

    Activations are every leaf module's output, or with ``from_first_trainable`` what the
    backward of the leaf modules from the first one holding a trainable parameter on needs kept
    (``backward_keeps``; in forward order: the layers before it get no gradient; ``bench.zoo``'s
    fine-tuning modes) plus the largest frozen layer's output twice (its input and output exist
    together in the forward). Counting every output there overstates what an engine must keep:
    a frozen BatchNorm's or convolution's output is not needed by backward, and ExecuTorch's
    planned program held less than that count (MobileNetV2 lora: 145 MB peak against 189 MB).
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

    def hook(mod, inputs, out):
        nonlocal acts, started, frozen_peak
        started = started or any(p.requires_grad for p in mod.parameters(recurse=False))
        outs = out if isinstance(out, tuple) else (out,)  # a GRU returns (output, h_n)
        n = sum(t.numel() for t in outs if isinstance(t, torch.Tensor))
        if not started:
            frozen_peak = max(frozen_peak, 2 * n)
        else:
            acts += backward_keeps(mod, inputs, outs) if from_first_trainable else n

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
