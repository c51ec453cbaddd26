"""Example specs: one per shape, random valid ones, and known-bad ones.

Used by docs/SCHEDULE_SPEC.md, the golden vectors shared with the Kotlin core, the
property tests and the fuzzing benchmark, so every consumer exercises the same
corners. ``random_spec`` takes a ``random.Random`` so its output is a pure
function of the seed (the golden file must be byte-for-byte reproducible).
"""

from __future__ import annotations

import random
from typing import Any

from mobile_lr.schedules.spec import FORMAT

__all__ = ["EXAMPLES", "INVALID_EXAMPLES", "random_plan", "random_spec"]


def _spec(shape: dict[str, Any], base_lr: float = 0.1, **extra: Any) -> dict[str, Any]:
    return {"format": FORMAT, "base_lr": base_lr, "shape": shape, **extra}


# One readable example per shape type (docs/SCHEDULE_SPEC.md shows these).
EXAMPLES: dict[str, dict[str, Any]] = {
    "constant": _spec({"type": "constant"}),
    "step": _spec({"type": "step", "step_size": 30, "gamma": 0.5}),
    "multistep": _spec({"type": "multistep", "milestones": [0.5, 0.75], "gamma": 0.1}),
    "exponential": _spec({"type": "exponential", "gamma": 0.99}),
    "inverse_time": _spec({"type": "inverse_time", "decay_rate": 0.5, "decay_steps": 20}),
    "linear": _spec({"type": "linear", "start_factor": 1.0, "end_factor": 0.0}),
    "polynomial": _spec({"type": "polynomial", "power": 2.0, "end_learning_rate": 1e-4}),
    "cosine": _spec({"type": "cosine", "eta_min": 1e-4},
                    warmup={"steps": 10, "start_factor": 0.1}),
    "cosine_restarts": _spec({"type": "cosine_restarts", "T_0": 50, "T_mult": 2, "eta_min": 1e-4}),
    "onecycle": _spec({"type": "onecycle", "max_lr": 0.1, "pct_start": 0.25}),
    "cyclic": _spec({"type": "cyclic", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 25,
                     "mode": "triangular2"}),
    "piecewise_constant": _spec({"type": "piecewise_constant", "boundaries": [100, 200],
                                 "values": [0.1, 0.05, 0.01]}),
    "rex": _spec({"type": "rex"}),
    "wsd": _spec({"type": "wsd", "decay_fraction": 0.2, "decay_shape": "1-sqrt"},
                 warmup={"steps": 10, "start_factor": 0.1}),
    "sequence": _spec({"type": "sequence", "parts": [
        {"steps": 50, "shape": {"type": "constant"}},
        {"shape": {"type": "cosine"}}]}),
    "plateau": _spec({"type": "plateau", "factor": 0.5, "patience": 3}),
}

