""""ok" means it trains: every exported backend is opened and proven before the manifest says so.

Lowering can succeed for artifacts that no runtime can open (ONNX Runtime's eval model of a
training-mode batch norm), that open and compute something else (an evaluation that runs
dropout), or that crash the process (ONNX Runtime 1.19.2's ``AveragePoolGrad`` dies of SIGFPE
in the first training step). So after the files are written the exporter opens the staged
bundle with the same runtime a user would (:func:`mobile_lr.runtime.open_runtime`), in a child
process (a native crash then costs the backend, not the export), and on the proof batch:

1. compares the evaluation loss at the initial weights with PyTorch eager's in eval mode
   (relative difference at most :data:`PARITY_RTOL`; float32 engines differ by ~1e-7);
2. runs one training step and checks that its loss and the trained weights are finite.

A backend that fails is written as ``unsupported`` with the reason: the operator or module
that failed where the engine names one, the two losses otherwise, and what the user can do.

The proof batch is the recipe's example input, or, when that is constant (zeros, as the
built-in digits recipes give), a seeded normal batch of the same shape, since a constant
input hides most differences. Targets are seeded too (classes ``0..C-1`` in turn, or a
normal target for a float loss).

``python -m mobile_lr.export.proof BUNDLE BATCH.npz KIND...`` is the child: one JSON line per
phase and per result on stdout.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    import torch

from mobile_lr.export.forms import eval_form
from mobile_lr.export.onnx_artifacts import UnsupportedModel, engine_error
from mobile_lr.recipes import Recipe

__all__ = ["PARITY_RTOL", "PROOF_LR", "PROOF_TIMEOUT_S", "eager_eval_loss", "proof_batch", "prove_backends"]

PARITY_RTOL = 1e-4
PROOF_LR = 1e-3  # the learning rate of the proving step (any finite step proves the graph runs)
PROOF_TIMEOUT_S = 900.0  # a child that takes longer is stopped and its backend reported as hung
_PHASES = {"open": "opening the bundle", "evaluate": "evaluation", "step": "one training step"}


def proof_batch(recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: the example input (a seeded normal batch if it is constant) and seeded targets."""
    gen = torch.Generator().manual_seed(0)
    x = recipe.example_input
    if x.dtype == torch.float32 and x.numel() and bool((x == x.flatten()[0]).all()):
        x = torch.randn(x.shape, generator=gen)
    with torch.no_grad(), eval_form(recipe.model):
        out = recipe.model(x)
    if recipe.target_dtype == "int64":
        y = torch.arange(len(x)) % int(out.shape[-1])
    else:
        y = torch.randn(out.shape, generator=gen)
    return x.numpy().copy(), y.numpy().copy()


def eager_eval_loss(recipe: Recipe, x: np.ndarray, y: np.ndarray) -> float:
    """The recipe's loss in PyTorch eager, eval mode, at the model's current weights."""
    with torch.no_grad(), eval_form(recipe.model):
        return float(recipe.torch_loss(recipe.model(torch.from_numpy(x)), torch.from_numpy(y)))


# ---------------------------------------------------------------------- parent


