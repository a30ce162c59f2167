"""/stats samples: what is kept, and the server's CPU per interval from cumulative ``cpu_s``."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsbench.core.results import ResultsWriter, read_results
from wsbench.core.server_stats import cpu_per_interval, keep
from wsbench.core.summary import summarize


def test_keep_takes_the_numeric_spec_keys_only() -> None:
    data = {"server": "x", "rss_bytes": 5, "cpu_s": 1.5, "connections": True, "online": 3, "messages_in": "7"}
    assert keep(data) == {"rss_bytes": 5, "cpu_s": 1.5}


def test_cpu_per_interval_needs_two_consecutive_samples() -> None:
    samples = [{"cpu_s": 1.0}, {"cpu_s": 1.25}, None, {"cpu_s": 2.0}, {"cpu_s": 2.5}, {"rss_bytes": 1}, {"cpu_s": 3.0}]
    assert cpu_per_interval(samples) == [None, 0.25, None, None, 0.5, None, None]


def test_a_restarted_server_gives_no_figure_rather_than_a_negative_one() -> None:
    assert cpu_per_interval([{"cpu_s": 9.0}, {"cpu_s": 0.2}, {"cpu_s": 0.7}]) == [None, None, pytest.approx(0.5)]


def _interval(index: int, phase: str, delivered: int, server: dict | None) -> dict:
    return {
        "index": index,
        "start_s": float(index),
        "end_s": float(index + 1),
        "phase": phase,
        "counters": {"sent": delivered // 10, "delivered": delivered, "expected": delivered},
        "histograms": {},
        "generator": {"cpu_s": 0.1, "cpu_pct": 10.0},
        "server": server,
    }


def test_summary_reports_server_cpu_over_the_measured_intervals_with_a_figure(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    scenario = {"name": "s", "clients": 11, "senders": 1, "model": "open", "resolved_stages": [], "thresholds": []}
    with ResultsWriter(path) as w:
        w.header(kind="run", scenario=scenario, target={"mode": "url", "url": "http://127.0.0.1:1"}, driver="asyncio")
        w.event("phase", 0.0, name="warmup", phase_kind="warmup")
        w.interval(_interval(0, "warmup", 500, {"rss_bytes": 1, "cpu_s": 10.0}))  # the base: not counted itself
        w.event("phase", 1.0, name="s1", phase_kind="measure")
        w.interval(_interval(1, "s1", 1000, {"rss_bytes": 1, "cpu_s": 10.4}))  # 0.4 s for 1000
        w.interval(_interval(2, "s1", 1000, {"rss_bytes": 1, "cpu_s": 10.9}))  # 0.5 s for 1000
        w.interval(_interval(3, "s1", 1000, None))  # /stats missed: no figure, its deliveries not counted
        w.event("phase", 4.0, name="drain", phase_kind="drain")
        w.interval(_interval(4, "drain", 100, {"rss_bytes": 1, "cpu_s": 11.9}))  # previous sample missing
        w.footer(status="completed", accounting={"expected": 3100, "delivered": 3100, "lost": 0})
    server = summarize(read_results(path))["server"]
    assert server["cpu_s_measured"] == pytest.approx(0.9)
    assert server["cpu_us_per_delivery"] == pytest.approx(0.9e6 / 2000)
    assert server["cpu_pct_mean"] == pytest.approx(45.0)


def test_summary_without_cpu_s_says_none(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    scenario = {"name": "s", "clients": 2, "senders": 1, "model": "open", "resolved_stages": [], "thresholds": []}
    with ResultsWriter(path) as w:
        w.header(kind="run", scenario=scenario, target={"mode": "url", "url": "http://127.0.0.1:1"}, driver="asyncio")
        for i in range(3):
            w.interval(_interval(i, "s1", 10, {"rss_bytes": 100}))
    server = summarize(read_results(path))["server"]
    assert server["cpu_s_measured"] is None and server["cpu_us_per_delivery"] is None and server["cpu_pct_mean"] is None
    assert server["rss_bytes_max"] == 100
