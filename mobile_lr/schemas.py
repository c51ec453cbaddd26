"""JSON Schemas of the file formats, generated from their declarations.

``python -m mobile_lr.schemas --out schemas`` writes one JSON Schema (draft
2020-12) per format into ``schemas/``; ``--check`` exits 1 when a committed file
differs from what the code declares (the test suite runs it). Editors and other
languages validate files with them; mobile-lr itself validates with the records
they come from (:mod:`mobile_lr.validation.schema`), which also check the rules
a schema cannot state (for example ``eta_min <= base_lr``).

A class not declared as a record yet gets a structural schema (the JSON types of
an example's ``to_dict()``, no bounds), so the files exist and stay in step.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mobile_lr.budget import POLICY_FORMAT, Policy
from mobile_lr.device import PROFILE_FORMAT, DeviceProfile, load_profile
from mobile_lr.schedules.spec import FORMAT as SCHEDULE_FORMAT
from mobile_lr.schedules.spec import SpecFile
from mobile_lr.sim.scenario import Scenario
from mobile_lr.validation.schema import JSON_SCHEMA_DIALECT

__all__ = ["SCHEMAS", "build", "main"]

# file name -> (format, class, an example instance for a class that is not a record yet)
SCHEMAS: dict[str, tuple[str, type, Callable[[], Any]]] = {
    "schedule.json": (SCHEDULE_FORMAT, SpecFile, lambda: None),
    "policy.json": (POLICY_FORMAT, Policy, Policy),
    "device.json": (PROFILE_FORMAT, DeviceProfile, lambda: load_profile("mid-range")),
    "scenario.json": (Scenario.FORMAT or "", Scenario, lambda: None),
}


def _structural(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int | float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, dict):
        return {"type": "object", "properties": {k: _structural(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"type": "array"}
    return {}


def schema_of(fmt: str, cls: type, example: Callable[[], Any]) -> dict[str, Any]:
    """The class's declared JSON Schema, or a structural one from an example."""
    if hasattr(cls, "json_schema"):
        return cls.json_schema()
    obj = example().to_dict()
    out = {"$schema": JSON_SCHEMA_DIALECT, "title": fmt,
           "description": f"Structural schema (JSON types of {cls.__name__}.to_dict(), no bounds).",
           **_structural(obj)}
    out["properties"]["format"] = {"const": fmt}
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def build() -> dict[str, str]:
    """File name -> file text, for every format."""
    return {name: render(schema_of(*entry)) for name, entry in SCHEMAS.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mobile_lr.schemas", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("schemas"), help="directory (default: schemas)")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if a file in --out differs from the declarations")
    args = ap.parse_args(argv)
    stale = []
    for name, text in build().items():
        path = args.out / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        print(f"stale schemas in {args.out}: {', '.join(stale)}; regenerate with "
              f"python -m mobile_lr.schemas --out {args.out}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
