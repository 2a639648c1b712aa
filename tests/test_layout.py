"""README's layout table stays true to the code: every module of `taxi/` has its row, every
row names a module that exists, and the documents the README links to are there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
SECTION = re.compile(r"\n## Layout\n(.*?)(?=\n## )", re.S)
ROW = re.compile(r"^\| `(taxi/[^`]+\.py)` \|", re.M)
LINK = re.compile(r"\]\(((?:docs|api)/[^)#]*)\)")


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def test_every_module_has_a_row_and_every_row_a_module() -> None:
    found = SECTION.search(_readme())
    assert found, "README.md lost its Layout section"
    rows = ROW.findall(found.group(1))
    assert len(rows) == len(set(rows)), "a module listed twice"
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "taxi").rglob("*.py")}
    assert sorted(modules - set(rows)) == [], "modules missing from README's layout table"
    assert sorted(set(rows) - modules) == [], "rows naming modules that do not exist"


def test_linked_documents_exist() -> None:
    links = LINK.findall(_readme())
    assert "docs/clients.md" in links
    for link in links:
        assert (ROOT / link).exists(), f"README links to {link}, which is not there"


def test_architecture_and_layout_come_first() -> None:
    lines = _readme().splitlines()
    assert lines.index("## Architecture") < 40
    assert lines.index("## Layout") < 100
