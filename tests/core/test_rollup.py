"""Rollups written as the run goes and the streaming reader: same summary as from every interval, bounded
rows, truncated rollups and old (version 1) files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.report.synthetic import write_run
from wsbench.core import histograms, rollup
from wsbench.core.results import ResultsWriter, read_results
from wsbench.core.server_stats import theil_sen
from wsbench.core.summary import summarize

CPU_WAIT_KEYS = ("cpu_wait_s_measured", "cpu_got_ratio", "cpu_wait_ms_per_slice")
SUMMARY_PARTS = ("latency", "latency_uncorrected", "fanout", "connect", "delivery", "messages", "rate", "closes")


@pytest.fixture
def small_rollups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rollups of 8 intervals, histograms in interval lines only for the first 32, at most 12 rows."""
    monkeypatch.setattr(rollup, "ROLLUP_INTERVALS", 8)
    monkeypatch.setattr(rollup, "DETAIL_INTERVALS", 32)
    monkeypatch.setattr(rollup, "MAX_ROWS", 12)
    monkeypatch.setattr(ResultsWriter.__init__, "__defaults__", (8,))


def _without_rollups(path: Path, version: int = 2, **kw: object) -> Path:
    """The same synthetic run written with no rollups (``version=1``: an old file)."""
    original = ResultsWriter.header

    def header(self: ResultsWriter, **fields: object) -> None:
        original(self, **fields, **({"version": 1} if version == 1 else {}))

    ResultsWriter.__init__.__defaults__ = (0,)
    ResultsWriter.header = header  # type: ignore[method-assign]
    try:
        return write_run(path, **kw)  # type: ignore[arg-type]
    finally:
        ResultsWriter.__init__.__defaults__ = (rollup.ROLLUP_INTERVALS,)
        ResultsWriter.header = original  # type: ignore[method-assign]


def _close(a: object, b: object, where: str) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _close(a[key], b[key], f"{where}.{key}")
    else:
        assert a == pytest.approx(b), where


def _same(a: dict, b: dict) -> None:
    for key in SUMMARY_PARTS:
        _close(a[key], b[key], key)
    for key in ("cpu_s", "cpu_pct_max", "cpu_pct_mean", "loop_lag_ms_max", "open_fds_max", *CPU_WAIT_KEYS):
        assert a["generator"][key] == pytest.approx(b["generator"][key]), key
    for key in ("rss_bytes_max", "rss_bytes_min", "rss_bytes_last", "connections_max", "cpu_s_measured", "samples"):
        assert a["server"][key] == pytest.approx(b["server"][key]), key


def test_a_long_run_reads_from_its_rollups_with_the_summary_of_every_interval(
    tmp_path: Path, small_rollups: None
) -> None:
    kw = {"measure_intervals": 200, "server_cpu_pct": 30.0, "seed": 3, "cpu_wait_s": 0.05}
    rolled = read_results(write_run(tmp_path / "rolled.jsonl", **kw))  # type: ignore[arg-type]
    plain = read_results(_without_rollups(tmp_path / "plain.jsonl", **kw))
    lines = [json.loads(line) for line in (tmp_path / "rolled.jsonl").read_text().splitlines()]
    assert lines[0]["rollup"] == {"intervals": 8}
    kinds = [r["type"] for r in lines]
    assert kinds.count("rollup") >= 204 // 8
    late = [r for r in lines if r["type"] == "interval" and r["index"] >= 32 and r["phase"] == "measure"]
    assert late and all("histograms" not in r and r["percentiles"]["latency"]["count"] > 0 for r in late)
    assert rolled.row_width >= 8 and len(rolled.intervals) <= 12 + 4  # bounded, a few phases aside
    assert rolled.interval_count == plain.interval_count == 204
    _same(summarize(rolled), summarize(plain))
    # the wait for a CPU is summed across rolled-up intervals like CPU time: 0.05 s over 100 slices each
    assert summarize(rolled)["generator"]["cpu_wait_ms_per_slice"] == 0.5
    assert histograms.same_counts(rolled.histogram("latency"), plain.histogram("latency"))


