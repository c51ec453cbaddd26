"""Phone model: battery, power, RC thermal model, Android thermal status, OS window.

A :class:`DeviceProfile` holds the numbers of one phone class (validated, frozen,
loaded from JSON, TOML, a dict or a built-in name). A :class:`DeviceState` is what
a training loop can read on a phone (battery level, charging, temperature,
thermal status, time). :func:`advance` moves a state forward over an interval of
constant load power *exactly*: the battery follows a CC-CV charge curve in closed
form and the skin temperature follows the first-order RC solution

    T(t) = T_amb + P·R·(1 - e^{-t/τ}) + (T0 - T_amb)·e^{-t/τ},   τ = R·C

on every piece of the interval where the heat input is constant (the pieces are
split at the battery events that change it). The formulas stand once in
:mod:`mobile_lr.physics`, which runs them on one phone (floats: this module's
:func:`advance`, :func:`cool_down_seconds`, :meth:`DeviceProfile.status_for`) and on
many (numpy arrays: the budget simulation of many phones). :class:`SimulatedDevice`
wraps :func:`advance` for the simulator and tests.

Model choices (see ``docs/DECISIONS.md``, "Device, planner and manager"):

* Training at thermal status ``s`` runs at throughput ``m = throughput[s]``: a
  step of ``w`` seconds of full-speed work takes ``w / m`` seconds and the load is
  ``P_idle + (P_train - P_idle)·m``. The dynamic part of the energy per step is
  unchanged by throttling (docs/DEVICES.md §5.3) and the idle part grows
  with the longer step, so a throttled step costs slightly more energy.
* The throttle of a step is fixed by the status at its start; the status is
  re-evaluated at the end of every piece of constant heat, with the AOSP
  hysteresis (up at ``T >= threshold``, down below ``threshold - hysteresis``).
  Temperature is monotone on a piece, so this is exact for that rule.
* Charging: charger output ``a = η·P_chg`` serves the load first; the battery
  accepts at most ``a`` below the CV knee and ``a·exp(-(level - knee)/k)`` above
  it (docs/DEVICES.md §2.4). Heat from charging is the conversion loss
  ``(1 - η)·P_chg`` while the battery is not full (an upper bound in the taper,
  which keeps the heat piecewise constant so the RC closed form stays exact) and
  ``(1 - η)/η·P_load`` once full, when the charger only carries the load.
* An empty battery switches the phone off (load 0) for the rest of the interval.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as the tomli package
    import tomli as tomllib

from mobile_lr import physics
from mobile_lr.physics import SCALAR, Phone
from mobile_lr.validation import (
    ValidationError,
    check_keys,
    check_number,
    get_bool,
    get_number,
    get_object,
    join,
    read_bytes,
    read_json,
)

__all__ = [
    "BUILTIN_PROFILES",
    "DeviceProfile",
    "DeviceState",
    "Ledger",
    "SimulatedDevice",
    "StepResult",
    "ThermalStatus",
    "advance",
    "cool_down_seconds",
    "load_profile",
    "parse_thermal_status",
    "temperature_from_headroom",
]

PROFILE_FORMAT = "mobile-lr.device/1"
BUILTIN_PROFILES = ("low-end", "mid-range", "flagship")


class ThermalStatus(IntEnum):
    """``PowerManager.THERMAL_STATUS_*`` with their AOSP values (docs/DEVICES.md §1.2)."""

    NONE = 0
    LIGHT = 1
    MODERATE = 2
    SEVERE = 3
    CRITICAL = 4
    EMERGENCY = 5
    SHUTDOWN = 6


STATUS_NAMES = tuple(s.name for s in ThermalStatus)
_STATUSES = tuple(ThermalStatus)   # by value, without the enum call


def parse_thermal_status(value: Any, field: str = "thermal_status") -> ThermalStatus:
    """A status from its name (``"MODERATE"``, case-insensitive) or its AOSP integer."""
    if isinstance(value, ThermalStatus):
        return value
    if isinstance(value, str) and value.upper() in STATUS_NAMES:
        return ThermalStatus[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
        return ThermalStatus(value)
    raise ValidationError(field, f"unknown thermal status {value!r}",
                          ", ".join(STATUS_NAMES) + " or 0..6")


# --------------------------------------------------------------------------- profile


@dataclass(frozen=True)
class DeviceProfile:
    """The numbers of one phone class. All powers in W, energies in J, times in s.

    ``thresholds_c[i]`` is the skin temperature at which status ``i + 1`` (LIGHT ..
    SHUTDOWN) begins; ``throughput[s]`` the fraction of full training speed at
    status ``s`` (NONE .. SHUTDOWN, non-increasing, in (0, 1]).
    """

    name: str
    battery_wh: float
    idle_power_w: float
    train_power_w: float
    charge_power_w: float
    charge_efficiency: float
    cv_knee: float
    cv_taper: float
    thermal_resistance_k_per_w: float
    heat_capacity_j_per_k: float
    ambient_c: float
    thresholds_c: tuple[float, ...]
    hysteresis_c: float
    throughput: tuple[float, ...]
    step_seconds: float
    window_s: float
    window_charging_s: float
    requires_charging: bool = False
    battery_not_low: bool = True
    device_idle: bool = False
    low_battery_level: float = 0.15
    state_of_health: float = 1.0
    description: str = ""
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    # ---- derived quantities
    @property
    def battery_j(self) -> float:
        """Full usable energy: rated Wh × state of health × 3600."""
        return self.battery_wh * self.state_of_health * 3600.0

    @property
    def tau_s(self) -> float:
        return self.thermal_resistance_k_per_w * self.heat_capacity_j_per_k

    @property
    def step_joules(self) -> float:
        """Energy of one full-speed step at the profile's training power."""
        return self.train_power_w * self.step_seconds

    def threshold(self, status: int) -> float:
        """Temperature at which ``status`` begins; -inf for NONE, +inf beyond SHUTDOWN."""
        if status <= 0:
            return -math.inf
        if status > 6:
            return math.inf
        return self.thresholds_c[status - 1]

    def window_for(self, charging: bool) -> float:
        """OS background window: a Worker's 10 min, 30 min per job on the charger (§1.4-1.5)."""
        return self.window_charging_s if charging else self.window_s

    def status_for(self, temperature_c: float, previous: int = 0) -> ThermalStatus:
        """Status after reaching ``temperature_c`` from ``previous``, with hysteresis.

        The highest status ``k`` with ``T >= threshold(k)`` for ``k`` above ``previous``
        and ``T >= threshold(k) - hysteresis`` for ``k <= previous``.
        """
        return ThermalStatus(physics.status_for(SCALAR, self.physics, temperature_c,
                                                int(previous)))

    def load_power(self, throttle: Any, train_power_w: float | None = None) -> Any:
        """Whole-device power while training at throughput ``throttle`` (a float or an array),
        at full speed ``train_power_w`` (default: the profile's training power)."""
        full = self.train_power_w if train_power_w is None else train_power_w
        return self.idle_power_w + (full - self.idle_power_w) * throttle

    @cached_property
    def physics(self) -> physics.Physics:
        """The numbers :mod:`mobile_lr.physics` uses, derived once."""
        return physics.Physics.of(self)

    # ---- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "name": self.name,
            "description": self.description,
            "battery": {"capacity_wh": self.battery_wh, "state_of_health": self.state_of_health},
            "power": {"idle_w": self.idle_power_w, "train_w": self.train_power_w},
            "charging": {"power_w": self.charge_power_w, "efficiency": self.charge_efficiency,
                         "cv_knee": self.cv_knee, "cv_taper": self.cv_taper},
            "thermal": {
                "resistance_k_per_w": self.thermal_resistance_k_per_w,
                "capacity_j_per_k": self.heat_capacity_j_per_k,
                "ambient_c": self.ambient_c,
                "hysteresis_c": self.hysteresis_c,
                "thresholds_c": dict(zip(STATUS_NAMES[1:], self.thresholds_c, strict=True)),
                "throughput": dict(zip(STATUS_NAMES, self.throughput, strict=True)),
            },
            "compute": {"step_seconds": self.step_seconds},
            "os": {"window_s": self.window_s, "window_charging_s": self.window_charging_s,
                   "requires_charging": self.requires_charging,
                   "battery_not_low": self.battery_not_low, "device_idle": self.device_idle,
                   "low_battery_level": self.low_battery_level},
            "sources": dict(self.sources),
        }

    @classmethod
    def from_dict(cls, obj: Any, path: str = "") -> DeviceProfile:
        return _parse_profile(obj, path)


