"""Every package `taxi/` imports is declared in pyproject.toml (the service's dependencies,
or the `otel` extra for the optional tracing), not merely installed as something else's."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parent.parent


def _imported() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "taxi").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"taxi"}


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["otel"]]
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_every_imported_package_is_declared() -> None:
    providers = metadata.packages_distributions()
    declared = _declared()
    undeclared = {}
    for name in sorted(_imported()):
        dists = {canonicalize_name(d) for d in providers.get(name, [])}
        assert dists, f"taxi imports {name}, which no installed distribution provides"
        if not dists & declared:
            undeclared[name] = sorted(dists)
    assert undeclared == {}, "imported by taxi/ but not declared in pyproject.toml"
