"""Probe latencies per batch: socket latency, the generator's own delay, and coalesced stamps left out."""

from __future__ import annotations

import numpy as np

from wsbench.core import histograms
from wsbench.core.socket_latency import ProbeFrames, ProbeInterval, probe_samples, self_check


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


def test_interval_histograms_and_counters() -> None:
    iv = ProbeInterval()
    s = probe_samples(
        np.array([0, 1]), np.array([50, 60]), np.array([True, True]), np.array([True, True]),
        np.array([100, 100]), np.array([0, 0]),
    )
    iv.record(s)
    assert iv.counters() == {"probe_delivered": 2, "probe_stamped": 2, "probe_coalesced": 0}
    h = iv.histograms()
    assert h["latency_socket"].get_total_count() == 2
    assert histograms.summary_ms(h["generator_delay"])["max"] == 0.05


def test_probe_frames_buffer_takes_and_clears() -> None:
    pf = ProbeFrames()
    pf.position.append(3)
    pf.kernel_ns.append(77)
    pf.own.append(0)
    pos, k, own = pf.take()
    assert pos.tolist() == [3] and k.tolist() == [77] and own.tolist() == [False]
    assert len(pf) == 0


def test_self_check_says_what_the_generator_added() -> None:
    lat = {"p50": 22.0, "p99": 40.0}
    sock = {"count": 10, "p50": 1.2, "p99": 3.0}
    delay = {"count": 10, "p50": 20.5, "p99": 37.0}
    distorting, text = self_check(lat, sock, delay)
    assert distorting
    assert "the generator added p50 20.50 ms / p99 37.00 ms of its own" in text
    assert "at the socket was p50 1.20 ms / p99 3.00 ms" in text
    quiet = self_check({"p50": 0.6, "p99": 2.0}, sock, {"count": 10, "p50": 0.02, "p99": 0.3})
    assert quiet is not None and quiet[0] is False
    assert self_check(lat, sock, {"count": 0, "p50": None, "p99": None}) is None


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