_TOP_KEYS = ("format", "name", "description", "battery", "power", "charging", "thermal",
             "compute", "os", "sources")


def _parse_profile(obj: Any, path: str) -> DeviceProfile:
    obj = get_object(obj, path)
    check_keys(obj, path, _TOP_KEYS, required=("name", "battery", "power", "charging",
                                               "thermal", "compute"))
    fmt = obj.get("format", PROFILE_FORMAT)
    if fmt != PROFILE_FORMAT:
        raise ValidationError(join(path, "format"), f"unknown format {fmt!r}", PROFILE_FORMAT)
    name = obj["name"]
    if not isinstance(name, str) or not name:
        raise ValidationError(join(path, "name"), f"expected a non-empty string, got {name!r}")
    description = obj.get("description", "")
    if not isinstance(description, str):
        raise ValidationError(join(path, "description"), "expected a string")

    p = join(path, "battery")
    bat = get_object(obj["battery"], p)
    check_keys(bat, p, ("capacity_wh", "capacity_mah", "nominal_voltage", "state_of_health"))
    if "capacity_wh" in bat:
        if "capacity_mah" in bat or "nominal_voltage" in bat:
            raise ValidationError(join(p, "capacity_wh"),
                                  "give either capacity_wh or capacity_mah + nominal_voltage")
        battery_wh = get_number(bat, "capacity_wh", p, lo=0.0, lo_open=True)
    elif "capacity_mah" in bat:
        mah = get_number(bat, "capacity_mah", p, lo=0.0, lo_open=True)
        volts = get_number(bat, "nominal_voltage", p, lo=0.0, lo_open=True)
        battery_wh = mah * volts / 1000.0
    else:
        raise ValidationError(join(p, "capacity_wh"), "missing battery capacity",
                              "capacity_wh, or capacity_mah with nominal_voltage")
    soh = get_number(bat, "state_of_health", p, default=1.0, lo=0.0, hi=1.0, lo_open=True)

    p = join(path, "power")
    pw = get_object(obj["power"], p)
    check_keys(pw, p, ("idle_w", "train_w"), required=("idle_w", "train_w"))
    idle = get_number(pw, "idle_w", p, lo=0.0)
    train = get_number(pw, "train_w", p, lo=0.0, lo_open=True)
    if train < idle:
        raise ValidationError(join(p, "train_w"), f"{train} is below idle_w {idle}",
                              "a training power >= the idle power")

    p = join(path, "charging")
    ch = get_object(obj["charging"], p)
    check_keys(ch, p, ("power_w", "efficiency", "cv_knee", "cv_taper"), required=("power_w",))
    charge_w = get_number(ch, "power_w", p, lo=0.0)
    eff = get_number(ch, "efficiency", p, default=0.88, lo=0.0, hi=1.0, lo_open=True)
    knee = get_number(ch, "cv_knee", p, default=0.8, lo=0.0, hi=1.0)
    taper = get_number(ch, "cv_taper", p, default=0.07, lo=0.0, lo_open=True)

    p = join(path, "thermal")
    th = get_object(obj["thermal"], p)
    check_keys(th, p, ("resistance_k_per_w", "capacity_j_per_k", "ambient_c", "thresholds_c",
                       "hysteresis_c", "throughput"),
               required=("resistance_k_per_w", "capacity_j_per_k", "ambient_c"))
    r = get_number(th, "resistance_k_per_w", p, lo=0.0, lo_open=True)
    c = get_number(th, "capacity_j_per_k", p, lo=0.0, lo_open=True)
    amb = get_number(th, "ambient_c", p, lo=-50.0, hi=80.0)
    hyst = get_number(th, "hysteresis_c", p, default=1.9, lo=0.0)
    thresholds = _parse_status_table(th.get("thresholds_c", _DEFAULT_THRESHOLDS),
                                     join(p, "thresholds_c"), STATUS_NAMES[1:])
    for k in range(1, len(thresholds)):
        if thresholds[k] <= thresholds[k - 1]:
            raise ValidationError(join(join(p, "thresholds_c"), STATUS_NAMES[k + 1]),
                                  "thresholds must increase from LIGHT to SHUTDOWN",
                                  f"a temperature above {thresholds[k - 1]}")
    throughput = _parse_status_table(th.get("throughput", _DEFAULT_THROUGHPUT),
                                     join(p, "throughput"), STATUS_NAMES, lo=0.0, hi=1.0,
                                     lo_open=True)
    for k in range(1, len(throughput)):
        if throughput[k] > throughput[k - 1]:
            raise ValidationError(join(join(p, "throughput"), STATUS_NAMES[k]),
                                  "throughput must not rise with the thermal status",
                                  f"a factor in (0, {throughput[k - 1]}]")

    p = join(path, "compute")
    cp = get_object(obj["compute"], p)
    check_keys(cp, p, ("step_seconds",), required=("step_seconds",))
    step_s = get_number(cp, "step_seconds", p, lo=0.0, lo_open=True)

    p = join(path, "os")
    osd = get_object(obj.get("os", {}), p)
    check_keys(osd, p, ("window_s", "window_charging_s", "requires_charging", "battery_not_low",
                        "device_idle", "low_battery_level"))
    window = get_number(osd, "window_s", p, default=600.0, lo=0.0, lo_open=True)
    window_ch = get_number(osd, "window_charging_s", p, default=1800.0, lo=0.0, lo_open=True)
    low = get_number(osd, "low_battery_level", p, default=0.15, lo=0.0, hi=1.0, hi_open=True)

    sources = obj.get("sources", {})
    sp = join(path, "sources")
    get_object(sources, sp)
    for key, val in sources.items():
        if not isinstance(val, str):
            raise ValidationError(join(sp, key), "expected a citation string")

    return DeviceProfile(
        name=name, description=description, battery_wh=battery_wh, state_of_health=soh,
        idle_power_w=idle, train_power_w=train, charge_power_w=charge_w, charge_efficiency=eff,
        cv_knee=knee, cv_taper=taper, thermal_resistance_k_per_w=r, heat_capacity_j_per_k=c,
        ambient_c=amb, thresholds_c=thresholds, hysteresis_c=hyst, throughput=throughput,
        step_seconds=step_s, window_s=window, window_charging_s=window_ch,
        requires_charging=get_bool(osd, "requires_charging", p, default=False),
        battery_not_low=get_bool(osd, "battery_not_low", p, default=True),
        device_idle=get_bool(osd, "device_idle", p, default=False),
        low_battery_level=low, sources=dict(sources),
    )


