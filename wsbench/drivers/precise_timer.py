"""A one-shot timer with microsecond precision for the event loop (Linux ``timerfd``).

Event-loop timers have millisecond resolution (uvloop/libuv count in whole milliseconds from a time
cached at the start of each loop iteration; asyncio rounds its epoll timeout up to a millisecond), so
a message meant for ``t`` leaves 0.5 ms late on average and up to 2 ms late, and that lateness would
be counted in every corrected latency. A ``timerfd`` armed at an absolute ``CLOCK_MONOTONIC`` time and
watched with ``loop.add_reader`` wakes the loop within tens of microseconds instead, at no CPU cost
while waiting. ``os.timerfd_create`` only exists from Python 3.13, hence the few ctypes calls here.
Elsewhere (or if the calls fail) :class:`PreciseTimer` falls back to ``loop.call_later``.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import sys
import time
from collections.abc import Callable

CLOCK_MONOTONIC = 1
TFD_NONBLOCK = 0o4000
TFD_CLOEXEC = 0o2000000
TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.POINTER(_Itimerspec),
        ]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


class PreciseTimer:
    """Calls ``callback()`` once at an absolute ``time.monotonic_ns()`` time, re-armable."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self.loop = loop
        self.callback = callback
        self._fd = -1
        self._spec = _Itimerspec()
        self._handle: asyncio.TimerHandle | None = None
        if _LIBC is not None:
            fd = _LIBC.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
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
        at_ns = max(at_ns, 1)  # 0 would disarm
        v = self._spec.it_value
        v.tv_sec, v.tv_nsec = divmod(at_ns, 1_000_000_000)
        if _LIBC.timerfd_settime(self._fd, TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) != 0:  # type: ignore[union-attr]
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    def cancel(self) -> None:
        if self._fd >= 0:
            v = self._spec.it_value
            v.tv_sec = v.tv_nsec = 0
            _LIBC.timerfd_settime(self._fd, 0, ctypes.byref(self._spec), None)  # type: ignore[union-attr]
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
