"""Proving the RFC 6455 families on both profiles: each one-bug variant (a correct server behind
:mod:`tests.fixtures.fault_proxy`, which makes it read the client's frames as the buggy server would)
fails the cases that name its bug, on the chat profile (the Tornado reference server behind the proxy)
and on the echo profile (aiohttp's echo server behind it). Without a fault the same cases pass.
"""

from __future__ import annotations

import concurrent.futures
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.fault_proxy import FAULTS
from wsbench.conform.cases import BY_ID, select
from wsbench.conform.model import PASSING
from wsbench.conform.options import resolve
from wsbench.conform.runner import Target, run_target
from wsbench.target import ServerProcess, option_flags, reference_server_argv, start_server

ROOT = Path(__file__).resolve().parents[2]
CHAT_OPTIONS = resolve(True, {})
ECHO_OPTIONS = resolve(False, {})


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, ServerProcess]]:
    chat = start_server(reference_server_argv("tornado", option_flags(CHAT_OPTIONS.as_flags_dict())), label="tornado")
    echo = start_server(
        [sys.executable, "-m", "tests.fixtures.echo.aiohttp_echo", "--port", "0"], label="aiohttp echo", cwd=str(ROOT)
    )
    try:
        yield {"chat": chat, "echo": echo}
    finally:
        chat.stop()
        echo.stop()


def proxy_target(fault: str | None, profile: str, upstream: ServerProcess) -> Target:
    host_port = upstream.url.split("//", 1)[1]
    options = CHAT_OPTIONS if profile == "chat" else ECHO_OPTIONS
    if fault is None:
        url = upstream.url
        return Target("direct", "url", options, url=url, profile=profile, ws_path="/chat" if profile == "chat" else "/")
    argv = ["env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "tests.fixtures.fault_proxy", "--fault", fault]
    argv += ["--upstream", host_port, "--port", "0"]
    return Target(
        f"proxy {fault}", "command", options, argv=argv, profile=profile,
        ws_path="/chat" if profile == "chat" else "/echo", size_known=profile == "chat",
    )  # fmt: skip


def test_every_proxy_fault_names_real_cases_of_both_profiles() -> None:
    assert len(FAULTS) >= 15
    for name, (_bug, cases, _transform) in FAULTS.items():
        for case_id in cases:
            assert case_id in BY_ID, name
            assert BY_ID[case_id].profiles == ("chat", "echo"), case_id


VARIANTS = [(name, profile) for name in sorted(FAULTS) for profile in ("chat", "echo")]
#: Variants checked at once: most of a variant's time is waiting (a connection that should have been
#: failed stays open for the case's reply timeout), so they overlap well even on 2 cores.
PARALLEL = 8


def check_variant(fault: str, profile: str, upstream: ServerProcess) -> list[str]:
    bug, case_ids, _ = FAULTS[fault]
    report = run_target(proxy_target(fault, profile, upstream), select(list(case_ids), profile=profile))
    if report.broken is not None:
        return [f"{profile} behind '{bug}': the run broke: {report.broken}"]
    verdicts = {r.id: (r.verdict, r.observed) for r in report.results}
    return [
        f"{profile} behind '{bug}' passed {case_id}: {verdicts[case_id][1]}"
        for case_id in case_ids
        if verdicts[case_id][0] != "fail"
    ]


def test_every_proxy_fault_is_caught_by_its_cases_on_both_profiles(upstreams: dict[str, ServerProcess]) -> None:
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        futures = [pool.submit(check_variant, fault, profile, upstreams[profile]) for fault, profile in VARIANTS]
        problems = [p for f in futures for p in f.result()]
    assert not problems, "\n".join(problems)


def test_the_same_cases_pass_without_a_fault(upstreams: dict[str, ServerProcess]) -> None:
    ids = sorted({case_id for _bug, cases, _t in FAULTS.values() for case_id in cases})
    for profile in ("chat", "echo"):
        report = run_target(proxy_target(None, profile, upstreams[profile]), select(ids, profile=profile))
        bad = [(r.id, r.verdict, r.observed) for r in report.results if r.verdict not in PASSING]
        assert not bad, f"{profile}: {bad}"