# Pixel-style VIRTUAL-SKIN thresholds (docs/DEVICES.md §2.5) and status multipliers (§5.3 a).
_DEFAULT_THRESHOLDS = {"LIGHT": 39.0, "MODERATE": 43.0, "SEVERE": 45.0, "CRITICAL": 47.0,
                       "EMERGENCY": 52.0, "SHUTDOWN": 55.0}
_DEFAULT_THROUGHPUT = {"NONE": 1.0, "LIGHT": 0.9, "MODERATE": 0.75, "SEVERE": 0.55,
                       "CRITICAL": 0.35, "EMERGENCY": 0.35, "SHUTDOWN": 0.35}


def _parse_status_table(value: Any, path: str, names: tuple[str, ...], **bounds: Any
                        ) -> tuple[float, ...]:
    """An object keyed by status name, or a list in status order."""
    if isinstance(value, list):
        if len(value) != len(names):
            raise ValidationError(path, f"expected {len(names)} values, got {len(value)}",
                                  ", ".join(names))
        return tuple(check_number(v, join(path, i), **bounds) for i, v in enumerate(value))
    obj = get_object(value, path)
    check_keys(obj, path, names, required=names)
    return tuple(get_number(obj, n, path, **bounds) for n in names)


def load_profile(source: str | Path | Mapping[str, Any] | DeviceProfile) -> DeviceProfile:
    """A profile from a built-in name, a ``.json``/``.toml`` file, or a dict."""
    if isinstance(source, DeviceProfile):
        return source
    if isinstance(source, Mapping):
        return _parse_profile(source, "")
    text_name = str(source)
    if isinstance(source, str) and source in BUILTIN_PROFILES:
        data = resources.files("mobile_lr").joinpath("data", "profiles", f"{source}.json")
        return _parse_profile(json.loads(data.read_text(encoding="utf-8")), "")
    path = Path(source)
    if not path.suffix and not path.exists():
        raise ValidationError("profile", f"unknown profile {text_name!r}",
                              ", ".join(BUILTIN_PROFILES) + ", or a .json/.toml file")
    if path.suffix.lower() != ".toml":
        return _parse_profile(read_json(path, "profile"), "")
    data = read_bytes(path, "profile")
    try:
        obj = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as err:
        raise ValidationError("profile", f"{path.name} is not valid TOML: {err}"[:300]) from None
    return _parse_profile(obj, "")


