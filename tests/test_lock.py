"""The lock files: CI's check (scripts/check-lock) passes on this checkout and fails
when pyproject.toml asks for something the lock does not hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(REPO / "scripts/check-lock"), "--root", str(root)]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _copy(tmp_path: Path) -> Path:
    (tmp_path / "requirements").mkdir()
    for name in ("pyproject.toml", "requirements/dev.txt", "requirements/prod.txt"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def test_lock_matches_pyproject() -> None:
    result = _check(REPO)
    assert result.returncode == 0, result.stderr


def test_a_new_dependency_without_relocking_fails(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text().replace(
        '  "pyjwt>=2.8",\n', '  "pyjwt>=2.8",\n  "leftpad-for-tests>=1.0",\n'
    )
    pyproject.write_text(text)
    result = _check(root)
    assert result.returncode != 0
    assert "leftpad-for-tests is not locked" in result.stderr


def test_a_range_the_pin_falls_outside_fails(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"pyjwt>=2.8"', '"pyjwt>=99"'))
    result = _check(root)
    assert result.returncode != 0
    assert "pyjwt==" in result.stderr and "outside >=99" in result.stderr
