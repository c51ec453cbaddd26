"""The README's schedule examples are real: every line parses and every shape is shown."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mobile_lr.schedules import SHAPE_TYPES, parse_spec

pytestmark = pytest.mark.core


README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_shape_examples_parse_and_cover_every_shape():
    text = README.read_text(encoding="utf-8")
    block = text.split("One example per shape", 1)[1]
    block = re.search(r"```json\n(.*?)```", block, re.S).group(1)
    kinds = set()
    for line in block.strip().splitlines():
        spec = json.loads(line)
        parse_spec(spec)
        kinds.add(spec["shape"]["type"])
    assert kinds == set(SHAPE_TYPES)


def test_readme_has_exactly_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text