# --------------------------------------------------------------------------- state


def _in(x: Any, lo: float, hi: float) -> bool:
    """A finite real (not a bool) in [lo, hi]; NaN fails the comparison."""
    return (type(x) is float or (type(x) is int)) and lo <= x <= hi and x != math.inf \
        and x != -math.inf


@dataclass(frozen=True)
class DeviceState:
    """What a training loop reads on the phone.

    ``ambient_c`` is None when unknown (a phone has no ambient sensor): models then
    use the profile's ambient temperature.
    """

    level: float
    charging: bool
    temperature_c: float
    thermal_status: ThermalStatus
    time_s: float = 0.0
    ambient_c: float | None = None

    def __post_init__(self) -> None:
        # The planner builds thousands of states: test the common case cheaply and let
        # check_number word the error only when something is wrong.
        if not (_in(self.level, 0.0, 1.0) and _in(self.temperature_c, -100.0, 500.0)
                and _in(self.time_s, -math.inf, math.inf)):
            check_number(self.level, "level", lo=0.0, hi=1.0)
            check_number(self.temperature_c, "temperature_c", lo=-100.0, hi=500.0)
            check_number(self.time_s, "time_s")
        if not isinstance(self.charging, bool):
            raise ValidationError("charging", f"expected true or false, got {self.charging!r}")
        if type(self.thermal_status) is not ThermalStatus:
            object.__setattr__(self, "thermal_status", parse_thermal_status(self.thermal_status))
        if self.ambient_c is not None and not _in(self.ambient_c, -50.0, 80.0):
            check_number(self.ambient_c, "ambient_c", lo=-50.0, hi=80.0)

    @classmethod
    def initial(cls, profile: DeviceProfile, level: float, charging: bool = False,
                temperature_c: float | None = None, time_s: float = 0.0,
                ambient_c: float | None = None) -> DeviceState:
        """A state whose status follows from the temperature (default: ambient)."""
        temp = (ambient_c if ambient_c is not None else profile.ambient_c) \
            if temperature_c is None else temperature_c
        return cls(level=level, charging=charging, temperature_c=temp,
                   thermal_status=profile.status_for(temp), time_s=time_s, ambient_c=ambient_c)

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "charging": self.charging,
                "temperature_c": self.temperature_c, "thermal_status": self.thermal_status.name,
                "time_s": self.time_s, "ambient_c": self.ambient_c}

    @classmethod
    def from_dict(cls, obj: Any, path: str = "state") -> DeviceState:
        obj = get_object(obj, path)
        check_keys(obj, path, ("level", "charging", "temperature_c", "thermal_status", "time_s",
                               "ambient_c"),
                   required=("level", "charging", "temperature_c", "thermal_status"))
        amb = obj.get("ambient_c")
        return cls(level=get_number(obj, "level", path, lo=0.0, hi=1.0),
                   charging=get_bool(obj, "charging", path),
                   temperature_c=get_number(obj, "temperature_c", path, lo=-100.0, hi=500.0),
                   thermal_status=parse_thermal_status(obj["thermal_status"],
                                                       join(path, "thermal_status")),
                   time_s=get_number(obj, "time_s", path, default=0.0),
                   ambient_c=None if amb is None else get_number(obj, "ambient_c", path,
                                                                 lo=-50.0, hi=80.0))


