"""Under Locust, a process's probe receivers feed the same collector path plus the kernel stamps."""

from __future__ import annotations

from tests.locust.test_aggregate import TAG, text
from wsbench.core import histograms
from wsbench.core.scenario_loading import load_text
from wsbench.locust.collector import Collector
from wsbench.locust.plan import RunPlan


def test_probe_frames_are_accounted_and_split_into_socket_latency_and_generator_delay() -> None:
    p = RunPlan(load_text("clients: 4\nsenders: 1\nduration: 2s\ninterval: 1s\n", "t.yaml"))
    col = Collector(p, TAG, distributed=False)
    for c in range(4):
        col.connected(c, 1_000 + c, 5_000)
    for seq in range(3):
        col.sent(0, seq, 2_000_000 + seq * 100_000, 2_000_000 + seq * 100_000 + 50)
    # kernel stamps 300 us after each intended send, user space 900 us after it; frames 1 and 2 were
    # read from one merged socket buffer (the same stamp): frame 1's stamp is not its own
    stamps_us = [2_000_300, 2_200_300, 2_200_300]
    for seq in range(3):
        t = 2_000_000 + seq * 100_000
        col.on_texts(1, [text(p, 0, seq, t)], t + 900)  # a plain receiver
        col.on_probe_text(2, text(p, 0, seq, t), t + 900, stamps_us[seq], shared=seq == 2)
    col.flush()
    records = col.take_records(5_000_000, final=True)
    iv = next(r for r in records if r["index"] == 2)
    hists = {name: histograms.decode(text) for name, text in iv["histograms"].items()}
    assert iv["counters"]["delivered"] == 6 and iv["counters"]["probe_delivered"] == 3
    assert iv["counters"]["probe_stamped"] == 2 and iv["counters"]["probe_coalesced"] == 1
    sock = histograms.summary_ms(hists["latency_socket"])
    assert sock["count"] == 2 and abs(sock["min"] - 0.3) < 0.01 and abs(sock["max"] - 0.3) < 0.01
    delay = histograms.summary_ms(hists["generator_delay"])
    assert abs(delay["p50"] - 0.6) < 0.01
    assert histograms.summary_ms(hists["latency_probes"])["count"] == 3
    assert histograms.summary_ms(hists["latency"])["count"] == 6


def test_the_web_ui_shows_the_probes_latency_when_there_is_one(tmp_path) -> None:
    from wsbench.core.results import ResultsWriter
    from wsbench.locust.aggregate import Aggregator

    p = RunPlan(load_text("clients: 4\nsenders: 1\nduration: 2s\n", "t.yaml"))
    with ResultsWriter(tmp_path / "r.jsonl") as writer:
        agg = Aggregator(p, writer, 1, master_generator=False)
        names = [row["name"] for row in agg.live_view()["latency"]]
        assert not any("socket" in n for n in names)  # nothing measured yet: no probe rows
        sock = histograms.new_histogram()
        histograms.record_many(sock, [1200, 1300])
        agg.live.fold({"phase": "measure", "counters": {}, "histograms": {"latency_socket": histograms.encode(sock)}})
        rows = {row["name"]: row for row in agg.live_view()["latency"]}
    row = rows["latency at the socket (probe receivers, kernel stamp)"]
    assert row["count"] == 2 and row["p50"] == "1.20"
