"""The engine's stages: live progress and the capacity search's per-stage verdicts (a mixin of
:class:`wsbench.drivers.engine.Engine`; the verdict's rule is the core's, :mod:`wsbench.core.search`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from wsbench.core.intervals import IntervalRecord

if TYPE_CHECKING:
    from wsbench.drivers.engine import Engine as _Base
else:
    _Base = object

_clock = time.monotonic_ns


class Stages(_Base):
    """Progress for the live view; a stage's verdict once its records are final."""

    def _progress(self, record: IntervalRecord, now: int) -> dict[str, Any]:
        h = record["histograms"]["latency"]
        dur = max(record["end_s"] - record["start_s"], 1e-9)
        phases = self.progress.phases
        return {
            "phase": record["phase"],
            "elapsed_s": self.progress.elapsed_s(now),
            "total_s": phases[-1].end_s if phases else 0.0,
            "sent_rate": record["counters"]["sent"] / dur,
            "delivery_rate": record["counters"]["delivered"] / dur,
            "p50_ms": h.get_value_at_percentile(50) / 1000 if h.get_total_count() else None,
            "p99_ms": h.get_value_at_percentile(99) / 1000 if h.get_total_count() else None,
            "errors": self.roster.errors,
            "clients": record["clients_connected"],
            "clients_total": self.s.clients,
            "cpu_pct": record["generator"]["cpu_pct"],
            "connect_failed": self.roster.tally.failed,
        }

    def _stage_verdict(self, name: str) -> None:
        """Once every record of a measured stage is final: the core's verdict (wsbench.core.search)."""
        progress = self.progress
        search = progress.search
        i = search.stage_index(progress.phases, name) if search is not None else None
        if search is None or i is None or progress.stopping or not progress.started:
            return
        t0, t1 = progress.bounds_ns(i)
        # messages of the stage not delivered by now (its end + the grace) count as lost so far
        verdict = search.judge(progress.phases[i], self.acc.totals(self.us(t0), self.us(t1)), self.rec.phases[name])
        if verdict is None:
            return
        self.out.writer.event("threshold", self.t_s(), **verdict.event_fields())
        if search.stopping:
            self._stop_load_early(search.stop_reason(verdict), verdict.stage)

    def _stop_load_early(self, why: str, broken: str) -> None:
        """Skip the remaining stages: go to the drain now."""
        if self.sends.timer is not None:
            self.sends.timer.cancel()
        now = _clock()
        drain = self.progress.skip_to_drain(now, broken)
        self.out.writer.event("phase", self.t_s(now), name="drain", phase_kind="drain", detail=why)
        # what the next stage sent while the broken one's verdict was awaited is not that stage's
        self.rec.relabel_open(drain.name)
        # the drain ends its duration after now: a boundary, unless one pending comes first
        pending = self.timers.interval_end_ns
        nxt = self.progress.next_boundary(now, self.clock.interval_ns)
        if pending is not None and nxt < pending:
            self._schedule_interval_end(nxt)
