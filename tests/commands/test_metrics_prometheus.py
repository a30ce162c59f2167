"""``wsbench run --metrics``, scraped by a real Prometheus (Debian's ``prometheus``, installed by
scripts/test.sh), queried through its HTTP API: the scraped delivery counter is the run's summary, and
a latency quantile Prometheus computes from the buckets agrees with wsbench's within the bucket width."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.drivers.conftest import relay_cmd
from wsbench.core.results import read_results
from wsbench.core.summary import summarize
from wsbench.metrics import BUCKETS_S, parse_address
from wsbench.target import free_port

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = """
name: watched
clients: 10
senders: 2
rate: 200/s
size: 128B
warmup: 1s
duration: 4s
drain: 0.5s
interval: 0.5s
"""



def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback only
        return response.read()


def _query(base: str, expr: str) -> float | None:
    body = json.loads(_get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    assert body["status"] == "success", body
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


@pytest.fixture
def prometheus(tmp_path: Path):
    """A real Prometheus on loopback scraping ``127.0.0.1:<port>`` every second; yields (port, api base)."""
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus is missing: scripts/test.sh installs it (apt-get install prometheus)"
    target, web = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        f"scrape_configs:\n  - job_name: wsbench\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n"
    )
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{web}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{web}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{base}/-/ready", timeout=1.0)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "prometheus exited"
                assert time.monotonic() < deadline, "prometheus did not become ready in 60 s"
                time.sleep(0.3)
        yield target, base
    finally:
        proc.terminate()  # by its PID
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_run_is_watched_live_in_prometheus(prometheus, tmp_path: Path) -> None:
    port, api = prometheus
    scenario = tmp_path / "watched.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "watched.jsonl"
    argv = [sys.executable, "-m", "wsbench", "run", str(scenario), "-q", "--json", "-o", str(out),
            "--server-cmd", relay_cmd(), "--metrics", f"127.0.0.1:{port}", "--metrics-linger", "3s"]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"metrics: http://127.0.0.1:{port}/metrics" in done.stderr
    summary = summarize(read_results(out))

    delivered = _query(api, "max_over_time(wsbench_delivered_total[5m])")
    assert delivered == summary["delivery"]["delivered"] > 0
    assert _query(api, "max_over_time(wsbench_sent_total[5m])") == summary["messages"]["sent"]
    assert _query(api, "max_over_time(wsbench_lost_total[5m])") == summary["delivery"]["lost"] == 0
    # live: scraped while the run went, the counter growing. Prometheus is asked for a scrape every
    # second, but a starved machine skips some (a scrape that times out is not stored), so the count of
    # samples is not pinned; what must hold is a sample taken mid-run, below the final count, and the
    # counter rising between samples.
    assert (_query(api, "count_over_time(wsbench_delivered_total[5m])") or 0) >= 3
    assert (_query(api, "min_over_time(wsbench_delivered_total[5m])") or 0) < delivered
    assert (_query(api, "changes(wsbench_delivered_total[5m])") or 0) >= 1
    assert _query(api, "max_over_time(wsbench_clients_connected[5m])") == 10
    assert (_query(api, "max_over_time(wsbench_server_rss_bytes[5m])") or 0) > 1e6

    for q, key in ((0.5, "p50"), (0.99, "p99")):
        ours_s = summary["latency"][key] / 1e3
        theirs = _query(api, f"histogram_quantile({q}, max_over_time(wsbench_latency_seconds_bucket[5m]))")
        assert theirs is not None
        bounds = (0.0, *BUCKETS_S)
        k = next(i for i in range(1, len(bounds)) if ours_s <= bounds[i])
        width = bounds[k] - bounds[k - 1]  # of the bucket holding wsbench's value
        assert abs(theirs - ours_s) <= width, (key, ours_s, theirs, bounds[k - 1], bounds[k])
    count = _query(api, "max_over_time(wsbench_latency_seconds_count[5m])")
    assert count == summary["latency"]["count"]


def test_metrics_addresses() -> None:
    assert parse_address("9464") == ("127.0.0.1", 9464)
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_address("[::1]:0") == ("::1", 0)
    with pytest.raises(Exception, match="expected PORT"):
        parse_address("localhost:http")
