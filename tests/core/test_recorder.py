"""The one measuring pipeline (core/recorder.py): synthetic frames in, interval records out, no sockets."""

from __future__ import annotations

import numpy as np

from wsbench.core import histograms, payload
from wsbench.core.accounting import DeliveryAccounting
from wsbench.core.chat import Nicknames, join_line, message_line
from wsbench.core.recorder import CAUSALITY_SLACK_US, Recorder

S = 1_000_000
NICKS = Nicknames("wsb", "t1")


def recorder(clients: int = 3, hold_s: float = 1.0) -> Recorder:
    acc = DeliveryAccounting(clients, [0], range(clients))
    rec = Recorder(acc, NICKS, hold_us=int(hold_s * S), fanout_timeout_us=10 * S, local_completion=True)
    for c in range(clients):
        rec.connected(c, 1000 + c, 5000, 2000)
    for c in range(1, clients):
        acc.saw_join(0, c, 1500)
    return rec


def frame(sender: int, seq: int, intended_us: int, size: int = 100) -> bytes:
    return message_line(NICKS.of(sender), payload.encode(sender, seq, intended_us, intended_us + 5, size)).encode()


def deliver(rec: Recorder, rows: list[tuple[int, int, int, int]]) -> None:
    """``(receiver, seq, intended_us, recv_us)`` rows from sender 0."""
    frames = [frame(0, seq, t) for _, seq, t, _ in rows]
    rec.ingest(frames, np.array([r[3] for r in rows], dtype=np.int64), np.array([r[0] for r in rows], dtype=np.int64))


