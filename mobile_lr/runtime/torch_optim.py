"""PyTorch optimizers for the eager and the ExecuTorch runtimes, with per-step LR and pickle-free state.

Why the ExecuTorch runtime uses ``torch.optim`` rather than ExecuTorch's own SGD
(checked against ``extension/training/optimizer/sgd.cpp`` and the Python
``_training_lib`` binding of executorch 1.4): ``SGDOptions`` has getters and
no setters, the Python ``ExecuTorchSGD`` exposes only ``step``, and its momentum
buffers live in a private map keyed by tensor pointer. Changing the learning
rate means building a new optimizer, which silently restarts momentum (the
first step after a rebuild sets ``buf = grad`` again), and the buffers can never
be saved in a checkpoint. Folding the LR into the gradient does not work with
momentum either (the buffer would mix gradients scaled by different LRs).

The tensors ``TrainingModule.named_parameters()`` returns are views of the
program's live weights (``forward_backward`` runs with ``clone_outputs=False``
and keeps the first call's parameter outputs), so an optimizer that updates
them in place updates the program. We hand those views, with the program's
gradients as ``.grad``, to ``torch.optim.SGD`` (or ``AdamW``): the update is
then ``torch.optim.SGD``'s by construction, the LR is a plain field set before
every step, and the momentum buffers are ordinary tensors we checkpoint. The
rule applied (identical to ExecuTorch's C++ SGD for a constant LR)::

    d = g + weight_decay * p
    buf = d                                   (first step)
    buf = momentum * buf + (1 - dampening) * d (later steps)
    d = d + momentum * buf if nesterov else buf
    p = p - lr_t * d

On Android the same holds (``namedParameters`` wraps the native memory in a
direct ``ByteBuffer``): the app applies this rule itself over those buffers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from mobile_lr.extras import optional_imports

with optional_imports(__name__):
    import torch

from mobile_lr.recipes import OptimizerSpec
from mobile_lr.runtime.checkpoint import CheckpointError
from mobile_lr.validation import ValidationError, check_bool, check_int, check_list, check_number

__all__ = ["OPTIMIZER_CHOICES", "eval_point", "make_optimizer", "optimizer_state", "restore_optimizer_state",
           "set_lr", "torch_threads"]

OPTIMIZER_CHOICES = ("recipe", "schedulefree")


def make_optimizer(spec: OptimizerSpec, params: Sequence[torch.Tensor],
                   choice: str = "recipe", sf_r: float = 0.0) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``params`` (LR 0 until the first :func:`set_lr`).

    ``choice="schedulefree"`` gives ``schedulefree.AdamWScheduleFree`` with the
    recipe's betas, eps and weight decay (and no internal warm-up: the schedule
    owns the LR) and the averaging weight power ``r = sf_r``.
    """
    if choice not in OPTIMIZER_CHOICES:
        raise ValidationError("optimizer", f"unknown value {choice!r}", ", ".join(OPTIMIZER_CHOICES))
    params = list(params)
    if choice == "schedulefree":
        with optional_imports(__name__):
            import schedulefree

        opt = schedulefree.AdamWScheduleFree(params, lr=0.0, betas=tuple(spec.betas), eps=spec.eps,
                                             weight_decay=spec.weight_decay, warmup_steps=0, r=sf_r)
        opt.train()
        return opt
    if spec.type == "adamw":
        return torch.optim.AdamW(params, lr=0.0, betas=tuple(spec.betas), eps=spec.eps,
                                 weight_decay=spec.weight_decay)
    return torch.optim.SGD(params, lr=0.0, momentum=spec.momentum, dampening=spec.dampening,
                           weight_decay=spec.weight_decay, nesterov=spec.nesterov)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = float(lr)


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``opt.state_dict()`` split into arrays (``opt/<index>/<key>``) and JSON (scalars, groups)."""
    sd = opt.state_dict()
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                arrays[f"opt/{idx}/{key}"] = value.detach().cpu().numpy().copy()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return arrays, {"scalars": scalars, "param_groups": sd["param_groups"]}


def restore_optimizer_state(opt: torch.optim.Optimizer, arrays: Mapping[str, np.ndarray],
                            meta: Mapping[str, Any], name: str) -> None:
    """Inverse of :func:`optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    params = [p for group in opt.param_groups for p in group["params"]]
    for key, value in arrays.items():
        if key.startswith("opt/"):
            _, idx, field = key.split("/", 2)
            # a moment of another shape broadcast (or failed) only at the next step
            fits = idx.isdigit() and int(idx) < len(params) and (
                value.size == 1 if field == "step" else value.shape == tuple(params[int(idx)].shape))
            if not fits:
                raise CheckpointError(name, f"optimizer array {key!r} of shape {value.shape} does not fit "
                                            "the model", "the optimizer state this runtime writes")
            state.setdefault(int(idx), {})[field] = torch.from_numpy(np.array(value, copy=True))
    if not isinstance(meta, Mapping) or not isinstance(meta.get("scalars") or {}, Mapping):
        raise CheckpointError(name, "optimizer metadata is not an object")
    for idx, entry in (meta.get("scalars") or {}).items():
        if not isinstance(entry, Mapping) or not idx.isdigit():
            raise CheckpointError(name, f"optimizer scalars {idx[:20]!r} are not an object of a parameter")
        state.setdefault(int(idx), {}).update(entry)
    groups = meta.get("param_groups")
    if not isinstance(groups, list) or len(groups) != len(opt.param_groups):
        raise CheckpointError(name, "optimizer parameter groups missing or of another optimizer")
    groups = [_saved_group(mine, theirs, name) for mine, theirs in zip(opt.param_groups, groups, strict=True)]
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(name, f"optimizer state does not fit ({err})") from None


def _saved_group(mine: Mapping[str, Any], theirs: Any, name: str) -> dict[str, Any]:
    """A saved parameter group checked against the live one: the same keys, each value of the
    live value's kind (a flag a bool, a hyper-parameter a finite number, ``betas`` a pair, the
    parameters as many indices), so a hostile checkpoint is a CheckpointError, not a TypeError
    from inside ``torch.optim``."""
    if not isinstance(theirs, Mapping) or set(theirs) != set(mine):
        raise CheckpointError(name, "optimizer parameter group of another optimizer")
    out: dict[str, Any] = {}
    for key, live in mine.items():
        value, field = theirs[key], f"optimizer.param_groups.{key}"
        try:
            if key == "params":
                out[key] = check_list(value, field, partial(check_int, lo=0), length=len(live))
            elif isinstance(live, bool) or live is None:
                out[key] = value if value is None else check_bool(value, field)
            elif isinstance(live, int | float):
                out[key] = check_number(value, field)
            elif isinstance(live, tuple | list):
                out[key] = tuple(check_list(value, field, check_number, length=len(live)))
            else:
                out[key] = value
        except ValidationError as err:
            raise CheckpointError(name, str(err)) from None
    return out


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` within the block, the process's setting restored after
    (``None``: leave it). For models this small torch's pool costs more than it gains, and on a
    busy machine far more: a digits-mlp ExecuTorch step took 60 ms with 2 threads, 1.4 ms with 1."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def eval_point(opt: torch.optim.Optimizer, params: Sequence[torch.Tensor], choice: str) -> Iterator[None]:
    """Within the block ``params`` hold the point a model is evaluated at.

    Schedule-free AdamW evaluates at its averaged point x and trains at y. Its ``train()``
    recomputes y from x and z in floating point, which is not an exact inverse of ``eval()``;
    the exact y is put back afterwards so that evaluating never changes the training
    trajectory. Other optimizers evaluate where they train."""
    if choice != "schedulefree":
        yield
        return
    saved = [p.detach().clone() for p in params]
    opt.eval()
    try:
        yield
    finally:
        opt.train()
        with torch.no_grad():
            for p, y in zip(params, saved, strict=True):
                p.copy_(y)
