"""Refresh the client guides' included files (docs/clients.md): each block between `<!-- file: PATH -->` and
`<!-- /file -->` becomes PATH's current text (tests/test_client_guides.py fails when one is
stale). Run: `python scripts/readme_files.py`."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
BLOCK = re.compile(r"(<!-- file: (\S+) -->\n```(\w+)\n)(.*?)(```\n<!-- /file -->)", re.S)


def refresh(text: str) -> str:
    return BLOCK.sub(
        lambda m: m.group(1) + (ROOT / m.group(2)).read_text(encoding="utf-8") + m.group(5), text
    )


if __name__ == "__main__":
    guides = ROOT / "docs" / "clients.md"
    guides.write_text(refresh(guides.read_text(encoding="utf-8")), encoding="utf-8")
