"""The echo profile end to end: four libraries' echo servers (Tornado, aiohttp, websockets, Node's ws),
started on loopback by ``wsbench conform --server-cmd``, checked with their known-deviations baseline;
JUnit, the results file and ``wsbench report``; a target that does not echo; ``{port}`` and ``--url``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import xmlschema

from tests.conform.test_command import XSD, conform
from wsbench.conform.baseline import load_baseline
from wsbench.conform.cases import BY_ID, CASES
from wsbench.core.results import read_results
from wsbench.target import start_server

ROOT = Path(__file__).resolve().parents[2]
ECHO = ROOT / "tests" / "fixtures" / "echo"
BASELINE = ECHO / "known-deviations.yaml"
NODE_WS = ECHO / "node_modules" / "ws"

#: Each started with a 100000-byte message limit (the library's own option) so the size cases run.
LIMIT = "100000"
SERVERS = {
    "tornado": f"{sys.executable} -m tests.fixtures.echo.tornado_echo --max-size {LIMIT}",
    "aiohttp": f"{sys.executable} -m tests.fixtures.echo.aiohttp_echo --max-size {LIMIT}",
    "websockets": f"{sys.executable} -m tests.fixtures.echo.websockets_echo --max-size {LIMIT}",
    "ws": f"node {ECHO / 'ws_echo.js'} --max-size {LIMIT}",
}
ECHO_CASES = [c for c in CASES if "echo" in c.profiles]


def require_node_ws() -> None:
    if shutil.which("node") is None or not NODE_WS.is_dir():
        pytest.fail("Node's ws is missing: scripts/test.sh installs it (npm install --prefix tests/fixtures/echo)")


def test_the_baseline_of_the_four_libraries_is_valid_and_explained() -> None:
    baseline = load_baseline(BASELINE, BY_ID)
    assert {d.server for d in baseline.deviations} == {"tornado", "aiohttp", "websockets"}
    for d in baseline.deviations:
        assert "echo" in BY_ID[d.case].profiles and d.upstream and "RFC 6455" in d.reason


@dataclass
class EchoRun:
    proc: subprocess.CompletedProcess[str]
    junit: Path
    results: Path


@pytest.fixture(scope="module")
def echo_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, EchoRun]:
    """The whole echo profile on the four libraries, at the same time (each run mostly waits)."""
    require_node_ws()
    out = tmp_path_factory.mktemp("echo")
    started = {}
    for impl, command in SERVERS.items():
        junit, results = out / f"{impl}.xml", out / f"{impl}.jsonl"
        argv = [
            sys.executable, "-m", "wsbench.cli", "conform", "--profile", "echo", "--server-cmd", command,
            "--max-message-size", LIMIT, "--impl", impl, "--baseline", str(BASELINE), "--junit", str(junit),
            "-o", str(results),
        ]  # fmt: skip
        popen = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started[impl] = (popen, argv, junit, results)
    runs = {}
    for impl, (popen, argv, junit, results) in started.items():
        stdout, stderr = popen.communicate(timeout=180)
        runs[impl] = EchoRun(subprocess.CompletedProcess(argv, popen.returncode, stdout, stderr), junit, results)
    return runs


@pytest.mark.parametrize("impl", list(SERVERS))
def test_echo_profile_on_a_real_echo_server(impl: str, echo_runs: dict[str, EchoRun]) -> None:
    run = echo_runs[impl]
    proc, junit, results = run.proc, run.junit, run.results
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    xmlschema.XMLSchema(str(XSD)).validate(str(junit))
    res = read_results(results)
    verdicts = {c["id"]: c for c in res.cases}
    assert len(verdicts) == len(CASES)
    for case in CASES:
        got = verdicts[case.id]
        if "echo" not in case.profiles:
            assert got["verdict"] == "skipped" and "SPEC-only" in got["reason"], case.id
        else:
            assert got["verdict"] in ("pass", "non-strict", "informational", "deviation"), (case.id, got["observed"])
    assert verdicts["messaging.echo"]["verdict"] == "pass"
    assert verdicts["utf8.fail_fast.fragments"]["verdict"] == "informational"
    summary = res.footer["summary"] if res.footer else {}
    (entry,) = summary.values()
    assert entry["impl"] == impl and entry["duration_s"] < 60, entry
    if impl == "ws":  # no deviation at all: the strictest of the four
        assert entry["deviation"] == 0 and entry["non-strict"] == 0
    if impl == "tornado":  # wsbench report shows the file as the matrix (one library is enough)
        report = subprocess.run(
            [sys.executable, "-m", "wsbench.cli", "report", str(results)], capture_output=True, text=True, timeout=60
        )
        assert report.returncode == 0 and "utf8.noncharacters" in report.stdout, report.stderr[-2000:]
        assert "known deviation" in report.stdout and "non-strict" in report.stdout


def test_a_target_that_does_not_echo_gets_one_clear_error(tmp_path: Path) -> None:
    """The chat reference server is no echo server: the first case fails, nothing else runs, exit 3."""
    results = tmp_path / "r.jsonl"
    proc = conform(
        "--profile", "echo", "--server-cmd", f"{sys.executable} -m wsbench_servers.tornado_server", "-o", str(results)
    )  # fmt: skip
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "is not an echo server" in proc.stderr and "handshake on /: HTTP 303" in proc.stderr
    cases = read_results(results).cases
    assert [c["id"] for c in cases if c["verdict"] == "fail"] == ["messaging.echo"]
    assert all(c["verdict"] == "skipped" for c in cases if c["id"] != "messaging.echo")


def test_port_placeholder_url_path_and_size_cases(tmp_path: Path) -> None:
    # {port}: the command gets a free port and no --host/--port; no listening line is needed
    proc = conform(
        "--profile", "echo", "--server-cmd", f"{sys.executable} -m tests.fixtures.echo.aiohttp_echo --port {{port}}",
        "--only", "messaging.echo,limits.size", "-o", str(tmp_path / "a.jsonl"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    cases = {c["id"]: c for c in read_results(tmp_path / "a.jsonl").cases}
    assert cases["messaging.echo"]["verdict"] == "pass"
    assert (
        cases["limits.size.over"]["verdict"] == "skipped"
        and "--max-message-size" in cases["limits.size.over"]["reason"]
    )
    # --url ws://HOST:PORT/PATH: any path; the limit given, the size cases run (websockets' default is 1 MiB)
    with start_server(
        [sys.executable, "-m", "tests.fixtures.echo.websockets_echo", "--port", "0"], cwd=str(ROOT)
    ) as server:
        url = server.url.replace("http://", "ws://") + "/any/path"
        proc = conform(
            "--profile", "echo", "--url", url, "--max-message-size", str(2**20), "--only", "messaging.echo,limits.size",
            "-o", str(tmp_path / "b.jsonl"),
        )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    cases = {c["id"]: c for c in read_results(tmp_path / "b.jsonl").cases}
    assert cases["limits.size.over"]["verdict"] == "pass", cases["limits.size.over"]
    assert "/any/path" in proc.stdout


def test_list_shows_autobahn_numbers_and_profiles() -> None:
    proc = conform("--list", "--profile", "echo", "--only", "utf8,close.reason_123")
    assert proc.returncode == 0, proc.stderr
    assert "7.3.5" in proc.stdout and "6.22.1-6.22" in proc.stdout and "chat,echo" in proc.stdout
    assert len(ECHO_CASES) >= 140
