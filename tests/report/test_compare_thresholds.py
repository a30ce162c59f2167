"""Thresholds on the ratios of a comparison (:mod:`wsbench.report.compare_thresholds`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsbench.core.results import read_results
from wsbench.errors import UsageError
from wsbench.report.compare import compare_runs, load_runs
from wsbench.report.compare_thresholds import RatioThreshold, evaluate_thresholds


@pytest.mark.parametrize(
    ("expr", "metric", "op", "limit"),
    [
        ("compare.p99 < 1.1x", "p99", "<", 1.1),
        ("p99.9 <= 2x", "p99_9", "<=", 2.0),
        ("compare.throughput >= 0.95x", "throughput", ">=", 0.95),
        ("cpu < 1.2", "cpu_per_delivery", "<", 1.2),
    ],
)
def test_threshold_parse(expr: str, metric: str, op: str, limit: float) -> None:
    t = RatioThreshold.parse(expr)
    assert (t.metric, t.op, t.limit) == (metric, op, limit)


@pytest.mark.parametrize("expr", ["compare.p98 < 1.1x", "p99 1.1x", "p99 == 1x", "p99 < fast"])
def test_threshold_errors_say_what_is_expected(expr: str) -> None:
    with pytest.raises(UsageError, match="threshold"):
        RatioThreshold.parse(expr)


def test_thresholds_against_baseline(tornado_file: Path, aiohttp_file: Path) -> None:
    c = compare_runs(load_runs([read_results(p) for p in (tornado_file, aiohttp_file)]))
    verdicts = evaluate_thresholds(
        c, [RatioThreshold.parse(e) for e in ("compare.p50 < 1.1x", "compare.p50 < 0.5x", "loss <= 1x")]
    )
    assert [v.passed for v in verdicts] == [True, False, False]
    assert verdicts[0].run == "aiohttp" and verdicts[0].observed == c.row("p50").cells[1].ratio
