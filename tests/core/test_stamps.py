"""Kernel stamps on the run's clock: parsing recvmsg's ancillary data, the measured and re-checked offset."""

from __future__ import annotations

import itertools

from wsbench.core import stamps


def test_stamp_is_read_from_the_timestampns_control_message() -> None:
    data = stamps.TIMESPEC.pack(1_700_000_000, 123_456_789)
    anc = [(0, 1, b"xx"), (stamps.SOL_SOCKET, stamps.SCM_TIMESTAMPNS, data)]
    assert stamps.stamp_ns(anc) == 1_700_000_000_123_456_789
    assert stamps.stamp_ns([]) == 0
    assert stamps.stamp_ns([(stamps.SOL_SOCKET, stamps.SCM_TIMESTAMPNS, b"short")]) == 0


def test_the_tightest_bracket_gives_the_offset() -> None:
    # monotonic reads: (100, 180) bracket 80; (1000, 1010) bracket 10: that one wins
    mono = iter([100, 180, 1000, 1010, 5000, 5300])
    real = iter([10_140, 11_004, 15_100])
    off = stamps.measure_offset(lambda: next(mono), lambda: next(real), tries=3)
    assert off.ns == 11_004 - 1005
    assert off.uncertainty_ns == 5


def test_conversion_and_recheck_follow_a_step_of_the_wall_clock() -> None:
    t = itertools.count(0, 10)  # monotonic advances 10 ns per read
    offset = [5_000_000_000]

    def mono() -> int:
        return next(t)

    def real() -> int:
        return next(t) + offset[0]  # read between two monotonic reads

    bridge = stamps.ClockBridge(mono, real)
    assert abs(bridge.offset.ns - 5_000_000_000) <= 10
    assert bridge.to_monotonic(5_000_001_000) == 5_000_001_000 - bridge.offset.ns
    assert abs(bridge.recheck()) <= 10 and bridge.steps == 0  # no step: the offset holds
    offset[0] += 3_000_000  # the wall clock steps 3 ms forward
    moved = bridge.recheck()
    assert abs(moved - 3_000_000) <= 10
    assert bridge.steps == 1 and abs(bridge.largest_step_ns - 3_000_000) <= 10
    assert abs(bridge.to_monotonic(5_003_001_000) - 1000) <= 10


def test_the_real_clocks_agree_within_microseconds() -> None:
    import time

    off = stamps.measure_offset(time.monotonic_ns, time.time_ns)
    assert off.uncertainty_ns < 1_000_000
    assert abs(time.time_ns() - off.ns - time.monotonic_ns()) < 5_000_000
