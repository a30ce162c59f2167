"""``wsbench locust --metrics``: the Locust master serves the same live metrics as ``wsbench run`` (parsed
here with prometheus_client's own OpenMetrics parser); the last scrape is the results file's summary."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from wsbench.core.results import read_results
from wsbench.core.summary import summarize
from wsbench.target import free_port

pytestmark = pytest.mark.slow

SCENARIO = """\
name: locust-metrics
clients: 6
senders: 2
rate: 200/s
warmup: 1s
duration: 2s
drain: 1s
"""



def _scrape(url: str) -> dict[str, float]:
    request = urllib.request.Request(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(request, timeout=2) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels:
                out[sample.name] = float(sample.value)
    return out


def test_the_locust_master_serves_live_metrics(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "r.jsonl"
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    scrapes: list[dict[str, float]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                scrapes.append(_scrape(url))
            time.sleep(0.25)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    argv = [sys.executable, "-m", "wsbench.cli", "locust", str(scenario), "--headless", "--workers", "1",
            "--server", "tornado", "-o", str(out), "--metrics", f"127.0.0.1:{port}",
            "--metrics-linger", "2s"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    stop.set()
    poller.join(timeout=5)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = summarize(read_results(out))
    assert len(scrapes) >= 4, "the metrics endpoint was not up during the run"
    growing = [s.get("wsbench_delivered_total", 0.0) for s in scrapes]
    assert growing == sorted(growing) and growing[0] < growing[-1]
    last = scrapes[-1]
    assert last["wsbench_delivered_total"] == summary["delivery"]["delivered"] > 0
    assert last["wsbench_sent_total"] == summary["messages"]["sent"]
    assert last["wsbench_latency_seconds_count"] == summary["latency"]["count"]
    assert last["wsbench_lost_total"] == 0
