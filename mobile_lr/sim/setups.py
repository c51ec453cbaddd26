"""The training set-ups a simulation compares, each a schedule spec + manager config + runtime options.

(A set-up is how the LR is driven; a :class:`mobile_lr.budget.Policy` is what the user
allows: the word "policy" means only the latter in the code. The run summaries keep their
JSON key ``"policy"`` for the set-up's name, a documented output format.)

Every set-up runs through the same :class:`mobile_lr.manager.ScheduleManager`, so
every one of them is *safe* (no step starts that would end below the battery
floor or above the thermal limit); they differ in what the learning rate does:

* ``manager`` — the battery-aware manager with the recommended set-up of
  :mod:`mobile_lr.manager` for the runtime and bundle
  (:func:`~mobile_lr.manager.recommended_setup`, bench/budget_quality): schedule-free
  AdamW (averaging weight ``sf_r`` 1) at ``sf_lr_factor`` × the bundle's base LR after a
  warm-up over 10 % of the plan in force, held; on a
  bundle schedule-free AdamW cannot run (SGD, LR dropout) the EMA flavour: warm-up, hold
  the peak (raised for a short first plan), cool down over the last 20 % of the budget in
  force (budget mode ``wsd``: a cut learnt from the battery moves the cool-down) and an EMA
  of the weights (evaluated and exported at the average).
* ``replan`` — the bundle's own schedule with budget mode ``replan`` (the
  progress map re-plans the whole curve), no averaging.
* ``naive`` — cosine planned once for the nominal number of steps (``fixed``):
  what an app does that does not know its budget; when the budget ends first,
  its LR was never annealed.
* ``constant`` — the bundle's base LR throughout.
* ``linear`` — ONNX Runtime's ``LinearLRScheduler`` shape (warm-up, then linear to
  0) planned for the nominal steps.
* ``wsd`` — warm-up, stable, decay (1-sqrt cool-down over the last 20 %),
  re-planned: the decay starts when the plan says the end is near.
* ``sf-adamw`` — schedule-free AdamW (Defazio et al. 2024, the ``schedulefree``
  package's ``AdamWScheduleFree``; on ORT through the parameter buffers), constant
  LR, no warm-up: it needs no budget, and it was the strongest peer of
  bench/budget_quality at short cuts. Its LR is :data:`SF_LR_FACTOR` × the bundle's
  base LR: the bundle's LR is tuned for AdamW, and schedule-free AdamW's best LR was
  2-2.5 × that in the bench (at 1 × it trails by about 2 points). ORT and PyTorch
  runtimes, AdamW bundles only.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mobile_lr.bundle import Manifest
from mobile_lr.manager import SetupOptions, recommended_setup
from mobile_lr.validation import ValidationError

__all__ = ["SETUPS", "SF_LR_FACTOR", "TrainingSetup", "make_setup", "parse_setup_list"]


@dataclass(frozen=True)
class TrainingSetup:
    name: str
    description: str
    spec: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    runtime_options: dict[str, Any] = field(default_factory=dict)


def _base(schedule: Mapping[str, Any]) -> dict[str, Any]:
    return {"format": "mobile-lr.schedule/1", "base_lr": float(schedule["base_lr"])}


def _manager(schedule: Mapping[str, Any], nominal: int, backend: str = "ort",
             manifest: Manifest | None = None) -> TrainingSetup:
    rec = recommended_setup(backend, manifest, float(schedule["base_lr"]), nominal)
    return TrainingSetup("manager", f"battery-aware: recommended set-up ({rec.averaging})",
                          rec.schedule, rec.config.to_dict(), rec.runtime_options)


def _replan(schedule: Mapping[str, Any], nominal: int, *_runtime: Any) -> TrainingSetup:
    spec = copy.deepcopy(dict(schedule))
    spec.pop("total_steps", None)
    spec["budget"] = {**spec.get("budget", {}), "mode": "replan"}
    return TrainingSetup("replan", "the bundle's schedule, re-planned", spec,
                          {"nominal_steps": nominal})


def _naive(schedule: Mapping[str, Any], nominal: int, *_runtime: Any) -> TrainingSetup:
    # An absolute T_max (PyTorch's CosineAnnealingLR): the curve is planned once for the
    # nominal steps whatever the manager's plans say.
    spec = {**_base(schedule), "shape": {"type": "cosine", "T_max": nominal}, "budget": {"mode": "fixed"}}
    return TrainingSetup("naive", "cosine planned for the nominal steps", spec,
                          {"nominal_steps": nominal})


def _constant(schedule: Mapping[str, Any], nominal: int, *_runtime: Any) -> TrainingSetup:
    spec = {**_base(schedule), "shape": {"type": "constant"}, "budget": {"mode": "fixed"}}
    return TrainingSetup("constant", "constant LR", spec, {"nominal_steps": nominal})


def _linear(schedule: Mapping[str, Any], nominal: int, *_runtime: Any) -> TrainingSetup:
    # ORT's LinearLRScheduler(warmup, total): lr * t / warmup, then linear to 0 at total;
    # absolute lengths, so it is planned once for the nominal steps.
    warm = max(1, nominal // 10)
    spec = {**_base(schedule), "shape": {"type": "sequence", "parts": [
        {"steps": warm, "shape": {"type": "linear", "start_factor": 1e-9, "end_factor": 1.0,
                                  "total_iters": warm}},
        {"shape": {"type": "linear", "start_factor": 1.0, "end_factor": 0.0,
                   "total_iters": max(1, nominal - warm)}}]},
            "budget": {"mode": "fixed"}}
    return TrainingSetup("linear", "ORT LinearLRScheduler (warm-up, linear to 0) for the nominal steps",
                          spec, {"nominal_steps": nominal})


def _wsd(schedule: Mapping[str, Any], nominal: int, *_runtime: Any) -> TrainingSetup:
    spec = {**_base(schedule), "shape": {"type": "wsd", "decay_fraction": 0.2, "decay_shape": "1-sqrt"},
            "budget": {"mode": "replan"}}
    return TrainingSetup("wsd", "warm-up/stable/decay, re-planned", spec, {"nominal_steps": nominal})


#: The sf-adamw peer's LR over the bundle's (AdamW) base LR: the set-up's one convention
#: (``SetupOptions.sf_lr_factor``, schedule-free AdamW's best LR over AdamW's in
#: bench/budget_quality, one LR per method), so the peer and the manager run the same LR.
SF_LR_FACTOR = SetupOptions().sf_lr_factor


def _sf_adamw(schedule: Mapping[str, Any], nominal: int, backend: str = "ort",
              manifest: Manifest | None = None) -> TrainingSetup:
    if backend not in ("ort", "torch"):
        raise ValidationError("--compare", f"sf-adamw needs the ort or torch runtime, not {backend!r}",
                              "--backend ort or torch")
    if backend == "ort" and manifest is not None and not manifest.plain_adamw:
        raise ValidationError("--compare", f"sf-adamw on ORT needs a plain AdamW bundle, not "
                                           f"{manifest.optimizer.type!r}",
                              "a bundle exported with the adamw optimizer")
    spec = {**_base(schedule), "shape": {"type": "constant"}, "budget": {"mode": "fixed"}}
    spec["base_lr"] *= SF_LR_FACTOR
    return TrainingSetup("sf-adamw", f"schedule-free AdamW, constant LR {SF_LR_FACTOR:g} × the base LR "
                          "(its best-LR ratio to AdamW in bench/budget_quality; needs no budget)", spec,
                          {"nominal_steps": nominal}, {"optimizer": "schedulefree"})


# Each factory takes (bundle schedule, nominal steps, backend, manifest); only the manager's
# set-up depends on the runtime, the others ignore the last two.
SETUPS: dict[str, Callable[[Mapping[str, Any], int, str, Manifest | None], TrainingSetup]] = {
    "manager": _manager,
    "replan": _replan,
    "naive": _naive,
    "constant": _constant,
    "linear": _linear,
    "wsd": _wsd,
    "sf-adamw": _sf_adamw,
}


def make_setup(name: str, schedule: Mapping[str, Any], nominal_steps: int,
                backend: str = "ort", manifest: Manifest | None = None) -> TrainingSetup:
    """The set-up ``name`` for a bundle whose schedule is ``schedule`` (its base LR is shared),
    trained by the ``backend`` runtime (the manager's averaging depends on it and on the
    bundle's ``manifest``: its optimizer)."""
    if name not in SETUPS:
        raise ValidationError("--compare", f"unknown set-up {name!r}", ", ".join(SETUPS))
    return SETUPS[name](schedule, nominal_steps, backend, manifest)


def parse_setup_list(text: str) -> list[str]:
    """``"manager,naive"`` -> ``["manager", "naive"]``; unknown names are refused."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValidationError("--compare", "empty list of set-ups", ", ".join(SETUPS))
    for n in names:
        if n not in SETUPS:
            raise ValidationError("--compare", f"unknown set-up {n!r}", ", ".join(SETUPS))
    return list(dict.fromkeys(names))
