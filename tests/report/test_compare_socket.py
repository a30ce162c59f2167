"""``wsbench compare`` compares latency at the socket when every run has it, and says whether it did."""

from __future__ import annotations

import json
from pathlib import Path

from tests.report.synthetic import write_run
from wsbench.core import histograms
from wsbench.core.results import read_results
from wsbench.report.compare import compare_runs, load_runs


def with_socket_latency(path: Path, scale: float) -> Path:
    """Adds a ``latency_socket`` histogram (``latency`` scaled by ``scale``) to every interval that has latency."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for line in lines:
        rec = json.loads(line)
        lat = (rec.get("histograms") or {}).get("latency")
        if rec.get("type") == "interval" and lat:
            src = histograms.decode(lat)
            h = histograms.new_histogram()
            for item in src.get_recorded_iterator():
                h.record_value(max(int(item.value_iterated_to * scale), 1), item.count_added_in_this_iter_step)
            rec["histograms"]["latency_socket"] = histograms.encode(h)
        out.append(json.dumps(rec))
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def test_socket_latency_is_compared_when_every_run_has_it(tmp_path: Path) -> None:
    a = with_socket_latency(write_run(tmp_path / "a.jsonl", server="tornado", base_ms=4.0, seed=3), 0.25)
    b = with_socket_latency(write_run(tmp_path / "b.jsonl", server="aiohttp", base_ms=4.0, seed=4), 0.5)
    c = compare_runs(load_runs([read_results(a), read_results(b)]))
    row = c.row("socket_p50")
    assert row.cells[0].value is not None and 1.7 < row.cells[1].ratio < 2.3  # b's socket latency is twice a's
    assert row.cells[1].verdict == "worse" and row.winner == 0
    assert "is compared too: every run has it" in c.method


def test_socket_latency_is_not_compared_when_a_run_lacks_it(tmp_path: Path) -> None:
    a = with_socket_latency(write_run(tmp_path / "a.jsonl", server="tornado", seed=3), 0.25)
    b = write_run(tmp_path / "b.jsonl", server="aiohttp", seed=4)
    c = compare_runs(load_runs([read_results(a), read_results(b)], ["with", "without"]))
    assert all(r.spec.key not in ("socket_p50", "socket_p99") for r in c.rows)
    assert "Latency at the socket is not compared: without has no kernel-stamped probe deliveries" in c.method
