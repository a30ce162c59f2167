"""``wsbench locust`` for real: Locust in child processes against the reference servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from wsbench.core import histograms
from wsbench.core.results import read_results
from wsbench.target import ServerProcess

pytestmark = pytest.mark.slow

SCENARIO = """\
name: locust-test
clients: 6
senders: 2
rate: 200/s
duration: 2s
drain: 1s
thresholds:
  - delivery.lost == 0
"""
SENT = 2 * 200  # two seconds at 200/s, no warm-up
RECEIVERS = 5  # everyone but the sender


def wsbench_locust(tmp: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, Path]:
    scenario = tmp / "scenario.yaml"
    scenario.write_text(SCENARIO)
    out = tmp / "results.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "wsbench.cli", "locust", str(scenario), "--headless", "-o", str(out), *args],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
    return proc.returncode, proc.stdout + proc.stderr, out


def interval_lines(path: Path) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["type"] == "interval"]


def locust_pids(output: str) -> list[int]:
    """The PIDs ``wsbench locust`` reports for its master and workers."""
    line = next(x for x in output.splitlines() if x.startswith("wsbench: Locust pid"))
    return [int(w) for w in line.replace(",", " ").split() if w.isdigit()]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_headless_single_process_counts_every_delivery(reference_server: ServerProcess, tmp_path: Path) -> None:
    drift = "server.rss_slope_mib_per_hour < 5"  # a 3 s run cannot give a slope: warned before, failed after
    aiohttp = "aiohttp" in reference_server.label
    extra = ["--set", "thresholds.1=latency.p50 < 1us", "--set", f"thresholds.2={drift}"] if aiohttp else []
    code, output, out = wsbench_locust(tmp_path, "--url", reference_server.url, *extra)
    results = read_results(out)
    footer = results.footer
    assert footer is not None, output
    assert footer["status"] == "completed"
    acc = footer["accounting"]
    assert acc["expected"] == acc["delivered"] == SENT * RECEIVERS
    assert acc["lost"] == 0 and acc["duplicated"] == 0 and acc["reordered"] == 0
    assert results.counter("sent") == SENT
    assert results.counter("delivered") == SENT * RECEIVERS
    # our latencies are microsecond-resolution HdrHistograms, not Locust's rounded milliseconds
    latency = results.histogram("latency")
    assert latency.get_total_count() == SENT * RECEIVERS
    assert latency.get_min_value() < 1000  # microseconds
    p50 = histograms.summary_ms(latency)["p50"]
    assert p50 is not None and p50 != round(p50)
    assert results.histogram("fanout").get_total_count() == SENT
    # Locust's own table has the broadcast row, one request per delivery
    rows = [line.split() for line in output.splitlines()]
    assert any(row[:2] == ["WS", "broadcast"] and str(SENT * RECEIVERS) in row for row in rows)
    if extra:  # an impossible threshold fails the run (exit 1), the zero-loss one still passes
        assert code == 1, output
        assert [v["passed"] for v in footer["thresholds"]] == [True, False, False]
        assert "too short to estimate drift" in footer["thresholds"][2]["reason"], footer["thresholds"][2]
        warned = f"wsbench: warning: threshold '{drift}' cannot be judged: the run measures about 3 s"
        assert warned in output, output
    else:
        assert code == 0, output
        assert footer["exit_code"] == 0 and footer["thresholds"][0]["passed"]


def test_master_and_two_workers_merge_exactly(tmp_path: Path) -> None:
    # WSBENCH_CLOCK_PROBE: estimate clock offsets by round trips even on one host (true offset 0)
    probe = {"WSBENCH_CLOCK_PROBE": "1"}
    code, output, out = wsbench_locust(tmp_path, "--workers", "2", "--server", "tornado", env=probe)
    assert code == 0, output
    results = read_results(out)
    assert results.footer is not None and results.footer["status"] == "completed"
    lines = interval_lines(out)
    per_worker: dict[str, int] = {}
    sent_per_worker: dict[str, int] = {}
    for r in lines:
        per_worker[r["worker"]] = per_worker.get(r["worker"], 0) + r["counters"].get("delivered", 0)
        sent_per_worker[r["worker"]] = sent_per_worker.get(r["worker"], 0) + r["counters"].get("sent", 0)
    assert per_worker.get("worker-0", 0) > 0 and per_worker.get("worker-1", 0) > 0
    assert sum(per_worker.values()) == results.counter("delivered", phases=[r["phase"] for r in results.intervals])
    acc = results.footer["accounting"]
    assert acc["delivered"] == acc["expected"] == sum(per_worker.values()) == SENT * RECEIVERS
    assert acc["lost"] == 0
    assert sum(sent_per_worker.values()) == SENT
    merged = results.histogram("latency")
    assert merged.get_total_count() == SENT * RECEIVERS
    clocks = results.events_of("clock")
    assert {e["worker"] for e in clocks} == {"worker-0", "worker-1"}
    for e in clocks:
        assert e["method"] == "round-trip" and abs(e["offset_ms"]) <= e["bound_ms"] < 20
    # each worker's event loop measured its wait for a CPU (wsbench.schedstat), and the summary sums them; a
    # kernel without the figures leaves them out and the summary says null (docs/results-format.md)
    from wsbench import schedstat
    from wsbench.core.summary import summarize

    timed = [r for r in lines if r.get("generator")]  # late records and the master's expected counts have none
    got = summarize(results)["generator"]["cpu_got_ratio"]
    if schedstat.read() is not None:
        assert timed and all(r["generator"]["cpu_wait_s"] >= 0 and r["generator"]["cpu_slices"] >= 0 for r in timed)
        assert got is not None and 0.0 < got <= 1.0
    else:
        assert timed and not any("cpu_wait_s" in r["generator"] for r in timed) and got is None
    # the master and both workers are gone
    pids = locust_pids(output)
    assert len(pids) == 3 and all(gone(pid) for pid in pids)


def test_server_dying_mid_run_breaks_the_run_and_keeps_what_was_measured(tmp_path: Path) -> None:
    relay = Path(__file__).resolve().parents[1] / "fixtures" / "relay.py"
    code, output, out = wsbench_locust(tmp_path, "--server-cmd", f"{sys.executable} {relay} --exit-after 2")
    assert code == 3, output
    results = read_results(out)
    assert results.footer is not None and results.footer["status"] == "broken", output
    assert results.counter("delivered", phases=[r["phase"] for r in results.intervals]) > 0
    assert results.footer["exit_code"] == 3
