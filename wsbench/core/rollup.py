"""Folding interval records into rows: the rollups a run writes and the bounded rows a reader keeps.

A day-long soak at 1 s intervals is 86,400 interval records; nobody reads them one by one. Both sides of
the results file fold consecutive intervals of one phase into a *row* with the same keys as an interval
record (``docs/results-format.md``, "rollup"):

* counters are summed and histograms merged exactly (HdrHistogram counts added), so any summary of whole
  phases computed from rows equals the one computed from the intervals;
* the per-interval samples become aggregates that a summary and a plot need: the generator's CPU mean
  and maximum over full-length intervals, the server's ``/stats`` extremes and its last sample, the
  server CPU spent (differences of consecutive cumulative samples, SPEC 5.1) and over which span.

The writer (:class:`~wsbench.core.results.ResultsWriter`) folds every :data:`ROLLUP_INTERVALS`
intervals into ``rollup`` records as it goes; the reader folds intervals (or, for a long run, those
rollups) into at most about :data:`MAX_ROWS` rows, doubling the width of a row when there are more.
Memory therefore stops growing once a run has more intervals than rows; time grows with the file.

Decoding a histogram once into a counts array and adding arrays is written here (on the ``hdrhistogram``
package's own decoder) because building one ``HdrHistogram`` object per interval and adding them is what
made an hour-long report cost hundreds of megabytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from hdrh.codec import HdrHistogramEncoder
from hdrh.histogram import HdrHistogram

from wsbench.core import histograms

#: intervals per rollup record (a power of two, so the reader's row widths line up with rollups)
ROLLUP_INTERVALS = 32
#: the reader keeps at most about this many rows per phase-free stretch (twice the plots' resolution)
MAX_ROWS = 1024
#: interval records read one by one before a reader switches to the file's rollups
DETAIL_INTERVALS = 3600


def planned_intervals(scenario: Mapping[str, Any], interval_s: float) -> float | None:
    """How many intervals a run's resolved scenario (its header) plans: warm-up, stages, drain; ``None``
    when the header does not say (a synthetic or foreign file)."""
    stages = scenario.get("resolved_stages")
    if not isinstance(stages, list) or not stages or interval_s <= 0:
        return None
    try:
        total = sum(float(s.get("duration") or 0.0) for s in stages)
        total += float((scenario.get("warmup") or {}).get("duration") or 0.0)
        total += float(scenario.get("drain") or 0.0)
    except (TypeError, ValueError, AttributeError):
        return None
    return total / interval_s


def detailed(index: int, window: int = ROLLUP_INTERVALS) -> bool:
    """Whether interval ``index`` is written (and read) with its histograms: those of the rollup windows
    that start within the first :data:`DETAIL_INTERVALS` intervals."""
    return (index // window) * window < DETAIL_INTERVALS


_PROBE = histograms.new_histogram()
COUNTS_LEN = _PROBE.counts_len
_GEOMETRY = (histograms.LOWEST_US, histograms.HIGHEST_US, histograms.SIGNIFICANT_DIGITS)
#: generator figures that add up, over intervals and over a Locust run's processes (times, counts)
GENERATOR_SUMMED = ("cpu_s", "cpu_wait_s", "cpu_slices")
SERVER_LAST_KEYS = ("rss_bytes", "connections", "messages_in", "deliveries_out", "slow_consumer_closes", "cpu_s")


_NO_VALS = np.zeros(0, dtype=np.int64)


class Counts:
    """The merged counts of one histogram name: the counts array's slice from the lowest to the highest
    bucket that holds a value (``arr[i]`` is bucket ``lo + i``), so adding is a slice addition."""

    __slots__ = ("arr", "lo")

    def __init__(self) -> None:
        self.lo = 0
        self.arr = _NO_VALS

    def _add_slice(self, lo: int, arr: np.ndarray) -> None:
        if not arr.size:
            return
        if not self.arr.size:
            self.lo, self.arr = lo, arr.astype(np.int64, copy=True)
            return
        new_lo, hi = min(self.lo, lo), max(self.lo + self.arr.size, lo + arr.size)
        if new_lo != self.lo or hi != self.lo + self.arr.size:
            grown = np.zeros(hi - new_lo, dtype=np.int64)
            grown[self.lo - new_lo : self.lo - new_lo + self.arr.size] = self.arr
            self.lo, self.arr = new_lo, grown
        self.arr[lo - self.lo : lo - self.lo + arr.size] += arr

    def add(self, item: Counts | HdrHistogram | str | bytes | None) -> None:
        if item is None or item == "":
            return
        if isinstance(item, Counts):
            self._add_slice(item.lo, item.arr)
            return
        if isinstance(item, str | bytes):
            decoded = _decode(item)
            if isinstance(decoded, tuple):
                self._add_slice(*decoded)
            else:
                self._add_histogram(decoded)
            return
        self._add_histogram(item)

    def _add_histogram(self, item: HdrHistogram) -> None:
        if not item.get_total_count():
            return
        if item.counts_len == COUNTS_LEN and item.sub_bucket_count == _PROBE.sub_bucket_count:
            lo, hi = item.get_counts_array_index(item.min_value), item.get_counts_array_index(item.max_value)
            self._add_slice(lo, np.ctypeslib.as_array(item.counts)[lo : hi + 1].view(np.int64))
        else:  # another geometry: let the library re-record its values
            h = self.histogram()
            h.add(item)
            self.lo, self.arr = 0, np.ctypeslib.as_array(h.counts)[:COUNTS_LEN].view(np.int64).copy()

    def sparse(self) -> tuple[np.ndarray, np.ndarray]:
        """Indexes and counts of the buckets that hold a value."""
        nz = np.flatnonzero(self.arr)
        return nz + self.lo, self.arr[nz]

    def total(self) -> int:
        return int(self.arr.sum())

    def max_us(self) -> int:
        """The histogram's ``get_max_value`` (0 when empty)."""
        nz = np.flatnonzero(self.arr)
        if not nz.size:
            return 0
        return int(_PROBE.get_highest_equivalent_value(_PROBE.get_value_from_index(int(nz[-1]) + self.lo)))

    def histogram(self) -> HdrHistogram:
        """An ``HdrHistogram`` holding these counts (min, max and total as its decoder would set them)."""
        h = histograms.new_histogram()
        nz = np.flatnonzero(self.arr)
        if nz.size:
            np.ctypeslib.as_array(h.counts)[self.lo : self.lo + self.arr.size] = self.arr
            h.set_internal_tacking_values(int(nz[0]) + self.lo, int(nz[-1]) + self.lo, int(self.arr.sum()))
        return h

    def encode(self) -> str:
        return histograms.encode(self.histogram())

    def __bool__(self) -> bool:
        return bool(self.arr.size) and self.total() > 0


