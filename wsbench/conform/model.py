"""The data of a conformance gate: a case (what to do, what to expect) and its result (what was seen)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from wsbench.conform.options import ServerOptions
from wsbench.conform.spec import SPEC_VERSION, cite

if TYPE_CHECKING:
    from wsbench.conform.session import CaseContext

Verdict = Literal["pass", "non-strict", "informational", "fail", "deviation", "skipped"]
VERDICTS: tuple[Verdict, ...] = ("pass", "non-strict", "informational", "fail", "deviation", "skipped")
#: Verdicts that do not fail a gate (as Autobahn: non-strict is allowed by the RFC but not its strict
#: reading; informational reports what was seen where the RFC sets no rule, e.g. fail-fast timing).
PASSING: frozenset[str] = frozenset({"pass", "non-strict", "informational"})

#: The two profiles: ``chat`` checks SPEC.md servers (login, the room); ``echo`` checks any WebSocket
#: server that echoes each text and binary message (RFC 6455 only).
Profile = Literal["chat", "echo"]
PROFILES: tuple[Profile, ...] = ("chat", "echo")


@dataclass(frozen=True)
class Outcome:
    """What a case's steps observed, and whether that meets the expectation.

    ``level`` refines a passing outcome: ``"non-strict"`` (allowed by the RFC, not the strict
    behaviour) or ``"informational"`` (nothing to judge, only to report).
    """

    passed: bool
    observed: str
    level: Literal["pass", "non-strict", "informational"] = "pass"

    @property
    def verdict(self) -> Verdict:
        return self.level if self.passed else "fail"


Check = Callable[["CaseContext"], Awaitable[Outcome]]

#: The expectation of a protocol violation (SPEC 8.3), as the case tables state it.
PROTOCOL_ERROR = "close 1002, or the connection dropped (reported as such)"


@dataclass(frozen=True)
class Case:
    """One conformance case.

    ``expected`` is the text shown in reports; it may depend on the server options (``max_message_size``
    bytes...). ``check`` performs the steps against a :class:`CaseContext` and returns an
    :class:`Outcome`; it raises ``CaseSkipped`` when the target cannot be checked (with the reason).

    Scheduling: ``conns`` is the most ``/chat`` connections the case holds at once (concurrent cases
    share the server's ``max_connections``); ``exclusive`` cases run alone (timing measurements, or
    they fill the server); ``last`` cases run after all others (shutdown); ``needs_started`` cases
    run only on a server wsbench started (they signal the process). ``spawns`` cases start server
    processes of their own (start-up contract): they run together after the exclusive ones, so that
    their CPU does not slow the timed cases of the concurrent phase. ``background`` cases only wait on
    the server's own timer, with a byte now and then on one HTTP connection (no ``/chat`` connection,
    no CPU to speak of): they start first and run beside every phase but the last, so that a 5 s timer
    does not hold up the concurrent phase.
    """

    id: str
    clause: str
    title: str
    expected: str | Callable[[ServerOptions], str]
    check: Check
    rfc: str | None = None
    conns: int = 1
    exclusive: bool = False
    last: bool = False
    needs_started: bool = False
    spawns: bool = False
    background: bool = False
    timeout: float = 15.0
    duration_hint: float = 0.5
    #: the Autobahn testsuite case(s) this one corresponds to ("7.3.5", "4.1.2-4.1.5"), if any
    autobahn: str | None = None
    #: the profiles that run this case (``chat`` only: a SPEC-level case)
    profiles: tuple[Profile, ...] = ("chat",)

    @property
    def category(self) -> str:
        return self.id.split(".", 1)[0]

    def expected_text(self, options: ServerOptions) -> str:
        return self.expected(options) if callable(self.expected) else self.expected

    @property
    def clause_text(self) -> str:
        """``SPEC 7.2 (v1.1); RFC 6455 §5.4; Autobahn 5.3``: the clause, its SPEC version, the RFC, Autobahn."""
        text = cite(self.clause, self.rfc)
        return f"{text}; Autobahn {self.autobahn}" if self.autobahn else text


@dataclass
class CaseResult:
    """One case run against one server (the ``case`` record of the results file)."""

    server: str
    id: str
    category: str
    clause: str
    rfc: str | None
    title: str
    expected: str
    observed: str
    verdict: Verdict
    reason: str | None = None
    duration_s: float = 0.0
    stale_baseline: bool = False
    spec_version: str = SPEC_VERSION
    autobahn: str | None = None

    @property
    def cites(self) -> str:
        text = cite(self.clause, self.rfc, self.spec_version)
        return f"{text}; Autobahn {self.autobahn}" if self.autobahn else text

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        out["duration_s"] = round(self.duration_s, 4)
        return out
