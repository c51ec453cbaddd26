"""examples/ runs as shipped, and docs/INSTALL.md's quick start runs as written.

Each example is run as a user runs it (``python examples/NAME.py`` from the repository root)
and its printed result is checked; the quick start's ``$ command`` lines are run in a temporary
folder holding a copy of examples/, and their output is compared with the lines the doc shows
under them (``...`` matches anything).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mobile_lr.budget import load_policy
from mobile_lr.schedules import load_spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
INSTALL = ROOT / "docs" / "INSTALL.md"


def run_example(name: str, timeout: float = 300) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.core
def test_the_example_spec_and_policy_are_valid():
    spec = load_spec(EXAMPLES / "spec.json")
    assert spec.total_steps == 300 and spec.base_lr == 0.05
    policy = load_policy(EXAMPLES / "policy.json")
    assert policy.battery_floor == 0.3
    assert json.loads((EXAMPLES / "policy.json").read_text())["format"] == "mobile-lr.policy/1"


@pytest.mark.core
def test_the_manager_on_a_simulated_phone_stops_at_the_floor_with_the_lr_annealed():
    out = run_example("simulated_phone.py")
    stop, battery = out.splitlines()[:2]
    steps = int(re.search(r"steps: (\d+)", stop).group(1))
    assert stop.startswith("stop: budget") and 10 < steps < 300
    assert float(re.search(r"battery ([\d.]+)", battery).group(1)) >= 0.3 - 1e-9
    assert f", {steps})]" in out  # the last re-plan ends the schedule at the last step run


def test_the_torch_loop_follows_the_spec_and_its_replan():
    pytest.importorskip("torch")
    out = run_example("torch_loop.py")
    lrs = [float(m) for m in re.findall(r"lr ([\d.]+)", out)]
    assert len(lrs) == 5 and lrs == sorted(lrs, reverse=True)
    assert lrs[-1] == pytest.approx(0.0005, rel=1e-9)  # annealed to eta_min by the re-planned end (100)
    assert len((EXAMPLES / "torch_loop.py").read_text().splitlines()) <= 30


def test_the_hugging_face_trainer_example_stops_at_the_floor_and_saves_the_manager():
    pytest.importorskip("transformers")
    out = run_example("hf_trainer.py", timeout=600)
    stop = next(line for line in out.splitlines() if line.startswith("stop:"))
    steps, planned = (int(v) for v in re.search(r"steps: (\d+)\s+planned: (\d+)", stop).groups())
    assert stop.startswith("stop: budget") and steps == planned < 300
    assert "manager state saved: True" in out


# ---------------------------------------------------------------------- docs/INSTALL.md quick start


def console_blocks(text: str) -> list[list[tuple[str, list[str]]]]:
    """Per ```console block of the doc, its ``(command, expected output lines)`` for every
    ``$ mobile-lr``/``$ python`` line (``pip install`` lines are shown, not run)."""
    blocks = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        commands: list[tuple[str, list[str]]] = []
        current = None
        for line in block.splitlines():
            if line.startswith("$ "):
                current = None
                if line[2:].startswith(("mobile-lr ", "python ")):
                    current = (line[2:], [])
                    commands.append(current)
            elif current is not None:
                current[1].append(line)
        blocks.append(commands)
    return blocks


def _matches(expected: list[str], actual: list[str]) -> bool:
    pattern = "\n".join(re.escape(line).replace(r"\.\.\.", ".*") for line in expected)
    return re.fullmatch(pattern, "\n".join(actual), re.S) is not None


QUICK_START = console_blocks(INSTALL.read_text(encoding="utf-8")) if INSTALL.exists() else []
NEEDS = {"hf_trainer.py": "transformers", "torch_loop.py": "torch", "mobile-lr export": "onnxruntime"}


@pytest.mark.core
def test_the_quick_start_has_commands():
    assert sum(len(b) for b in QUICK_START) >= 6


@pytest.mark.core
@pytest.mark.parametrize("block", QUICK_START, ids=[b[0][0] if b else "empty" for b in QUICK_START])
def test_the_quick_start_runs_as_written(block, tmp_path):
    """One block's commands in order, in a folder of their own with a copy of examples/."""
    for needle, module in NEEDS.items():
        if any(needle in command for command, _ in block):
            pytest.importorskip(module)
    shutil.copytree(EXAMPLES, tmp_path / "examples")  # what the commands write stays in tmp_path
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    for command, expected in block:
        args = shlex.split(command)
        if args[0] == "python":
            args[0] = sys.executable
        elif not (bindir / "mobile-lr").exists():
            args = [sys.executable, "-m", "mobile_lr.cli", *args[1:]]
        proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
        assert proc.returncode == 0, f"{command}: {proc.stderr[-2000:]}"
        actual = [line.rstrip() for line in proc.stdout.splitlines()]
        assert _matches([line.rstrip() for line in expected], actual), f"{command}:\n" + "\n".join(actual)
