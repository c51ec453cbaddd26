"""Nothing in the repository cites a document it does not contain.

Code, data and docs cite facts by a section of a repository document (``docs/DEVICES.md §2.5``);
this test refuses citations of documents that are not here and checks that every cited section
of docs/DEVICES.md exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.core

ROOT = Path(__file__).resolve().parents[1]
# Written split so that this file does not match itself.
FORBIDDEN = re.compile("|".join([r"SPEC " + "§", r"\bdevices" + r"\.md", r"\bruntimes" + r"\.md",
                                 r"\bschedules" + r"\.md", r"\bissue" + r" [0-9]", "shared/" + "reference"]))
CITE = re.compile(r"docs/DEVICES\.md\s+§(\d+(?:\.\d+)*)")
GLOBS = ("README.md", "pyproject.toml", "Makefile", "docs/*.md", "bench/*.py", "bench/README.md",
         "tests/*.py", "mobile_lr/**/*.py", "mobile_lr/data/**/*.json", "android-demo/**/*.kt",
         "android-demo/**/*.md", "android-demo/**/*.sh", "schemas/*.json",
         "android-demo/core/src/test/resources/*.json")


def _texts() -> dict[Path, str]:
    out = {}
    for pattern in GLOBS:
        for path in ROOT.glob(pattern):
            if path.is_file() and "build" not in path.parts:
                out[path] = path.read_text(encoding="utf-8", errors="replace")
    return out


def test_no_citation_of_a_document_the_repository_lacks():
    texts = _texts()
    assert ROOT / "mobile_lr" / "device.py" in texts
    bad = [f"{path.relative_to(ROOT)}: {m.group(0)!r}" for path, text in texts.items()
           for m in FORBIDDEN.finditer(text)]
    assert not bad, bad[:20]


def test_every_cited_devices_section_exists():
    doc = (ROOT / "docs" / "DEVICES.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)*)[. ]", doc, re.M))
    cited = {m.group(1) for text in _texts().values() for m in CITE.finditer(text)}
    assert {"1.4", "2.5", "5.2", "6"} <= cited
    # "§5.1.5" names item 5 of §5.1's list, "§5.3 (a)" its first option: check the section.
    missing = {c for c in cited if c not in sections and c.rsplit(".", 1)[0] not in sections}
    assert not missing, sorted(missing)
