"""``export_bundle``: a recipe in, one verified bundle directory out.

The bundle is built in a staging directory next to ``out_dir`` and renamed into
place at the end, so a failed or killed export never leaves a half-written
bundle under the final name. ``manifest.json`` is written last, over every
other file (see :mod:`mobile_lr.bundle` for its format and verification).

Files: ``inference_model.onnx`` (always: the model for prediction, eval mode),
the four ORT training artifacts, ``model.pte`` (ExecuTorch), ``schedule.json``
(the given spec, or a default cosine with warm-up), ``policy.json`` (if given),
``labels.json`` and ``manifest.json``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    import torch

import mobile_lr
from mobile_lr.bundle import (
    LABELS_FORMAT,
    MAX_BATCH,
    Manifest,
    check_replaceable,
    replace_bundle,
    write_manifest,
)
from mobile_lr.export.executorch_program import write_executorch_program
from mobile_lr.export.flops import count_flops, count_step_flops
from mobile_lr.export.forms import check_batchnorm_mode, eval_form
from mobile_lr.export.onnx_artifacts import (
    INFERENCE_MODEL,
    UnsupportedModel,
    export_onnx,
    write_ort_artifacts,
)
from mobile_lr.export.proof import prove_backends
from mobile_lr.recipes import Recipe, batchnorm_modules, load_recipe
from mobile_lr.validation import ValidationError, read_json

__all__ = ["BACKENDS", "DEFAULT_SCHEDULE", "LABELS_FORMAT", "check_max_batch", "count_flops", "export_bundle",
           "versions"]

BACKENDS = ("ort", "executorch")
DEFAULT_SCHEDULE: dict[str, Any] = {
    "format": "mobile-lr.schedule/1", "base_lr": 0.01,
    "warmup": {"steps": 10, "start_factor": 0.1},
    "shape": {"type": "cosine"}, "budget": {"mode": "replan"},
}
_PACKAGES = ("torch", "onnx", "onnxruntime-training", "executorch")


def versions() -> dict[str, str]:
    """Versions of the tools that make a bundle (recorded in its manifest)."""
    out = {"mobile-lr": mobile_lr.__version__}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _load_json_arg(value: Mapping[str, Any] | str | os.PathLike[str] | None, field: str) -> Any:
    if value is None or isinstance(value, Mapping):
        return value
    if not isinstance(value, str | os.PathLike):   # a list reached os.fspath's TypeError
        raise ValidationError(field, f"expected an object or a file path, got {type(value).__name__}",
                              "a JSON object (dict) or the path of a JSON file")
    return read_json(value, field)


def _schedule(value: Any) -> dict[str, Any]:
    spec = _load_json_arg(value, "schedule")
    if spec is None:
        spec = DEFAULT_SCHEDULE
    from mobile_lr.schedules import parse_spec

    parse_spec(spec)  # raises ValidationError naming the field
    return dict(spec)


def _policy(value: Any) -> dict[str, Any] | None:
    obj = _load_json_arg(value, "policy")
    if obj is None:
        return None
    from mobile_lr.budget import Policy

    return Policy.from_dict(obj).to_dict()


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _model_block(recipe: Recipe, batchnorm: str) -> dict[str, Any]:
    params = dict(recipe.model.named_parameters())
    with torch.no_grad(), eval_form(recipe.model):
        out = recipe.model(recipe.example_input)
    with eval_form(recipe.model):  # the graphs' form: frozen batch norm, no dropout
        forward, backward = count_step_flops(recipe.model, recipe.example_input, recipe.trainable)
    labels: dict[str, Any] = {"name": recipe.target_name, "dtype": recipe.target_dtype}
    if recipe.classifies:
        labels["classes"] = len(recipe.labels) if recipe.labels else int(out.shape[-1])
    else:
        labels["shape"] = [-1, *out.shape[1:]]
    block: dict[str, Any] = {
        "recipe": recipe.name,
        "entry": recipe.entry,
        "loss": recipe.loss_name,
        "params_trainable": sum(params[n].numel() for n in recipe.trainable),
        "params_frozen": sum(params[n].numel() for n in recipe.frozen),
        "trainable": list(recipe.trainable),
        "frozen": list(recipe.frozen),
        "batchnorm": {"mode": batchnorm, "modules": batchnorm_modules(recipe.model),
                      "note": BATCHNORM_NOTES[batchnorm]},
        "flops_per_step": forward + backward,
        "flops_forward": forward,
        "flops_backward": backward,
        "flops_batch": recipe.batch_size,
        "flops_note": FLOPS_NOTE.format(batch=recipe.batch_size),
        "input": {"name": "input", "shape": [-1, *recipe.input_shape], "dtype": recipe.input_dtype},
        "output": {"name": "output", "shape": [-1, *out.shape[1:]], "dtype": "float32"},
        "labels": labels,
    }
    if recipe.mode:  # the fine-tuning mode and the recipe options that rebuild the architecture
        block["mode"] = recipe.mode
    if recipe.options:
        block["options"] = dict(recipe.options)
    return block


FLOPS_NOTE = ("forward + backward FLOPs of one training step at batch {batch}: 2 per multiply-accumulate "
              "of the matmuls and convolutions autograd runs for the trainable split (frozen layers "
              "get no backward), counted by torch.utils.flop_counter; elementwise ops and the "
              "optimizer update not counted")

BATCHNORM_NOTES = {
    "frozen": "running statistics used in training and evaluation, never updated; weight and bias train "
              "where listed as trainable",
    "train": "training steps normalize with the batch and update the running statistics",
}


def _stage_dir(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be copied and shared
    return staging


def check_max_batch(recipe: Recipe, max_batch: int | None, field: str = "max_batch") -> int:
    """The ExecuTorch program's largest batch: ``max_batch``, or the recipe's batch for None.

    Below the recipe's batch the proof (run on the example batch) could not run; the upper bound
    is the manifest reader's."""
    if max_batch is None:
        return recipe.batch_size
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) \
            or not recipe.batch_size <= max_batch <= MAX_BATCH:
        raise ValidationError(field, f"{max_batch!r} is out of range",
                              f"an integer from the recipe's batch ({recipe.batch_size}) to {MAX_BATCH}")
    return max_batch


