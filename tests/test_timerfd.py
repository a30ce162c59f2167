import os
import select
import time

import pytest

from wsbench import timerfd


@pytest.mark.skipif(timerfd.create() < 0, reason="no timerfd on this platform")
def test_timerfd_fires_once_at_the_absolute_time_and_not_before() -> None:
    fd = timerfd.create()
    spec = timerfd.Itimerspec()
    try:
        at = time.monotonic_ns() + 20_000_000
        assert timerfd.arm_at(fd, spec, at) == 0
        readable, _, _ = select.select([fd], [], [], 5.0)
        woke = time.monotonic_ns()
        assert readable == [fd]
        assert woke >= at  # never early: the schedule's intended times are lower bounds
        assert int.from_bytes(os.read(fd, 8), "little") == 1  # one expiry
        timerfd.arm_at(fd, spec, time.monotonic_ns() + 10_000_000)
        timerfd.disarm(fd, spec)
        assert select.select([fd], [], [], 0.05)[0] == []  # a disarmed timer stays silent
    finally:
        os.close(fd)