def _child_env() -> dict[str, str]:
    """The child imports this very mobile_lr (whichever checkout or install the parent runs)."""
    import mobile_lr

    root = str(Path(mobile_lr.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run_child(bundle_dir: Path, batch_file: Path,
               kinds: Sequence[str]) -> tuple[list[dict[str, Any]], str, int]:
    cmd = [sys.executable, "-m", "mobile_lr.export.proof", str(bundle_dir), str(batch_file), *kinds]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(), timeout=PROOF_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")], "", -signal.SIGKILL
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return events, done.stderr, done.returncode


def _executorch_error(error: str, log: str, recipe: Recipe) -> str | None:
    """``" at mod (ConvTranspose2d): aten::convolution_backward.out: Transposed Convolution Backward
    not supported yet (...)"``: the kernel ExecuTorch's log says failed, its check's message and the
    modules calling it, or None when the log names no kernel."""
    kernel = re.search(r"KernelCall failed at instruction \S+ in operator ([\w:.]+)", log)
    if not kernel:
        return None
    checks = [m for m in re.findall(r"Check failed \([^\n]*?\): ([^\n]*\S)", log) if m.strip()]
    why = f": {checks[0][:300]}" if checks else ""
    from mobile_lr.export.executorch_program import modules_calling

    try:
        modules = modules_calling(recipe, [kernel.group(1)])
    except Exception:  # naming is a courtesy: the reason stands without it
        modules = []
    where = f" at {', '.join(modules[:4])}" if modules else ""
    return (f"{where}: {kernel.group(1)}{why} ({error.strip().splitlines()[-1][:200]}); keep that module in "
            "the frozen part before any trainable layer, or replace it")


def _judge(kind: str, event: dict[str, Any], expected: float, log: str, recipe: Recipe) -> dict[str, Any]:
    if "error" in event:
        named = _executorch_error(event["error"], log, recipe) if kind == "executorch" else None
        raise UnsupportedModel(f"the {kind} runtime fails in {_PHASES[event['phase']]}"
                               f"{named or engine_error(event['error'], recipe.model, log)}")
    loss, step_loss = event["eval_loss"], event["step_loss"]
    rel = abs(loss - expected) / max(abs(expected), 1e-12)
    if not rel <= PARITY_RTOL:
        raise UnsupportedModel(
            f"the {kind} evaluation loss at the initial weights is {loss:.7g}, PyTorch eager's (eval mode) "
            f"{expected:.7g}: relative difference {rel:.2g} > {PARITY_RTOL:g}; the exported graph computes "
            "another model (a train-mode op in evaluation, or an op the engine implements differently)")
    if not math.isfinite(step_loss) or event["nonfinite"]:
        raise UnsupportedModel(f"one {kind} training step gives loss {step_loss} and non-finite weights "
                               f"{event['nonfinite'][:4]}")
    return {"eval_loss": loss, "eager_eval_loss": expected, "rel_diff": rel, "step_loss": step_loss}


def prove_backends(kinds: Sequence[str], bundle_dir: str | Path, recipe: Recipe) -> dict[str, dict[str, Any]]:
    """Prove each runtime ``kind`` on the staged bundle: ``{kind: proof figures}`` or, for a kind that
    fails, ``{kind: {"error": reason}}``. One child process proves them in turn; after a crash a new
    child goes on with the kinds left."""
    x, y = proof_batch(recipe)
    expected = eager_eval_loss(recipe, x, y)
    results: dict[str, dict[str, Any]] = {}
    left = list(kinds)
    with tempfile.TemporaryDirectory(prefix="mobile-lr-proof-") as tmp:
        batch_file = Path(tmp) / "batch.npz"
        np.savez(batch_file, x=x, y=y)
        while left:
            events, log, code = _run_child(Path(bundle_dir), batch_file, left)
            phase: dict[str, str] = {}
            for event in events:
                kind = event["kind"]
                if "phase" in event and "error" not in event:
                    phase[kind] = event["phase"]
                    continue
                try:
                    results[kind] = _judge(kind, event, expected, log, recipe)
                except UnsupportedModel as err:
                    results[kind] = {"error": str(err)}
            left = [k for k in left if k not in results]
            if left:  # the child died while proving left[0]
                kind = left.pop(0)
                how = "was stopped after" if code == -signal.SIGKILL else "crashed"
                sig = signal.Signals(-code).name if code < 0 else f"exit status {code}"
                results[kind] = {"error": f"the {kind} runtime {how} ({sig}) in "
                                          f"{_PHASES[phase.get(kind, 'open')]}; keep the module that "
                                          "needs this engine's gradient in the frozen part, or replace it"}
    return results


# ---------------------------------------------------------------------- child


def _emit(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def _prove_one(kind: str, bundle_dir: str, x: np.ndarray, y: np.ndarray) -> None:
    from mobile_lr.runtime import open_runtime

    phase = "open"
    try:
        _emit(kind=kind, phase=phase)
        rt = open_runtime(kind, bundle_dir)
        phase = "evaluate"
        _emit(kind=kind, phase=phase)
        loss = float(rt.evaluate(x, y, weights="raw")["loss"])
        phase = "step"
        _emit(kind=kind, phase=phase)
        step_loss = float(rt.step(x, y, PROOF_LR))
        bad = [k for k, v in rt.parameters().items() if not np.all(np.isfinite(v))]
    except Exception as err:  # the engines raise RuntimeError/ValueError from native code
        source = err.__cause__ or err  # a file the engine cannot load: its error whole (node names)
        _emit(kind=kind, phase=phase, error=str(source).strip() or type(source).__name__)
        return
    _emit(kind=kind, eval_loss=loss, step_loss=step_loss, nonfinite=bad)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3:
        print("usage: python -m mobile_lr.export.proof BUNDLE BATCH.npz KIND...", file=sys.stderr)
        return 2
    bundle_dir, batch_file, kinds = args[0], args[1], args[2:]
    with np.load(batch_file, allow_pickle=False) as batch:
        x, y = batch["x"], batch["y"]
    for kind in kinds:
        _prove_one(kind, bundle_dir, x, y)
    return 0


if __name__ == "__main__":
    sys.exit(main())
