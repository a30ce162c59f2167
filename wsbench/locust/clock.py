"""Clock offsets between Locust workers and the master, with an error bound.

One-way latency compares a sender's clock (the intended send time in the message) with a receiver's
(the receipt time). Every process of a run expresses its times on the **master's** monotonic clock:
``master_ns = local_ns + offset``.

* Same host (the worker's ``/proc/sys/kernel/random/boot_id`` equals the master's): Linux's
  ``CLOCK_MONOTONIC`` is one clock for every process of the machine, so the offset is exactly 0 and
  the bound is 0.
* Another host: the offset is estimated from round trips over Locust's own master-worker channel
  (NTP's method): the worker notes ``t0``, the master answers with its clock ``tm``, the worker notes
  ``t1``. Since ``tm`` was read between ``t0`` and ``t1``, the true offset lies in
  ``[tm - t1, tm - t0]``: the estimate is the middle, ``tm - (t0 + t1) / 2``, and the bound half the
  round trip. Of a burst of probes the one with the shortest round trip wins; bursts repeat during the
  run (clocks drift by some ppm) and the latest is used.

A delivery between two processes is then off by at most the sum of the two processes' bounds. The run
records each worker's offset and bound (``clock`` events in the results file) and the largest pair
bound; latencies are **corrected, not refused**: a reader compares the bound with the percentiles it
cares about (on a LAN it is typically 0.05-0.5 ms; over Locust's ZeroMQ channel on one host, below
0.2 ms even when estimated).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """This machine's boot id (identifies one ``CLOCK_MONOTONIC``); empty where there is none."""
    try:
        return BOOT_ID_PATH.read_text().strip()
    except OSError:
        return ""


def monotonic_ns() -> int:
    return time.monotonic_ns()


@dataclass(frozen=True, slots=True)
class Probe:
    """One round trip: worker clock before and after, master clock in between (all ns)."""

    t0: int
    tm: int
    t1: int

    @property
    def rtt(self) -> int:
        return self.t1 - self.t0

    @property
    def offset(self) -> int:
        return self.tm - (self.t0 + self.t1) // 2

    @property
    def bound(self) -> int:
        return (self.rtt + 1) // 2


@dataclass(slots=True)
class OffsetEstimate:
    """``master_ns = local_ns + offset_ns``, true within ``bound_ns``."""

    offset_ns: int = 0
    bound_ns: int = 0
    exact: bool = True  # same boot id as the master
    probes: int = 0
    method: str = "same-host"

    def as_dict(self) -> dict[str, object]:
        return {
            "offset_ms": round(self.offset_ns / 1e6, 6),
            "bound_ms": round(self.bound_ns / 1e6, 6),
            "method": self.method,
            "probes": self.probes,
        }


@dataclass(slots=True)
class OffsetEstimator:
    """Collects probes of the current burst; :meth:`finish_burst` turns the best one into the estimate."""

    estimate: OffsetEstimate = field(default_factory=OffsetEstimate)
    _burst: list[Probe] = field(default_factory=list)

    def add(self, probe: Probe) -> None:
        if probe.t1 >= probe.t0:
            self._burst.append(probe)

    def finish_burst(self) -> OffsetEstimate | None:
        """Adopt the burst's shortest round trip; ``None`` if the burst got no answer."""
        if not self._burst:
            return None
        best = min(self._burst, key=lambda p: p.rtt)
        self.estimate = OffsetEstimate(best.offset, best.bound, False, len(self._burst), "round-trip")
        self._burst = []
        return self.estimate

    def same_host(self) -> OffsetEstimate:
        self.estimate = OffsetEstimate(0, 0, True, 0, "same-host")
        return self.estimate


def pair_bound_ns(bounds: dict[str, int]) -> int:
    """Worst error of a one-way latency between any two processes: the two largest bounds added
    (a pair within one process has error 0; with one process only, 0)."""
    values = sorted(bounds.values(), reverse=True)
    if len(values) < 2:
        return 0
    return values[0] + values[1]
