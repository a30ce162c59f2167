import pytest

from wsbench.core.thresholds import ThresholdError, evaluate, lookup, parse_threshold


def test_time_limits_are_in_milliseconds() -> None:
    assert parse_threshold("latency.p99 < 50ms").limit == 50.0
    assert parse_threshold("latency.p99 < 0.5s").limit == 500.0
    assert parse_threshold("latency.p99<20").limit == 20.0
    assert parse_threshold("generator.cpu_us_per_delivery <= 5").limit == 5.0


def test_other_kinds() -> None:
    assert parse_threshold("delivery.loss_ratio < 0.1%").limit == pytest.approx(0.001)
    assert parse_threshold("rate.delivered >= 100000/s").limit == 100000.0
    assert parse_threshold("server.rss_bytes_max < 200MiB").limit == 200 * 1024 * 1024
    t = parse_threshold("delivery.lost == 0")
    assert (t.metric, t.op, t.limit) == ("delivery.lost", "==", 0.0)


@pytest.mark.parametrize(
    ("expr", "message"),
    [("latency.p98 < 5ms", "unknown metric"), ("latency.p99 ~ 5ms", "METRIC OP VALUE"), ("delivery.lost == x", "bad")],
)
def test_bad_expressions(expr: str, message: str) -> None:
    with pytest.raises(ThresholdError, match=message):
        parse_threshold(expr)


def test_evaluate_against_a_summary() -> None:
    summary = {"latency": {"p99": 12.5}, "delivery": {"lost": 3}, "connect": {"errors": 0}}
    verdicts = evaluate(["latency.p99 < 50ms", "delivery.lost == 0", "connect.errors == 0", "fanout.p99 < 1s"], summary)
    assert [v["passed"] for v in verdicts] == [True, False, True, False]
    assert verdicts[1]["observed"] == 3.0
    assert verdicts[3]["observed"] is None and verdicts[3]["reason"] == "no data"
    assert lookup(summary, "latency.p99") == 12.5
    assert lookup(summary, "latency") is None