def temperature_from_headroom(profile: DeviceProfile, headroom: float) -> float:
    """Skin temperature from ``PowerManager.getThermalHeadroom`` (docs/DEVICES.md §5.2).

    Headroom is 1.0 at the SEVERE threshold and linear below it; the reference's
    emulation puts 0.0 at ``T_SEVERE - 15 K``. Lets a phone without a skin sensor
    feed the planner a temperature.
    """
    severe = profile.threshold(ThermalStatus.SEVERE)
    return severe - 15.0 + 15.0 * headroom


# --------------------------------------------------------------------------- exact advance


@dataclass(frozen=True)
class Ledger:
    """Energy flows over an interval, in J.

    ``battery_j == efficiency · charger_in_j - consumed_j`` holds exactly in the
    model (up to rounding): the battery receives what the charger delivers minus
    what the phone consumed.
    """

    consumed_j: float = 0.0
    charger_in_j: float = 0.0
    battery_j: float = 0.0

    def __add__(self, other: Ledger) -> Ledger:
        return Ledger(self.consumed_j + other.consumed_j, self.charger_in_j + other.charger_in_j,
                      self.battery_j + other.battery_j)


def advance(profile: DeviceProfile, state: DeviceState, load_w: float, dt: float,
            ambient_c: float | None = None) -> tuple[DeviceState, Ledger]:
    """State after ``dt`` seconds at constant load ``load_w`` (plus charger heat), exactly
    (:func:`mobile_lr.physics.advance` on one phone).

    ``ambient_c`` overrides the state's ambient (itself defaulting to the profile's).
    Returns the new state and the energy ledger of the interval.
    """
    if dt < 0.0 or not math.isfinite(dt):
        raise ValidationError("dt", f"{dt!r} is not a finite duration >= 0")
    if dt == 0.0:
        return state, Ledger()
    amb = ambient_c if ambient_c is not None else (
        state.ambient_c if state.ambient_c is not None else profile.ambient_c)
    phone = Phone(state.level, state.charging, state.temperature_c, int(state.thermal_status),
                  amb, profile.battery_j)
    level, temp, status, consumed, charger = physics.advance(SCALAR, profile.physics, phone,
                                                             load_w, dt)
    new_state = DeviceState(level=level, charging=state.charging, temperature_c=temp,
                            thermal_status=_STATUSES[status], time_s=state.time_s + dt,
                            ambient_c=state.ambient_c)
    return new_state, Ledger(consumed, charger, (level - state.level) * profile.battery_j)


