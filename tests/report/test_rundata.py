from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.report.synthetic import write_run
from wsbench.core import histograms
from wsbench.core.results import read_results
from wsbench.report.plots import latency_series, series_over_time
from wsbench.report.rundata import RunData, percentiles_ms, unique_labels

PCTS = [0.1, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_equal_hdrhistogram_for_any_subset_of_intervals(tmp_path: Path, seed: int) -> None:
    results = read_results(write_run(tmp_path / "run.jsonl", seed=seed, base_ms=0.5 * seed))
    run = RunData.from_results(results)
    matrix = run.histogram("latency")
    rng = np.random.default_rng(seed)
    for _ in range(5):
        rows = rng.random(run.n) < 0.5
        merged_hdr = histograms.merge(
            (r.get("histograms") or {}).get("latency") for r, keep in zip(results.intervals, rows, strict=True) if keep
        )
        ours = percentiles_ms(matrix.total(rows), matrix.values_us, PCTS)
        if not merged_hdr.get_total_count():
            assert np.isnan(ours).all()
            continue
        expected = [merged_hdr.get_value_at_percentile(p) / 1000.0 for p in PCTS]
        assert ours.tolist() == expected


def test_measured_histogram_matches_results_histogram(tornado_file: Path) -> None:
    results = read_results(tornado_file)
    run = RunData.from_results(results)
    matrix = run.histogram("latency")
    summary = histograms.summary_ms(results.histogram("latency"))
    ours = percentiles_ms(matrix.total(run.measured), matrix.values_us, [50.0, 99.0, 99.9])
    assert ours.tolist() == [summary["p50"], summary["p99"], summary["p99_9"]]
    assert matrix.max_ms(run.measured) == summary["max"]


def test_series_and_selections(tornado_file: Path) -> None:
    run = RunData.from_results(read_results(tornado_file))
    assert run.phase[0] == "connect" and run.phase[-1] == "drain"
    assert run.measured.tolist() == [p not in ("connect", "warmup") for p in run.phase]
    assert run.sending.tolist() == [p == "measure" for p in run.phase]
    rows = np.arange(run.n)
    x, series, maxima = latency_series(run, rows, (50.0, 99.0))
    assert series.shape == (run.n, 2) and x.tolist() == run.mid_s.tolist()
    assert np.isnan(series[0]).all() and np.isnan(maxima[0])  # the connect interval holds no latency
    measured = np.flatnonzero(run.sending)
    assert (series[measured, 0] <= series[measured, 1]).all() and (series[measured, 1] <= maxima[measured]).all()
    assert series_over_time(run, rows, run.counters["sent"], "rate")[1][measured].tolist() == [200.0] * measured.size
    pcts, values = run.distribution_ms("latency")
    assert pcts[0] == 0.0 and 99.99 < pcts[-1] <= 99.999
    assert (np.diff(values) >= 0).all()


def test_missing_server_samples_are_nan_not_zero(tmp_path: Path) -> None:
    run = RunData.from_results(read_results(write_run(tmp_path / "r.jsonl", with_server_samples=False)))
    assert not run.has_samples("server", "rss_bytes")
    assert run.has_samples("generator", "cpu_pct")


def test_unique_labels() -> None:
    assert unique_labels(["tornado", "aiohttp"], ["a.jsonl", "b.jsonl"]) == ["tornado", "aiohttp"]
    assert unique_labels(["tornado", "tornado"], ["x/a.jsonl", "y/b.jsonl"]) == ["tornado (a)", "tornado (b)"]
    assert unique_labels(["t", "t"], ["x/a.jsonl", "y/a.jsonl"]) == ["t (a) #1", "t (a) #2"]
