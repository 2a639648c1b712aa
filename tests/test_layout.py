"""README's layout table stays true to the code: every module of `taxi/` is named in it once,
every name in it is a module that exists, the documents the README links to are there, and
the architecture and the layout come first.

The table has a row per package (a large package in a few rows): the first cell is the
package's directory, `taxi/core/`; the second names each of its modules in bold code,
**`config`**, for `taxi/core/config.py` (a package's own `__init__.py` is **`__init__`**)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
SECTION = re.compile(r"\n## Layout\n(.*?)(?=\n## )", re.S)
ROW = re.compile(r"^\| `(taxi/(?:[\w.-]+/)*)` \|(.*)$", re.M)
NAME = re.compile(r"\*\*`([^`]+)`\*\*")
LINK = re.compile(r"\]\(((?:docs|api)/[^)#]*)\)")


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _named(section: str) -> list[str]:
    """Every module the section names, as a path from the repository's root."""
    rows = ROW.findall(section)
    named = [f"{package}{name}.py" for package, cells in rows for name in NAME.findall(cells)]
    # a module named outside a package row would escape the checks below
    assert len(named) == len(NAME.findall(section)), "a bold module name outside a package row"
    return named


def test_every_module_is_named_once_and_every_name_is_a_module() -> None:
    found = SECTION.search(_readme())
    assert found, "README.md lost its Layout section"
    named = _named(found.group(1))
    assert [m for m, n in Counter(named).items() if n > 1] == [], "modules named twice"
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "taxi").rglob("*.py")}
    assert sorted(modules - set(named)) == [], "modules missing from README's layout table"
    assert sorted(set(named) - modules) == [], "names in the layout table that are no module"


def test_linked_documents_exist() -> None:
    links = LINK.findall(_readme())
    assert "docs/clients.md" in links
    for link in links:
        assert (ROOT / link).exists(), f"README links to {link}, which is not there"


def test_architecture_and_layout_come_first() -> None:
    lines = _readme().splitlines()
    assert lines.index("## Architecture") < 40
    layout = lines.index("## Layout")
    end = next(i for i, line in enumerate(lines) if i > layout and line.startswith("## "))
    assert end + 1 <= 155, f"the Layout section ends on line {end + 1}, after line 155"
