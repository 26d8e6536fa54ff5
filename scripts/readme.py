"""Regenerate the README's generated sections: the table reference (from schemas/).

Run: .venv/bin/python scripts/readme.py   (tests/test_readme.py fails when it is stale)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from recorder.schema import markdown_reference

README = Path(__file__).resolve().parent.parent / "README.md"


def replace_section(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {name}:begin/end --> markers")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def main() -> int:
    text = README.read_text()
    updated = replace_section(text, "tables", markdown_reference())
    if updated != text:
        README.write_text(updated)
        print("README.md: table reference regenerated")
    else:
        print("README.md: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
