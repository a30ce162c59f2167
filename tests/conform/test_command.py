"""``wsbench conform`` end to end, as CI runs it: exit codes, JUnit, results file, baseline, options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import xmlschema

from tests.conform.test_faults import fault_command
from wsbench.conform.cases import CASES
from wsbench.conform.rfc_cases import rfc_cases
from wsbench.conform.spawned_checks import has_ipv6_loopback
from wsbench.conform.spec import SPEC_VERSION
from wsbench.core.results import read_results

ROOT = Path(__file__).resolve().parents[2]
XSD = Path(__file__).with_name("junit.xsd")


def conform(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsbench.cli", "conform", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_gate_passes_both_reference_servers(tmp_path: Path) -> None:
    """What .ci/run relies on: the full gate on both servers, baseline applied, exits 0."""
    junit, results = tmp_path / "conformance.xml", tmp_path / "conform.jsonl"
    proc = conform("--server", "tornado", "--server", "aiohttp", "--junit", str(junit), "-o", str(results))
    failed = [(c["server"], c["id"], c["observed"]) for c in read_results(results).cases if c["verdict"] == "fail"]
    assert proc.returncode == 0 and not failed, f"{failed}\n{proc.stderr[-2000:]}"
    xmlschema.XMLSchema(str(XSD)).validate(str(junit))
    res = read_results(results)
    assert res.kind == "conformance" and res.footer is not None and res.footer["exit_code"] == 0
    chat = [c for c in CASES if "chat" in c.profiles]
    assert len(res.cases) == 2 * len(chat)
    # the gate's own cases (102 before the RFC 6455 families, and the SPEC ones added since) keep their
    # ids and verdicts; the families pass too (informational: the fail-fast timing of invalid UTF-8)
    new = {c.id for c in rfc_cases()}
    original = [c for c in res.cases if c["id"] not in new]
    assert len(original) >= 2 * 102 and {c["verdict"] for c in original} <= {"pass", "deviation"}
    assert {c["verdict"] for c in res.cases} <= {"pass", "deviation", "informational"}
    for label in ("tornado", "aiohttp"):
        summary = res.footer["summary"][label]
        # startup.ipv6_listening_line is skipped (with the reason) on a machine without ::1
        assert summary["fail"] == 0 and summary["skipped"] == (0 if has_ipv6_loopback() else 1)
        assert summary["duration_s"] < 60, f"the gate took {summary['duration_s']} s on {label}"
    assert "tornado (http://127.0.0.1:" in proc.stdout and "aiohttp (http://127.0.0.1:" in proc.stdout


def test_a_faulty_server_fails_the_gate_with_exit_1(tmp_path: Path) -> None:
    junit = tmp_path / "j.xml"
    proc = conform(
        "--server-cmd", fault_command("echo_to_sender", "aiohttp"), "--only", "messaging", "--junit", str(junit),
        "-o", str(tmp_path / "r.jsonl"),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout and "not conformant:" in proc.stderr
    assert "--fault echo_to_sender --base aiohttp" in proc.stdout  # the matrix column names the variant
    verdicts = {c["id"]: c["verdict"] for c in read_results(tmp_path / "r.jsonl").cases}
    assert verdicts["messaging.no_echo"] == "fail" and verdicts["messaging.relay_ascii"] == "pass"
    xmlschema.XMLSchema(str(XSD)).validate(str(junit))
    assert 'type="nonconformance"' in junit.read_text()


def write_baseline(tmp_path: Path, case: str, clause: str) -> Path:
    path = tmp_path / "baseline.yaml"
    path.write_text(
        f"deviations:\n  - server: aiohttp\n    case: {case}\n    clause: '{clause}'\n"
        "    framework: aiohttp 3.14.5\n    reason: listed for this test\n",
        encoding="utf-8",
    )
    return path


def test_baseline_turns_a_listed_failure_into_a_deviation_and_a_stale_entry_into_a_failure(tmp_path: Path) -> None:
    baseline = write_baseline(tmp_path, "messaging.no_echo", "7.2")
    results = tmp_path / "r.jsonl"
    faulty = conform(
        "--server-cmd", fault_command("echo_to_sender", "aiohttp"), "--only", "messaging.no_echo",
        "--baseline", str(baseline), "-o", str(results),
    )  # fmt: skip
    assert faulty.returncode == 0, faulty.stdout + faulty.stderr
    (case,) = read_results(results).cases
    assert case["verdict"] == "deviation" and "listed for this test" in case["reason"]
    stale = conform(
        "--server", "aiohttp", "--only", "messaging.no_echo", "--baseline", str(baseline), "-o", str(results)
    )
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "1 baseline entry now pass(es)" in stale.stderr
    (case,) = read_results(results).cases
    assert case["verdict"] == "fail" and case["stale_baseline"] and "passes now" in case["reason"]
    # without the baseline the faulty server simply fails
    plain = conform(
        "--server-cmd", fault_command("echo_to_sender", "aiohttp"), "--only", "messaging.no_echo", "--no-baseline",
        "-o", str(results),
    )  # fmt: skip
    assert plain.returncode == 1


def test_url_mode_skips_lifecycle_and_checks_against_the_given_options(start_reference_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_reference_server("tornado", max_message_size=1024)
    results = tmp_path / "r.jsonl"
    told = conform(
        "--url", server.url, "--max-message-size", "1024", "--only", "limits.size,shutdown,pings.interval",
        "-o", str(results),
    )  # fmt: skip
    assert told.returncode == 0, told.stdout + told.stderr
    verdicts = {c["id"]: c for c in read_results(results).cases}
    assert verdicts["shutdown.sigterm"]["verdict"] == "skipped"
    assert verdicts["pings.interval"]["verdict"] == "skipped" and "too long" in verdicts["pings.interval"]["reason"]
    assert (
        verdicts["limits.size.exact"]["verdict"] == "pass" and "1024 bytes" in verdicts["limits.size.exact"]["observed"]
    )
    assert server.alive()
    # told nothing, the gate expects SPEC's default 65536: a server with 1024 then fails the exact-size case
    untold = conform("--url", server.url, "--only", "limits.size.exact", "-o", str(results))
    assert untold.returncode == 1
    assert read_results(results).cases[0]["observed"].startswith("65536 bytes: nothing relayed")


def test_nodelay_off_must_show_the_stall(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    proc = conform("--server", "aiohttp:--no-nodelay", "--only", "nodelay", "-o", str(results))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (case,) = read_results(results).cases
    assert case["server"] == "aiohttp --no-nodelay" and "stall seen, as expected" in case["observed"]


def test_options_and_target_from_a_scenario(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: s\nclients: 2\nrate: 1/s\nduration: 1s\n"
        "target:\n  server: aiohttp\n  options:\n    max_message_size: 2KiB\n    ping_interval: 1500ms\n",
        encoding="utf-8",
    )
    results = tmp_path / "r.jsonl"
    proc = conform("--scenario", str(scenario), "--only", "limits.size.exact,pings.interval", "-o", str(results))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = read_results(results)
    assert res.header["target"]["server"] == "aiohttp"
    assert res.header["target"]["options"]["max_message_size"] == 2048
    assert res.header["spec_version"] == SPEC_VERSION and {c["spec_version"] for c in res.cases} == {SPEC_VERSION}
    observed = {c["id"]: c["observed"] for c in res.cases}
    assert observed["limits.size.exact"].startswith("2048 bytes: relayed")
    assert "interval 1.5 s" in observed["pings.interval"]
    # the command line wins over the scenario
    proc = conform(
        "--scenario", str(scenario), "--max-message-size", "1000", "--only", "limits.size.exact", "-o", str(results)
    )  # fmt: skip
    assert proc.returncode == 0 and read_results(results).cases[0]["observed"].startswith("1000 bytes")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: s\nclients: 2\nrate: 1/s\nduration: 1s\ntarget:\n  options:\n    max_message_size: big\n")
    proc = conform("--scenario", str(bad), "-o", str(results))
    assert proc.returncode == 2 and "bad.yaml:7" in proc.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    proc = conform("--only", "closing", "-o", str(tmp_path / "r.jsonl"))
    assert proc.returncode == 2 and "matches no case" in proc.stderr and "Traceback" not in proc.stderr
    proc = conform("--url", "http://10.1.2.3:80", "-o", str(tmp_path / "r.jsonl"))
    assert proc.returncode == 2 and "only loopback servers" in proc.stderr
    bad = tmp_path / "b.yaml"
    bad.write_text(
        "deviations:\n  - server: tornado\n    case: nope\n    clause: '1.1'\n    framework: t\n    reason: r\n",
        encoding="utf-8",
    )
    proc = conform("--baseline", str(bad), "-o", str(tmp_path / "r.jsonl"))
    assert proc.returncode == 2 and "b.yaml:3: deviations[0].case" in proc.stderr.replace("\n", "")
    proc = conform("--server", "nginx")
    assert proc.returncode == 2 and "unknown server 'nginx'" in proc.stderr


def test_unreachable_url_is_a_broken_run(tmp_path: Path) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = conform("--url", f"http://127.0.0.1:{port}", "--only", "http", "-o", str(tmp_path / "r.jsonl"))
    assert proc.returncode == 3 and "cannot reach" in proc.stderr
    assert read_results(tmp_path / "r.jsonl").footer["status"] == "broken"  # type: ignore[index]


def test_a_server_command_that_does_not_start_is_a_broken_run(tmp_path: Path) -> None:
    proc = conform("--server-cmd", f"{sys.executable} -c 'print(\"no address here\")'", "-o", str(tmp_path / "r.jsonl"))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "the run broke" in proc.stderr and "could not start" in proc.stderr


def test_list_cases() -> None:
    proc = conform("--list", "--only", "close.invalid")
    assert proc.returncode == 0
    assert "close.invalid.65535" in proc.stdout and "close.valid" not in proc.stdout
