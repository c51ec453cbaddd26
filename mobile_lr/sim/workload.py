"""What one training step costs the simulated phone, and the data it trains on.

One rule, in this order (docs/SIMULATION.md, "The cost of a step"):

1. ``calibrated`` (``mobile-lr simulate --calibrate``): the bundle's real step, measured here in
   the real runtime, times this machine's measured FP32 throughput over the phone's
   (:func:`phone_gflops`);
2. ``zoo-flops``: a zoo bundle (its manifest names a zoo recipe and records its options) costs
   its own FLOPs per training step (``model.flops_per_step``, counted by the exporter for the
   trainable split, scaled to the session's batch) over the phone's throughput, plus the fixed
   per-step overhead ``t0`` of docs/DEVICES.md §3 (:data:`STEP_OVERHEAD_S`);
3. ``step-factor``: any other bundle costs the profile's reference step (``compute.step_seconds``,
   a LeNet-5-class step) times the scenario's ``workload.step_factor``, a production-size step
   charged for a small stand-in model.

The scenario's ``step_factor`` applies under rule 3 only: under 1 and 2 the step is the model's
own. The simulated phone's energy and heat follow the step time (power x time, throttled as the
profile says), so the battery a step costs follows its FLOPs too. A zoo bundle also trains on its
own task's user data (:func:`bundle_data`), not on the digits demo user.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mobile_lr.bundle import Manifest
from mobile_lr.device import DeviceProfile
from mobile_lr.sim.scenario import Scenario
from mobile_lr.validation import ValidationError

__all__ = ["PHONE_GFLOPS", "REFERENCE_STEP_FLOPS", "RULES", "STEP_OVERHEAD_S", "Data", "PhoneStep",
           "bundle_data", "phone_gflops", "phone_step", "zoo_model"]

# Effective FP32 training throughput of the built-in tiers (docs/DEVICES.md §3, [A]).
PHONE_GFLOPS = {"low-end": 3.0, "mid-range": 10.0, "flagship": 25.0}
# docs/DEVICES.md §3: a profile's compute.step_seconds is a LeNet-5 step (3 x 0.84 MFLOP per sample,
# batch 32) at the tier's throughput plus a fixed per-step overhead t0 of 3 ms.
STEP_OVERHEAD_S = 0.003
REFERENCE_STEP_FLOPS = 3 * 0.84e6 * 32
RULES = ("calibrated", "zoo-flops", "step-factor")

Data = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class PhoneStep:
    """The simulated phone's full-speed step and how it was arrived at (``rule``: :data:`RULES`)."""

    rule: str
    phone_step_s: float
    phone_gflops: float | None = None    # the phone's throughput (rules calibrated, zoo-flops)
    flops_per_step: int | None = None    # the zoo model's step at the session's batch (zoo-flops)
    batch_size: int | None = None        # that batch
    step_factor: float | None = None     # the scenario's factor, applied (step-factor) or not (None)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "phone_step_s": self.phone_step_s, "phone_gflops": self.phone_gflops,
                "flops_per_step": self.flops_per_step, "batch_size": self.batch_size,
                "step_factor": self.step_factor}

    def describe(self, profile: str) -> str:
        """One line for the CLI and the report's notes."""
        step = self.phone_step_s
        ms = (f"{step:.2f} s" if step >= 1 else f"{step * 1e3:.1f} ms") + f" per step on {profile}"
        if self.rule == "zoo-flops":
            return (f"step cost: the zoo model's own, {self.flops_per_step / 1e9:.3g} GFLOP per step at "
                    f"batch {self.batch_size} / {self.phone_gflops:g} GFLOPS + {STEP_OVERHEAD_S * 1e3:g} ms "
                    f"= {ms} (the scenario's step_factor does not apply)")
        if self.rule == "calibrated":
            return f"step cost: calibrated, {ms} (the scenario's step_factor does not apply)"
        return (f"step cost: the profile's reference step x the scenario's step_factor {self.step_factor:g} "
                f"= {ms}")


