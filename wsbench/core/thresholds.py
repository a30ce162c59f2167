"""Threshold expressions such as ``latency.p99 < 50ms`` and their verdicts against a summary.

An expression is ``METRIC OP VALUE``: ``OP`` one of ``< <= > >= == !=``; ``METRIC`` any numeric dotted
key of the summary (``docs/summary-json.md``, listed once in :mod:`wsbench.core.metrics`); ``VALUE`` a
number with an optional unit of the metric's kind (time metrics are in milliseconds when no unit is
given, ``_s`` keys in seconds; ``%`` for ratios; ``/s`` for rates; ``KiB``, ``MiB`` for sizes).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wsbench.core.metrics import METRICS as METRICS  # every numeric summary key, one table
from wsbench.core.metrics import NOTE_OF, metric_kind, suggest
from wsbench.core.units import UnitError, parse_duration, parse_rate, parse_size

UNIT_OF_KIND = {
    "time": "ms",
    "seconds": "s",
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
    if kind == "seconds":
        if re.fullmatch(r"[+-]?[\d.eE+-]+", text):
            return float(text)  # plain numbers are seconds
        return parse_duration(text)
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
    kind = metric_kind(metric)
    if kind is None:
        near = suggest(metric)
        hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
        raise ThresholdError(
            f"unknown metric {metric!r}{hint} (any numeric key of the summary: docs/summary-json.md, "
            "e.g. latency.p99, delivery.lost, closes.total, capacity.highest_rate_held)"
        )
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


def _note(summary: Mapping[str, Any], key: str | None) -> str | None:
    """The summary's string at dotted ``key`` (why a value is null), if any."""
    node: Any = summary
    for part in key.split(".") if key else ():
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node if key and isinstance(node, str) else None


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
        if observed is None:  # fails, saying why when the summary says (e.g. too short to estimate drift)
            verdict["reason"] = _note(summary, NOTE_OF.get(t.metric)) or "no data"
        out.append(verdict)
    return out
