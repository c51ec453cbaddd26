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

import dataclasses
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
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
    get_number,
    get_object,
    join,
    read_bytes,
    read_json,
)
from mobile_lr.validation.schema import NAME_PATTERN, Record, boolean, custom, number, text

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
#: Physical bounds of a profile (a phone is 10-30 Wh, a tablet 40): beyond them the physics'
#: closed forms divide by an infinite battery or a zero time constant (found by a fuzz).
MAX_BATTERY_WH = 1000.0
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

# Pixel-style VIRTUAL-SKIN thresholds (docs/DEVICES.md §2.5) and status multipliers (§5.3 a).
_DEFAULT_THRESHOLDS = (39.0, 43.0, 45.0, 47.0, 52.0, 55.0)         # LIGHT .. SHUTDOWN
_DEFAULT_THROUGHPUT = (1.0, 0.9, 0.75, 0.55, 0.35, 0.35, 0.35)    # NONE .. SHUTDOWN


def _status_table(names: tuple[str, ...], **bounds: Any) -> Any:
    """A value per thermal status: an object keyed by status name, or a list in status order
    (read as a tuple, written as the object)."""

    def parse(value: Any, path: str) -> tuple[float, ...]:
        if isinstance(value, list | tuple):
            if len(value) != len(names):
                raise ValidationError(path, f"expected {len(names)} values, got {len(value)}",
                                      ", ".join(names))
            return tuple(check_number(v, join(path, i), **bounds) for i, v in enumerate(value))
        obj = get_object(value, path)
        check_keys(obj, path, names, required=names)
        return tuple(get_number(obj, n, path, **bounds) for n in names)

    return parse, {"type": "object", "required": list(names),
                   "properties": {n: {"type": "number"} for n in names},
                   "additionalProperties": False}


def _table_field(names: tuple[str, ...], default: tuple[float, ...], key: str, help: str,
                 **bounds: Any) -> Any:
    parse, schema = _status_table(names, **bounds)
    return custom(parse, schema, default, key=key, help=help,
                  dump=lambda t: dict(zip(names, t, strict=True)))


def _parse_sources(value: Any, path: str) -> dict[str, str]:
    obj = get_object(value, path)
    for key, val in obj.items():
        if not isinstance(val, str):
            raise ValidationError(join(path, key), "expected a citation string")
    return dict(obj)


# the citations of a profile's numbers: not part of its identity (equality, hash)
_SOURCES = dataclasses.field(default_factory=dict, compare=False, hash=False, metadata=custom(
    _parse_sources, {"type": "object", "additionalProperties": {"type": "string"}},
    factory=dict, dump=dict, help="the source of every number (docs/DEVICES.md)").metadata)