def cool_down_seconds(profile: DeviceProfile, state: DeviceState, target_c: float,
                      heat_w: float | None = None) -> float:
    """Seconds of rest until the temperature falls to ``target_c`` (inf if it never does).

    ``heat_w`` defaults to the idle power plus the charger's loss when plugged in.
    """
    amb = state.ambient_c if state.ambient_c is not None else profile.ambient_c
    if heat_w is None:
        heat_w = physics.rest_heat(SCALAR, profile.physics, state.charging)
    return physics.cool_down(SCALAR, profile.physics, state.temperature_c, heat_w, amb, target_c)


# --------------------------------------------------------------------------- simulator


@dataclass(frozen=True)
class StepResult:
    """One simulated training step: wall seconds, energy drawn (J), throughput used."""

    seconds: float
    energy_j: float
    throttle: float
    status_at_start: ThermalStatus


class SimulatedDevice:
    """A phone whose clock, battery and temperature are simulated exactly.

    ``work_s`` of a step is its duration at full speed; ``train_power_w`` the
    whole-device power at full speed (defaults: the profile's). Both can be set to
    other values than the profile's, which is how tests make a profile wrong.
    ``background_w`` is drawn on top of every load, training or idle: the phone in
    use (screen, radio, navigation) while training runs as a foreground service.
    The planner does not know it; the manager learns it from the observed energy.
    """

    def __init__(self, profile: DeviceProfile, state: DeviceState | None = None, *,
                 ambient_c: float | None = None, train_power_w: float | None = None,
                 step_seconds: float | None = None, background_w: float = 0.0):
        self.profile = profile
        self.ambient_c = profile.ambient_c if ambient_c is None else ambient_c
        self.state = state if state is not None else DeviceState.initial(
            profile, 1.0, ambient_c=self.ambient_c)
        self.state = replace(self.state, ambient_c=self.ambient_c)
        self.train_power_w = profile.train_power_w if train_power_w is None else train_power_w
        self.step_seconds = profile.step_seconds if step_seconds is None else step_seconds
        self.background_w = check_number(background_w, "background_w", lo=0.0)
        self.ledger = Ledger()

    def _run(self, load_w: float, dt: float) -> Ledger:
        self.state, led = advance(self.profile, self.state, load_w + self.background_w, dt,
                                  self.ambient_c)
        self.ledger = self.ledger + led
        return led

    def train_step(self, work_s: float | None = None, train_power_w: float | None = None
                   ) -> StepResult:
        """Run one training step; throttled by the status at its start."""
        work = self.step_seconds if work_s is None else work_s
        p_full = self.train_power_w if train_power_w is None else train_power_w
        status = self.state.thermal_status
        m = self.profile.throughput[status]
        load = self.profile.load_power(m, p_full)
        dt = work / m
        led = self._run(load, dt)
        return StepResult(seconds=dt, energy_j=led.consumed_j, throttle=m,
                          status_at_start=status)

    def idle(self, seconds: float) -> Ledger:
        """Rest (screen off, awake) for ``seconds``; charges if plugged in."""
        return self._run(self.profile.idle_power_w, seconds)

    def charge(self, seconds: float) -> Ledger:
        """Plug in and rest for ``seconds``."""
        self.set_charging(True)
        return self.idle(seconds)

    def set_charging(self, charging: bool) -> None:
        self.state = replace(self.state, charging=charging)

    def set_ambient(self, ambient_c: float) -> None:
        self.ambient_c = ambient_c
        self.state = replace(self.state, ambient_c=ambient_c)
