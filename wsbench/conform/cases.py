"""The conformance cases, as data: id (its first part is the category), SPEC clause, RFC section, what
is expected, and the check that performs the steps (:mod:`wsbench.conform.checks`,
:mod:`wsbench.conform.measure`).

The table is assembled here, in order, from the data modules of each area (:mod:`~wsbench.conform.cases_http`,
:mod:`~wsbench.conform.cases_messaging`, :mod:`~wsbench.conform.cases_frames`,
:mod:`~wsbench.conform.cases_lifecycle`), the SPEC 1.1 decisions (:mod:`~wsbench.conform.decisions`), the
hostile input (:mod:`~wsbench.conform.hostile`) and the RFC 6455 families (:mod:`~wsbench.conform.rfc_cases`).

``--only`` selects by category (``close``), by id (``limits.size.over``), by id prefix
(``close.invalid``) or by glob (``framing.rsv*``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from wsbench.conform import hostile as h
from wsbench.conform.cases_frames import FRAME_CASES
from wsbench.conform.cases_http import HTTP_CASES
from wsbench.conform.cases_lifecycle import LIFECYCLE_CASES
from wsbench.conform.cases_messaging import MESSAGING_CASES
from wsbench.conform.decisions import DECISION_CASES
from wsbench.conform.model import Case
from wsbench.conform.rfc_cases import annotate, rfc_cases
from wsbench.errors import UsageError

CATEGORIES = (
    "http",
    "login",
    "handshake",
    "messaging",
    "limits",
    "framing",
    "payload",  # issue 11: RFC 6455 families (wsbench/conform/rfc_cases.py)
    "fragments",
    "utf8",
    "close",
    "pings",
    "slow_consumer",
    "nodelay",
    "shutdown",
    "startup",
)


def _cases() -> list[Case]:
    cases = [
        *HTTP_CASES,  # HTTP resources, login, handshake
        *MESSAGING_CASES,  # messaging, limits
        *FRAME_CASES,  # framing and UTF-8, close handshake
        *LIFECYCLE_CASES,  # pings, slow consumer, TCP, shutdown (last: it stops the server), start-up contract
        # --- SPEC 1.1 decisions (issue 12)
        *DECISION_CASES,
        # --- hostile input (issue 16): see wsbench.conform.hostile
        *h.cases(),
    ]
    # issue 11: Autobahn numbers and the echo profile on the RFC-level cases; the RFC 6455 families
    cases = [*annotate(cases), *rfc_cases()]
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert all(case.category in CATEGORIES for case in cases)
    return cases


CASES: tuple[Case, ...] = tuple(_cases())
BY_ID = {case.id: case for case in CASES}


def select(only: Iterable[str] | None, cases: Sequence[Case] = CASES, profile: str = "chat") -> list[Case]:
    """The cases named by ``--only`` tokens (categories, ids, id prefixes, globs); all when empty.

    The chat profile leaves out the echo-only cases (binary echo, the echo probe); the echo profile
    keeps every case, and the runner skips the SPEC-only ones with that reason."""
    if profile == "chat":
        cases = [case for case in cases if "chat" in case.profiles]
    tokens = [t.strip() for item in (only or ()) for t in item.split(",") if t.strip()]
    if not tokens:
        return list(cases)
    chosen: set[str] = set()
    for token in tokens:
        hits = [
            case.id
            for case in cases
            if case.category == token
            or case.id == token
            or case.id.startswith(token + ".")
            or fnmatch.fnmatchcase(case.id, token)
        ]
        if not hits:
            raise UsageError(
                f"--only {token!r} matches no case; categories: {', '.join(CATEGORIES)} "
                "(or give a case id such as limits.size.over, or a glob such as 'framing.rsv*')"
            )
        chosen.update(hits)
    return [case for case in cases if case.id in chosen]
