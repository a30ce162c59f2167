"""Golden files: ``assert_golden(name, text)`` compares with ``tests/report/golden/NAME``.

Set ``WSBENCH_UPDATE_GOLDEN=1`` to (re)write them after a deliberate change; review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN_DIR = Path(__file__).parent / "golden"


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN_DIR / name
    if os.environ.get("WSBENCH_UPDATE_GOLDEN") or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if not os.environ.get("WSBENCH_UPDATE_GOLDEN"):
            raise AssertionError(f"golden file {path} did not exist; written now - review it and run again")
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"output differs from {path} (WSBENCH_UPDATE_GOLDEN=1 rewrites it)"
