"""/stats samples: what is kept, and the server's CPU per interval from cumulative ``cpu_s``."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsbench.core.results import ResultsWriter, read_results
from wsbench.core.server_stats import (
    MIN_DRIFT_SPAN_S,
    cpu_per_interval,
    drift,
    drift_line,
    keep,
    min_span_of,
)
from wsbench.core.summary import summarize
from wsbench.core.thresholds import evaluate


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


def _stats_rows(n: int, interval_s: float, mib_per_s: float = 0.0) -> list[dict[str, object]]:
    """``n`` measured rows with one ``/stats`` sample each: RSS growing ``mib_per_s``, CPU from cpu_spent_s."""
    return [
        {
            "start_s": i * interval_s,
            "end_s": (i + 1) * interval_s,
            "phase": "measure",
            "server": {
                "t_s": (i + 1) * interval_s,
                "rss_bytes": int((40 + mib_per_s * (i + 1) * interval_s) * 2**20),
                "connections": 100,
                "cpu_spent_s": 0.3 * interval_s,
                "cpu_span_s": interval_s,
            },
        }
        for i in range(n)
    ]


def test_drift_of_a_short_run_is_not_estimated_and_says_why() -> None:
    d = drift(_stats_rows(16, 1.0, mib_per_s=0.1))  # the default job: 15 s measured + drain
    assert d["rss_slope_mib_per_hour"] is None and d["cpu_pct_slope_per_hour"] is None
    assert d["connections_slope_per_hour"] is None
    assert d["drift_span_s"] == 15.0 and d["drift_samples"] == 16
    assert d["drift_note"] == (
        "too short to estimate drift (15 s, 16 samples; a slope needs 5 min and 10 samples: "
        "scenario key drift_min_span)"
    )
    # long enough but too few samples (a long interval)
    assert drift(_stats_rows(9, 60.0))["drift_note"].startswith("too short to estimate drift (8 min, 9 samples")


def test_drift_over_a_long_enough_span_gives_the_slope_with_its_span() -> None:
    d = drift(_stats_rows(169, 5.0, mib_per_s=0.01))  # 14 min at 5 s intervals
    assert d["drift_note"] is None and d["drift_span_s"] == 840.0
    assert d["rss_slope_mib_per_hour"] == pytest.approx(36.0, rel=1e-3)
    assert d["cpu_pct_slope_per_hour"] == 0.0 and d["connections_slope_per_hour"] == 0.0
    assert str(drift_line(d)).startswith(
        "over 14 min (169 samples): RSS +36 MiB/h (95% +36 to +36, Theil-Sen)  connections +0/h  CPU +0 points/h"
    )
    # a scenario may shorten the minimum span (drift_min_span): a leak this fast is plain in seconds
    quick = drift(_stats_rows(11, 0.5, mib_per_s=12.5), min_span_s=4.0)
    assert quick["rss_slope_mib_per_hour"] == pytest.approx(45_000, rel=1e-3)
    assert min_span_of({"drift_min_span": 4.0}) == 4.0 and min_span_of({}) == MIN_DRIFT_SPAN_S


def test_a_threshold_on_a_slope_of_a_short_run_fails_saying_it_was_too_short() -> None:
    summary = {"server": drift(_stats_rows(16, 1.0))}
    (verdict,) = evaluate(["server.rss_slope_mib_per_hour_low < 5"], summary)
    assert verdict["passed"] is False and verdict["observed"] is None
    assert verdict["reason"].startswith("too short to estimate drift (15 s")
    assert drift_line(summary["server"]) == summary["server"]["drift_note"]
    (other,) = evaluate(["server.cpu_pct_mean < 50"], summary)
    assert other["reason"] == "no data"
