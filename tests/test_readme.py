"""The README is a front page that stays true: at most 200 lines, the two commands, a CLI tour
that parses, links that exist, and the schedule examples (now in docs/SCHEDULE_SPEC.md) real."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from mobile_lr.cli import build_parser
from mobile_lr.schedules import SHAPE_TYPES, parse_spec

pytestmark = pytest.mark.core

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _block(text: str, anchor: str, lang: str) -> str:
    return re.search(rf"```{lang}\n(.*?)```", text.split(anchor, 1)[1], re.S).group(1)


def test_spec_shape_examples_parse_and_cover_every_shape():
    text = (ROOT / "docs" / "SCHEDULE_SPEC.md").read_text(encoding="utf-8")
    kinds = set()
    for line in _block(text, "One example per shape", "json").strip().splitlines():
        spec = json.loads(line)
        parse_spec(spec)
        kinds.add(spec["shape"]["type"])
    assert kinds == set(SHAPE_TYPES)


def test_readme_is_a_front_page_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    assert "make demo" in text and "make test" in text


def test_readme_cli_tour_parses():
    text = README.read_text(encoding="utf-8")
    tour = _block(text, "## The command line", "sh").replace("\\\n", " ")
    lines = [ln.split("#", 1)[0].strip() for ln in tour.splitlines()]
    commands = [shlex.split(ln)[1:] for ln in lines if ln.startswith("mobile-lr ")]
    assert len(commands) >= 10
    parser = build_parser()
    for args in commands:
        parser.parse_args(args)  # argparse exits 2 on a bad line


def test_readme_links_exist():
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert local, "no local links found"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing
