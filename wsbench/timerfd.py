"""Linux ``timerfd`` armed at absolute ``CLOCK_MONOTONIC`` times, for both drivers' precise send timers.

Event loops (asyncio, uvloop, gevent's libev) wait in ``epoll_wait`` with whole-millisecond timeouts,
so a send meant for ``t`` leaves up to ~2 ms late and that lateness lands in every corrected latency.
A timerfd armed for an absolute time becomes readable within tens of microseconds, and each loop
waits for it as for any file descriptor. ``os.timerfd_create`` arrives with Python 3.13, so on
3.11/3.12 the libc calls are made here with ctypes (no library offers them). Everything returns a
failure value instead of raising, so callers fall back to their loop's own timers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

CLOCK_MONOTONIC = 1
TFD_NONBLOCK = 0o4000
TFD_CLOEXEC = 0o2000000
TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(Itimerspec), ctypes.c_void_p]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def create() -> int:
    """A non-blocking, close-on-exec timerfd, or -1 where timerfd is not available."""
    if _LIBC is None:
        return -1
    return int(_LIBC.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC))


def arm_at(fd: int, spec: Itimerspec, at_ns: int) -> int:
    """Arm ``fd`` to fire once at ``at_ns`` (``time.monotonic_ns()`` clock). Returns 0, or an errno."""
    at_ns = max(at_ns, 1)  # 0 would disarm
    spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(at_ns, 1_000_000_000)
    if _LIBC is None:
        return -1
    if _LIBC.timerfd_settime(fd, TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
        return ctypes.get_errno() or -1
    return 0


def disarm(fd: int, spec: Itimerspec) -> None:
    spec.it_value.tv_sec = spec.it_value.tv_nsec = 0
    if _LIBC is not None:
        _LIBC.timerfd_settime(fd, 0, ctypes.byref(spec), None)
