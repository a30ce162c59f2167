"""SPEC.md and the gate name the same SPEC version; the changelog has an entry for it."""

from __future__ import annotations

import re
from pathlib import Path

from wsbench.conform.cases import CASES
from wsbench.conform.spec import SPEC_VERSION, cite

SPEC = Path(__file__).resolve().parents[2] / "SPEC.md"


def test_spec_md_states_the_version_the_gate_checks() -> None:
    text = SPEC.read_text("utf-8")
    head = re.search(r"\*\*SPEC version ([0-9.]+)\*\*", text[:400])
    assert head is not None and head.group(1) == SPEC_VERSION
    changelog = text[text.index("## Changelog") :]
    assert f"- **{SPEC_VERSION}**" in changelog


def test_every_case_cites_an_existing_clause_and_the_version() -> None:
    text = SPEC.read_text("utf-8")
    clauses = set(re.findall(r"^(\d+\.\d+) ", text, re.MULTILINE))
    missing = sorted({case.clause for case in CASES} - clauses)
    assert not missing, f"cases cite clauses SPEC.md does not have: {missing}"
    assert all(case.clause_text.startswith(f"SPEC {case.clause} (v{SPEC_VERSION})") for case in CASES)
    assert cite("8.4", "RFC 6455 §7.4") == f"SPEC 8.4 (v{SPEC_VERSION}); RFC 6455 §7.4"
