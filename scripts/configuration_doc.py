"""Write docs/configuration.md from the settings table (storemon/config.py, SETTINGS).

.venv/bin/python scripts/configuration_doc.py           # (re)write the page
.venv/bin/python scripts/configuration_doc.py --check   # fail if the committed one is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "configuration.md"


def main(argv: list[str]) -> int:
    from storemon.config import document

    text = document()
    if "--check" in argv:
        if OUT.read_text(encoding="utf-8") != text:
            print(
                f"{OUT.relative_to(ROOT)} is stale: run .venv/bin/python scripts/configuration_doc.py", file=sys.stderr
            )
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