@dataclass(frozen=True, kw_only=True)
class DeviceProfile(Record):
    """The numbers of one phone class. All powers in W, energies in J, times in s.

    ``thresholds_c[i]`` is the skin temperature at which status ``i + 1`` (LIGHT ..
    SHUTDOWN) begins; ``throughput[s]`` the fraction of full training speed at
    status ``s`` (NONE .. SHUTDOWN, non-increasing, in (0, 1]). The battery's capacity
    may also be given as ``capacity_mah`` with ``nominal_voltage``.
    """

    FORMAT = PROFILE_FORMAT

    name: str = text(non_empty=True, pattern=NAME_PATTERN, help="the profile's name (a plain name: run "
                                                                 "directories are named after it)")
    description: str = text("", help="what phone class it stands for")
    battery_wh: float = number(lo=0.0, hi=MAX_BATTERY_WH, lo_open=True, key="battery.capacity_wh",
                               help="rated capacity, Wh")
    state_of_health: float = number(1.0, lo=0.0, hi=1.0, lo_open=True,
                                    key="battery.state_of_health",
                                    help="usable share of the rated capacity")
    idle_power_w: float = number(lo=0.0, key="power.idle_w", help="whole phone awake, idle")
    train_power_w: float = number(lo=0.0, lo_open=True, key="power.train_w",
                                  help="whole phone training at full speed (>= idle_w)")
    charge_power_w: float = number(lo=0.0, key="charging.power_w", help="charger input")
    charge_efficiency: float = number(0.88, lo=0.0, hi=1.0, lo_open=True,
                                      key="charging.efficiency", help="charger output / input")
    cv_knee: float = number(0.8, lo=0.0, hi=1.0, key="charging.cv_knee",
                            help="level where the constant-voltage taper starts")
    cv_taper: float = number(0.07, lo=0.001, hi=1.0, key="charging.cv_taper",
                             help="taper constant k: accepted = output * exp(-(level - knee)/k)")
    thermal_resistance_k_per_w: float = number(lo=0.0, hi=1000.0, lo_open=True,
                                               key="thermal.resistance_k_per_w",
                                               help="skin to ambient, K/W")
    heat_capacity_j_per_k: float = number(lo=0.0, hi=1e6, lo_open=True, key="thermal.capacity_j_per_k",
                                          help="effective heat capacity, J/K")
    ambient_c: float = number(lo=-50.0, hi=80.0, key="thermal.ambient_c",
                              help="ambient temperature when unknown")
    hysteresis_c: float = number(1.9, lo=0.0, key="thermal.hysteresis_c",
                                 help="a status ends this far below its threshold")
    thresholds_c: tuple[float, ...] = _table_field(
        STATUS_NAMES[1:], _DEFAULT_THRESHOLDS, "thermal.thresholds_c",
        "skin temperature where each status begins (increasing)")
    throughput: tuple[float, ...] = _table_field(
        STATUS_NAMES, _DEFAULT_THROUGHPUT, "thermal.throughput",
        "share of full training speed at each status (non-increasing)",
        lo=0.0, hi=1.0, lo_open=True)
    step_seconds: float = number(lo=1e-6, hi=86400.0, key="compute.step_seconds",
                                 help="one training step at full speed")
    window_s: float = number(600.0, lo=0.0, lo_open=True, key="os.window_s",
                             help="a Worker's window on battery")
    window_charging_s: float = number(1800.0, lo=0.0, lo_open=True, key="os.window_charging_s",
                                      help="a job's window on the charger")
    requires_charging: bool = boolean(False, key="os.requires_charging",
                                      help="the job runs only on the charger")
    battery_not_low: bool = boolean(True, key="os.battery_not_low",
                                    help="the OS stops the job at a low battery")
    device_idle: bool = boolean(False, key="os.device_idle", help="the job needs an idle phone")
    low_battery_level: float = number(0.15, lo=0.0, hi=1.0, hi_open=True,
                                      key="os.low_battery_level",
                                      help="the OS's low-battery level")
    sources: Mapping[str, str] = _SOURCES

    def check(self) -> None:
        if self.train_power_w < self.idle_power_w:
            raise ValidationError("power.train_w", f"{self.train_power_w} is below idle_w "
                                  f"{self.idle_power_w}", "a training power >= the idle power")
        th, m = self.thresholds_c, self.throughput
        for k in range(1, len(th)):
            if th[k] <= th[k - 1]:
                raise ValidationError(f"thermal.thresholds_c.{STATUS_NAMES[k + 1]}",
                                      "thresholds must increase from LIGHT to SHUTDOWN",
                                      f"a temperature above {th[k - 1]}")
        for k in range(1, len(m)):
            if m[k] > m[k - 1]:
                raise ValidationError(f"thermal.throughput.{STATUS_NAMES[k]}",
                                      "throughput must not rise with the thermal status",
                                      f"a factor in (0, {m[k - 1]}]")

    @classmethod
    def from_dict(cls, obj: Any, path: str | None = "") -> DeviceProfile:
        """Read a profile; ``battery`` may give ``capacity_mah`` + ``nominal_voltage``
        instead of ``capacity_wh``."""
        obj = get_object(obj, path or "")
        battery = obj.get("battery")
        if isinstance(battery, Mapping):
            obj = {**obj, "battery": _capacity_wh(battery, join(path or "", "battery"))}
        return super().from_dict(obj, path)

    @classmethod
    def object_schema(cls) -> dict[str, Any]:
        """The declared schema, with the capacity's alternative (mAh at a nominal voltage)."""
        out = super().object_schema()
        battery = out["properties"]["battery"]
        battery["properties"].update(
            capacity_mah={"description": "rated capacity, mAh (with nominal_voltage)",
                          "type": "number", "exclusiveMinimum": 0.0},
            nominal_voltage={"description": "nominal voltage, V (with capacity_mah)",
                             "type": "number", "exclusiveMinimum": 0.0})
        battery.pop("required", None)
        battery["oneOf"] = [{"required": ["capacity_wh"]},
                            {"required": ["capacity_mah", "nominal_voltage"]}]
        return out

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
        return _STATUSES[physics.status_for(SCALAR, self.physics, temperature_c, int(previous))]

    def load_power(self, throttle: Any, train_power_w: float | None = None) -> Any:
        """Whole-device power while training at throughput ``throttle`` (a float or an array),
        at full speed ``train_power_w`` (default: the profile's training power)."""
        full = self.train_power_w if train_power_w is None else train_power_w
        return self.idle_power_w + (full - self.idle_power_w) * throttle

    @cached_property
    def physics(self) -> physics.Physics:
        """The numbers :mod:`mobile_lr.physics` uses, derived once."""
        return physics.Physics.of(self)


