"""Thresholds on the ratios of a comparison: ``compare.p99 < 1.1x`` (``wsbench compare --threshold``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wsbench.errors import UsageError
from wsbench.report.compare import Comparison

METRIC_ALIASES = {
    "throughput": "throughput",
    "deliveries": "throughput",
    "p50": "p50",
    "p99": "p99",
    "p99_9": "p99_9",
    "p99.9": "p99_9",
    "p999": "p99_9",
    "loss": "loss",
    "cpu": "cpu_per_delivery",
    "cpu_per_delivery": "cpu_per_delivery",
    "rss": "rss",
    "socket_p50": "socket_p50",
    "socket_p99": "socket_p99",
}


_THRESHOLD_RE = re.compile(r"^\s*(?:compare\.)?([A-Za-z0-9_.]+?)\s*(<=|>=|<|>)\s*([0-9]*\.?[0-9]+)\s*x?\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


@dataclass(frozen=True)
class RatioThreshold:
    """``compare.p99 < 1.1x``: the ratio run/baseline of a metric against a limit."""

    expr: str
    metric: str
    op: str
    limit: float

    @classmethod
    def parse(cls, expr: str) -> RatioThreshold:
        m = _THRESHOLD_RE.match(expr)
        if not m:
            raise UsageError(
                f"threshold {expr!r}: expected 'compare.METRIC OP NUMBERx' such as 'compare.p99 < 1.1x' "
                f"(OP one of <, <=, >, >=)"
            )
        name, op, number = m.groups()
        metric = METRIC_ALIASES.get(name)
        if metric is None:
            raise UsageError(f"threshold {expr!r}: unknown metric {name!r}; choose one of {', '.join(METRIC_ALIASES)}")
        return cls(expr=expr.strip(), metric=metric, op=op, limit=float(number))


@dataclass
class ThresholdVerdict:
    threshold: RatioThreshold
    run: str
    observed: float | None
    within_noise: bool | None
    passed: bool


def evaluate_thresholds(comparison: Comparison, thresholds: Sequence[RatioThreshold]) -> list[ThresholdVerdict]:
    """Each threshold against every run but the baseline. An unknown ratio fails (nothing to vouch for)."""
    verdicts: list[ThresholdVerdict] = []
    for threshold in thresholds:
        row = comparison.row(threshold.metric)
        for run, cell in zip(comparison.runs[1:], row.cells[1:], strict=True):
            passed = cell.ratio is not None and _OPS[threshold.op](cell.ratio, threshold.limit)
            verdicts.append(ThresholdVerdict(threshold, run.label, cell.ratio, cell.within_noise, passed))
    return verdicts