def export_bundle(recipe: Recipe | str, out_dir: str | os.PathLike[str],
                  backends: Sequence[str] = BACKENDS,
                  schedule: Mapping[str, Any] | str | os.PathLike[str] | None = None,
                  policy: Mapping[str, Any] | str | os.PathLike[str] | None = None, *,
                  force: bool = False, max_batch: int | None = None, batchnorm: str = "frozen",
                  log: Callable[[str], None] | None = None) -> Manifest:
    """Export ``recipe`` (a :class:`Recipe` or a recipe name) to a bundle in ``out_dir``.

    Returns the manifest. A backend is written ``{"status": "ok", "proof": {...}}`` only once the
    staged bundle has been opened with its runtime, its evaluation loss matched PyTorch eager's and
    one training step ran (:mod:`mobile_lr.export.proof`); one that cannot represent the model or
    fails that proof gets ``{"status": "unsupported", "reason": ...}`` and its files are left out;
    the other backends are still written. ``max_batch`` is the largest training batch the
    ExecuTorch program takes (default: the recipe's batch; ExecuTorch plans the step's memory at
    it, so a larger bound costs memory in proportion; ONNX Runtime takes any batch).
    ``batchnorm``: ``"frozen"`` (running statistics used, never updated) or ``"train"`` (refused by
    the engines that cannot, naming the modules).
    ``out_dir`` must be new or empty unless ``force`` (then it must be a bundle that verifies, which
    is replaced by one atomic rename exchange: see :func:`mobile_lr.bundle.replace_bundle`).
    """
    say = log or (lambda _msg: None)
    if isinstance(recipe, str):
        recipe = load_recipe(recipe)
    if not isinstance(recipe, Recipe):
        raise ValidationError("recipe", f"expected a Recipe or a recipe name, got {type(recipe).__name__}")
    if not isinstance(out_dir, str | os.PathLike):
        raise ValidationError("out_dir", f"expected a path, got {type(out_dir).__name__}", "str or Path")
    if isinstance(backends, str):   # iterated as its letters: "o,r,t is not a backend list"
        raise ValidationError("backend", f"expected a list of backends, got {backends[:40]!r}",
                              f"a list of {', '.join(BACKENDS)}")
    backends = list(dict.fromkeys(backends))
    if not backends or any(b not in BACKENDS for b in backends):
        raise ValidationError("backend", f"{','.join(backends) or 'nothing'} is not a backend list",
                              ", ".join(BACKENDS))
    max_batch = check_max_batch(recipe, max_batch)
    check_batchnorm_mode(batchnorm)
    schedule_spec = _schedule(schedule)
    policy_obj = _policy(policy)
    out = Path(out_dir)
    check_replaceable(out, force)  # before the work: a file, a non-empty dir, or one that is not a bundle
    recipe.apply_trainable()
    recipe.check_output()   # a model no engine could train: one line now, not a trace from an exporter
    staging = _stage_dir(out)
    try:
        say("exporting the inference model")
        export_onnx(recipe, staging / INFERENCE_MODEL, training=False)
        status = {backend: _write_backend(backend, recipe, staging, max_batch, batchnorm, say)
                  for backend in backends}
        _write_json(staging / "schedule.json", schedule_spec)
        if policy_obj is not None:
            _write_json(staging / "policy.json", policy_obj)
        _write_json(staging / "labels.json", {"format": LABELS_FORMAT, "names": list(recipe.labels)})
        fields = {"versions": versions(), "model": _model_block(recipe, batchnorm),
                  "optimizer": recipe.optimizer.to_dict(), "backends": status}
        write_manifest(staging, fields)
        _prove(recipe, staging, status, say)
        manifest = write_manifest(staging, fields)
        replace_bundle(staging, out, force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _write_backend(backend: str, recipe: Recipe, staging: Path, max_batch: int, batchnorm: str,
                   say: Callable[[str], None]) -> dict[str, Any]:
    say(f"exporting the {backend} backend")
    try:
        if backend == "ort":
            return {"status": "ok", "files": write_ort_artifacts(recipe, staging, batchnorm=batchnorm),
                    "inference_model": INFERENCE_MODEL}
        return {"status": "ok", **write_executorch_program(recipe, staging, max_batch=max_batch,
                                                           batchnorm=batchnorm)}
    except UnsupportedModel as err:
        say(f"{backend}: unsupported: {err}")
        return {"status": "unsupported", "reason": str(err), "files": []}


def _prove(recipe: Recipe, staging: Path, status: dict[str, dict[str, Any]],
           say: Callable[[str], None]) -> None:
    """Open every "ok" backend of the staged bundle and prove it; a failure becomes ``unsupported``."""
    kinds = [backend for backend, info in status.items() if info["status"] == "ok"]
    if not kinds:
        return
    say(f"proving {', '.join(kinds)} (evaluation parity with PyTorch eager, one training step)")
    failed: list[str] = []
    for kind, result in prove_backends(kinds, staging, recipe).items():
        if "error" in result:
            say(f"{kind}: unsupported: {result['error']}")
            failed.extend(status[kind]["files"])  # removed after every proof: the staged bundle must verify
            status[kind] = {"status": "unsupported", "reason": result["error"], "files": []}
        else:
            status[kind]["proof"] = result
    for name in failed:
        (staging / name).unlink(missing_ok=True)