def by_phase(records: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in records:
        d = out.setdefault(r["phase"], {"delivered": 0, "latency": histograms.new_histogram()})
        d["delivered"] += r["counters"].get("delivered", 0)
        histograms.add(d["latency"], r["histograms"].get("latency") or histograms.new_histogram())
    return out


def test_a_late_warmup_delivery_belongs_to_the_warmup() -> None:
    """Issue 10 item 2: a delivery belongs to the interval of its message's intended send time."""
    rec = recorder()
    rec.cut(1 * S, "warmup")
    rec.sent(0, 0, int(1.9 * S), int(1.9 * S))  # a warm-up message ...
    rec.cut(2 * S, "measure")
    rec.sent(0, 1, int(2.1 * S), int(2.1 * S))
    deliver(rec, [(1, 0, int(1.9 * S), int(2.5 * S)), (2, 0, int(1.9 * S), int(2.5 * S))])  # ... arrives late
    deliver(rec, [(1, 1, int(2.1 * S), int(2.102 * S)), (2, 1, int(2.1 * S), int(2.102 * S))])
    rec.cut(3 * S, "drain")
    records = [dict(r) for r in rec.take_records(5 * S, final=True)]
    phases = by_phase(records)
    assert phases["warmup"]["delivered"] == 2 and phases["measure"]["delivered"] == 2
    measured = phases["measure"]["latency"]
    assert measured.get_total_count() == 2 and measured.get_max_value() < 3_000  # 2 ms, not the warm-up's 600
    assert phases["warmup"]["latency"].get_min_value() >= 599_000
    measure = next(r for r in records if r["phase"] == "measure")
    assert measure["counters"]["sent"] == 1 and measure["counters"]["expected"] == 2


def test_deliveries_after_a_record_was_written_come_as_a_late_supplement() -> None:
    rec = recorder(hold_s=0.5)
    rec.cut(1 * S, "s1")
    rec.sent(0, 0, int(1.5 * S), int(1.5 * S))
    rec.cut(2 * S, "s2")
    first = rec.take_records(int(2.6 * S))
    assert [(r["index"], r.get("late", False)) for r in first] == [(0, False), (1, False)]
    assert first[1]["counters"]["delivered"] == 0 and first[1]["counters"]["sent"] == 1
    deliver(rec, [(1, 0, int(1.5 * S), int(2.7 * S))])  # 1.2 s late: after s1's record was written
    rec.cut(3 * S, "drain")
    later = rec.take_records(int(3.6 * S))
    late = [r for r in later if r.get("late")]
    assert len(late) == 1 and late[0]["index"] == 1 and late[0]["phase"] == "s1"
    assert late[0]["counters"] == {"delivered": 1}
    assert late[0]["histograms"]["latency"].get_total_count() == 1
    assert rec.phases["s1"].counters["delivered"] == 1  # the stage's totals have it too


def test_a_stage_is_judged_on_its_own_messages() -> None:
    """Issue 10 item 2: a breaking stage's late deliveries stay in it, and do not leak into the next."""
    rec = recorder(hold_s=1.0)
    rec.cut(1 * S, "s1")
    for seq in range(10):
        rec.sent(0, seq, int((1 + seq * 0.1) * S), int((1 + seq * 0.1) * S))
    rec.cut(2 * S, "s2")
    # s1's messages all arrive 800 ms late, during s2
    deliver(rec, [(r, seq, int((1 + seq * 0.1) * S), int((1.8 + seq * 0.1) * S)) for seq in range(10) for r in (1, 2)])
    rec.cut(3 * S, "drain")
    rec.take_records(int(3.5 * S))
    assert rec.take_final_phases() == ["connect", "s1"]  # s2 is final one hold after its end
    rec.take_records(10 * S, final=True)
    s1, s2 = rec.phases["s1"], rec.phases["s2"]
    assert s1.counters["delivered"] == 20 and s1.histogram("latency").get_min_value() >= 799_000
    assert s2.counters.get("delivered", 0) == 0 and s2.histogram("latency").get_total_count() == 0


def test_a_stage_with_an_empty_interval_keeps_its_minimum() -> None:
    """Issue 10 item 7: folding an empty interval into a stage does not make its minimum 0."""
    rec = recorder()
    rec.cut(1 * S, "s1")
    rec.sent(0, 0, int(1.1 * S), int(1.1 * S))
    deliver(rec, [(1, 0, int(1.1 * S), int(1.105 * S))])
    rec.cut(2 * S, "s1")  # a second, empty interval of the stage
    rec.cut(3 * S, "drain")
    rec.take_records(5 * S, final=True)
    assert histograms.summary_ms(rec.phases["s1"].histogram("latency"))["min"] == 5.0


def test_back_to_sender_and_trailerless_frames_are_counted_and_named() -> None:
    """Issue 10 item 4: they are counters of their own, with a warning, not an internal 'unknown'."""
    rec = recorder()
    rec.cut(1 * S, "s1")
    rec.sent(0, 0, int(1.1 * S), int(1.1 * S))
    frames = [frame(0, 0, int(1.1 * S)), frame(0, 0, int(1.1 * S)), b"hello", join_line(NICKS.of(2)).encode()]
    rec.ingest(frames, np.full(4, int(1.2 * S), dtype=np.int64), np.array([1, 0, 1, 1], dtype=np.int64))
    rec.cut(2 * S, "drain")
    records = rec.take_records(5 * S, final=True)
    s1 = next(r for r in records if r["phase"] == "s1")
    assert s1["counters"]["back_to_sender"] == 1 and s1["counters"]["no_trailer"] == 1
    assert s1["counters"]["join_lines"] == 1 and s1["counters"]["delivered"] == 1
    kinds = {e.get("warning") for e in rec.take_events()}
    assert {"back_to_sender", "no_trailer"} <= kinds


def test_a_message_its_sender_never_sent_is_counted_as_never_sent_not_delivered() -> None:
    """A trailer with a sequence number its sender has not reached (a server replaying another run's messages,
    or forging them): once crashed the fan-out tracker (an IndexError, a traceback); now named and counted."""
    rec = recorder()
    rec.cut(1 * S, "s1")
    rec.sent(0, 0, int(1.1 * S), int(1.1 * S))
    t = np.full(4, int(1.2 * S), dtype=np.int64)
    # only replayed frames in a batch: the fan-out tracker gets nothing to do
    rec.ingest([frame(0, 5, int(0.5 * S)), frame(0, 7, int(0.5 * S))], t[:2], np.array([1, 2], dtype=np.int64))
    # mixed with real deliveries, a join line and a frame without a trailer
    frames = [frame(0, 0, int(1.1 * S)), frame(0, 9, int(0.2 * S)), b"hello", frame(0, 0, int(1.1 * S))]
    rec.ingest(frames, t, np.array([1, 1, 2, 2], dtype=np.int64))
    rec.cut(2 * S, "drain")
    records = rec.take_records(5 * S, final=True)
    s1 = next(r for r in records if r["phase"] == "s1")
    assert s1["counters"]["never_sent"] == 3 and s1["counters"]["no_trailer"] == 1
    assert s1["counters"]["delivered"] == 2 and s1["counters"].get("duplicated", 0) == 0
    assert rec.acc.totals().delivered == 2
    warned = [e for e in rec.take_events() if e.get("warning") == "never_sent"]
    assert len(warned) == 1 and "received a message its sender never sent" in warned[0]["detail"]
    assert warned[0]["client"] == 1


def test_a_message_received_before_it_was_sent_is_never_sent_in_a_locust_worker_too() -> None:
    """A Locust worker does not know the other workers' sends; a replay is still caught when its trailer says it
    was sent after it arrived (beyond CAUSALITY_SLACK_US): another run's clock, not this one's."""
    acc = DeliveryAccounting(3, [0], range(3))
    rec = Recorder(acc, NICKS, hold_us=S, fanout_timeout_us=10 * S, local_completion=False)
    for c in range(3):
        rec.connected(c, 1000 + c, 5000, 2000)
    rec.cut(1 * S, "s1")
    t = np.full(3, int(1.2 * S), dtype=np.int64)
    late = int(1.2 * S) + CAUSALITY_SLACK_US  # at the slack: still this run's (clocks bridged across hosts)
    frames = [frame(0, 40, int(3.0 * S)), frame(0, 0, late - 5), frame(0, 41, int(2.0 * S))]
    rec.ingest(frames, t, np.array([1, 1, 2], dtype=np.int64))
    rec.cut(2 * S, "drain")
    s1 = next(r for r in rec.take_records(5 * S, final=True) if r["phase"] == "s1")
    assert s1["counters"]["never_sent"] == 2 and s1["counters"]["delivered"] == 1
    assert s1["counters"].get("reordered", 0) == 0


def test_latencies_above_the_ceiling_are_counted() -> None:
    """Issue 10 item 4: above the histograms' 60 s ceiling: recorded at the ceiling, counted, warned."""
    rec = recorder()
    rec.cut(1 * S, "s1")
    rec.sent(0, 0, int(1.1 * S), int(1.1 * S))
    deliver(rec, [(1, 0, int(1.1 * S), int(71.1 * S)), (2, 0, int(1.1 * S), int(1.2 * S))])
    rec.cut(2 * S, "drain")
    records = rec.take_records(100 * S, final=True)
    assert sum(r["counters"].get("latency_above_ceiling", 0) for r in records) == 1
    assert any(e.get("warning") == "latency_ceiling" for e in rec.take_events())


def test_send_skipped_is_counted_with_a_warning() -> None:
    rec = recorder()
    rec.cut(1 * S, "s1")
    rec.send_skipped(0, int(1.5 * S))
    rec.send_skipped(0, int(1.6 * S))
    records = rec.take_records(5 * S, final=True)
    assert sum(r["counters"].get("send_skipped", 0) for r in records) == 2
    assert [e.get("warning") for e in rec.take_events()] == ["send_skipped"]


def test_connect_time_counts_from_the_scheduled_time() -> None:
    """Issue 10 item 5: queueing for a connect slot is in ``connect``; ``connect_handshake`` beside it."""
    acc = DeliveryAccounting(2, [0])
    rec = Recorder(acc, NICKS, hold_us=S, fanout_timeout_us=S, local_completion=True)
    rec.connected(0, 900_000, connect_us=900_000, handshake_us=3_000)
    r = rec.take_records(5 * S, final=True)[0]
    assert r["histograms"]["connect"].get_max_value() >= 899_000
    assert r["histograms"]["connect_handshake"].get_max_value() < 3_100
