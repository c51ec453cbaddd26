"""The README's quick start runs as written: a SpecLR loop, then the manager on a SimulatedDevice
until it stops (here on the battery floor, the limit the quick start's phone is given)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quick_start_runs_and_stops_on_the_battery():
    text = README.read_text(encoding="utf-8").split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    out = io.StringIO()
    namespace: dict = {"__name__": "quickstart"}
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md (quick start)", "exec"), namespace)
    printed = out.getvalue().strip()
    promised = re.search(r"print\(d\)\s+# (.*)", code).group(1).strip()
    assert printed == promised, (printed, promised)
    assert namespace["phone"].state.level >= 0.2 - 1e-9
    assert namespace["sched"].plan == [(0, 100), (31, 60)]