# Bad specs and the field their error must name (Python and Kotlin alike).
INVALID_EXAMPLES: list[tuple[dict[str, Any], str]] = [
    ({"format": "mobile-lr.schedule/2", "base_lr": 0.1, "shape": {"type": "cosine"}}, "format"),
    ({"format": FORMAT, "shape": {"type": "cosine"}}, "base_lr"),
    (_spec({"type": "cosine"}, base_lr=-0.1), "base_lr"),
    (_spec({"type": "cosine"}, base_lr=0), "base_lr"),
    (_spec({"type": "cosine"}, base_lr="0.1"), "base_lr"),
    (_spec({"type": "cosine"}, total_steps=0), "total_steps"),
    (_spec({"type": "cosine"}, colour="red"), "colour"),
    (_spec({"type": "cosinus"}), "shape.type"),
    (_spec({"eta_min": 0.0}), "shape.type"),
    (_spec({"type": "cosine", "eta_min": 0.5}), "shape.eta_min"),
    (_spec({"type": "cosine", "eta_min": -1e-3}), "shape.eta_min"),
    (_spec({"type": "cosine", "T_max": 0}), "shape.T_max"),
    (_spec({"type": "cosine", "tmax": 10}), "shape.tmax"),
    (_spec({"type": "step", "gamma": 0.5}), "shape.step_size"),
    (_spec({"type": "step", "step_size": 10, "gamma": -0.5}), "shape.gamma"),
    (_spec({"type": "multistep", "milestones": [30, 20]}), "shape.milestones[1]"),
    (_spec({"type": "multistep", "milestones": [0.5, 1.5]}), "shape.milestones[1]"),
    (_spec({"type": "multistep", "milestones": []}), "shape.milestones"),
    (_spec({"type": "exponential"}), "shape.gamma"),
    (_spec({"type": "exponential", "gamma": 0.9, "decay_rate": 0.5}), "shape.gamma"),
    (_spec({"type": "linear", "start_factor": 0.0}), "shape.start_factor"),
    (_spec({"type": "linear", "end_factor": 1.5}), "shape.end_factor"),
    (_spec({"type": "polynomial", "cycle": "yes"}), "shape.cycle"),
    (_spec({"type": "cosine_restarts", "T_0": 10, "T_mult": 0}), "shape.T_mult"),
    (_spec({"type": "onecycle", "anneal_strategy": "cosine"}), "shape.anneal_strategy"),
    (_spec({"type": "onecycle", "pct_start": 1.5}), "shape.pct_start"),
    (_spec({"type": "cyclic", "max_lr": 1.0, "mode": "sawtooth"}), "shape.mode"),
    (_spec({"type": "cyclic", "step_size_up": 5}), "shape.max_lr"),
    (_spec({"type": "piecewise_constant", "boundaries": [10], "values": [0.1]}), "shape.values"),
    (_spec({"type": "piecewise_constant", "boundaries": [10, 5], "values": [0.1, 0.1, 0.1]}),
     "shape.boundaries[1]"),
    (_spec({"type": "wsd", "decay_shape": "exp"}), "shape.decay_shape"),
    (_spec({"type": "wsd", "decay_fraction": 0.0}), "shape.decay_fraction"),
    (_spec({"type": "sequence", "parts": [{"shape": {"type": "constant"}},
                                          {"shape": {"type": "cosine"}}]}), "shape.parts[0].steps"),
    (_spec({"type": "sequence", "parts": [{"steps": 5, "shape": {"type": "plateau"}},
                                          {"shape": {"type": "cosine"}}]}),
     "shape.parts[0].shape.type"),
    (_spec({"type": "plateau", "mode": "lowest"}), "shape.mode"),
    (_spec({"type": "plateau", "factor": 1.0}), "shape.factor"),
    (_spec({"type": "plateau", "min_lr": 1.0}), "shape.min_lr"),
    (_spec({"type": "cosine"}, warmup={"start_factor": 0.1}), "warmup.steps"),
    (_spec({"type": "cosine"}, warmup={"steps": 5, "shape": "exp"}), "warmup.shape"),
    (_spec({"type": "cosine"}, warmup={"steps": 5, "max_fraction": 1.0}), "warmup.max_fraction"),
    (_spec({"type": "cosine"}, budget={"mode": "greedy"}), "budget.mode"),
    (_spec({"type": "cosine"}, budget={"mode": "fixed", "decay_fraction": 0.2}),
     "budget.decay_fraction"),
    (_spec({"type": "step", "step_size": 5}, budget={"mode": "wsd"}), "budget.mode"),
    (_spec({"type": "cosine", "eta_min": float("nan")}), "shape.eta_min"),
    (_spec({"type": "exponential", "gamma": float("inf")}), "shape.gamma"),
]


def _maybe(rng: random.Random, p: float = 0.5) -> bool:
    return rng.random() < p


def _round(x: float) -> float:
    """Short decimals keep the golden file readable without losing exactness."""
    return float(f"{x:.6g}")