def _capacity_wh(battery: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The battery group with ``capacity_mah`` + ``nominal_voltage`` turned into ``capacity_wh``."""
    if "capacity_wh" in battery:
        if "capacity_mah" in battery or "nominal_voltage" in battery:
            raise ValidationError(join(path, "capacity_wh"),
                                  "give either capacity_wh or capacity_mah + nominal_voltage")
        return dict(battery)
    if "capacity_mah" not in battery:
        raise ValidationError(join(path, "capacity_wh"), "missing battery capacity",
                              "capacity_wh, or capacity_mah with nominal_voltage")
    mah = get_number(battery, "capacity_mah", path, lo=0.0, lo_open=True)
    volts = get_number(battery, "nominal_voltage", path, lo=0.0, lo_open=True)
    rest = {k: v for k, v in battery.items() if k not in ("capacity_mah", "nominal_voltage")}
    return {**rest, "capacity_wh": mah * volts / 1000.0}


def load_profile(source: str | Path | Mapping[str, Any] | DeviceProfile) -> DeviceProfile:
    """A profile from a built-in name, a ``.json``/``.toml`` file, or a dict."""
    if isinstance(source, DeviceProfile):
        return source
    if isinstance(source, Mapping):
        return DeviceProfile.from_dict(source, "")
    text_name = str(source)
    if isinstance(source, str) and source in BUILTIN_PROFILES:
        data = resources.files("mobile_lr").joinpath("data", "profiles", f"{source}.json")
        return DeviceProfile.from_dict(json.loads(data.read_text(encoding="utf-8")), "")
    path = Path(source)
    if not path.suffix and not path.exists():
        raise ValidationError("profile", f"unknown profile {text_name!r}",
                              ", ".join(BUILTIN_PROFILES) + ", or a .json/.toml file")
    if path.suffix.lower() != ".toml":
        return DeviceProfile.from_dict(read_json(path, "profile"), "")
    data = read_bytes(path, "profile")
    try:
        obj = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as err:
        raise ValidationError("profile", f"{path.name} is not valid TOML: {err}"[:300]) from None
    return DeviceProfile.from_dict(obj, "")


# --------------------------------------------------------------------------- state


def _in(x: Any, lo: float, hi: float) -> bool:
    """A finite real (not a bool) in [lo, hi]; NaN fails the comparison."""
    return (type(x) is float or (type(x) is int)) and lo <= x <= hi and x != math.inf \
        and x != -math.inf


_STATUS_SCHEMA = {"enum": [*STATUS_NAMES, *range(len(STATUS_NAMES))]}


@dataclass(frozen=True)
class DeviceState(Record):
    """What a training loop reads on the phone.

    ``ambient_c`` is None when unknown (a phone has no ambient sensor): models then
    use the profile's ambient temperature.
    """

    level: float = number(lo=0.0, hi=1.0, help="battery level, 0..1")
    charging: bool = boolean(help="plugged in")
    temperature_c: float = number(lo=-100.0, hi=500.0, help="skin temperature")
    thermal_status: ThermalStatus = custom(parse_thermal_status, _STATUS_SCHEMA,
                                           dump=lambda s: s.name,
                                           help="PowerManager's thermal status")
    time_s: float = number(0.0, help="device time")
    ambient_c: float | None = number(None, lo=-50.0, hi=80.0, nullable=True,
                                     help="ambient temperature (null: unknown)")

    def __post_init__(self) -> None:
        # The simulator and the manager build many states: pass the common case cheaply and
        # let the declared validation normalise, or word the error, otherwise.
        if (_in(self.level, 0.0, 1.0) and _in(self.temperature_c, -100.0, 500.0)
                and _in(self.time_s, -math.inf, math.inf) and type(self.charging) is bool
                and (self.ambient_c is None or _in(self.ambient_c, -50.0, 80.0))):
            if type(self.thermal_status) is not ThermalStatus:
                object.__setattr__(self, "thermal_status",
                                   parse_thermal_status(self.thermal_status))
            return
        super().__post_init__()

    @classmethod
    def initial(cls, profile: DeviceProfile, level: float, charging: bool = False,
                temperature_c: float | None = None, time_s: float = 0.0,
                ambient_c: float | None = None) -> DeviceState:
        """A state whose status follows from the temperature (default: ambient)."""
        temp = (ambient_c if ambient_c is not None else profile.ambient_c) \
            if temperature_c is None else temperature_c
        return cls(level=level, charging=charging, temperature_c=temp,
                   thermal_status=profile.status_for(temp), time_s=time_s, ambient_c=ambient_c)

    @classmethod
    def from_dict(cls, obj: Any, path: str | None = "state") -> DeviceState:
        return super().from_dict(obj, path)


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