def _decode(text: str | bytes) -> tuple[int, np.ndarray] | HdrHistogram:
    """An encoded histogram's counts, as ``(lowest bucket, counts from it to the highest)``, without
    building an ``HdrHistogram``; a histogram of another geometry is decoded by the library."""
    payload = HdrHistogramEncoder.decode(text.encode("ascii") if isinstance(text, str) else text)
    header = payload.payload
    geometry = (header.lowest_trackable_value, header.highest_trackable_value, header.significant_figures)
    if geometry != _GEOMETRY:
        return histograms.decode(text if isinstance(text, str) else text.decode("ascii"))
    found = payload.init_counts(COUNTS_LEN)
    if not found["total"]:
        return 0, _NO_VALS
    lo, hi = int(found["min_nonzero_index"]), int(found["max_nonzero_index"])
    return lo, np.ctypeslib.as_array(payload.counts)[lo : hi + 1].view(np.int64)


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


# -- per interval: several workers' records of one index merged, then made an aggregate ------------------
def _merge_scalars(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    """Fold a second record of the same index (another Locust worker) into ``into`` (scalars only)."""
    into["clients_connected"] = (into.get("clients_connected") or 0) + (other.get("clients_connected") or 0)
    into["start_s"] = min(into["start_s"], float(other.get("start_s", into["start_s"])))
    into["end_s"] = max(into["end_s"], float(other.get("end_s", into["end_s"])))
    gen_a, gen_b = into.get("generator") or {}, other.get("generator") or {}
    if gen_b:
        merged = dict(gen_a)
        for key, value in gen_b.items():
            if _number(value) is None:
                continue
            old = _number(gen_a.get(key))
            summed = key in GENERATOR_SUMMED or key == "open_fds"  # each process its own
            merged[key] = value if old is None else (old + value if summed else max(old, value))
        into["generator"] = merged
    if other.get("server") and not into.get("server"):
        into["server"] = other["server"]


def _interval_stats(record: Mapping[str, Any], interval_s: float, prev_cpu_s: float | None) -> dict[str, Any]:
    """The aggregate of one interval (its workers merged): what a row holds, for a row of one."""
    span = max(float(record.get("end_s", 0.0)) - float(record.get("start_s", 0.0)), 0.0)
    gen_in = record.get("generator") or {}
    generator: dict[str, Any] = {}
    if gen_in:
        for key, value in gen_in.items():
            if _number(value) is not None:
                generator[key] = value
        pct = _number(gen_in.get("cpu_pct"))
        full = pct is not None and span >= 0.5 * interval_s
        generator["cpu_pct_sum"] = pct if full else 0.0
        generator["cpu_pct_n"] = 1 if full else 0
        generator["cpu_pct_max"] = pct if full else None
        generator["intervals"] = 1
    sample = record.get("server") or None
    server: dict[str, Any] | None = None
    if sample:
        server = {k: sample[k] for k in SERVER_LAST_KEYS if _number(sample.get(k)) is not None}
        server["t_s"] = float(record.get("end_s", 0.0))
        rss = _number(sample.get("rss_bytes"))
        conns = _number(sample.get("connections"))
        server.update(
            rss_bytes_min=rss,
            rss_bytes_max=rss,
            rss_bytes_sum=rss or 0.0,
            rss_samples=1 if rss is not None else 0,
            connections_max=conns,
            samples=1,
        )
        cpu = _number(sample.get("cpu_s"))
        spent = cpu - prev_cpu_s if cpu is not None and prev_cpu_s is not None and cpu >= prev_cpu_s else None
        delivered = int((record.get("counters") or {}).get("delivered", 0))
        server.update(
            cpu_spent_s=spent or 0.0,
            cpu_span_s=span if spent is not None else 0.0,
            cpu_delivered=delivered if spent is not None else 0,
        )
    return {"generator": generator or None, "server": server, "clients_connected": record.get("clients_connected")}


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def merge_generator(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """Two rows' generator aggregates (``b`` later than ``a``)."""
    if not a or not b:
        only = a or b
        return dict(only) if only else None
    out: dict[str, Any] = {}
    na, nb = int(a.get("intervals", 1)), int(b.get("intervals", 1))
    for key in set(a) | set(b):
        va, vb = _number(a.get(key)), _number(b.get(key))
        if key in GENERATOR_SUMMED or key in ("cpu_pct_sum", "cpu_pct_n", "intervals", "batch_ms"):
            out[key] = (va or 0.0) + (vb or 0.0)
        elif key == "cpu_pct":
            out[key] = (
                ((va or 0.0) * na + (vb or 0.0) * nb) / (na + nb) if va is not None and vb is not None else _max(va, vb)
            )
        else:
            out[key] = _max(va, vb)
    for key in ("cpu_pct_n", "intervals", "cpu_slices"):
        if key in out:
            out[key] = int(out[key])
    if "open_fds" in out and out["open_fds"] is not None:
        out["open_fds"] = int(out["open_fds"])
    return out


def merge_server(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """Two rows' server aggregates (``b`` later than ``a``): the last sample is ``b``'s."""
    if not a or not b:
        only = a or b
        return dict(only) if only else None
    out = dict(b)
    out["rss_bytes_min"] = _min(a.get("rss_bytes_min"), b.get("rss_bytes_min"))
    out["rss_bytes_max"] = _max(a.get("rss_bytes_max"), b.get("rss_bytes_max"))
    out["connections_max"] = _max(a.get("connections_max"), b.get("connections_max"))
    for key in ("rss_bytes_sum", "rss_samples", "samples", "cpu_spent_s", "cpu_span_s", "cpu_delivered"):
        out[key] = (a.get(key) or 0) + (b.get(key) or 0)
    return out


class _Row:
    """One row being folded: a phase's intervals ``index .. index_to`` (those of a bucket)."""

    __slots__ = (
        "by_index",
        "clients",
        "counters",
        "end_s",
        "generator",
        "hists",
        "index",
        "index_to",
        "intervals",
        "phase",
        "server",
        "start_s",
        "workers",
    )

    def __init__(self, phase: str, index: int, start_s: float, end_s: float) -> None:
        self.phase = phase
        self.index = self.index_to = index
        self.start_s, self.end_s = start_s, end_s
        self.counters: dict[str, int] = {}
        self.hists: dict[str, Counts] = {}
        self.by_index: dict[int, dict[str, Any]] = {}  # scalars of intervals not yet made aggregates
        self.generator: dict[str, Any] | None = None
        self.server: dict[str, Any] | None = None
        self.clients: tuple[int, Any] | None = None  # (index, clients_connected) of the latest interval
        self.intervals = 0
        self.workers: list[str] = []  # the Locust workers whose records the row holds

    def _worker(self, names: Iterable[Any]) -> None:
        for name in names:
            if name is not None and str(name) not in self.workers:
                self.workers.append(str(name))

    def _span(self, index: int, index_to: int, start_s: float, end_s: float) -> None:
        self.index, self.index_to = min(self.index, index), max(self.index_to, index_to)
        self.start_s, self.end_s = min(self.start_s, start_s), max(self.end_s, end_s)

    def _add_counts(self, counters: Mapping[str, Any], hists: Mapping[str, Any]) -> None:
        for key, value in counters.items():
            if _number(value) is not None:
                self.counters[key] = self.counters.get(key, 0) + int(value)
        for name, h in hists.items():
            if h is not None and h != "":
                self.hists.setdefault(name, Counts()).add(h)

    def add_interval(self, record: Mapping[str, Any]) -> None:
        index = int(record.get("index", 0))
        start, end = float(record.get("start_s", 0.0)), float(record.get("end_s", 0.0))
        self._span(index, index, start, end)
        self._add_counts(record.get("counters") or {}, record.get("histograms") or {})
        self._worker([record.get("worker")])
        scalars: dict[str, Any] = {
            "start_s": start,
            "end_s": end,
            "clients_connected": record.get("clients_connected"),
            "generator": dict(record.get("generator") or {}),
            "server": dict(record.get("server") or {}),
            "counters": {"delivered": int((record.get("counters") or {}).get("delivered", 0))},
        }
        if index in self.by_index:
            self.by_index[index]["counters"]["delivered"] += scalars["counters"]["delivered"]
            _merge_scalars(self.by_index[index], scalars)
        else:
            self.by_index[index] = scalars

    def add_row(self, row: Mapping[str, Any]) -> None:
        """Fold a finished row (a ``rollup`` record, or a row of a narrower width)."""
        self._span(
            int(row["index"]), int(row.get("index_to", row["index"])), float(row["start_s"]), float(row["end_s"])
        )
        self._add_counts(row.get("counters") or {}, row.get("histograms") or {})
        self._worker(row.get("workers") or ())
        self._aggregate(row, int(row.get("index_to", row["index"])))

    def _aggregate(self, stats: Mapping[str, Any], index_to: int) -> None:
        self.generator = merge_generator(self.generator, stats.get("generator"))
        self.server = merge_server(self.server, stats.get("server"))
        if stats.get("clients_connected") is not None and (self.clients is None or index_to >= self.clients[0]):
            self.clients = (index_to, stats["clients_connected"])
        self.intervals += int(stats.get("intervals", 1))

    def settle(self, interval_s: float, prev_cpu: dict[int, float]) -> None:
        """Make aggregates of the intervals folded one by one (in index order; ``prev_cpu`` maps an index
        to its server ``cpu_s`` sample, for the CPU of the next interval)."""
        for index in sorted(self.by_index):
            scalars = self.by_index[index]
            stats = _interval_stats(scalars, interval_s, prev_cpu.get(index - 1))
            cpu = _number((scalars.get("server") or {}).get("cpu_s"))
            if cpu is not None:
                prev_cpu[index] = cpu
            self._aggregate(stats, index)
        self.by_index = {}

    def merge(self, other: _Row) -> None:
        """Fold ``other`` (a row of the same phase, later or overlapping) into this one."""
        self._span(other.index, other.index_to, other.start_s, other.end_s)
        self._add_counts(other.counters, other.hists)
        self._worker(other.workers)
        for index, scalars in other.by_index.items():
            if index in self.by_index:
                _merge_scalars(self.by_index[index], scalars)
            else:
                self.by_index[index] = scalars
        self._aggregate(
            {
                "generator": other.generator,
                "server": other.server,
                "intervals": other.intervals,
                "clients_connected": other.clients[1] if other.clients else None,
            },
            other.clients[0] if other.clients else other.index_to,
        )

    def record(self, kind: str = "interval") -> dict[str, Any]:
        """The row as a record (a ``rollup`` line, or a row of ``Results.intervals``)."""
        out = {
            "type": kind,
            "index": self.index,
            "index_to": self.index_to,
            "intervals": self.intervals,
            "start_s": round(self.start_s, 6),
            "end_s": round(self.end_s, 6),
            "phase": self.phase,
            "counters": dict(self.counters),
            "clients_connected": self.clients[1] if self.clients else None,
            "histograms": {name: c for name, c in self.hists.items() if c},
            "generator": self.generator,
            "server": self.server,
        }
        if self.workers:
            out["workers"] = list(self.workers)
        return out


class RowFolder:
    """Folds interval records (and rollups) into rows of ``width`` consecutive intervals per phase.

    ``max_rows`` (reader): double the width whenever there are more rows. ``settled()`` hands back the
    rows of buckets that no later interval can reach any more (all but the last two), in order.
    """

    def __init__(self, interval_s: float, width: int = 1, max_rows: int | None = None) -> None:
        self.interval_s = interval_s or 1.0
        self.width = width
        self.max_rows = max_rows
        self.rows: dict[tuple[int, str], _Row] = {}
        self._prev_cpu: dict[int, float] = {}
        self._top = -1
        self._unsettled: set[tuple[int, str]] = set()  # rows holding intervals not yet made aggregates

    def _row(self, index: int, phase: str, start_s: float, end_s: float) -> _Row:
        key = (index // self.width, phase)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = _Row(phase, index, start_s, end_s)
        return row

    def add_interval(self, record: Mapping[str, Any]) -> None:
        index, phase = int(record.get("index", 0)), str(record.get("phase", ""))
        self._unsettled.add((index // self.width, phase))
        self._row(index, phase, float(record.get("start_s", 0.0)), float(record.get("end_s", 0.0))).add_interval(record)
        self._grown(index)

    def add_rollup(self, record: Mapping[str, Any]) -> None:
        span = int(record.get("index_to", record["index"])) - int(record["index"]) + 1
        while self.width < span:
            self._double()
        index = int(record["index"])
        self._row(index, str(record.get("phase", "")), float(record["start_s"]), float(record["end_s"])).add_row(record)
        cpu = _number((record.get("server") or {}).get("cpu_s"))
        if cpu is not None:
            self._prev_cpu[int(record.get("index_to", index))] = cpu
        self._grown(int(record.get("index_to", index)))

    @property
    def top(self) -> int:
        """The highest interval index folded so far (-1: none)."""
        return self._top

    def _grown(self, index: int) -> None:
        self._top = max(self._top, index)
        if self.max_rows is not None and len(self.rows) > self.max_rows:
            self._double()

    def _double(self) -> None:
        self.width *= 2
        merged: dict[tuple[int, str], _Row] = {}
        for (bucket, phase), row in sorted(self.rows.items(), key=lambda kv: kv[1].index):
            key = (bucket // 2, phase)
            if key in merged:
                merged[key].merge(row)
            else:
                merged[key] = row
        self.rows = merged
        self._unsettled = {key for key, row in merged.items() if row.by_index}

    def settle(self, everything: bool = False) -> list[_Row]:
        """Settle the per-interval samples of rows no later interval reaches (all rows when ``everything``)."""
        limit = (self._top // self.width) - 1
        keys = [key for key in self._unsettled if everything or key[0] < limit]
        if not keys:
            return []
        self._unsettled.difference_update(keys)
        ready = sorted((self.rows[key] for key in keys), key=lambda r: r.index)
        for row in ready:
            row.settle(self.interval_s, self._prev_cpu)
        if len(self._prev_cpu) > 4:
            keep = max(self._prev_cpu)
            self._prev_cpu = {keep: self._prev_cpu[keep]}
        return ready

    def take(self, everything: bool = False) -> list[dict[str, Any]]:
        """Remove the rows of buckets before the latest one (all when ``everything``), settled, as
        ``rollup`` records in index order (what the writer writes)."""
        limit = None if everything else self._top // self.width
        keys = sorted((k for k in self.rows if limit is None or k[0] < limit), key=lambda k: self.rows[k].index)
        out = []
        for key in keys:
            row = self.rows.pop(key)
            self._unsettled.discard(key)
            row.settle(self.interval_s, self._prev_cpu)
            out.append(row.record("rollup"))
        if len(self._prev_cpu) > 4:
            last = max(self._prev_cpu)
            self._prev_cpu = {last: self._prev_cpu[last]}
        return out

    def records(self) -> list[dict[str, Any]]:
        """Every row, settled, as interval-shaped records in time order (the reader's result)."""
        self.settle(everything=True)
        return [row.record() for row in sorted(self.rows.values(), key=lambda r: (r.index, r.start_s))]


#: what an interval record past DETAIL_INTERVALS keeps of each histogram (milliseconds, and the count)
INTERVAL_PERCENTILES = (("p50", 50.0), ("p99", 99.0), ("p99_9", 99.9))


def percentile_numbers(hists: Mapping[str, Any]) -> dict[str, dict[str, float | int]]:
    """``{name: {count, p50, p99, p99_9, max}}`` (ms) of an interval's non-empty histograms."""
    out: dict[str, dict[str, float | int]] = {}
    for name, item in hists.items():
        if item is None or item == "":
            continue
        h = item if isinstance(item, HdrHistogram) else _as_histogram(item)
        count = h.get_total_count()
        if not count:
            continue
        values = histograms.percentiles_us(h, [p for _, p in INTERVAL_PERCENTILES])
        numbers: dict[str, float | int] = {"count": int(count)}
        numbers.update({key: v / 1000.0 for (key, _), v in zip(INTERVAL_PERCENTILES, values, strict=True)})
        numbers["max"] = h.get_max_value() / 1000.0
        out[name] = numbers
    return out


def _as_histogram(item: Counts | str | bytes) -> HdrHistogram:
    if isinstance(item, Counts):
        return item.histogram()
    counts = Counts()
    counts.add(item)
    return counts.histogram()
