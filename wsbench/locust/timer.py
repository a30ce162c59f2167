"""Waking a greenlet at a precise monotonic time, for the open model's send schedule.

``gevent.sleep`` (libev) and asyncio both wait in ``epoll_wait``, whose timeout is whole
milliseconds: measured here, a 0.3 ms sleep wakes 0.82 ms late at the median and a 13.7 ms one 0.6 ms
late. A message sent that late carries that lateness in its latency from the intended send time,
which would swamp sub-millisecond broadcast latencies. A Linux ``timerfd`` armed for an absolute
``CLOCK_MONOTONIC`` time becomes readable on time (tens of microseconds), and gevent waits for it as
for any file descriptor (the calls are in :mod:`wsbench.timerfd`). Elsewhere (no timerfd) it falls
back to ``gevent.sleep``.
"""

from __future__ import annotations

import contextlib
import os
import time

import gevent
import gevent.hub

from wsbench import timerfd


class PreciseTimer:
    """``wait_until(t_ns)`` on ``time.monotonic_ns()``'s clock; one per waiting greenlet. Call :meth:`close`."""

    def __init__(self) -> None:
        self.fd = -1
        self._watcher = None
        self._spec = timerfd.Itimerspec()
        fd = timerfd.create()
        if fd >= 0:
            self.fd = fd
            self._watcher = gevent.hub.get_hub().loop.io(fd, 1)

    @property
    def precise(self) -> bool:
        return self.fd >= 0

    def wait_until(self, t_ns: int) -> None:
        delay = t_ns - time.monotonic_ns()
        if delay <= 0:
            return
        if self.fd < 0 or timerfd.arm_at(self.fd, self._spec, t_ns) != 0:
            gevent.sleep(delay / 1e9)
            return
        gevent.hub.get_hub().wait(self._watcher)
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> PreciseTimer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
