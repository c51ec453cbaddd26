"""What every bench result records: the machine it ran on and where its JSON goes.

The machine is described by what matters for the numbers (CPU model, core count, library
versions), never by a host name or a path.
"""

from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
_PACKAGES = ("numpy", "torch", "onnxruntime-training", "executorch")


def machine_info() -> dict[str, Any]:
    """CPU model, cores, OS kind, Python and the engines' versions."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": None, "os": platform.system(),
            "python": platform.python_version(), "versions": versions}


def write_result(name: str, payload: dict[str, Any], path: Path | None = None) -> Path:
    """Write ``bench/results/<name>.json`` (or ``path``) with the machine and the date added."""
    out = {"bench": name, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine_info(), **payload}
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return path


def command_without_out(command: str) -> str:
    """A command line without its ``--out PATH``: the path is of the machine that ran it, and a
    merged result's commands name the partial files' paths nowhere."""
    words = command.split(" ")
    keep = [w for i, w in enumerate(words) if w != "--out" and (i == 0 or words[i - 1] != "--out")]
    return " ".join(keep)


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> None:
    """Rows as a fixed-width table; ``columns`` are (key, header, format spec)."""
    cells = [[format(r.get(k, ""), f) if r.get(k) is not None else "-" for k, _, f in columns]
             for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h, _) in enumerate(columns)]
    print("  ".join(h.ljust(w) for (_, h, _), w in zip(columns, widths, strict=True)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))
