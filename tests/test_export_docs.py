"""docs/EXPORT.md is real: its worked recipe exports and trains, its numbers and manifest reference hold."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from mobile_lr.export import export_bundle
from mobile_lr.recipes import load_recipe
from mobile_lr.runtime import open_runtime

DOC = Path(__file__).resolve().parents[1] / "docs" / "EXPORT.md"


def test_worked_example_exports_and_trains_as_documented(tmp_path, monkeypatch):
    text = DOC.read_text(encoding="utf-8")
    code = re.search(r"### Worked example.*?```python\n(.*?)```", text, re.S).group(1)
    (tmp_path / "my_recipes.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_recipes", raising=False)
    manifest = export_bundle(load_recipe("my_recipes:gestures"), tmp_path / "gestures").to_dict()
    model = manifest["model"]
    shown = re.search(r"model gestures: (\d+) trainable \+ (\d+) frozen parameters, ([\d,]+) FLOPs", text)
    assert (model["params_trainable"], model["params_frozen"], model["flops_per_step"]) == (
        int(shown.group(1)), int(shown.group(2)), int(shown.group(3).replace(",", "")))
    assert {k: v["status"] for k, v in manifest["backends"].items()} == {"ort": "ok", "executorch": "ok"}
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 3, 32), dtype=np.float32), rng.integers(0, 4, 16)
    for kind in ("ort", "executorch"):
        rt = open_runtime(kind, tmp_path / "gestures", ema=0.99)
        first = rt.step(x, y, 0.01)
        for _ in range(20):
            last = rt.step(x, y, 0.01)
        assert last < first  # the head learns the batch; the frozen encoder is untouched
        assert set(rt.trainable_names) == {"head.weight", "head.bias"}


def keys(obj, depth=0):
    if isinstance(obj, dict) and depth < 3:
        return {k: keys(v, depth + 1) for k, v in obj.items() if k not in ("...",)}
    return None


def test_manifest_reference_matches_a_real_manifest(mlp_bundle):
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"## Manifest reference.*?```json\n(.*?)```", text, re.S).group(1)
    documented = json.loads(block)
    real = json.loads((mlp_bundle / "manifest.json").read_text())
    documented.pop("files")
    real.pop("files")
    assert keys(documented) == keys(real)
    assert documented["model"]["flops_per_step"] == real["model"]["flops_per_step"]
    assert documented["optimizer"] == real["optimizer"]
