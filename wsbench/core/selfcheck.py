"""When the load generator, not the server, was the limit: the rule both drivers apply to every interval.

A load generator that is itself saturated reports its own delays as the server's. Each interval
record carries what the generator went through (``generator``: CPU share, event-loop lag, how late it
sent); :func:`bottleneck_reasons` says when that may have distorted the latencies, and
:class:`BottleneckCheck` turns the first such interval of each generator process into one
``generator_bottleneck`` warning (the summary, the reports and ``compare`` show it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: a generator above this CPU share of one core, or with more loop lag / send lateness than these,
#: may have distorted the latencies it measured
CPU_PCT_LIMIT = 90.0
LOOP_LAG_MS_LIMIT = 20.0
SEND_LAG_MS_LIMIT = 20.0
#: phases whose intervals are not judged (nothing measured is sent in them)
UNJUDGED_PHASES = frozenset({"connect", "warmup", "drain"})


def bottleneck_reasons(cpu_pct: float, loop_lag_ms: float, send_lag_ms: float) -> list[str]:
    reasons = []
    if cpu_pct >= CPU_PCT_LIMIT:
        reasons.append(f"generator CPU at {cpu_pct:.0f}% of a core")
    if loop_lag_ms >= LOOP_LAG_MS_LIMIT:
        reasons.append(f"event-loop lag up to {loop_lag_ms:.1f} ms")
    if send_lag_ms >= SEND_LAG_MS_LIMIT:
        reasons.append(f"messages sent up to {send_lag_ms:.1f} ms after their intended time")
    return reasons


@dataclass
class BottleneckCheck:
    """One warning per generator process, at its first measured interval that looks saturated."""

    interval_s: float
    warned: set[str] = field(default_factory=set)

    def check(self, record: dict[str, Any], who: str = "") -> dict[str, Any] | None:
        """The warning event's fields (``t_s``, ``warning``, ``detail``) or ``None``."""
        gen = record.get("generator") or {}
        if who in self.warned or record.get("phase") in UNJUDGED_PHASES or not gen:
            return None
        span = float(record.get("end_s", 0.0)) - float(record.get("start_s", 0.0))
        if span < self.interval_s / 2:  # a short interval's CPU share means little
            return None
        reasons = bottleneck_reasons(
            float(gen.get("cpu_pct", 0.0)),
            float(gen.get("loop_lag_ms_max", 0.0)),
            float(gen.get("send_lag_ms_max", 0.0)),
        )
        if not reasons:
            return None
        self.warned.add(who)
        where = f" ({who})" if who else ""
        return {
            "t_s": float(record.get("end_s", 0.0)),
            "warning": "generator_bottleneck",
            "detail": f"the generator{where} may have been the bottleneck: " + "; ".join(reasons),
            **({"worker": who} if who else {}),
        }
