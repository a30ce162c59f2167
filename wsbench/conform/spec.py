"""Which SPEC.md the gate checks: its version (SPEC.md's first lines and changelog say the same), and
how a case cites a clause of it.

The version is kept here, not read from SPEC.md at run time, because an installed wsbench has no
SPEC.md beside it; ``tests/conform/test_spec_version.py`` keeps the two equal.
"""

from __future__ import annotations

SPEC_VERSION = "1.2"


def cite(clause: str, rfc: str | None = None, version: str = SPEC_VERSION) -> str:
    """``SPEC 7.2 (v1.1)``, with the RFC section after it when there is one."""
    text = f"SPEC {clause} (v{version})"
    return f"{text}; {rfc}" if rfc else text
