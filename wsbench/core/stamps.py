"""Kernel receive timestamps on the run's clock (pure: the clocks are passed in).

Linux stamps every TCP segment when it arrives (``SO_TIMESTAMPNS``); ``recvmsg`` returns, as one
``SCM_TIMESTAMPNS`` control message per call, the stamp of the last segment the call read. The stamp is
``CLOCK_REALTIME``; the run measures everything on ``CLOCK_MONOTONIC`` (``time.monotonic_ns``), so a
stamp is converted with the offset between the two clocks, measured by bracketing one realtime read
between two monotonic reads (the tightest of a few tries wins: its uncertainty is half the bracket,
well under a microsecond) and re-checked every interval. NTP slews both clocks alike; only a step of
the wall clock (``settimeofday``, an NTP step) moves the offset, and a re-check notices it.

Python's :mod:`socket` has no ``SO_TIMESTAMPNS`` constant: it is 35 on Linux (``SO_TIMESTAMPNS_OLD``,
whose ``struct timespec`` is two native longs: 16 bytes on 64-bit Linux).
"""

from __future__ import annotations

import platform
import struct
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

SOL_SOCKET = 1
SO_TIMESTAMPNS: int | None = 35 if sys.platform.startswith("linux") else None
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
TIMESPEC = struct.Struct("@ll")
#: room for the control message ``recvmsg`` needs (``socket.CMSG_SPACE(16)`` on 64-bit Linux)
ANCILLARY_SPACE = 64
#: an offset that moved by more than this between two checks is a step of the wall clock
STEP_NS = 500_000


def enable(sock: Any) -> str | None:
    """Ask for kernel receive stamps on a socket (``setsockopt``); returns why not (``None``: they are on)."""
    if SO_TIMESTAMPNS is None:
        return f"this platform ({platform.system()}) has no SO_TIMESTAMPNS"
    try:
        sock.setsockopt(SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError as exc:
        return f"SO_TIMESTAMPNS was refused ({exc.strerror or exc})"
    return None


def stamp_ns(ancillary: Iterable[tuple[int, int, bytes]]) -> int:
    """The ``SCM_TIMESTAMPNS`` stamp (ns of ``CLOCK_REALTIME``) in ``recvmsg``'s ancillary data; 0 if none."""
    for level, kind, data in ancillary:
        if level == SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            sec, nsec = TIMESPEC.unpack_from(data)
            return int(sec) * 1_000_000_000 + int(nsec)
    return 0


@dataclass(frozen=True, slots=True)
class Offset:
    """``realtime - monotonic`` in ns, and how uncertain that is (half the tightest bracket)."""

    ns: int
    uncertainty_ns: int


def measure_offset(monotonic: Callable[[], int], realtime: Callable[[], int], tries: int = 7) -> Offset:
    """``realtime - monotonic``: one realtime read between two monotonic reads, the tightest of ``tries``."""
    best: tuple[int, int] | None = None
    for _ in range(max(tries, 1)):
        before = monotonic()
        real = realtime()
        after = monotonic()
        bracket = after - before
        if best is None or bracket < best[1]:
            best = (real - (before + after) // 2, bracket)
    assert best is not None
    return Offset(best[0], (best[1] + 1) // 2)


class ClockBridge:
    """Converts kernel stamps (realtime ns) to the run's monotonic clock; :meth:`recheck` re-measures.

    ``steps`` counts re-checks that found the offset moved by more than :data:`STEP_NS`;
    ``largest_step_ns`` is the largest such move (the conversion follows the newest offset).
    """

    def __init__(self, monotonic: Callable[[], int], realtime: Callable[[], int]) -> None:
        self._monotonic = monotonic
        self._realtime = realtime
        self.offset = measure_offset(monotonic, realtime)
        self.steps = 0
        self.largest_step_ns = 0

    def to_monotonic(self, realtime_ns: int) -> int:
        return realtime_ns - self.offset.ns

    def recheck(self) -> int:
        """Measure the offset again; returns how far it moved (ns, signed)."""
        new = measure_offset(self._monotonic, self._realtime)
        moved = new.ns - self.offset.ns
        if abs(moved) > STEP_NS:
            self.steps += 1
            self.largest_step_ns = max(self.largest_step_ns, abs(moved))
        self.offset = new
        return moved
