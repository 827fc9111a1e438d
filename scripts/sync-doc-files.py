"""Rewrite the unit files shown in docs/*.md from examples/ (a test checks
they are equal): python scripts/sync-doc-files.py"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- file: (\S+) -->\n```\w*\n)(.*?)(```\n)", re.S)

for doc in sorted((ROOT / "docs").glob("*.md")):
    text = doc.read_text()
    new = BLOCK.sub(lambda m: m[1] + (ROOT / m[2]).read_text() + m[4], text)
    if new != text:
        doc.write_text(new)
        print(f"updated {doc.relative_to(ROOT)}")
