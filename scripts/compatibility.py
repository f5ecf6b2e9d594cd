"""Rewrite the options table of docs/compatibility.md from the parser's registry
(erebus/openvpn/options.py); tests/unit/test_config_registry.py checks the two agree.

    .venv/bin/python scripts/compatibility.py          # rewrite the table and counts
    .venv/bin/python scripts/compatibility.py --check  # exit 1 if the file would change
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from erebus.openvpn.options import OPTIONS  # noqa: E402

DOC = ROOT / "docs" / "compatibility.md"
HEADER = "| Option | erebus | What erebus does, or why |\n| --- | --- | --- |\n"


def row(spec) -> str:
    flags = [word for word, on in (("Windows", spec.windows), ("connection", spec.connection),
                                   ("inline", spec.inline)) if on]
    tail = f" *({', '.join(flags)})*" if flags else ""
    return f"| `{spec.name}` | {spec.kind} | {spec.reason}{tail} |\n"


def render(text: str) -> str:
    start = text.index(HEADER) + len(HEADER)
    end = start
    while end < len(text) and text.startswith("| `", end):
        end = text.index("\n", end) + 1
    table = "".join(row(OPTIONS[name]) for name in sorted(OPTIONS))
    text = text[:start] + table + text[end:]
    counts = Counter(spec.kind for spec in OPTIONS.values())
    heading = (f"## The options ({len(OPTIONS)}: {counts['implemented']} implemented, "
               f"{counts['ignored']} ignored, {counts['refused']} refused, "
               f"{counts['removed']} removed)")
    return re.sub(r"^## The options \(.*\)$", heading, text, count=1, flags=re.M)


def main() -> int:
    old = DOC.read_text()
    new = render(old)
    if "--check" in sys.argv[1:]:
        return int(new != old)
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
