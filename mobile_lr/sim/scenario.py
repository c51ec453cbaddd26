"""Named scenarios: one situation of a phone's day, as a small data file.

A scenario says where the phone starts (battery, charger, temperature), what the
user allows (a :class:`mobile_lr.budget.Policy`), when the OS lets a worker run
(windows), what happens meanwhile (charger plugged or pulled, ambient
temperature changes) and how heavy one training step is on that phone::

    {
      "format": "mobile-lr.scenario/1",
      "name": "commute-low-battery",
      "description": "...",
      "start": {"level": 0.35, "charging": false, "ambient_c": 25.0},
      "policy": {"battery_floor": 0.2, "window_s": 1800},
      "windows": {"first_s": 0, "length_s": 1800, "every_s": null, "count": 1},
      "events": [{"at_s": 300, "type": "unplug"}],
      "workload": {"step_factor": 500, "background_w": 2.0},
      "end_s": 1800,
      "nominal_steps": 300
    }

``workload.step_factor`` scales the profile's reference step time for a bundle that is not a
zoo model: the demo model (an 8x8 digits classifier) is a stand-in for a production-size model
whose steps take seconds on a phone, so that the budgets bind as they would; the accuracy numbers
come from the real small model, the clock and battery from the heavy one. A zoo model costs its
own FLOPs and ``--calibrate`` the measured step instead: the rule is
:mod:`mobile_lr.sim.workload`'s. ``background_w`` is the phone's own use on top (screen, radio).
Built-in scenarios live in ``mobile_lr/data/scenarios``; a path to a JSON file
works too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from mobile_lr.budget import MAX_SPAN_S, Policy
from mobile_lr.device import DeviceProfile, DeviceState
from mobile_lr.physics import MAX_STEPS
from mobile_lr.validation import ValidationError, check_number, join, read_json
from mobile_lr.validation.schema import (
    NAME_PATTERN,
    Record,
    boolean,
    choice,
    integer,
    nested,
    number,
    records,
    text,
)

__all__ = ["EVENT_TYPES", "SCENARIO_FORMAT", "Event", "Scenario", "Window", "builtin_scenarios",
           "load_scenario", "parse_scenario"]

SCENARIO_FORMAT = "mobile-lr.scenario/1"
EVENT_TYPES = ("plug", "unplug", "ambient")
_AMBIENT = {"lo": -50.0, "hi": 80.0}


@dataclass(frozen=True)
class Event(Record):
    """Something that happens to the phone at device time ``at_s``."""

    at_s: float = number(lo=0.0, hi=MAX_SPAN_S, help="device time in seconds (at most the scenario's end_s)")
    type: str = choice(EVENT_TYPES, help="plug or pull the charger, or change the ambient temperature")
    ambient_c: float | None = number(None, **_AMBIENT, help="new ambient temperature in °C "
                                     "(type 'ambient' only, and required there)")

    SCHEMA_RULES: ClassVar[dict[str, Any]] = {
        "if": {"properties": {"type": {"const": "ambient"}}},
        "then": {"required": ["ambient_c"]}, "else": {"not": {"required": ["ambient_c"]}}}

    def check(self) -> None:
        if self.type == "ambient" and self.ambient_c is None:
            raise ValidationError("ambient_c", "missing: an ambient event needs it",
                                  "a temperature in °C")
        if self.type != "ambient" and self.ambient_c is not None:
            raise ValidationError("ambient_c", f"not allowed on a {self.type!r} event",
                                  "ambient_c only with type 'ambient'")


@dataclass(frozen=True)
class Window:
    """One OS window (a WorkManager worker run): training may happen inside it only."""

    start_s: float
    length_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.length_s


@dataclass(frozen=True, kw_only=True)
class Scenario(Record):
    """One situation of a phone's day: start, user policy, OS windows, events, workload."""

    FORMAT = SCENARIO_FORMAT
    FORMAT_REQUIRED = True

    name: str = text(non_empty=True, pattern=NAME_PATTERN,
                     help="short name, used in report titles and run directories")
    description: str = text("", help="one line for the report")
    level: float = number(lo=0.0, hi=1.0, key="start.level", help="battery level at the start")
    charging: bool = boolean(False, key="start.charging", help="on the charger at the start")
    ambient_c: float | None = number(None, **_AMBIENT, key="start.ambient_c", nullable=True,
                                     help="ambient temperature in °C (null: the profile's)")
    temperature_c: float | None = number(None, lo=-50.0, hi=120.0, key="start.temperature_c", nullable=True,
                                         help="skin temperature in °C at the start (null: ambient)")
    policy: Policy = nested(Policy, Policy, help="what the user allows (mobile-lr.policy/1)")
    window_first_s: float = number(0.0, lo=0.0, hi=MAX_SPAN_S, key="windows.first_s",
                                   help="device time the first OS window opens")
    window_length_s: float | None = number(None, lo=0.0, hi=MAX_SPAN_S, lo_open=True, key="windows.length_s",
                                           nullable=True,
                                           help="window length (null: the profile's, charging or not)")
    window_every_s: float | None = number(None, lo=0.0, hi=MAX_SPAN_S, lo_open=True, key="windows.every_s",
                                          nullable=True,
                                          help="seconds between window starts (needed for count > 1)")
    window_count: int = integer(1, lo=1, hi=1000, key="windows.count", help="number of windows")
    events: tuple[Event, ...] = records(Event, (), help="charger and ambient changes, any order")
    step_factor: float = number(1.0, lo=1e-6, hi=1e6, key="workload.step_factor",
                                help="multiplies the profile's reference step time (a bundle that is not a "
                                     "zoo model, without calibration)")
    background_w: float = number(0.0, lo=0.0, hi=50.0, key="workload.background_w",
                                 help="the phone's own use on top of training, in W")
    end_s: float = number(lo=0.0, hi=MAX_SPAN_S, lo_open=True, help="device time the scenario ends")
    nominal_steps: int = integer(lo=1, hi=MAX_STEPS, help="steps the run is planned for when nothing binds")

    def check(self) -> None:
        if self.window_count > 1 and self.window_every_s is None:
            raise ValidationError("windows.every_s", "missing: several windows need a period",
                                  "seconds between window starts")
        length, every = self.window_length_s, self.window_every_s
        if self.window_count > 1 and length is not None and every is not None and length > every:
            raise ValidationError("windows.length_s", f"{length} is longer than every_s {every}",
                                  "windows that do not overlap")
        if self.window_first_s >= self.end_s:
            raise ValidationError("windows.first_s",
                                  f"{self.window_first_s} is not before end_s {self.end_s}")
        for i, event in enumerate(self.events):
            check_number(event.at_s, join(join("events", i), "at_s"), lo=0.0, hi=self.end_s)
        object.__setattr__(self, "events", tuple(sorted(self.events, key=lambda e: e.at_s)))

    def windows(self, profile: DeviceProfile) -> list[Window]:
        """The OS windows on ``profile`` (length defaults to the profile's, charging or not)."""
        length = self.window_length_s if self.window_length_s is not None else \
            profile.window_for(self.charging)
        every = self.window_every_s if self.window_every_s is not None else 0.0
        out = []
        for i in range(self.window_count):
            start = self.window_first_s + i * every
            if start >= self.end_s:
                break
            out.append(Window(start, min(length, self.end_s - start)))
        return out

    def initial_state(self, profile: DeviceProfile) -> DeviceState:
        return DeviceState.initial(profile, self.level, charging=self.charging,
                                   temperature_c=self.temperature_c, ambient_c=self.ambient_c)


def parse_scenario(obj: Any, path: str = "") -> Scenario:
    """Validate a scenario object; errors name the field (``start.level``, ``events[1].type``)."""
    return Scenario.from_dict(obj, path)


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped with mobile-lr, in a stable order."""
    root = resources.files("mobile_lr") / "data" / "scenarios"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


def load_scenario(source: str | Path | Mapping[str, Any] | Scenario) -> Scenario:
    """A built-in scenario by name, a JSON file path, or an already-parsed object."""
    if isinstance(source, Scenario):
        return source
    if isinstance(source, Mapping):
        return parse_scenario(source)
    text = str(source)
    if text in builtin_scenarios():
        data = (resources.files("mobile_lr") / "data" / "scenarios" / f"{text}.json").read_text("utf-8")
        return parse_scenario(json.loads(data))
    path = Path(text)
    if not path.suffix and not path.exists():
        raise ValidationError("scenario", f"unknown scenario {text!r}",
                              ", ".join(builtin_scenarios()) + ", or a JSON file")
    return parse_scenario(read_json(path, "scenario"))
