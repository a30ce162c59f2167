"""The case table: well-formed data that cites real SPEC clauses, and --only selection."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from wsbench_servers.policy import VALID_CLOSE_CODES as SPEC_VALID_CLOSE_CODES

from wsbench.conform.cases import BY_ID, CASES, CATEGORIES, select
from wsbench.conform.cases_frames import INVALID_CLOSE_CODES, VALID_CLOSE_CODES
from wsbench.conform.options import ServerOptions
from wsbench.errors import UsageError

SPEC = Path(__file__).resolve().parents[2] / "SPEC.md"


def spec_clauses() -> set[str]:
    return set(re.findall(r"^(\d+\.\d+) ", SPEC.read_text(encoding="utf-8"), re.MULTILINE))


def test_every_case_cites_a_clause_that_exists_in_spec() -> None:
    clauses = spec_clauses()
    assert len(clauses) > 30
    missing = {case.id: case.clause for case in CASES if case.clause not in clauses}
    assert not missing


def test_cases_are_well_formed_data() -> None:
    assert len(CASES) >= 190
    assert len(BY_ID) == len(CASES)
    options = ServerOptions()
    for case in CASES:
        assert case.category in CATEGORIES, case.id
        assert case.title and case.expected_text(options), case.id
        assert case.rfc is None or case.rfc.startswith("RFC "), case.id
        assert case.conns >= 0 and case.timeout > 0
    # every category has cases; only shutdown runs last and needs a started server
    assert {case.category for case in CASES} == set(CATEGORIES)
    assert [case.id for case in CASES if case.last] == ["shutdown.sigterm"]
    assert [case.id for case in CASES if case.needs_started] == [
        "shutdown.sigterm",
        "startup.bad_option",
        "startup.option_forms",
        "startup.option_bounds",
        "startup.ipv6_listening_line",
        "limits.compressed",
    ]


def test_the_close_codes_of_the_issue_are_all_checked() -> None:
    # SPEC 8.4 (v1.1): 1012-1014 (IANA: service restart, try again later, bad gateway) are valid
    assert set(VALID_CLOSE_CODES) == {1000, 1001, 1003, *range(1007, 1015), 3000, 3999, 4000, 4999}
    assert set(INVALID_CLOSE_CODES) == {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}
    for code in VALID_CLOSE_CODES:
        assert BY_ID[f"close.valid.{code}"].clause == "8.4"
    for code in INVALID_CLOSE_CODES:
        assert BY_ID[f"close.invalid.{code}"].clause == "8.5"
    assert "close.invalid.one_byte" in BY_ID
    # the probes agree with SPEC 8.4's one table, the one both servers use (1002: issue 11's close.valid.1002)
    assert {*VALID_CLOSE_CODES, 1002} <= SPEC_VALID_CLOSE_CODES and "close.valid.1002" in BY_ID
    assert not set(INVALID_CLOSE_CODES) & SPEC_VALID_CLOSE_CODES


def test_expectations_follow_the_server_options() -> None:
    small = ServerOptions(max_message_size=1024, ping_interval=2, max_connections=7, nodelay=False)
    assert "1024 bytes" in BY_ID["limits.size.exact"].expected_text(small)
    assert "1025 bytes" in BY_ID["limits.size.over"].expected_text(small)
    assert "every 2 s" in BY_ID["pings.interval"].expected_text(small)
    assert "7 open" in BY_ID["handshake.max_connections"].expected_text(small)
    assert "stall" in BY_ID["nodelay.conversation"].expected_text(small)
    assert "no pings" in BY_ID["pings.interval"].expected_text(ServerOptions(ping_interval=0))


def test_select_by_category_id_prefix_glob_and_lists() -> None:
    assert {c.category for c in select(["close"])} == {"close"}
    assert [c.id for c in select(["limits.size.over"])] == ["limits.size.over"]
    assert {c.id for c in select(["close.invalid"])} == {f"close.invalid.{x}" for x in INVALID_CLOSE_CODES} | {
        "close.invalid.one_byte",
        "close.invalid.reason_utf8",
    }
    assert [c.id for c in select(["framing.rsv?"])] == ["framing.rsv1", "framing.rsv2", "framing.rsv3"]
    both = select(["close,limits", "nodelay"])
    assert {c.category for c in both} == {"close", "limits", "nodelay"}
    # table order is kept, whatever the order of the tokens
    assert [c.id for c in both] == [c.id for c in CASES if c.category in {"close", "limits", "nodelay"}]
    chat = [c for c in CASES if "chat" in c.profiles]
    assert select(None) == chat == select([])
    assert select(None, profile="echo") == list(CASES)  # the runner skips the SPEC-only ones, with the reason


def test_select_unknown_token_is_a_usage_error_naming_categories() -> None:
    with pytest.raises(UsageError, match="matches no case; categories: http, login"):
        select(["closing"])
