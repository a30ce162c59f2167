"""The runner: verdicts from checks, timeouts and errors, the connection budget, a server that dies."""

from __future__ import annotations

import asyncio
import signal

from wsbench.conform.model import Case, Outcome
from wsbench.conform.options import resolve
from wsbench.conform.runner import Target, run_target
from wsbench.conform.session import CaseContext, CaseFailed, CaseSkipped
from wsbench.target import option_flags, reference_server_argv


def started_target(**options: object) -> Target:
    opts = resolve(True, options)
    argv = reference_server_argv("tornado", option_flags(opts.as_flags_dict()))
    return Target("tornado", "embedded", opts, argv=argv, kind="tornado")


async def ok(ctx: CaseContext) -> Outcome:
    peer = await ctx.join()
    return Outcome(True, f"joined as {peer.nick}")


async def no(ctx: CaseContext) -> Outcome:
    return Outcome(False, "saw something else")


async def skip(ctx: CaseContext) -> Outcome:
    raise CaseSkipped("not applicable here")


async def step_failed(ctx: CaseContext) -> Outcome:
    raise CaseFailed("login refused")


async def boom(ctx: CaseContext) -> Outcome:
    raise KeyError("oops")


async def hang(ctx: CaseContext) -> Outcome:
    await asyncio.sleep(30)
    return Outcome(True, "")


def case(cid: str, check, **kw: object) -> Case:  # type: ignore[no-untyped-def]
    return Case(cid, "7.2", "t", "e", check, **kw)  # type: ignore[arg-type]


def test_verdicts_errors_and_timeouts() -> None:
    cases = [
        case("messaging.ok", ok),
        case("messaging.no", no),
        case("messaging.skip", skip),
        case("messaging.step", step_failed),
        case("messaging.boom", boom),
        case("messaging.hang", hang, timeout=0.3),
        case("shutdown.x", ok, needs_started=True, last=True),
    ]
    streamed: list[tuple[str, str]] = []
    report = run_target(started_target(), cases, on_result=lambda r, rep: streamed.append((r.id, rep.impl)))
    got = {r.id: (r.verdict, r.observed, r.reason) for r in report.results}
    assert sorted(streamed) == sorted((c.id, "tornado") for c in cases)  # each result as soon as it is known
    assert [r.id for r in report.results] == [c.id for c in cases]  # table order, whatever the schedule
    assert got["messaging.ok"][0] == "pass" and got["messaging.ok"][1].startswith("joined as ")
    assert got["messaging.no"] == ("fail", "saw something else", None)
    assert got["messaging.skip"] == ("skipped", "", "not applicable here")
    assert got["messaging.step"] == ("fail", "login refused", None)
    assert got["messaging.boom"][0] == "fail" and "wsbench error in the check: KeyError" in got["messaging.boom"][1]
    assert got["messaging.hang"][0] == "fail" and "timed out" in got["messaging.hang"][1]
    assert got["shutdown.x"][0] == "pass"
    assert report.impl == "tornado" and report.framework_version and report.broken is None
    assert report.server_exit == 0  # stopped with SIGTERM by the runner: a clean exit


def test_url_targets_skip_cases_that_need_a_started_server(start_reference_server) -> None:  # type: ignore[no-untyped-def]
    server = start_reference_server("aiohttp")
    target = Target("url", "url", resolve(False, {}), url=server.url)
    report = run_target(target, [case("shutdown.x", ok, needs_started=True, last=True), case("messaging.ok", ok)])
    assert [(r.id, r.verdict) for r in report.results] == [("shutdown.x", "skipped"), ("messaging.ok", "pass")]
    assert "needs a server wsbench started" in (report.results[0].reason or "")
    assert report.impl == "aiohttp"  # from /stats
    assert server.alive()


def test_concurrent_cases_stay_within_the_connection_budget() -> None:
    active = 0
    peak = 0

    async def hold(ctx: CaseContext) -> Outcome:
        nonlocal active, peak
        active += 2
        peak = max(peak, active)
        await ctx.join()
        await ctx.join()
        await asyncio.sleep(0.1)
        active -= 2
        return Outcome(True, "held 2")

    cases = [case(f"messaging.c{i}", hold, conns=2) for i in range(6)]
    report = run_target(started_target(max_connections=4), cases, concurrency=8)  # budget: 3 connections
    assert all(r.verdict == "pass" for r in report.results)
    assert peak == 2


def test_a_background_case_runs_beside_the_phases_and_an_exclusive_one_alone() -> None:
    spans: dict[str, tuple[float, float]] = {}

    def timed(seconds: float):  # type: ignore[no-untyped-def]
        async def check(ctx: CaseContext) -> Outcome:
            t0 = asyncio.get_running_loop().time()
            await asyncio.sleep(seconds)
            spans[ctx.label + str(len(spans))] = (t0, asyncio.get_running_loop().time())
            return Outcome(True, f"{seconds} s")

        return check

    def span(cid: str, check):  # type: ignore[no-untyped-def]
        async def recorded(ctx: CaseContext) -> Outcome:
            t0 = asyncio.get_running_loop().time()
            out = await check(ctx)
            spans[cid] = (t0, asyncio.get_running_loop().time())
            return out

        return recorded

    cases = [
        case("http.idle", span("http.idle", timed(1.2)), conns=0, background=True),
        case("messaging.a", span("messaging.a", timed(0.2))),
        case("messaging.b", span("messaging.b", timed(0.2))),
        case("nodelay.x", span("nodelay.x", timed(0.3)), exclusive=True),
        case("shutdown.x", span("shutdown.x", timed(0.0)), last=True),
    ]
    report = run_target(started_target(), cases)
    assert [r.verdict for r in report.results] == ["pass"] * 5
    idle, alone, last = spans["http.idle"], spans["nodelay.x"], spans["shutdown.x"]
    others = [spans["messaging.a"], spans["messaging.b"]]
    # the background case started with the concurrent ones and overlapped the exclusive one...
    assert idle[0] <= min(s for s, _ in others) + 0.05 and idle[1] > alone[0]
    # ...the exclusive case ran after every concurrent case, and the last case after the background one
    assert alone[0] >= max(e for _, e in others) and last[0] >= idle[1]


def test_a_server_that_dies_fails_the_rest_and_marks_the_run_broken() -> None:
    async def kill(ctx: CaseContext) -> Outcome:
        assert ctx.server is not None
        ctx.server.signal(signal.SIGKILL)
        await asyncio.sleep(0.3)
        return Outcome(True, "killed it")

    cases = [case("messaging.kill", kill, exclusive=True), case("messaging.after", ok, exclusive=True)]
    report = run_target(started_target(), cases)
    verdicts = {r.id: r for r in report.results}
    assert verdicts["messaging.kill"].verdict == "fail" and "died during this case" in (
        verdicts["messaging.kill"].reason or ""
    )
    assert (
        verdicts["messaging.after"].verdict == "fail"
        and verdicts["messaging.after"].observed == "not run: the server is gone"
    )
    assert report.broken and "killed by signal 9" in report.broken
