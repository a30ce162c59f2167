"""Locust's web UI with wsbench's numbers, in headless Chromium: start from the UI, watch, stop."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS
from wsbench.core.results import read_results
from wsbench.target import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCENARIO = """\
name: locust-ui
clients: 8
senders: 2
rate: 200/s
duration: 60s
drain: 1s
"""


def wait_for_port(port: int, proc: subprocess.Popen[str], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.2)
    raise AssertionError(f"the web UI did not open port {port}")


def locust_pid(log: Path) -> int:
    for line in log.read_text().splitlines():
        if line.startswith("wsbench: Locust pid"):
            return int(line.split()[3].rstrip(","))
    raise AssertionError("wsbench locust did not say its Locust pid")


def latency_count(page: object) -> int:
    row = page.get_by_role("row").filter(has_text="latency (from intended send)")  # type: ignore[attr-defined]
    cells = row.first.get_by_role("cell").all_inner_texts()
    return int(cells[1])


def drive(page: object, port: int) -> None:
    """Start a test from the UI, see Locust's broadcast row and our live percentiles, stop it."""
    from playwright.sync_api import expect

    page.goto(f"http://127.0.0.1:{port}/")  # type: ignore[attr-defined]
    page.get_by_role("button", name=re.compile("start", re.I)).click()  # type: ignore[attr-defined]
    # Locust's own table gets the broadcast row (one request per delivery)
    expect(page.get_by_role("row").filter(has_text="broadcast").first).to_be_visible(timeout=20_000)  # type: ignore[attr-defined]
    # our tab: HdrHistogram percentiles to 0.01 ms, updated live
    page.get_by_role("tab", name=re.compile("wsbench latency", re.I)).click()  # type: ignore[attr-defined]
    row = page.get_by_role("row").filter(has_text="latency (from intended send)").first  # type: ignore[attr-defined]
    expect(row).to_be_visible()
    deadline = time.monotonic() + 20
    while latency_count(page) == 0 and time.monotonic() < deadline:
        page.wait_for_timeout(500)  # type: ignore[attr-defined]
    first = latency_count(page)
    assert first > 0
    cells = row.get_by_role("cell")
    assert re.fullmatch(r"\d+\.\d\d", cells.nth(2).inner_text()), cells.all_inner_texts()
    page.wait_for_timeout(3000)  # type: ignore[attr-defined]
    assert latency_count(page) > first  # live
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "locust.png"))  # type: ignore[attr-defined]
    page.get_by_role("tab", name=re.compile("wsbench delivery", re.I)).click()  # type: ignore[attr-defined]
    expect(page.get_by_role("row").filter(has_text="deliveries")).to_be_visible()  # type: ignore[attr-defined]
    page.screenshot(path=str(SCREENSHOTS / "locust-delivery.png"))  # type: ignore[attr-defined]
    page.get_by_role("button", name=re.compile("stop", re.I)).click()  # type: ignore[attr-defined]
    expect(page.get_by_text(re.compile("stopped", re.I)).first).to_be_visible(timeout=30_000)  # type: ignore[attr-defined]


def test_start_watch_and_stop_from_the_web_ui(start_reference_server: object, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    server = start_reference_server("tornado")  # type: ignore[operator]
    scenario = tmp_path / "ui.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "ui.jsonl"
    port = free_port()
    dump = tmp_path / "greenlets.txt"
    log = tmp_path / "wsbench-locust.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsbench.cli", "locust", str(scenario), "--url", server.url,
         "--web-port", str(port), "-o", str(out)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "WSBENCH_GREENLET_DUMP": str(dump)},
    )  # fmt: skip
    failure: str | None = None
    try:
        wait_for_port(port, proc, log)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                drive(browser.new_page(viewport={"width": 1400, "height": 800}), port)
            except AssertionError as exc:
                failure = str(exc)
                if proc.poll() is None:  # where is Locust stuck?
                    os.kill(locust_pid(log), signal.SIGUSR2)
                    time.sleep(1)
            finally:
                browser.close()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log.read_text()
    if failure is not None:
        greenlets = dump.read_text() if dump.exists() else "(no greenlet dump)"
        raise AssertionError(f"{failure}\n--- wsbench locust ---\n{output}\n--- greenlets ---\n{greenlets}")
    results = read_results(out)
    assert results.footer is not None, output
    assert results.footer["status"] == "interrupted"  # stopped from the UI before the plan's end
    assert results.footer["accounting"]["lost"] == 0
    assert results.counter("delivered") > 0
