"""The simulated fleet: who the phones are, what their day looks like, and the run's settings.

Every phone is drawn from the fleet seed and its client id alone, so the
ServerApp, each ClientApp (on whichever Ray actor or SuperNode runs it) and a
test all draw the same phone without passing it around:

* a profile (``low-end``/``mid-range``/``flagship`` with the shares of
  ``profile_mix``), its step cost scaled by ``step_factor`` (see below);
* a user policy: battery floor drawn from ``floors``, thermal limit MODERATE,
  and "only on the charger" for a ``charging_only_share`` of the users (the
  production rule of Google's keyboard FL, docs/DEVICES.md §4.5);
* a day trace: the starting battery in the per-class ranges EAFL uses
  (docs/DEVICES.md §4.3: low 30-90 %, mid 20-60 %, high 10-50 %), an ambient
  temperature (N(25, 4) °C, clipped to 15..38), a skin temperature a few
  degrees above it (recent use), an evening/overnight charge (plug at
  N(22.5, 1.5) h, 6-9 h long) and, for 30 % of users, a daytime top-up of
  30-90 min, plus the user's own use while unplugged at EAFL's 5 %/h;
* a handwriting: the user's digits (:func:`mobile_lr.datasets.user_split` with
  the user's seed), so the fleet is non-IID.

``step_factor``: the learning runs on the real digits MLP, whose step costs
milliseconds; the simulated phone charges each local step ``step_factor`` times
the profile's reference step (LeNet-5, batch 32). The default 500 makes a step
cost what MobileNetV2 at 224 px, batch 32 costs on that phone (docs/DEVICES.md §3:
180 ms/sample on a mid-range phone), the workload FedScale and EAFL simulate, so
budgets, heat and OS windows bind as they would in a production round. The
same convention as the simulator's scenarios (``workload.step_factor``).

Time is seconds since midnight of the first day; round ``r`` (from 1) starts at
``start_hour·3600 + (r-1)·round_interval_s``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from mobile_lr.budget import MAX_SPAN_S, Policy
from mobile_lr.device import BUILTIN_PROFILES, DeviceProfile, DeviceState, advance, load_profile
from mobile_lr.sim.scenario import Event
from mobile_lr.validation import MAX_SEED, ValidationError, check_int, check_number

__all__ = [
    "LOCAL_SCHEDULES",
    "STRATEGIES",
    "FleetConfig",
    "Phone",
    "draw_phone",
    "eval_user_seeds",
    "phone_between",
    "profile_for",
]

STRATEGIES = ("battery-aware", "fedavg-steps", "fedavg-fixed")

#: The manager-driven phones' local schedule (``fedavg-fixed`` always runs a constant LR):
#: ``wsd-peak`` the project's recommended one for a battery-decided budget (warm-up, hold,
#: cool-down over the last 20 % of the budget in force, peak-LR rule); ``wsd`` the same without
#: the peak-LR rule; ``cosine`` a per-round cosine to 0 (its mean LR is half its peak).
#: bench/fleet_train compares them (docs/FEDERATED.md).
LOCAL_SCHEDULES = ("wsd-peak", "wsd", "cosine")

# EAFL's initial charge ranges per device class (docs/DEVICES.md §4.3)
_LEVEL_RANGE = {"low-end": (0.30, 0.90), "mid-range": (0.20, 0.60), "flagship": (0.10, 0.50)}
_USAGE_PER_HOUR = 0.05  # EAFL usage_param: 5 % of the battery per hour while unplugged and in use


def _parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    out = []
    for part in str(text).split(","):
        name, _, share = part.strip().partition(":")
        if name not in BUILTIN_PROFILES:
            raise ValidationError("profile-mix", f"unknown profile {name!r}", ", ".join(BUILTIN_PROFILES))
        try:
            w = float(share)
        except ValueError:
            raise ValidationError("profile-mix", f"share {share!r} of {name} is not a number",
                                  "name:share,... e.g. low-end:0.4,mid-range:0.4,flagship:0.2") from None
        if not w >= 0.0:
            raise ValidationError("profile-mix", f"share of {name} must be >= 0")
        out.append((name, w))
    if not out or sum(w for _, w in out) <= 0.0:
        raise ValidationError("profile-mix", "no positive share")
    return tuple(out)


def _parse_floors(text: str) -> tuple[float, ...]:
    try:
        floors = tuple(float(f) for f in str(text).split(","))
    except ValueError:
        raise ValidationError("floors", f"{text!r} is not a list of numbers", "e.g. 0.2,0.3") from None
    for f in floors:
        if not 0.0 <= f < 1.0:
            raise ValidationError("floors", f"{f} is out of range", "fractions in [0, 1)")
    return floors


@dataclass(frozen=True)
class FleetConfig:
    """The run's settings. Flower passes them as a flat run config with hyphenated keys
    (``num-rounds``, ``step-factor``, ...): :meth:`from_run_config` / :meth:`to_run_config`."""

    clients: int = 20
    num_rounds: int = 3
    fraction: float = 0.25
    strategy: str = "battery-aware"
    seed: int = 0
    local_epochs: int = 7          # fedavg-fixed: E passes over the local data
    batch_size: int = 32
    n_train: int = 200             # samples per user (the digits pool allows < 500)
    lr: float = 0.1                # local SGD learning rate (peak of the planned clients' schedule)
    local_schedule: str = "wsd-peak"  # manager-driven phones: one of LOCAL_SCHEDULES
    step_factor: float = 500.0
    round_interval_s: float = 1800.0
    round_deadline_s: float = 900.0
    start_hour: float = 18.0
    profile_mix: str = "low-end:0.4,mid-range:0.4,flagship:0.2"
    floors: str = "0.2,0.3"
    charging_only_share: float = 0.3
    overcommit: float = 3.0        # battery-aware: candidates queried per slot
    kill_prob: float = 0.05        # chance a training phone is killed mid-round (app killed, crash)
    eval_users: int = 8            # held-out users for the global accuracy
    runtime: str = "ort"
    bundle_dir: str = ""
    bundle_sha256: str = ""
    out_dir: str = ""

    # Documented bounds (docs/FEDERATED.md), checked once here for the CLI and Flower's run config
    # alike: 10^9 clients or an LR of 1e308 was accepted; NaN passed the ``< 1`` of overcommit.
    INTS: ClassVar[dict[str, tuple[int, int]]] = {
        "clients": (1, 100_000), "num_rounds": (1, 10_000), "local_epochs": (1, 1000),
        "batch_size": (1, 4096), "n_train": (1, 499), "eval_users": (1, 1000), "seed": (0, MAX_SEED)}
    NUMBERS: ClassVar[dict[str, tuple[float, float]]] = {
        "lr": (1e-12, 100.0), "step_factor": (1e-6, 1e6), "round_interval_s": (1.0, 86400.0),
        "round_deadline_s": (1.0, 86400.0), "start_hour": (0.0, 24.0), "charging_only_share": (0.0, 1.0),
        "kill_prob": (0.0, 1.0), "overcommit": (1.0, 100.0)}

    def __post_init__(self) -> None:
        def bad(field: str, problem: str, allowed: str | None = None) -> None:
            raise ValidationError(field.replace("_", "-"), problem, allowed)

        for name, (lo, hi) in self.INTS.items():
            check_int(getattr(self, name), name.replace("_", "-"), lo=lo, hi=hi)
            if type(getattr(self, name)) is not int:   # (check_int reads 3.0 as 3; range() would not)
                bad(name, f"expected an integer, got {getattr(self, name)!r}", "an integer")
        for name, (flo, fhi) in self.NUMBERS.items():
            check_number(getattr(self, name), name.replace("_", "-"), lo=flo, hi=fhi)
        span = self.round_start_s(self.num_rounds) + self.round_deadline_s
        if span > MAX_SPAN_S:   # every phone's policy and scenario end within a year of device time
            bad("num_rounds", f"{self.num_rounds} rounds every {self.round_interval_s:g} s end at device "
                              f"time {span:.3g} s, beyond a year",
                f"rounds x interval within {MAX_SPAN_S:g} s")
        if not 0.0 < self.fraction <= 1.0:
            bad("fraction", f"{self.fraction} is out of range", "a number in (0, 1]")
        if self.strategy not in STRATEGIES:
            bad("strategy", f"unknown value {self.strategy!r}", ", ".join(STRATEGIES))
        if self.local_schedule not in LOCAL_SCHEDULES:
            bad("local_schedule", f"unknown value {self.local_schedule!r}", ", ".join(LOCAL_SCHEDULES))
        if self.runtime not in ("ort", "torch"):
            bad("runtime", f"unknown value {self.runtime!r}", "ort, torch")
        _parse_mix(self.profile_mix)
        _parse_floors(self.floors)

    # ---- derived
    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.batch_size)

    @property
    def local_steps(self) -> int:
        """Nominal local steps of a round: what ``local_epochs`` epochs take, for every strategy."""
        return self.local_epochs * self.steps_per_epoch

    @property
    def per_round(self) -> int:
        """Clients asked to train per round."""
        return max(1, round(self.fraction * self.clients))

    def round_start_s(self, server_round: int) -> float:
        return self.start_hour * 3600.0 + (server_round - 1) * self.round_interval_s

    # ---- Flower run config
    def to_run_config(self) -> dict[str, Any]:
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_run_config(cls, config: Mapping[str, Any]) -> FleetConfig:
        """From a Flower run config (hyphenated keys; unknown keys are refused)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kw: dict[str, Any] = {}
        for key, value in config.items():
            name = str(key).replace("-", "_")
            if name not in fields:
                raise ValidationError(str(key), "unknown run-config key",
                                      ", ".join(sorted(k.replace("_", "-") for k in fields)))
            default = fields[name].default
            if isinstance(default, bool):
                kw[name] = bool(value)
            elif isinstance(default, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                kw[name] = value
            elif isinstance(default, float):
                kw[name] = float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
                    else value
            else:
                kw[name] = str(value)
        return cls(**kw)


@lru_cache(maxsize=16)
def _scaled_profile(name: str, step_factor: float) -> DeviceProfile:
    base = load_profile(name)
    return dataclasses.replace(base, step_seconds=base.step_seconds * step_factor)


def profile_for(name: str, step_factor: float) -> DeviceProfile:
    """A built-in profile whose reference step costs ``step_factor`` times the built-in one."""
    return _scaled_profile(name, float(step_factor))


@dataclass(frozen=True)
class Phone:
    """One simulated phone and its user, drawn from (fleet seed, client id)."""

    client_id: int
    profile: DeviceProfile
    policy: Policy
    user_seed: int
    ambient_c: float
    start: DeviceState
    charge_intervals: tuple[tuple[float, float], ...]  # [plug, unplug) in seconds
    usage_w: float

    def charging_at(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.charge_intervals)

    def events_between(self, t0: float, t1: float) -> list[Event]:
        """Charger events in ``(t0, t1]``, as the simulator's scenario events."""
        out = []
        for a, b in self.charge_intervals:
            if t0 < a <= t1:
                out.append(Event(a, "plug"))
            if t0 < b <= t1:
                out.append(Event(b, "unplug"))
        return sorted(out, key=lambda e: e.at_s)


def draw_phone(cfg: FleetConfig, client_id: int) -> Phone:
    """The phone of client ``client_id`` (0-based) in the fleet of ``cfg.seed``."""
    rng = np.random.default_rng([cfg.seed, client_id, 9])
    mix = _parse_mix(cfg.profile_mix)
    shares = np.array([w for _, w in mix])
    name = mix[int(rng.choice(len(mix), p=shares / shares.sum()))][0]
    profile = profile_for(name, cfg.step_factor)
    floors = _parse_floors(cfg.floors)
    floor = floors[int(rng.integers(len(floors)))]
    charging_only = bool(rng.random() < cfg.charging_only_share)
    policy = Policy(battery_floor=floor, max_thermal="MODERATE", charging_only=charging_only)
    ambient = float(np.clip(rng.normal(25.0, 4.0), 15.0, 38.0))
    lo, hi = _LEVEL_RANGE[name]
    level = float(rng.uniform(lo, hi))
    temp = ambient + float(rng.uniform(0.0, 6.0))
    plug = float(np.clip(rng.normal(22.5, 1.5), 19.0, 26.0)) * 3600.0
    intervals = [(plug, plug + float(rng.uniform(6.0, 9.0)) * 3600.0)]
    if rng.random() < 0.3:
        a = (cfg.start_hour + float(rng.uniform(-1.0, 4.0))) * 3600.0
        intervals.append((a, a + float(rng.uniform(0.5, 1.5)) * 3600.0))
    intervals.sort()
    t0 = cfg.start_hour * 3600.0
    charging = any(a <= t0 < b for a, b in intervals)
    start = DeviceState.initial(profile, level, charging=charging, temperature_c=temp, time_s=t0,
                                ambient_c=ambient)
    usage = max(0.0, _USAGE_PER_HOUR * profile.battery_wh - profile.idle_power_w)
    user_seed = int(np.random.default_rng([cfg.seed, client_id, 10]).integers(1, 2**31 - 1))
    return Phone(client_id, profile, policy, user_seed, ambient, start, tuple(intervals), usage)


def eval_user_seeds(cfg: FleetConfig) -> list[int]:
    """Users outside the fleet whose held-out digits measure the global model."""
    rng = np.random.default_rng([cfg.seed, 11])
    return [int(s) for s in rng.integers(2**31, 2**32 - 1, size=cfg.eval_users)]


def phone_between(phone: Phone, state: DeviceState, t1: float) -> DeviceState:
    """The phone's state at ``t1`` after living its day since ``state`` (not training):
    idle on the charger, or idle plus the user's own use off it, exactly, split at
    every plug and unplug."""
    t = state.time_s
    if t1 <= t:
        return state
    cuts = sorted({t1, *(x for iv in phone.charge_intervals for x in iv if t < x < t1)})
    p = phone.profile
    for c in cuts:
        charging = phone.charging_at(t)
        st = dataclasses.replace(state, charging=charging)
        load = p.idle_power_w + (0.0 if charging else phone.usage_w)
        state, _ = advance(p, st, load, c - t, phone.ambient_c)
        t = c
    return dataclasses.replace(state, charging=phone.charging_at(t1), time_s=t1)
