"""The summary is computed from the results file alone (no run): synthetic files with known content."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsbench.core import histograms
from wsbench.core.results import ResultsWriter, read_results
from wsbench.core.summary import summarize


def hist(values: list[int]):
    h = histograms.new_histogram()
    histograms.record_many(h, values)
    return h


def write(path: Path, *, footer: bool = True, search: bool = False) -> Path:
    stages = [{"name": "s1", "duration": 2.0, "rate": 100.0, "rate_to": None}]
    if search:
        stages += [{"name": "s2", "duration": 2.0, "rate": 200.0, "rate_to": None}]
    scenario = {
        "name": "syn",
        "clients": 11,
        "senders": 1,
        "model": "open",
        "resolved_stages": stages,
        "thresholds": ["latency.p99 < 50ms", "delivery.lost == 0", "closes.unexpected == 0"],
        "search": {"thresholds": ["latency.p99 < 5ms"]} if search else None,
    }
    with ResultsWriter(path) as w:
        w.header(kind="run", scenario=scenario, target={"mode": "url", "url": "http://127.0.0.1:1"}, driver="asyncio")
        w.interval(
            {
                "index": 0,
                "start_s": 0.0,
                "end_s": 0.5,
                "phase": "connect",
                "counters": {"connect_ok": 11, "connect_errors": 1},
                "histograms": {"connect": hist([2000] * 11)},
                "generator": {"cpu_s": 0.5, "cpu_pct": 100.0},
            }
        )
        w.event("phase", 0.5, name="warmup", phase_kind="warmup")
        w.interval(
            {
                "index": 1,
                "start_s": 0.5,
                "end_s": 1.5,
                "phase": "warmup",
                "counters": {"sent": 100, "delivered": 1000, "expected": 1000},
                "histograms": {"latency": hist([900_000] * 1000)},  # slow warm-up: must not count
                "generator": {"cpu_s": 0.9, "cpu_pct": 90.0},
            }
        )
        names = ["s1", "s1"] + (["s2", "s2"] if search else [])
        t = 1.5
        for i, name in enumerate(names):
            w.event("phase", t, name=name, phase_kind="measure") if i % 2 == 0 else None
            slow = name == "s2"
            w.interval(
                {
                    "index": 2 + i,
                    "start_s": t,
                    "end_s": t + 1.0,
                    "phase": name,
                    "counters": {"sent": 100, "delivered": 1000, "expected": 1000, "duplicated": 1},
                    "histograms": {
                        "latency": hist([1000] * 980 + [(20_000 if slow else 4_000)] * 20),
                        "latency_uncorrected": hist([800] * 1000),
                        "fanout": hist([1500] * 100),
                    },
                    "generator": {"cpu_s": 0.01, "cpu_pct": 1.0, "loop_lag_ms_max": 0.5, "open_fds": 30},
                    "server": {"rss_bytes": 10_000_000 + i, "connections": 11, "messages_in": 100 * (i + 1)},
                }
            )
            t += 1.0
        if search:
            w.event("threshold", 3.5, stage="s1", rate=100.0, passed=True)
            w.event("threshold", 5.5, stage="s2", rate=200.0, passed=False)
        w.event("drain", t)
        w.event("phase", t, name="drain", phase_kind="drain")
        w.interval(
            {
                "index": 2 + len(names),
                "start_s": t,
                "end_s": t + 1.0,
                "phase": "drain",
                "counters": {"delivered": 50},
                "histograms": {"latency": hist([1000] * 50)},
                "generator": {"cpu_s": 0.005, "cpu_pct": 0.5},
            }
        )
        w.event("close", t, client=10, code=1008, reason="slow consumer", role="stalled")
        w.event("close", t, client=3, code=1011, reason="ping timeout", role="receiver")
        w.event("error", t, error="disconnect", client=4)
        if footer:
            w.footer(
                status="completed",
                accounting={"expected": 5050, "delivered": 5047, "lost": 3, "duplicated": 2, "reordered": 1},
            )
    return path


def test_summary_numbers(tmp_path: Path) -> None:
    s = summarize(read_results(write(tmp_path / "r.jsonl")))
    # warm-up's 900 ms deliveries do not count; 2 measured intervals + drain do
    assert s["latency"]["count"] == 2050
    assert s["latency"]["p50"] == pytest.approx(1.0, rel=1e-3)
    assert s["latency"]["p99_9"] == pytest.approx(4.0, rel=1e-3)
    assert s["latency_uncorrected"]["max"] == pytest.approx(0.8, rel=1e-3)
    assert s["connect"] == {**s["connect"], "ok": 11, "errors": 1, "count": 11}
    assert s["measured_s"] == 2.0
    assert s["rate"] == {"target": 100.0, "sent": 100.0, "delivered": 1000.0}
    assert s["messages"] == {"sent": 300, "sent_measured": 200, "send_skipped": 0}
    d = s["delivery"]
    assert (d["expected"], d["delivered"], d["lost"], d["duplicated"], d["reordered"]) == (5050, 5047, 3, 2, 1)
    assert d["loss_ratio"] == pytest.approx(3 / 5050)
    assert s["closes"] == {"by_code": {"1008": 1, "1011": 1}, "total": 2, "unexpected": 1}
    assert s["errors"] == {"by_kind": {"disconnect": 1}, "total": 1}
    g = s["generator"]
    assert g["cpu_s"] == pytest.approx(0.5 + 0.9 + 0.02 + 0.005)
    assert g["cpu_us_per_delivery"] == pytest.approx(0.025 * 1e6 / 2050)
    assert s["server"]["rss_bytes_max"] == 10_000_001 and s["server"]["messages_in"] == 200
    assert [v["passed"] for v in s["thresholds"]] == [True, False, False]
    assert s["passed"] is False and s["exit_code"] == 1
    assert s["stages"][0]["name"] == "s1" and s["stages"][0]["rate_sent"] == 100.0
    assert s["capacity"] is None


def test_truncated_file_has_unknown_losses_and_exit_3(tmp_path: Path) -> None:
    s = summarize(read_results(write(tmp_path / "r.jsonl", footer=False)))
    assert s["status"] == "truncated" and s["exit_code"] == 3
    assert s["delivery"]["lost"] is None and s["delivery"]["delivered"] == 3050
    assert any("no footer" in w for w in s["warnings"])
    lost = next(v for v in s["thresholds"] if v["metric"] == "delivery.lost")
    assert lost["passed"] is False and lost["reason"] == "no data"


def test_capacity_search_reports_the_highest_rate_that_held(tmp_path: Path) -> None:
    s = summarize(read_results(write(tmp_path / "r.jsonl", search=True)))
    assert [(st["name"], st["passed"]) for st in s["stages"]] == [("s1", True), ("s2", False)]
    assert s["stages"][1]["latency_p99"] == pytest.approx(20.0, rel=1e-3)
    assert s["capacity"] == {
        "highest_rate_held": 100.0,
        "stage_held": "s1",
        "broke_at_rate": 200.0,
        "stage_broke": "s2",
    }
