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

``workload.step_factor`` scales the profile's reference step time: the demo
model (an 8x8 digits classifier) is a stand-in for a production-size model whose
steps take seconds on a phone, so that the budgets bind as they would; the
accuracy numbers come from the real small model, the clock and battery from the
heavy one. ``background_w`` is the phone's own use on top (screen, radio).
Built-in scenarios live in ``mobile_lr/data/scenarios``; a path to a JSON file
works too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mobile_lr.budget import Policy
from mobile_lr.device import DeviceProfile, DeviceState
from mobile_lr.validation import (
    ValidationError,
    check_keys,
    get_bool,
    get_int,
    get_number,
    get_object,
    join,
)

__all__ = ["EVENT_TYPES", "SCENARIO_FORMAT", "Event", "Scenario", "Window", "builtin_scenarios",
           "load_scenario"]

SCENARIO_FORMAT = "mobile-lr.scenario/1"
EVENT_TYPES = ("plug", "unplug", "ambient")


@dataclass(frozen=True)
class Event:
    """Something that happens to the phone at device time ``at_s``."""

    at_s: float
    type: str  # plug | unplug | ambient
    ambient_c: float | None = None


@dataclass(frozen=True)
class Window:
    """One OS window (a WorkManager worker run): training may happen inside it only."""

    start_s: float
    length_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.length_s


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    level: float
    charging: bool
    ambient_c: float | None
    temperature_c: float | None
    policy: Policy
    window_first_s: float
    window_length_s: float | None  # None: the profile's window for the charger state
    window_every_s: float | None
    window_count: int
    events: tuple[Event, ...]
    step_factor: float
    background_w: float
    end_s: float
    nominal_steps: int

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


def _parse_events(value: Any, path: str, end_s: float) -> tuple[Event, ...]:
    if not isinstance(value, list):
        raise ValidationError(path, f"expected a list of events, got {type(value).__name__}",
                              '[{"at_s": seconds, "type": "plug" | "unplug" | "ambient"}, ...]')
    events = []
    for i, item in enumerate(value):
        p = join(path, i)
        obj = get_object(item, p)
        check_keys(obj, p, ("at_s", "type", "ambient_c"), required=("at_s", "type"))
        at = get_number(obj, "at_s", p, lo=0.0, hi=end_s)
        kind = obj["type"]
        if kind not in EVENT_TYPES:
            raise ValidationError(join(p, "type"), f"unknown value {kind!r}", ", ".join(EVENT_TYPES))
        amb = None
        if kind == "ambient":
            if "ambient_c" not in obj:
                raise ValidationError(join(p, "ambient_c"), "missing: an ambient event needs it",
                                      "a temperature in °C")
            amb = get_number(obj, "ambient_c", p, lo=-50.0, hi=80.0)
        elif "ambient_c" in obj:
            raise ValidationError(join(p, "ambient_c"), f"not allowed on a {kind!r} event",
                                  "ambient_c only with type 'ambient'")
        events.append(Event(at, kind, amb))
    return tuple(sorted(events, key=lambda e: e.at_s))


def parse_scenario(obj: Any, path: str = "") -> Scenario:
    """Validate a scenario object; errors name the field (``start.level``, ``events[1].type``)."""
    obj = get_object(obj, path)
    check_keys(obj, path, ("format", "name", "description", "start", "policy", "windows", "events",
                           "workload", "end_s", "nominal_steps"),
               required=("format", "name", "start", "end_s", "nominal_steps"))
    if obj["format"] != SCENARIO_FORMAT:
        raise ValidationError(join(path, "format"), f"unknown format {obj['format']!r}", SCENARIO_FORMAT)
    name = obj["name"]
    if not isinstance(name, str) or not name:
        raise ValidationError(join(path, "name"), f"expected a non-empty string, got {name!r}")
    desc = obj.get("description", "")
    if not isinstance(desc, str):
        raise ValidationError(join(path, "description"), "expected a string")
    end_s = get_number(obj, "end_s", path, lo=0.0, lo_open=True)
    nominal = get_int(obj, "nominal_steps", path, lo=1)

    sp = join(path, "start")
    start = get_object(obj["start"], sp)
    check_keys(start, sp, ("level", "charging", "ambient_c", "temperature_c"), required=("level",))
    level = get_number(start, "level", sp, lo=0.0, hi=1.0)
    charging = get_bool(start, "charging", sp, default=False)
    ambient = None if start.get("ambient_c") is None else get_number(start, "ambient_c", sp, lo=-50.0,
                                                                      hi=80.0)
    temp = None if start.get("temperature_c") is None else get_number(start, "temperature_c", sp,
                                                                      lo=-50.0, hi=120.0)
    policy = Policy.from_dict(obj.get("policy", {}), join(path, "policy"))

    wp = join(path, "windows")
    win = get_object(obj.get("windows", {}), wp)
    check_keys(win, wp, ("first_s", "length_s", "every_s", "count"))
    first = get_number(win, "first_s", wp, default=0.0, lo=0.0)
    length = None if win.get("length_s") is None else get_number(win, "length_s", wp, lo=0.0,
                                                                  lo_open=True)
    every = None if win.get("every_s") is None else get_number(win, "every_s", wp, lo=0.0, lo_open=True)
    count = get_int(win, "count", wp, default=1, lo=1, hi=1000)
    if count > 1 and every is None:
        raise ValidationError(join(wp, "every_s"), "missing: several windows need a period",
                              "seconds between window starts")
    if count > 1 and length is not None and every is not None and length > every:
        raise ValidationError(join(wp, "length_s"), f"{length} is longer than every_s {every}",
                              "windows that do not overlap")
    if first >= end_s:
        raise ValidationError(join(wp, "first_s"), f"{first} is not before end_s {end_s}")

    wl = join(path, "workload")
    work = get_object(obj.get("workload", {}), wl)
    check_keys(work, wl, ("step_factor", "background_w"))
    step_factor = get_number(work, "step_factor", wl, default=1.0, lo=0.0, lo_open=True)
    background = get_number(work, "background_w", wl, default=0.0, lo=0.0, hi=50.0)
    events = _parse_events(obj.get("events", []), join(path, "events"), end_s)
    return Scenario(name=name, description=desc, level=level, charging=charging, ambient_c=ambient,
                    temperature_c=temp, policy=policy, window_first_s=first, window_length_s=length,
                    window_every_s=every, window_count=count, events=events,
                    step_factor=step_factor, background_w=background, end_s=end_s,
                    nominal_steps=nominal)


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
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValidationError("scenario", f"{path.name} is not valid JSON: {err}") from None
    return parse_scenario(obj)
