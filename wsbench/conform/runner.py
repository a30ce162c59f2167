"""Running the cases against one target: start it (or reach it), schedule the cases, collect results.

Scheduling, so that a whole gate takes seconds, not minutes:

1. independent cases run concurrently (``concurrency`` at a time), each holding at most ``case.conns``
   ``/chat`` connections, and all of them together at most a budget below the server's
   ``max_connections`` (every case uses nicknames of its own, so they do not see each other);
2. ``exclusive`` cases then run one at a time on a quiet server (timing measurements, filling the
   server to ``max_connections``);
3. ``last`` cases (shutdown) run at the end, because they stop the server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from wsbench.conform.http_client import Endpoint, http_request
from wsbench.conform.model import Case, CaseResult
from wsbench.conform.options import ServerOptions
from wsbench.conform.preflight import CONCURRENT_BUDGET, chat_preflight
from wsbench.conform.session import CaseContext, CaseFailed, CaseSkipped
from wsbench.errors import ConnectError, ServerStartError
from wsbench.target import LOOPBACK_HOSTS, ServerProcess, start_server

#: The echo profile's first case (it proves the target echoes; see :func:`wsbench.conform.rfc.echo_probe`).
ECHO_PROBE = "messaging.echo"

Mode = Literal["embedded", "command", "url"]


@dataclass
class Target:
    """One server to check: started by wsbench (a reference ``kind`` or a ``command``) or at ``url``."""

    label: str
    mode: Mode
    options: ServerOptions
    argv: list[str] | None = None
    url: str | None = None
    kind: str | None = None
    command: str | None = None
    #: ``chat`` (SPEC.md) or ``echo`` (any echo server, RFC 6455 cases only)
    profile: str = "chat"
    #: the WebSocket path: ``/chat`` on the chat profile, the URL's path (default ``/``) on echo
    ws_path: str = "/chat"
    #: whether max_message_size is known (given, or SPEC's on the chat profile): size cases need it
    size_known: bool = True
    #: the implementation name baseline entries match (``--impl``), instead of /stats or the label
    impl: str | None = None
    #: the port substituted for ``{port}`` in the command (then no listening line is expected)
    port: int | None = None

    @property
    def started_by_wsbench(self) -> bool:
        return self.mode != "url"

    def record(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "mode": self.mode,
            "server": self.kind,
            "url": self.url,
            "command": self.command,
            "argv": self.argv,
            "options": self.options.as_record(),
            "profile": self.profile,
            "ws_path": self.ws_path,
        }


@dataclass
class TargetReport:
    target: Target
    impl: str  # implementation name (baseline entries match it): the reference kind, or /stats "server"
    url: str
    results: list[CaseResult] = field(default_factory=list)
    duration_s: float = 0.0
    broken: str | None = None  # why the run could not finish (server died, unreachable)
    framework_version: str | None = None
    server_exit: int | None = None


def _now() -> float:
    return time.perf_counter()


async def _probe(endpoint: Endpoint) -> dict[str, Any] | None:
    """Reachability and /stats (for the implementation name). Raises ConnectError when unreachable."""
    r = await http_request(endpoint, "GET", "/stats")
    if r.status is None:
        raise ConnectError(f"cannot reach {endpoint.url}: {r.error}")
    if r.status != 200:
        return None
    try:
        data = json.loads(r.body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def _settle(endpoint: Endpoint, timeout: float = 3.0) -> None:
    """Wait until the server has handled the closes of earlier cases (``/stats`` connections == 0)."""
    deadline = _now() + timeout
    while _now() < deadline:
        r = await http_request(endpoint, "GET", "/stats", timeout=1.0)
        if r.status != 200:
            await asyncio.sleep(0.3)
            return
        try:
            if int(json.loads(r.body).get("connections", 0)) == 0:
                return
        except (ValueError, AttributeError, TypeError):
            return
        await asyncio.sleep(0.05)


class _Runner:
    def __init__(
        self,
        target: Target,
        endpoint: Endpoint,
        server: ServerProcess | None,
        concurrency: int,
        on_result: Callable[[CaseResult], None] | None,
    ) -> None:
        self.target = target
        self.endpoint = endpoint
        self.server = server
        self.concurrency = max(1, concurrency)
        self.on_result = on_result
        self.shared: dict[str, Any] = {}
        self.shared_lock = asyncio.Lock()
        self.server_gone: str | None = None
        self.not_echo: str | None = None  # set when the echo profile's first case fails

    def _result(self, case: Case, verdict: str, observed: str, reason: str | None, duration: float) -> CaseResult:
        result = CaseResult(
            server=self.target.label,
            id=case.id,
            category=case.category,
            clause=case.clause,
            rfc=case.rfc,
            title=case.title,
            expected=case.expected_text(self.target.options),
            observed=observed,
            verdict=verdict,  # type: ignore[arg-type]
            reason=reason,
            duration_s=duration,
            autobahn=case.autobahn,
        )
        if self.on_result is not None:
            self.on_result(result)
        return result

    def _check_server(self) -> None:
        if self.server is not None and not self.server.alive() and not self.shared.get("shutdown_sent"):
            self.server_gone = self.server.death_message()

    async def execute(self, case: Case) -> CaseResult:
        start = _now()
        if case.needs_started and self.server is None:
            return self._result(case, "skipped", "", "needs a server wsbench started (--server or --server-cmd)", 0.0)
        if self.target.profile not in case.profiles:
            why = f"SPEC-only case: the {self.target.profile} profile checks RFC 6455 behaviour only"
            return self._result(case, "skipped", "", why, 0.0)
        if self.not_echo is not None:
            return self._result(case, "skipped", "", f"not run: {self.not_echo}", 0.0)
        if case.id.startswith("limits.size.") and not self.target.size_known:
            why = "the server's message size limit is not known: give --max-message-size to check it"
            return self._result(case, "skipped", "", why, 0.0)
        self._check_server()
        if self.server_gone:
            return self._result(case, "fail", "not run: the server is gone", self.server_gone, 0.0)
        ctx = CaseContext(
            self.endpoint, self.target.options, self.server, self.target.label, self.shared, self.shared_lock,
            profile=self.target.profile, ws_path=self.target.ws_path, size_known=self.target.size_known,
        )  # fmt: skip
        verdict, observed, reason = "fail", "", None
        try:
            outcome = await asyncio.wait_for(case.check(ctx), case.timeout)
            verdict, observed = outcome.verdict, outcome.observed
        except CaseSkipped as exc:
            verdict, reason = "skipped", str(exc)
        except CaseFailed as exc:
            observed = str(exc)
        except TimeoutError:
            observed = f"no verdict within {case.timeout:g} s (the case timed out)"
        except Exception as exc:  # a bug in a check: fail the case, say so, keep the gate going
            observed = f"wsbench error in the check: {type(exc).__name__}: {exc}"
            reason = "internal error; run with WSBENCH_DEBUG=1 and report it"
        finally:
            await ctx.cleanup()
        self._check_server()
        if self.server_gone and verdict != "skipped" and not self.shared.get("shutdown_sent"):
            verdict = "fail"
            reason = f"the server died during this case: {self.server_gone}"
        return self._result(case, verdict, observed, reason, _now() - start)

    async def run(self, cases: Sequence[Case]) -> list[CaseResult]:
        background = [c for c in cases if c.background and not c.exclusive and not c.last and not c.spawns]
        concurrent = sorted(
            (c for c in cases if not c.exclusive and not c.last and not c.spawns and c not in background),
            key=lambda c: -c.duration_hint,
        )
        exclusive = [c for c in cases if c.exclusive and not c.last]
        spawning = [c for c in cases if c.spawns and not c.exclusive and not c.last]
        last = [c for c in cases if c.last]
        results: dict[str, CaseResult] = {}
        probe = next((c for c in cases if c.id == ECHO_PROBE), None) if self.target.profile == "echo" else None
        if probe is not None:
            # the echo profile starts with one case; if the target does not echo, nothing else is run
            results[probe.id] = first = await self.execute(probe)
            concurrent = [c for c in concurrent if c is not probe]
            if first.verdict == "fail":
                self.not_echo = (
                    f"{self.endpoint.url}{self.target.ws_path} is not an echo server ({ECHO_PROBE}: {first.observed})"
                )

        budget = max(1, min(int(self.target.options.max_connections * 0.75), CONCURRENT_BUDGET))
        in_use = 0
        room = asyncio.Condition()
        slots = asyncio.Semaphore(self.concurrency)

        async def one(case: Case) -> None:
            nonlocal in_use
            need = min(case.conns, budget)
            async with slots:
                async with room:
                    await room.wait_for(lambda: in_use + need <= budget)
                    in_use += need
                try:
                    results[case.id] = await self.execute(case)
                finally:
                    async with room:
                        in_use -= need
                        room.notify_all()

        behind = [asyncio.ensure_future(self.execute(c)) for c in background if self.not_echo is None]
        await asyncio.gather(*(one(c) for c in concurrent))
        for case in exclusive:
            if not self.server_gone:
                await _settle(self.endpoint)
            results[case.id] = await self.execute(case)
        for case, result in zip(spawning, await asyncio.gather(*(self.execute(c) for c in spawning)), strict=True):
            results[case.id] = result
        for case, result in zip(background, await asyncio.gather(*behind), strict=False):
            results[case.id] = result
        for case in background:
            if case.id not in results:  # the echo probe failed before they could start
                results[case.id] = await self.execute(case)
        for case in last:
            if not self.server_gone:
                await _settle(self.endpoint)
            results[case.id] = await self.execute(case)
        return [results[c.id] for c in cases]


def run_target(
    target: Target,
    cases: Sequence[Case],
    *,
    concurrency: int = 24,
    on_result: Callable[[CaseResult, TargetReport], None] | None = None,
) -> TargetReport:
    """Start (or reach) ``target``, run ``cases`` against it, stop what was started.

    ``on_result(result, report)`` is called as each case finishes (``report.impl`` is known by then),
    so a caller can write results as they come: an interrupted run keeps what it measured.
    """
    started = _now()
    server: ServerProcess | None = None
    if target.argv is not None:
        server = start_server(target.argv, label=target.label, port=target.port)
        url = server.url
    else:
        assert target.url is not None
        url = target.url
    report = TargetReport(target=target, impl=target.impl or target.kind or target.label, url=url)
    try:
        endpoint = Endpoint.from_url(url)
        if endpoint.host not in LOOPBACK_HOSTS:
            raise ServerStartError(f"{url}: wsbench conform only checks loopback servers (127.0.0.1, ::1)")

        async def main() -> list[CaseResult]:
            stats = await _probe(endpoint)
            if target.profile == "chat":  # the echo profile's first case does this job (messaging.echo)
                await chat_preflight(endpoint)
            if stats is not None:
                if isinstance(stats.get("server"), str) and target.kind is None and target.impl is None:
                    report.impl = stats["server"]
                version = stats.get("framework_version")
                report.framework_version = str(version) if version is not None else None
            callback = None if on_result is None else (lambda result: on_result(result, report))
            runner = _Runner(target, endpoint, server, concurrency, callback)
            results = await runner.run(cases)
            report.broken = runner.server_gone or runner.not_echo
            return results

        report.results = asyncio.run(main())
    finally:
        if server is not None:
            report.server_exit = server.stop()
    report.duration_s = _now() - started
    return report