def test_a_file_cut_in_a_rollup_still_reports_every_interval_written(tmp_path: Path, small_rollups: None) -> None:
    path = write_run(tmp_path / "run.jsonl", measure_intervals=60, seed=5)
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    cut = max(i for i, line in enumerate(lines) if line.startswith('{"type":"rollup"') and '"index":48' in line)
    truncated = tmp_path / "cut.jsonl"
    truncated.write_text("".join(lines[:cut]) + lines[cut][: len(lines[cut]) // 2])
    results = read_results(truncated)
    assert results.truncated
    assert any("cut short" in w for w in results.warnings)
    written = [json.loads(line) for line in lines[:cut] if line.startswith('{"type":"interval"')]
    summary = summarize(results)
    assert summary["delivery"]["delivered"] == sum(r["counters"]["delivered"] for r in written)
    assert summary["messages"]["sent"] == sum(r["counters"]["sent"] for r in written)
    assert summary["latency"]["count"] > 0
    assert summary["exit_code"] == 3


def test_an_old_version_1_file_reads_as_before(tmp_path: Path) -> None:
    old = _without_rollups(tmp_path / "old.jsonl", version=1, measure_intervals=30, server_cpu_pct=20.0)
    header = json.loads(old.read_text().splitlines()[0])
    assert header["version"] == 1 and "rollup" not in header
    results = read_results(old)
    assert len(results.intervals) == 34 and results.row_width == 1
    new = read_results(write_run(tmp_path / "new.jsonl", measure_intervals=30, server_cpu_pct=20.0))
    _same(summarize(results), summarize(new))


def test_late_worker_records_after_their_rollup_are_counted_once(tmp_path: Path, small_rollups: None) -> None:
    """A Locust worker's record of an interval that was already rolled up (it arrived late)."""
    path = tmp_path / "locust.jsonl"
    with ResultsWriter(path) as w:
        w.header(driver="locust", interval_s=1.0)
        for index in range(40):
            for worker in ("a", "b"):
                if (index, worker) == (3, "b"):
                    continue
                h = histograms.new_histogram()
                histograms.record_many(h, [1000 + index] * 5)
                record = {
                    "index": index,
                    "start_s": float(index),
                    "end_s": index + 1.0,
                    "phase": "measure",
                    "counters": {"sent": 1, "delivered": 5},
                    "clients_connected": 2,
                    "histograms": {"latency": h},
                    "worker": worker,
                }
                w.interval(record)
            if index == 20:  # worker b's record of interval 3 arrives after window 0's rollup
                h = histograms.new_histogram()
                histograms.record_many(h, [777] * 5)
                w.interval(
                    {
                        "index": 3,
                        "start_s": 3.0,
                        "end_s": 4.0,
                        "phase": "measure",
                        "counters": {"sent": 1, "delivered": 5},
                        "histograms": {"latency": h},
                        "worker": "b",
                    }
                )
        w.footer(status="completed")
    results = read_results(path)
    assert results.counter("delivered") == 400
    assert results.histogram("latency").get_total_count() == 400
    assert results.histogram("latency").get_min_value() == 777


def test_theil_sen_ignores_outliers_and_brackets_the_slope() -> None:
    rng = np.random.default_rng(1)
    x = np.arange(40.0)
    y = 2.0 * x + rng.normal(0.0, 1.0, x.size)
    y[5], y[13], y[30] = 500.0, -300.0, 900.0  # wild samples
    slope, low, high = theil_sen(x, y) or (0.0, 0.0, 0.0)
    assert slope == pytest.approx(2.0, abs=0.1)
    assert low < 2.0 < high and high - low < 0.5
    flat = theil_sen(x, 100.0 + rng.normal(0.0, 1.0, x.size)) or (1.0, 1.0, 1.0)
    assert flat[1] < 0.0 < flat[2]
    assert theil_sen([1.0, 1.0], [1.0, 2.0]) is None


def test_compare_and_html_read_long_runs_from_their_rollups(
    tmp_path: Path, small_rollups: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wsbench compare`` and the HTML report get the bounded rows too, with the summary's numbers."""
    from wsbench.core import server_stats
    from wsbench.report.compare import compare_runs, load_runs
    from wsbench.report.html import render_report

    monkeypatch.setattr(server_stats, "MIN_SLOPE_SAMPLES", 5)  # one fitted point per row, and rows are few here

    # 150 s of samples: enough for a drift slope with drift_min_span 60 s (5 min by default)
    a = read_results(write_run(tmp_path / "a.jsonl", measure_intervals=150, seed=1, base_ms=2.0, drift_min_span=60))
    b = read_results(write_run(tmp_path / "b.jsonl", measure_intervals=150, seed=2, base_ms=4.0, server="aiohttp"))
    assert len(a.intervals) <= 16 and len(b.intervals) <= 16
    comparison = compare_runs(load_runs([a, b]), resamples=200)
    p99 = comparison.row("p99")
    assert [c.value for c in p99.cells] == [summarize(a)["latency"]["p99"], summarize(b)["latency"]["p99"]]
    assert p99.cells[1].ratio is not None and p99.cells[1].ratio > 1.5
    html = render_report(a)
    assert "Theil-Sen fit" in html and "intervals per point" in html