def phone_gflops(profile: DeviceProfile) -> float:
    """The phone's effective FP32 training throughput: a built-in tier's from docs/DEVICES.md §3;
    for any other profile the one its ``compute.step_seconds`` implies by the same relation
    (a LeNet-5 step plus ``t0``). Refused when that step is not longer than ``t0``."""
    if profile.name in PHONE_GFLOPS:
        return PHONE_GFLOPS[profile.name]
    compute = profile.step_seconds - STEP_OVERHEAD_S
    if compute <= 0:
        raise ValidationError("compute.step_seconds", f"{profile.step_seconds} s leaves no compute time "
                              f"after the {STEP_OVERHEAD_S * 1e3:g} ms step overhead: no throughput follows",
                              f"more than {STEP_OVERHEAD_S} s (a LeNet-5 step at batch 32)")
    return REFERENCE_STEP_FLOPS / compute / 1e9


def zoo_model(manifest: Manifest) -> tuple[str, dict[str, Any]] | None:
    """``(recipe, options)`` when the bundle is a zoo model (its manifest names a zoo recipe and
    records the options it was built with), else None."""
    from mobile_lr.zoo import ZOO

    model = manifest.model
    options = model.info.get("options")
    if model.recipe not in ZOO or options is None:
        return None
    if not isinstance(options, Mapping):
        raise ValidationError("model.options", f"a {type(options).__name__}", "an object of recipe options")
    return model.recipe, dict(options)


def phone_step(manifest: Manifest, profile: DeviceProfile, scenario: Scenario, *, batch_size: int,
               calibrated_s: float | None = None) -> PhoneStep:
    """The rule of the module docstring for this bundle, phone and scenario; ``calibrated_s`` is
    a calibration's phone step (:func:`mobile_lr.sim.simulate.calibrate`)."""
    if calibrated_s is not None:
        return PhoneStep("calibrated", calibrated_s, phone_gflops(profile))
    if zoo_model(manifest) is None:
        return PhoneStep("step-factor", profile.step_seconds * scenario.step_factor,
                         step_factor=scenario.step_factor)
    model = manifest.model
    flops, at_batch = model.flops_per_step, model.info.get("flops_batch")
    if not flops:  # None or 0: a zoo model always has matmuls or convolutions
        raise ValidationError("model.flops_per_step", f"{flops!r} on a zoo bundle",
                              "a positive FLOP count (export the bundle again with this mobile-lr)")
    if isinstance(at_batch, bool) or not isinstance(at_batch, int) or at_batch < 1:
        raise ValidationError("model.flops_batch", f"{at_batch!r} on a zoo bundle",
                              "the batch the FLOPs were counted at, a positive integer")
    gflops = phone_gflops(profile)
    step_flops = round(flops * batch_size / at_batch)  # matmuls and convolutions scale with the batch
    seconds = step_flops / (gflops * 1e9) + STEP_OVERHEAD_S
    return PhoneStep("zoo-flops", seconds, gflops, step_flops, batch_size)


def bundle_data(manifest: Manifest, n_train: int = 200) -> Data:
    """The user data a bundle fine-tunes on when none is given: a zoo model's own task's user
    (:func:`mobile_lr.zoo.catalog.task_for` with the manifest's options), else the demo's digits user."""
    from mobile_lr.datasets import user_split

    zoo = zoo_model(manifest)
    if zoo is None:
        model = manifest.model
        features = math.prod(model.input.shape[1:])
        if model.input.dtype != "float32" or features != 64 or model.labels.classes != 10:
            # (the digits user would be refused by the runtime with a shape error the caller
            # never asked for)
            raise ValidationError("data", f"the bundle's model {model.recipe!r} has no built-in user data "
                                          "(the digits recipes and the zoo have)",
                                  "--data FILE.npz with x_train, y_train, x_test, y_test")
        train, test = user_split(n_train=n_train)
    else:
        from mobile_lr.zoo.catalog import task_for

        train, test = task_for(*zoo).user(n_train=n_train)
    return (train.x, train.y), (test.x, test.y)
