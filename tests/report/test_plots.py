from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.report.synthetic import write_run
from wsbench.core import histograms
from wsbench.core.results import read_results
from wsbench.core.summary import summarize
from wsbench.report import plots
from wsbench.report.rundata import RunData


def _run(path: Path) -> RunData:
    return RunData.from_results(read_results(path))


def _lines(svg: str, colour: str = plots.color(0)) -> int:
    """Data lines drawn in a run's colour with at least three points (grid lines and ticks are grey)."""
    paths = re.findall(r'<path d="([^"]*)"[^>]*?style="[^"]*?stroke: ' + colour, svg)
    return sum(1 for d in paths if d.count("L") >= 2)


def test_every_plot_of_a_run_is_drawn(tornado_file: Path) -> None:
    figures = plots.all_plots([_run(tornado_file)])
    assert [p.id for p in figures] == [
        "latency-distribution",
        "latency-over-time",
        "rates-over-time",
        "connect-distribution",
        "server-over-time",
        "generator-over-time",
    ]
    for plot in figures:
        assert plot.svg is not None, plot.id
        assert plot.svg.startswith("<svg") and plot.svg.rstrip().endswith("</svg>")
        assert "<?xml" not in plot.svg and "DOCTYPE" not in plot.svg
        assert _lines(plot.svg) >= 1, plot.id


def test_distribution_axis_reaches_five_nines(tornado_file: Path) -> None:
    svg = plots.latency_distribution([_run(tornado_file)]).svg
    assert svg is not None
    for label in ("90%", "99%", "99.9%", "99.99%", "99.999%"):
        assert f">{label}<" in svg
    assert "corrected" in svg and "uncorrected" in svg


def test_overlay_has_one_colour_per_run(tornado_file: Path, aiohttp_file: Path) -> None:
    svg = plots.latency_over_time([_run(tornado_file), _run(aiohttp_file)]).svg
    assert svg is not None
    assert plots.color(0) in svg and plots.color(1) in svg
    assert "tornado p50" in svg and "aiohttp p99" in svg


def test_no_blank_plot_without_samples(tmp_path: Path) -> None:
    run = _run(write_run(tmp_path / "r.jsonl", with_server_samples=False))
    plot = plots.server_over_time([run])
    assert plot.svg is None and "/stats" in plot.note


def test_ids_do_not_clash_between_plots_and_output_is_stable(tornado_file: Path) -> None:
    run = _run(tornado_file)
    first = plots.all_plots([run])
    ids: list[str] = []
    for plot in first:
        assert plot.svg is not None
        ids += re.findall(r'\bid="([^"]+)"', plot.svg)
    clip_ids = [i for i in ids if i.startswith("p") and len(i) > 8]
    assert len(clip_ids) == len(set(clip_ids))
    again = plots.all_plots([run])
    assert [p.svg for p in again] == [p.svg for p in first]


def test_repeats_are_drawn_each_from_time_zero(tmp_path: Path) -> None:
    parts = [read_results(write_run(tmp_path / f"r{k}.jsonl", seed=k)) for k in (1, 2)]
    pooled = RunData.from_repeats(parts, "tornado")
    single = RunData.from_results(parts[0], "tornado")
    for make in (plots.latency_over_time, plots.generator_over_time):
        assert _lines(make([pooled]).svg or "") > _lines(make([single]).svg or "")
    svg = plots.latency_over_time([pooled, single]).svg or ""
    assert svg.count(">tornado p50<") == 2  # one legend entry per run, not per repeat


def test_long_runs_are_drawn_in_exactly_merged_buckets(tmp_path: Path) -> None:
    results = read_results(write_run(tmp_path / "soak.jsonl", measure_intervals=1500, server_cpu_pct=30.0))
    run = RunData.from_results(results)
    rows = run.repeats[0]
    assert results.row_width == 2  # the reader keeps at most 1,024 rows: 1,504 intervals in rows of two
    step = -(-len(rows) // plots.MAX_POINTS)
    assert step == 2  # 753 rows -> 377 points
    x, pct, maxima = plots.latency_series(run, rows, (50.0, 99.0))
    assert len(x) == -(-len(rows) // step) <= plots.MAX_POINTS
    for j in (10, 200, 370):  # a bucket's percentiles are those of its intervals' histograms added up
        bucket = results.intervals[j * step : (j + 1) * step]
        merged = histograms.merge(r["histograms"].get("latency") for r in bucket)
        assert pct[j, 1] == pytest.approx(histograms.value_ms(merged, 99.0), rel=1e-3)
        assert maxima[j] == pytest.approx(merged.get_max_value() / 1000.0, rel=1e-3)
        sent = sum(r["counters"]["sent"] for r in bucket)
        span = bucket[-1]["end_s"] - bucket[0]["start_s"]
        _, rate = plots.series_over_time(run, rows, run.counters["sent"], "rate")
        assert rate[j] == pytest.approx(sent / span)
        _, rss = plots.series_over_time(run, rows, run.server["rss_bytes"], "max")
        assert rss[j] == max(r["server"]["rss_bytes_max"] for r in bucket)
    svg = plots.latency_over_time([run]).svg or ""
    assert "4 intervals per point" in svg
    short = RunData.from_results(read_results(write_run(tmp_path / "short.jsonl", measure_intervals=20)))
    assert "intervals per point" not in (plots.latency_over_time([short]).svg or "")


def test_the_server_plot_draws_the_rss_slope_of_the_summary(tmp_path: Path) -> None:
    # RSS grows 0.2 MiB/s; a minute is enough for this file (scenario drift_min_span), not by default
    results = read_results(write_run(tmp_path / "grow.jsonl", measure_intervals=60, drift_min_span=30.0))
    slope = summarize(results)["server"]["rss_slope_mib_per_hour"]
    assert slope == pytest.approx(720.0, rel=0.02)
    svg = plots.server_over_time([RunData.from_results(results)]).svg or ""
    assert f"fit {slope:+,.3g} MiB/h" in svg
    short = read_results(write_run(tmp_path / "short.jsonl", measure_intervals=60))
    assert summarize(short)["server"]["rss_slope_mib_per_hour"] is None
    assert "Theil-Sen fit" not in (plots.server_over_time([RunData.from_results(short)]).svg or "")
