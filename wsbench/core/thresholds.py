"""Threshold expressions such as ``latency.p99 < 50ms`` and their verdicts against a summary.

An expression is ``METRIC OP VALUE``: ``OP`` one of ``< <= > >= == !=``; ``METRIC`` a dotted key of the
summary (``docs/summary-json.md``); ``VALUE`` a number with an optional unit of the metric's kind
(time metrics are in milliseconds when no unit is given; ``%`` for ratios; ``/s`` for rates; ``KiB``,
``MiB`` for sizes).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wsbench.core.units import UnitError, parse_duration, parse_rate, parse_size

_PERCENTILES = ("p50", "p90", "p99", "p99_9", "p99_99", "max", "min", "mean")

#: metric -> kind (how its limit is written and what unit it is compared in)
METRICS: dict[str, str] = {
    **{f"latency.{p}": "time" for p in _PERCENTILES},
    **{f"latency_uncorrected.{p}": "time" for p in _PERCENTILES},
    **{f"fanout.{p}": "time" for p in _PERCENTILES},
    **{f"latency_socket.{p}": "time" for p in _PERCENTILES},
    **{f"generator_delay.{p}": "time" for p in _PERCENTILES},
    **{f"latency_probes.{p}": "time" for p in _PERCENTILES},
    **{f"latency_socket_uncorrected.{p}": "time" for p in _PERCENTILES},
    **{f"connect.{p}": "time" for p in _PERCENTILES},
    "connect.errors": "count",
    "connect.ok": "count",
    "delivery.expected": "count",
    "delivery.delivered": "count",
    "delivery.lost": "count",
    "delivery.duplicated": "count",
    "delivery.reordered": "count",
    "delivery.pairs_with_loss": "count",
    "delivery.loss_ratio": "ratio",
    "messages.sent": "count",
    "rate.sent": "rate",
    "rate.delivered": "rate",
    "errors.total": "count",
    "closes.unexpected": "count",
    "generator.cpu_us_per_delivery": "us",
    "generator.cpu_pct_max": "percent",
    "generator.loop_lag_ms_max": "time",
    "server.rss_bytes_max": "size",
}

UNIT_OF_KIND = {
    "time": "ms",
    "us": "us",
    "count": "",
    "ratio": "",
    "rate": "/s",
    "percent": "%",
    "size": "B",
}

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_EXPR_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|==|!=|<|>)\s*(\S(?:.*\S)?)\s*$")


class ThresholdError(ValueError):
    """An expression that does not parse; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class Threshold:
    expr: str
    metric: str
    op: str
    limit: float
    unit: str

    def check(self, observed: float | None) -> bool:
        return observed is not None and bool(OPS[self.op](observed, self.limit))


def _parse_limit(kind: str, text: str) -> float:
    text = text.strip()
    if kind == "time":
        if re.fullmatch(r"[+-]?[\d.eE+-]+", text):
            return float(text)  # plain numbers are milliseconds
        return parse_duration(text) * 1e3
    if kind == "us":
        if re.fullmatch(r"[+-]?[\d.eE+-]+", text):
            return float(text)
        return parse_duration(text) * 1e6
    if kind == "rate":
        return parse_rate(text)
    if kind == "size":
        return float(parse_size(text))
    if kind == "percent":
        return float(text.rstrip("%").strip())
    if kind == "ratio":
        if text.endswith("%"):
            return float(text[:-1].strip()) / 100.0
        return float(text)
    return float(text)


def parse_threshold(expr: str) -> Threshold:
    if not isinstance(expr, str):
        raise ThresholdError(f"expected a threshold such as 'latency.p99 < 50ms', got {expr!r}")
    m = _EXPR_RE.match(expr)
    if not m:
        raise ThresholdError(f"expected 'METRIC OP VALUE' such as 'latency.p99 < 50ms', got {expr!r}")
    metric, op, value = m.groups()
    kind = METRICS.get(metric)
    if kind is None:
        groups: dict[str, list[str]] = {}
        for name in METRICS:
            head, _, tail = name.partition(".")
            groups.setdefault(head, []).append(tail)
        known = "; ".join(f"{head}.{{{','.join(tails)}}}" for head, tails in groups.items())
        raise ThresholdError(f"unknown metric {metric!r}; known metrics: {known}")
    try:
        limit = _parse_limit(kind, value)
    except (UnitError, ValueError) as exc:
        raise ThresholdError(f"bad value {value!r} for {metric} ({kind}): {exc}") from None
    return Threshold(expr.strip(), metric, op, limit, UNIT_OF_KIND[kind])


def lookup(summary: Mapping[str, Any], metric: str) -> float | None:
    node: Any = summary
    for part in metric.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    return float(node)


def evaluate(thresholds: list[str], summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Verdicts in the results-file footer shape; a metric with no data fails."""
    out = []
    for expr in thresholds:
        t = parse_threshold(expr)
        observed = lookup(summary, t.metric)
        verdict = {
            "expr": t.expr,
            "metric": t.metric,
            "op": t.op,
            "limit": t.limit,
            "unit": t.unit,
            "observed": observed,
            "passed": t.check(observed),
        }
        if observed is None:
            verdict["reason"] = "no data"
        out.append(verdict)
    return out
