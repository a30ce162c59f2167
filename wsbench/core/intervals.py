"""The intervals of a run as the recorder keeps them, and the interval records it takes (sans I/O).

:class:`Intervals` is the timeline of one :class:`~wsbench.core.recorder.Recorder`: every interval so far
(its index, start, end and phase), what each collected (:class:`IntervalData`) until its record is taken,
the late supplements, and the totals of every phase (:class:`PhaseTotals`). Which interval a number
belongs to is the recorder's rule (:mod:`wsbench.core.recorder`); this module finds the interval of a time
and turns what an interval collected into its record (:class:`IntervalRecord`).

When a record is final
----------------------
An interval's record is taken ``hold_us`` after the interval ended (so that nearly every delivery of
its messages is in it) and at the end of the run. Deliveries of its messages that arrive after that
come in a *supplement*: a later record with the same ``index`` and ``"late": true`` holding only what
arrived late (taken at the next interval boundary). Readers merge records of one index exactly, so
the file still streams (a crash loses at most the last ``hold_us`` and one interval) and an interval's
numbers are complete once the footer is written.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
from hdrh.histogram import HdrHistogram

from wsbench.core import histograms

#: the histograms of an interval record
HISTOGRAM_NAMES = ("latency", "latency_uncorrected", "fanout", "connect", "connect_handshake", "send_lag")
#: counters every interval record carries (others appear when non-zero)
COUNTER_NAMES = (
    "sent",
    "delivered",
    "expected",
    "duplicated",
    "reordered",
    "connect_ok",
    "connect_errors",
    "closes",
    "errors",
)


class IntervalRecord(TypedDict, total=False):
    """An ``interval`` record of the results file (docs/results-format.md), histograms as objects."""

    index: int
    start_s: float
    end_s: float
    phase: str
    late: bool
    counters: dict[str, int]
    clients_connected: int
    histograms: dict[str, HdrHistogram]
    generator: dict[str, Any]
    server: dict[str, Any] | None


@dataclass
class IntervalData:
    """What one interval (or one interval's late supplement) collected."""

    counters: Counter[str] = field(default_factory=Counter)
    hist: dict[str, HdrHistogram] = field(default_factory=dict)
    send_lag: histograms.BatchRecorder = field(default_factory=histograms.BatchRecorder)
    send_lag_us_max: int = 0
    # a driver's own values (record_values), recorded once when the record is taken: a bulk record per
    # batch costs more than the few values (probe deliveries) a batch holds
    pending: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def histogram(self, name: str) -> HdrHistogram:
        h = self.hist.get(name)
        if h is None:
            h = self.hist[name] = histograms.new_histogram()
        return h

    def fold_pending(self) -> None:
        for name, parts in self.pending.items():
            histograms.record_many(self.histogram(name), np.concatenate(parts))
        self.pending.clear()

    def empty(self) -> bool:
        return not any(self.counters.values()) and not self.hist and not self.pending and not len(self.send_lag)


@dataclass
class PhaseTotals:
    """Every final record of one phase folded together (what a stage's verdict is judged on)."""

    hist: dict[str, HdrHistogram] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    span_s: float = 0.0

    def histogram(self, name: str) -> HdrHistogram:
        h = self.hist.get(name)
        if h is None:
            h = self.hist[name] = histograms.new_histogram()
        return h

    def add_record(self, record: IntervalRecord, with_span: bool = True) -> None:
        """Fold in one written record (a late supplement adds its deliveries, not its span): how a
        process that only reads records (the Locust master) builds the same totals. ``with_span``:
        False for further records of an interval already counted (another worker's)."""
        self.counters.update(record.get("counters") or {})
        for name, h in (record.get("histograms") or {}).items():
            histograms.add(self.histogram(name), h)
        if with_span and not record.get("late"):
            self.span_s += record["end_s"] - record["start_s"]


class Intervals:
    """Every interval of a run so far: its index, start, end and phase, what it collected until its record
    was taken (and late supplements after that), and the totals of each phase.

    ``hold_us``: how long after an interval's end its record is taken (:meth:`take_records`).
    """

    def __init__(self, *, hold_us: int, first_index: int = 0, start_us: int = 0, phase: str = "connect") -> None:
        self.hold_us = hold_us
        # every interval so far: its index, start, end (None: the current one) and phase
        self._index: list[int] = [first_index]
        self._start: list[int] = [start_us]
        self._end: list[int | None] = [None]
        self._phase: list[str] = [phase]
        self._starts = np.asarray(self._start, dtype=np.int64)
        self._data: dict[int, IntervalData] = {0: IntervalData()}  # by position in the lists above: not yet taken
        self._info: dict[int, dict[str, Any]] = {}  # by position: clients_connected, generator, server
        self._late: dict[int, IntervalData] = {}  # by position: arrived after the interval was taken
        self._taken_upto = 0  # positions below this were taken
        self.phases: dict[str, PhaseTotals] = {}
        self._phase_open: Counter[str] = Counter({phase: 1})
        self._final_phases: list[str] = []

    @property
    def current_index(self) -> int:
        return self._index[-1]

    @property
    def current_phase(self) -> str:
        return self._phase[-1]

    @property
    def current_start_us(self) -> int:
        return self._start[-1]

    def set_phase(self, phase: str) -> None:
        """The current interval belongs to ``phase`` (a phase that starts exactly at its start)."""
        old = self._phase[-1]
        if old != phase:
            self._phase_open[old] -= 1
            self._phase_open[phase] += 1
            self._phase[-1] = phase

    def relabel_open(self, phase: str) -> None:
        """Every interval not taken yet after the last finished phase's now belongs to ``phase`` (a
        capacity search that stopped: what the next stage sent meanwhile is the drain's)."""
        done = set(self._phase[: self._taken_upto])
        for pos in range(self._taken_upto, len(self._phase)):
            old = self._phase[pos]
            if old not in done and old != phase:
                self._phase_open[old] -= 1
                self._phase_open[phase] += 1
                self._phase[pos] = phase

    def cut(self, t_us: int, phase: str, index: int | None = None, info: dict[str, Any] | None = None) -> None:
        """Close the current interval at ``t_us`` (``info``: its ``clients_connected``, ``generator`` and
        ``server``), open the next one (``index``: default the next number) in ``phase``.

        The current interval is open-ended: whatever is recorded at or after its start goes into it. So a
        driver cuts every boundary up to ``t`` (at the boundary's scheduled time, not when its timer ran)
        before it records anything at ``t``: the Locust collector's ``advance``, the engine's ``_advance``."""
        pos = len(self._index) - 1
        self._end[pos] = t_us
        self._info[pos] = info or {}
        self._index.append(self._index[pos] + 1 if index is None else index)
        self._start.append(t_us)
        self._end.append(None)
        self._phase.append(phase)
        self._phase_open[phase] += 1
        self._starts = np.asarray(self._start, dtype=np.int64)
        self._data[pos + 1] = IntervalData()

    def positions(self, t_us: np.ndarray) -> np.ndarray:
        """The position of the interval each time falls in (a time before the first interval: the first)."""
        return np.maximum(np.searchsorted(self._starts, t_us, side="right") - 1, 0)

    def at(self, pos: int) -> IntervalData:
        """What the interval at ``pos`` collects: its data until its record is taken, then its late supplement."""
        data = self._data.get(pos)
        if data is None:
            data = self._late.get(pos)
            if data is None:
                data = self._late[pos] = IntervalData()
        return data

    def at_time(self, t_us: int) -> IntervalData:
        """The interval in which something happened at ``t_us``."""
        return self.at(int(self.positions(np.asarray([t_us]))[0]))

    def group_by_interval(self, t_us: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """``(a time in the interval, mask)`` per interval the times ``t_us`` fall in."""
        pos = self.positions(t_us)
        return [(self._start[p], pos == p) for p in np.unique(pos).tolist()]

    def of_message(self, intended_us: int) -> IntervalData:
        """The interval of a message intended at ``intended_us`` (nearly always the current one)."""
        pos = len(self._start) - 1
        if intended_us < self._start[pos]:
            pos = int(self.positions(np.asarray([intended_us]))[0])
        return self._data.get(pos) or self.at(pos)

    def of_messages(self, intended_us: np.ndarray) -> list[tuple[IntervalData, np.ndarray | None]]:
        """The intervals of messages intended at ``intended_us`` (not empty), each with the mask of its
        messages (None: all of them; the common case, every message of the current interval)."""
        last = len(self._start) - 1
        groups: list[tuple[int, np.ndarray | None]]
        if int(intended_us.min()) >= self._start[last]:
            groups = [(last, None)]
        else:
            pos = self.positions(intended_us)
            one = bool(pos[0] == pos[-1]) and bool((pos == pos[0]).all())
            groups = [(int(pos[0]), None)] if one else [(int(p), pos == p) for p in np.unique(pos).tolist()]
        return [(self._data.get(p) or self.at(p), sel) for p, sel in groups]

    def take_records(self, now_us: int, *, final: bool = False, late: bool = True) -> list[IntervalRecord]:
        """Records that are final by ``now_us`` (every one when ``final``), and late supplements."""
        out: list[IntervalRecord] = []
        last = len(self._index) - 1
        while self._taken_upto < last or (final and self._taken_upto == last):
            pos = self._taken_upto
            end = self._end[pos]
            if end is None:  # the current interval: only at the very end (not when it just began, empty)
                end = self._end[pos] = max(now_us, self._start[pos])
                if end - self._start[pos] < 10_000 and self._data[pos].empty():
                    self._data.pop(pos)
                    self._taken_upto += 1
                    self._phase_open[self._phase[pos]] -= 1
                    break
            elif not final and end + self.hold_us > now_us:
                break
            out.append(self._record(pos, self._data.pop(pos), late=False))
            self._taken_upto += 1
            phase = self._phase[pos]
            self._phase_open[phase] -= 1
            if self._phase_open[phase] == 0:
                self._final_phases.append(phase)
        if late or final:
            for pos in sorted(self._late):
                if pos < self._taken_upto:
                    out.append(self._record(pos, self._late.pop(pos), late=True))
        return out

    def has_due(self, now_us: int) -> bool:
        """Whether :meth:`take_records` has a record to give at ``now_us``."""
        end = self._end[self._taken_upto] if self._taken_upto < len(self._end) else None
        return end is not None and end + self.hold_us <= now_us

    def take_final_phases(self) -> list[str]:
        """Phases every record of which was taken since the last call (their totals are complete, but
        for late supplements)."""
        names, self._final_phases = self._final_phases, []
        return names

    def _record(self, pos: int, data: IntervalData, late: bool) -> IntervalRecord:
        start, end = self._start[pos], self._end[pos]
        assert end is not None
        data.fold_pending()
        send_lag = data.send_lag.take()
        if send_lag.get_total_count():
            data.hist["send_lag"] = send_lag
        phase = self._phase[pos]
        totals = self.phases.setdefault(phase, PhaseTotals())
        totals.counters.update(data.counters)
        for name, h in data.hist.items():
            histograms.add(totals.histogram(name), h)
        record: IntervalRecord = {"index": self._index[pos], "start_s": start / 1e6, "end_s": end / 1e6, "phase": phase}
        if late:
            record["late"] = True
            record["counters"] = {k: int(v) for k, v in data.counters.items() if v}
            record["histograms"] = {k: h for k, h in data.hist.items() if h.get_total_count()}
            return record
        totals.span_s += (end - start) / 1e6
        counters = {k: int(data.counters.get(k, 0)) for k in COUNTER_NAMES}
        counters.update({k: int(v) for k, v in data.counters.items() if k not in counters})
        record["counters"] = counters
        hists = {name: data.hist.get(name) or histograms.new_histogram() for name in HISTOGRAM_NAMES}
        hists.update({name: h for name, h in data.hist.items() if name not in hists})
        info = self._info.pop(pos, {})
        record["histograms"] = hists
        record["clients_connected"] = int(info.get("clients_connected", 0))
        generator = dict(info.get("generator") or {})
        generator["send_lag_ms_max"] = round(data.send_lag_us_max / 1000.0, 3)
        record["generator"] = generator
        if "server" in info:
            record["server"] = info["server"]
        return record
