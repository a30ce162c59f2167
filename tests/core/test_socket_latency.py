"""Probe latencies per batch: socket latency, the generator's own delay, and coalesced stamps left out."""

from __future__ import annotations

import numpy as np

from wsbench.core import histograms, payload
from wsbench.core.accounting import DeliveryAccounting
from wsbench.core.chat import Nicknames, message_line
from wsbench.core.recorder import Recorder
from wsbench.core.socket_latency import ProbeFrames, probe_samples, record_batch

S = 1_000_000
NICKS = Nicknames("wsb", "t1")


def test_latency_splits_into_socket_latency_and_generator_delay() -> None:
    # a batch of 6 frames; frames 1, 3, 4 and 5 are the probes'; frame 3 is a duplicate (not new)
    new = np.array([True, True, True, False, True, True])
    recv = np.array([900, 1000, 1100, 1200, 1300, 1400])
    intended = np.array([0, 100, 0, 200, 300, 400])
    position = np.array([1, 3, 4, 5])
    kernel = np.array([400, 500, 1250, -1])  # frame 5 has no stamp
    own = np.array([True, True, False, True])  # frame 4's stamp came from a later frame (coalesced)
    s = probe_samples(position, kernel, own, new, recv, intended)
    assert s.user_us.tolist() == [900, 1000, 1000]  # every new probe delivery: 1, 4, 5
    assert s.socket_us.tolist() == [300]  # frame 1 only: 400 - 100
    assert s.delay_us.tolist() == [600]  # 1000 - 400
    assert (s.coalesced, s.unstamped) == (1, 1)
    assert int(s.socket_us[0] + s.delay_us[0]) == int(s.user_us[0])


def test_probe_histograms_belong_to_the_messages_send_time() -> None:
    """A warm-up message a probe receives after the warm-up is a warm-up delivery in latency_socket too
    (the rule both drivers use: socket_latency.record_batch), and a late one joins an interval already taken
    as a late supplement of that interval."""
    acc = DeliveryAccounting(3, [0], range(3))
    rec = Recorder(acc, NICKS, hold_us=S, fanout_timeout_us=10 * S, local_completion=True)
    for c in range(3):
        rec.connected(c, 1000 + c, 5000, 2000)
    rec.cut(1 * S, "warmup")
    rec.sent(0, 0, int(1.9 * S), int(1.9 * S))
    rec.cut(2 * S, "measure")
    rec.sent(0, 1, int(2.1 * S), int(2.1 * S))
    rec.sent(0, 2, int(2.2 * S), int(2.2 * S))
    # receiver 2 is the probe: seq 0 (warm-up) arrives at 2.5 s, seq 1 at 2.102 s; receiver 1 is not a probe
    rows = [(1, 0, 1.9, 2.5), (2, 0, 1.9, 2.5), (2, 1, 2.1, 2.102), (1, 1, 2.1, 2.102)]
    frames = [
        message_line(NICKS.of(0), payload.encode(0, q, int(i * S), int(i * S), 100)).encode()
        for _, q, i, _ in rows
    ]
    recv = np.array([int(r[3] * S) for r in rows], dtype=np.int64)
    rec.ingest(frames, recv, np.array([r[0] for r in rows], dtype=np.int64))
    kernel = recv[[1, 2]] - 200  # the kernel saw each 200 us before user space did
    assert record_batch(rec, (np.array([1, 2]), kernel, np.array([True, True])), recv) == (0, 2)
    rec.cut(3 * S, "drain")
    first = [dict(r) for r in rec.take_records(int(4.5 * S))]
    # seq 2 reaches the probe in the drain, after the measure interval was taken: a late supplement
    late = message_line(NICKS.of(0), payload.encode(0, 2, int(2.2 * S), int(2.2 * S), 100)).encode()
    rec.ingest([late], np.array([int(4.6 * S)]), np.array([2]))
    record_batch(rec, (np.array([0]), np.array([-1]), np.array([True])), np.array([int(4.6 * S)]))  # no stamp
    records = first + [dict(r) for r in rec.take_records(6 * S, final=True)]

    def of(phase: str, name: str) -> list[int]:
        out = histograms.new_histogram()
        for r in records:
            if r["phase"] == phase and name in r["histograms"]:
                histograms.add(out, r["histograms"][name])
        return [out.get_total_count(), out.get_min_value(), out.get_max_value()]

    warmup = of("warmup", "latency_socket")  # 600 ms less the 200 us (at the histogram's precision)
    assert warmup[0] == 1 and 599_000 <= warmup[1] <= 600_000
    assert of("measure", "latency_socket") == [1, 1800, 1800]
    assert of("measure", "latency_probes")[0] == 2 and of("drain", "latency_probes")[0] == 0
    assert of("measure", "generator_delay") == [1, 200, 200]
    late_records = [r for r in records if r.get("late")]
    assert [(r["phase"], r["counters"]) for r in late_records] == [
        ("measure", {"delivered": 1, "probe_delivered": 1})
    ]


def test_probe_frames_buffer_takes_and_clears() -> None:
    pf = ProbeFrames()
    pf.position.append(3)
    pf.kernel_ns.append(77)
    pf.own.append(0)
    pos, k, own = pf.take()
    assert pos.tolist() == [3] and k.tolist() == [77] and own.tolist() == [False]
    assert len(pf) == 0


def test_stage_metrics_carry_the_probe_keys_for_search_thresholds() -> None:
    from wsbench.core.summary import metrics
    from wsbench.core.thresholds import evaluate

    sock = histograms.new_histogram()
    histograms.record_many(sock, [1500, 2500])
    empty = histograms.new_histogram()
    m = metrics(empty, empty, empty, {"sent": 1, "delivered": 2}, 1.0, None, {"latency_socket": sock})
    assert abs(m["latency_socket"]["max"] - 2.5) < 0.01
    [v] = evaluate(["latency_socket.p99 < 2ms"], m)
    assert abs(v["observed"] - 2.5) < 0.01 and not v["passed"]
