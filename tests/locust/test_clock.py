"""Clock offsets between Locust processes: the estimate and its bound, without a network."""

from __future__ import annotations

import random

from wsbench.locust.clock import OffsetEstimator, Probe, boot_id, pair_bound_ns


def test_probe_bound_always_contains_the_true_offset() -> None:
    rng = random.Random(5)
    true_offset = 123_456_789  # master = worker + offset
    est = OffsetEstimator()
    bounds = []
    for _ in range(200):
        t0 = rng.randrange(10**12)
        there = rng.randrange(20_000, 2_000_000)  # ns on the way to the master
        back = rng.randrange(20_000, 2_000_000)
        probe = Probe(t0, t0 + there + true_offset, t0 + there + back)
        assert abs(probe.offset - true_offset) <= probe.bound
        est.add(probe)
        bounds.append(probe.bound)
    estimate = est.finish_burst()
    assert estimate is not None and not estimate.exact
    assert abs(estimate.offset_ns - true_offset) <= estimate.bound_ns
    assert estimate.bound_ns == min(bounds)  # the shortest round trip of the burst wins


def test_empty_burst_keeps_the_previous_estimate() -> None:
    est = OffsetEstimator()
    est.add(Probe(0, 1_000_500, 1_000))
    first = est.finish_burst()
    assert first is not None and first.offset_ns == 1_000_000
    assert est.finish_burst() is None
    assert est.estimate.offset_ns == 1_000_000


def test_same_host_is_exact_and_pairs_add_the_two_largest_bounds() -> None:
    assert OffsetEstimator().same_host().bound_ns == 0
    assert boot_id()  # Linux: one CLOCK_MONOTONIC per boot
    assert pair_bound_ns({"a": 100}) == 0
    assert pair_bound_ns({"a": 100, "b": 300, "c": 50}) == 400