def _random_shape(rng: random.Random, base_lr: float, top: bool) -> dict[str, Any]:
    kinds = ["constant", "step", "multistep", "exponential", "inverse_time", "linear",
             "polynomial", "cosine", "cosine_restarts", "onecycle", "cyclic",
             "piecewise_constant", "rex", "wsd"]
    if top:
        kinds += ["sequence", "plateau"]
    kind = rng.choice(kinds)
    shape: dict[str, Any] = {"type": kind}
    length = rng.randint(5, 400)
    if kind == "constant":
        shape["factor"] = _round(rng.uniform(0.05, 1.0))
        if _maybe(rng):
            shape["total_iters"] = length
    elif kind == "step":
        shape.update(step_size=rng.randint(1, 60), gamma=_round(rng.uniform(0.05, 1.0)))
    elif kind == "multistep":
        n = rng.randint(1, 4)
        if _maybe(rng):
            shape["milestones"] = sorted(rng.sample(range(1, 400), n))
        else:
            shape["milestones"] = sorted({_round(rng.uniform(0.05, 0.95)) for _ in range(n)})
        shape["gamma"] = _round(rng.uniform(0.05, 1.0))
    elif kind == "exponential":
        if _maybe(rng):
            shape["gamma"] = _round(rng.uniform(0.9, 1.0))
        else:
            shape.update(decay_rate=_round(rng.uniform(0.05, 1.0)), decay_steps=rng.randint(1, 100),
                         staircase=_maybe(rng))
    elif kind == "inverse_time":
        shape.update(decay_rate=_round(rng.uniform(0.0, 2.0)), decay_steps=rng.randint(1, 100),
                     staircase=_maybe(rng))
    elif kind == "linear":
        shape.update(start_factor=_round(rng.uniform(0.01, 1.0)),
                     end_factor=_round(rng.uniform(0.0, 1.0)))
        if _maybe(rng, 0.3):
            shape["total_iters"] = length
    elif kind == "polynomial":
        shape.update(power=_round(rng.uniform(0.3, 3.0)),
                     end_learning_rate=_round(base_lr * rng.uniform(0.0, 0.5)), cycle=_maybe(rng, 0.2))
        if _maybe(rng, 0.3):
            shape["total_iters"] = length
    elif kind == "cosine":
        shape["eta_min"] = _round(base_lr * rng.uniform(0.0, 0.5))
        if _maybe(rng, 0.3):
            shape["T_max"] = length
    elif kind == "cosine_restarts":
        shape.update(T_0=rng.randint(1, 80), T_mult=rng.randint(1, 3),
                     eta_min=_round(base_lr * rng.uniform(0.0, 0.5)),
                     m_mul=_round(rng.uniform(0.5, 1.0)))
    elif kind == "onecycle":
        shape.update(max_lr=_round(base_lr * rng.uniform(1.0, 10.0)),
                     pct_start=_round(rng.uniform(0.05, 0.45)),
                     anneal_strategy=rng.choice(["cos", "linear"]),
                     div_factor=_round(rng.uniform(2.0, 50.0)),
                     final_div_factor=_round(rng.uniform(2.0, 1e4)), three_phase=_maybe(rng))
        if _maybe(rng, 0.3):
            shape["total_steps"] = length
    elif kind == "cyclic":
        shape.update(base_lr=_round(base_lr * rng.uniform(0.05, 1.0)),
                     max_lr=_round(base_lr * rng.uniform(1.0, 10.0)),
                     step_size_up=rng.randint(1, 60), step_size_down=rng.randint(1, 60),
                     mode=rng.choice(["triangular", "triangular2", "exp_range"]),
                     gamma=_round(rng.uniform(0.9, 1.0)))
    elif kind == "piecewise_constant":
        n = rng.randint(1, 4)
        shape["boundaries"] = sorted(rng.sample(range(0, 400), n))
        shape["values"] = [_round(base_lr * rng.uniform(0.01, 1.0)) for _ in range(n + 1)]
    elif kind == "rex":
        shape["eta_min"] = _round(base_lr * rng.uniform(0.0, 0.5))
    elif kind == "wsd":
        shape.update(decay_fraction=_round(rng.uniform(0.05, 1.0)),
                     decay_shape=rng.choice(["linear", "cosine", "1-sqrt"]),
                     eta_min=_round(base_lr * rng.uniform(0.0, 0.5)))
    elif kind == "sequence":
        n = rng.randint(2, 3)
        shape["parts"] = [{"steps": rng.randint(1, 100),
                           "shape": _random_shape(rng, base_lr, top=False)} for _ in range(n - 1)]
        last: dict[str, Any] = {"shape": _random_shape(rng, base_lr, top=False)}
        if _maybe(rng, 0.3):
            last["steps"] = rng.randint(1, 100)
        shape["parts"].append(last)
    elif kind == "plateau":
        shape.update(mode=rng.choice(["min", "max"]), factor=_round(rng.uniform(0.1, 0.9)),
                     patience=rng.randint(0, 5), threshold=_round(rng.uniform(0.0, 0.1)),
                     threshold_mode=rng.choice(["rel", "abs"]), cooldown=rng.randint(0, 3),
                     min_lr=_round(base_lr * rng.uniform(0.0, 0.1)))
    return shape


def random_spec(rng: random.Random) -> dict[str, Any]:
    """A random *valid* spec: any shape, sometimes with warm-up and a budget mode."""
    base_lr = _round(10 ** rng.uniform(-4, 0))
    shape = _random_shape(rng, base_lr, top=True)
    spec = _spec(shape, base_lr=base_lr)
    if _maybe(rng, 0.4):
        spec["warmup"] = {"steps": rng.randint(0, 50), "start_factor": _round(rng.uniform(0, 1)),
                          "shape": rng.choice(["linear", "cosine"]),
                          "max_fraction": _round(rng.uniform(0.01, 0.5))}
    progress = (shape["type"] in ("constant", "linear", "polynomial", "cosine", "onecycle", "rex")
                and not any(k in shape for k in ("total_iters", "T_max", "total_steps")))
    modes = ["fixed", "replan"] + (["wsd"] if progress else [])
    mode = rng.choice(modes)
    spec["budget"] = {"mode": mode}
    if mode == "wsd":
        spec["budget"]["decay_fraction"] = _round(rng.uniform(0.05, 1.0))
    if _maybe(rng, 0.3):
        spec["total_steps"] = rng.randint(1, 500)
    return spec


def random_plan(rng: random.Random, max_events: int = 4) -> list[list[int]]:
    """A random plan history: an initial total and a few re-plans (growing or shrinking)."""
    total = rng.randint(1, 500)
    plan = [[0, total]]
    t = 0
    for _ in range(rng.randint(0, max_events)):
        t = t + rng.randint(0, max(total - t, 1))
        total = max(0, t + rng.randint(-20, 400))
        plan.append([t, total])
    return plan
