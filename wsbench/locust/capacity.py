"""The capacity search of a Locust run, on the master: what the core's rule (:mod:`wsbench.core.search`)
needs, gathered from the processes' parts, and the records it must relabel when the search stops.

``wsbench run`` judges a stage once every record of it is final (its end + ``search.grace``), on that
stage's own messages. A Locust master holds the same three things, merged from every process:

* the delivery accounting (:class:`~wsbench.core.accounting.DeliveryAccounting`): sends, joins and
  leaves come with every part; receipts come with a *verdict part*, which every process ships as soon
  as a stage's verdict is due (``wsbench_part``, :meth:`wsbench.locust.worker.ProcessSide.ship_for_verdict`),
  its receipt state replacing that process's earlier one;
* the stage's folded records (:class:`~wsbench.core.intervals.PhaseTotals`): every record the master
  writes, the workers' (latency, counters, probe histograms) and its own (fan-out, ``expected``);
* the stage's bounds, on the interval grid every process shares (records are whole intervals of the
  epoch's grid: a stage's last record ends at the first grid boundary at or after its end).

A stage is judged when every process has shipped receipts as of its due time (or at the end of the
run). While a verdict is awaited, records of later intervals are held back, so that if the stage broke
and the search stops, what the next stage sent meanwhile is written as the drain's (as ``wsbench run``
relabels it), whichever worker was quick to ship it.
"""

from __future__ import annotations

import math
from typing import Any

from wsbench.core import histograms
from wsbench.core.intervals import IntervalRecord, PhaseTotals
from wsbench.core.pacing import Phase
from wsbench.core.scenario import Search
from wsbench.core.search import CapacitySearch


class MasterSearch:
    """The master's side of a capacity search (times in microseconds after the run's epoch)."""

    def __init__(self, search: Search, phases: list[Phase], interval_us: int) -> None:
        self.core = CapacitySearch(search)
        self.phases = phases  # the plan's phases (replaced by the stopped plan when the search stops)
        self.interval_us = interval_us
        self.grace_us = int(float(search.grace) * 1e6)
        self.load_start_us: int | None = None
        self.totals: dict[str, PhaseTotals] = {}
        self._spanned: set[int] = set()  # interval indexes whose span is counted
        self.receipts_as_of: dict[str, int] = {}  # process -> as of when its last receipts are
        self.held: list[dict[str, Any]] = []
        self.drain_from_us: int | None = None  # records from here on are the drain's (the search stopped)
        self.drain_name = phases[-1].name

    # -- the stages -------------------------------------------------------------------------------------
    def stage_end_us(self, phase: Phase) -> int:
        """Where the stage's last record ends: the first grid boundary at or after its end."""
        assert self.load_start_us is not None
        end = self.load_start_us + round(phase.end_s * 1e6)
        return math.ceil((end - 1000) / self.interval_us) * self.interval_us

    def bounds_us(self, phase: Phase) -> tuple[int, int]:
        """The stage's send times (what the accounting judges it on)."""
        assert self.load_start_us is not None
        return self.load_start_us + round(phase.start_s * 1e6), self.load_start_us + round(phase.end_s * 1e6)

    def due_us(self, phase: Phase) -> int:
        return self.stage_end_us(phase) + self.grace_us

    def pending(self) -> Phase | None:
        """The next measured stage without a verdict (None once the search stopped or is over)."""
        if self.core.stopping or self.load_start_us is None:
            return None
        return next((p for p in self.phases if p.kind == "measure" and not self.core.judged(p.name)), None)

    def ready(self, processes: int, now_us: int, final: bool = False) -> Phase | None:
        """The pending stage, if it can be judged now: every process shipped receipts as of its due time
        (``final``: the run is over, every part is in; a stage that started is judged on what it has)."""
        phase = self.pending()
        if phase is None:
            return None
        assert self.load_start_us is not None
        if final:
            return phase if self.load_start_us + round(phase.start_s * 1e6) <= now_us else None
        due = self.due_us(phase)
        fresh = [t for t in self.receipts_as_of.values() if t >= due]
        return phase if now_us >= due and len(fresh) >= processes else None

    # -- the records --------------------------------------------------------------------------------------
    def holds(self, record: dict[str, Any]) -> bool:
        """Whether a record must wait for the pending verdict (it starts after the pending stage)."""
        phase = self.pending()
        if phase is None:
            return False
        return round(float(record["start_s"]) * 1e6) >= self.stage_end_us(phase)

    def label(self, record: dict[str, Any]) -> None:
        """After a stop: a record of the time after the broken stage is the drain's."""
        if self.drain_from_us is not None and round(float(record["start_s"]) * 1e6) >= self.drain_from_us:
            record["phase"] = self.drain_name

    def fold(self, record: dict[str, Any]) -> None:
        """A written record (histograms encoded) into its phase's totals."""
        hists = {name: histograms.decode(text) for name, text in (record.get("histograms") or {}).items() if text}
        index = int(record["index"])
        with_span = not record.get("late") and index not in self._spanned
        if with_span:
            self._spanned.add(index)
        folded: IntervalRecord = {
            "index": index,
            "start_s": float(record["start_s"]),
            "end_s": float(record["end_s"]),
            "phase": str(record["phase"]),
            "counters": dict(record.get("counters") or {}),
            "histograms": hists,
        }
        if record.get("late"):
            folded["late"] = True
        self.totals.setdefault(str(record["phase"]), PhaseTotals()).add_record(folded, with_span=with_span)

    def release(self, everything: bool = False) -> list[dict[str, Any]]:
        """Held records that no longer wait (after a verdict; ``everything``: the run is over)."""
        held, self.held = self.held, []
        out: list[dict[str, Any]] = []
        for r in held:
            (self.held if not everything and self.holds(r) else out).append(r)
        return out

    def stop(self, broken: Phase, phases: list[Phase]) -> None:
        """The search stopped at ``broken``: ``phases`` is the stopped plan."""
        self.drain_from_us = self.stage_end_us(broken)
        self.phases = phases
