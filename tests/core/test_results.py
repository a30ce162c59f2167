import json
from pathlib import Path

import pytest

from wsbench.core import histograms as h
from wsbench.core.results import ResultsWriter, read_results
from wsbench.errors import ResultsFileError


def _interval(index: int, phase: str, values: list[int], worker: str | None = None) -> dict:
    hist = h.new_histogram()
    h.record_many(hist, values)
    record = {
        "index": index,
        "start_s": float(index),
        "end_s": float(index + 1),
        "phase": phase,
        "counters": {"sent": 10, "delivered": len(values)},
        "clients_connected": 5,
        "histograms": {"latency": hist},
        "generator": {"cpu_s": 0.5, "cpu_pct": 50.0, "loop_lag_ms_max": 1.0, "open_fds": 10},
        "server": None,
    }
    if worker:
        record["worker"] = worker
    return record


def _write(path: Path, footer: bool = True) -> None:
    with ResultsWriter(path) as w:
        w.header(scenario={"name": "t"}, target={"mode": "url"})
        w.interval(_interval(0, "warmup", [100_000] * 10))
        w.interval(_interval(1, "measure", [1000] * 10))
        w.event("close", 1.5, client=3, code=1008, reason="slow consumer")
        w.interval(_interval(2, "drain", [2000] * 5))
        if footer:
            w.footer(status="completed", accounting={"lost": 0})


def test_roundtrip_and_measured_phases(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    _write(path)
    results = read_results(path)
    assert results.warnings == []
    assert results.status == "completed"
    assert [r["index"] for r in results.intervals] == [0, 1, 2]
    latency = results.histogram("latency")  # warm-up excluded, drain included
    assert latency.get_total_count() == 15
    assert results.counter("delivered") == 15
    assert results.histogram("latency", phases=["warmup"]).get_total_count() == 10
    assert results.events_of("close")[0]["code"] == 1008


def test_truncated_file_still_reads_with_warnings(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    _write(path, footer=False)
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"type": "interval", "index": 3, "pha')  # killed mid-line
    results = read_results(path)
    assert results.truncated and results.status == "truncated"
    assert any("cut short" in w for w in results.warnings)
    assert any("no footer" in w for w in results.warnings)
    assert results.histogram("latency").get_total_count() == 15


def test_worker_intervals_merge_by_index(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    with ResultsWriter(path) as w:
        w.header(driver="locust")
        w.interval(_interval(0, "measure", [1000] * 4, worker="a"))
        second = _interval(0, "measure", [3000] * 6, worker="b")
        second["generator"]["send_lag_ms_max"] = 7.5
        w.interval(second)
        w.footer(status="completed")
    results = read_results(path)
    assert len(results.intervals) == 1
    merged = results.intervals[0]
    assert merged["counters"]["delivered"] == 10
    assert merged["clients_connected"] == 10
    assert sorted(merged["workers"]) == ["a", "b"]
    assert merged["generator"]["cpu_s"] == 1.0  # CPU adds up across workers
    assert merged["generator"]["send_lag_ms_max"] == 7.5  # lags take the worst worker
    assert results.histogram("latency").get_total_count() == 10


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "not a wsbench results file"),
        ('{"type": "interval"}\n', "not a wsbench results file"),
        (json.dumps({"type": "header", "format": "wsbench-results", "version": 99}) + "\n", "newer"),
    ],
)
def test_unreadable_files_raise_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ResultsFileError, match=message):
        read_results(path)


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ResultsFileError, match="no such results file"):
        read_results(tmp_path / "nope.jsonl")
