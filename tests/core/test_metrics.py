"""Every numeric key of a summary is a threshold key, and every threshold key is in the summary."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.core.test_summary import write
from wsbench.core.metrics import METRICS, OPEN_MAPS, metric_kind
from wsbench.core.results import read_results
from wsbench.core.summary import summarize
from wsbench.core.thresholds import ThresholdError, evaluate, parse_threshold


def numeric_leaves(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from numeric_leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, int | float) and not isinstance(node, bool):
        yield prefix


def rich_summary(tmp_path: Path) -> dict[str, Any]:
    s = summarize(read_results(write(tmp_path / "r.jsonl", search=True)))
    s["churn"] = {"left": 1, "joined": 1}  # a churn scenario's section (the file above has none)
    if s.get("probes") is None:  # nor probe receivers (scenario probes:)
        s["probes"] = {k: 0 for k in ("receivers", "delivered", "stamped", "coalesced", "clock_steps")}
    return s


def test_the_table_is_the_summary(tmp_path: Path) -> None:
    """Issue 10 item 6: derived from one place, and nothing of the summary left out."""
    s = rich_summary(tmp_path)
    leaves = {k for k in numeric_leaves(s) if not any(k.startswith(m + ".") for m in OPEN_MAPS)}
    assert leaves - set(METRICS) == set()
    # keys that are null in this file (no server CPU...) are still in the summary's shape
    shape = set(numeric_leaves(s)) | {k for k in METRICS if _present(s, k)}
    assert set(METRICS) - shape == set()


def _present(summary: Mapping[str, Any], key: str) -> bool:
    node: Any = summary
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize(
    ("expr", "limit"),
    [
        ("closes.total == 0", 0.0),
        ("server.cpu_us_per_delivery < 50us", 50.0),
        ("delivery.fanout_incomplete == 0", 0.0),
        ("generator.send_lag_ms_max < 5ms", 5.0),
        ("capacity.highest_rate_held >= 1000/s", 1000.0),
        ("delivery.back_to_sender == 0", 0.0),
        ("delivery.no_trailer == 0", 0.0),
        ("messages.send_skipped == 0", 0.0),
        ("latency.above_ceiling == 0", 0.0),
        ("duration_s < 1min", 60.0),
        ("closes.by_code.1008 <= 2", 2.0),
    ],
)
def test_keys_the_readme_promised_are_accepted(expr: str, limit: float) -> None:
    assert parse_threshold(expr).limit == pytest.approx(limit)


def test_an_unknown_key_gets_a_did_you_mean() -> None:
    with pytest.raises(ThresholdError, match=r"did you mean .*'latency\.p99'"):
        parse_threshold("latency.p999 < 5ms")
    with pytest.raises(ThresholdError, match=r"did you mean 'closes\.total'"):
        parse_threshold("close.total == 0")
    assert metric_kind("nothing.like.this") is None


def test_new_keys_are_judged(tmp_path: Path) -> None:
    s = rich_summary(tmp_path)
    verdicts = evaluate(["closes.total == 2", "capacity.highest_rate_held == 100/s", "closes.by_code.1008 == 1"], s)
    assert [v["passed"] for v in verdicts] == [True, True, True], verdicts
