"""What wsbench keeps of a server's ``/stats`` answers (SPEC 5.1), and the server's CPU per interval.

An interval record's ``server`` is the last ``/stats`` sample taken during that interval. Its counters
are totals since the server started, and so is ``cpu_s`` (optional in SPEC 5.1: CPU seconds, user +
system, of the server process). The CPU one interval cost the server is therefore the difference
between its sample and the previous interval's; when either sample is missing (``/stats`` did not
answer in time) or the total went down (a restarted server), that interval has no CPU figure rather
than a wrong one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: the ``/stats`` keys an interval record keeps (docs/results-format.md)
STATS_KEYS = ("rss_bytes", "connections", "messages_in", "deliveries_out", "slow_consumer_closes", "cpu_s")


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def keep(data: Mapping[str, Any]) -> dict[str, Any]:
    """The numeric :data:`STATS_KEYS` of one ``/stats`` answer (anything else a server adds is dropped)."""
    return {k: data[k] for k in STATS_KEYS if _number(data.get(k)) is not None}


def cpu_per_interval(samples: Sequence[Mapping[str, Any] | None]) -> list[float | None]:
    """Server CPU seconds spent in each interval, from consecutive cumulative ``cpu_s`` samples."""
    out: list[float | None] = []
    prev: float | None = None
    for sample in samples:
        cur = _number(sample.get("cpu_s")) if sample else None
        out.append(cur - prev if cur is not None and prev is not None and cur >= prev else None)
        prev = cur
    return out
