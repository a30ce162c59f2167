"""A one-shot timer with microsecond precision for the event loop (Linux ``timerfd``).

Event-loop timers have millisecond resolution (uvloop/libuv count in whole milliseconds from a time
cached at the start of each loop iteration; asyncio rounds its epoll timeout up to a millisecond), so
a message meant for ``t`` leaves 0.5 ms late on average and up to 2 ms late, and that lateness would
be counted in every corrected latency. A ``timerfd`` armed at an absolute ``CLOCK_MONOTONIC`` time and
watched with ``loop.add_reader`` wakes the loop within tens of microseconds instead, at no CPU cost
while waiting (the timerfd calls are in :mod:`wsbench.timerfd`).
Elsewhere (or if the calls fail) :class:`PreciseTimer` falls back to ``loop.call_later``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

from wsbench import timerfd


class PreciseTimer:
    """Calls ``callback()`` once at an absolute ``time.monotonic_ns()`` time, re-armable."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self.loop = loop
        self.callback = callback
        self._fd = -1
        self._spec = timerfd.Itimerspec()
        self._handle: asyncio.TimerHandle | None = None
        fd = timerfd.create()
        if fd >= 0:
            self._fd = fd
            loop.add_reader(fd, self._fired)

    @property
    def precise(self) -> bool:
        return self._fd >= 0

    def arm(self, at_ns: int) -> None:
        if self._fd < 0:
            if self._handle is not None:
                self._handle.cancel()
            self._handle = self.loop.call_later(max((at_ns - time.monotonic_ns()) / 1e9, 0.0), self.callback)
            return
        err = timerfd.arm_at(self._fd, self._spec, at_ns)
        if err:
            raise OSError(err, os.strerror(err))

    def cancel(self) -> None:
        if self._fd >= 0:
            timerfd.disarm(self._fd, self._spec)
        elif self._handle is not None:
            self._handle.cancel()

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:
            return  # re-armed or cancelled after it fired
        self.callback()

    def close(self) -> None:
        if self._fd >= 0:
            self.loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        elif self._handle is not None:
            self._handle.cancel()
