"""The numbers a report plots and a comparison compares, taken once from a results file (or repeats).

:class:`RunData` holds a run's intervals as numpy columns (time, phase, counters, generator and server
samples) and each latency histogram as a :class:`HistogramMatrix`: one row of HdrHistogram counts per
interval, so that any subset or weighting of intervals (a time series point, the measured phases, a
bootstrap resample) is a vector-matrix product instead of thousands of ``HdrHistogram.add`` calls.

Percentiles follow ``HdrHistogram.get_value_at_percentile`` exactly (target count rounded half up,
highest equivalent value of the bucket), so a percentile computed here equals the one the summary
computes with the ``hdrhistogram`` package (tested). This vectorized reading of the counts arrays is
written by hand because the package offers percentiles of one histogram at a time only, and a
bootstrap needs thousands of merged histograms.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsbench.core import histograms
from wsbench.core.results import UNMEASURED_PHASES, Results
from wsbench.core.rollup import Counts
from wsbench.core.summary import summarize

HISTOGRAM_NAMES = ("latency", "latency_uncorrected", "fanout", "connect")
#: Phases that are neither set-up nor drain: where the send schedule runs, so rates are meaningful.
NOT_SENDING_PHASES = frozenset({*UNMEASURED_PHASES, "drain"})


@dataclass
class HistogramMatrix:
    """Counts of one histogram name per interval: ``counts[i, j]`` values in bucket ``j`` in interval ``i``.

    Only buckets that hold a value in some interval are kept (``values_us[j]`` is the bucket's highest
    equivalent value, in microseconds, increasing with ``j``).
    """

    counts: np.ndarray  # (intervals, buckets) float64 (exact for counts < 2**53; BLAS-friendly)
    values_us: np.ndarray  # (buckets,) int64
    max_us: np.ndarray  # (intervals,) int64, the exact maximum recorded per interval (0 when empty)

    @classmethod
    def from_encoded(cls, encoded: Sequence[Counts | str | None]) -> HistogramMatrix:
        """One row per item: merged counts of a results row (``Counts``) or an encoded histogram."""
        rows: list[tuple[np.ndarray, np.ndarray]] = []
        maxima = np.zeros(len(encoded), dtype=np.int64)
        probe = histograms.new_histogram()
        for i, item in enumerate(encoded):
            if not item:
                rows.append((np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)))
                continue
            counts_of = item if isinstance(item, Counts) else Counts()
            if not isinstance(item, Counts):
                counts_of.add(item)
            nonzero, counts = counts_of.sparse()
            rows.append((nonzero.astype(np.int64), counts.astype(np.int64)))
            maxima[i] = counts_of.max_us()
        columns = np.unique(np.concatenate([idx for idx, _ in rows])) if rows else np.zeros(0, dtype=np.int64)
        matrix = np.zeros((len(encoded), columns.size), dtype=np.float64)
        for i, (idx, counts) in enumerate(rows):
            if idx.size:
                matrix[i, np.searchsorted(columns, idx)] = counts
        values = np.array(
            [probe.get_highest_equivalent_value(probe.get_value_from_index(int(c))) for c in columns], dtype=np.int64
        )
        return cls(counts=matrix, values_us=values, max_us=maxima)

    def total(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The merged counts of the selected rows (a boolean mask or indexes; all when None)."""
        return self.counts.sum(axis=0) if rows is None else self.counts[rows].sum(axis=0)

    def max_ms(self, rows: np.ndarray | None = None) -> float | None:
        maxima = self.max_us if rows is None else self.max_us[rows]
        return float(maxima.max()) / 1000.0 if maxima.size and maxima.max() > 0 else None


def percentiles_ms(merged: np.ndarray, values_us: np.ndarray, percentiles: Iterable[float]) -> np.ndarray:
    """Values at ``percentiles`` (0-100] of merged count vectors, in ms; NaN where a vector is empty.

    ``merged`` is one count vector ``(buckets,)`` or a stack ``(n, buckets)``; the result has shape
    ``(len(percentiles),)`` or ``(n, len(percentiles))``.
    """
    pcts = np.asarray(list(percentiles), dtype=np.float64)
    stack = np.atleast_2d(merged)
    out = np.full((stack.shape[0], pcts.size), np.nan)
    if values_us.size:
        cum = np.cumsum(stack, axis=1)
        total = cum[:, -1]
        # HdrHistogram.get_target_count_at_percentile: int(p * total / 100 + 0.5), at least 1
        targets = np.maximum(np.floor(np.minimum(pcts, 100.0)[None, :] * total[:, None] / 100.0 + 0.5), 1.0)
        for k in range(pcts.size):
            index = (cum < targets[:, k : k + 1]).sum(axis=1)
            ok = total > 0
            out[ok, k] = values_us[np.minimum(index[ok], values_us.size - 1)] / 1000.0
    return out[0] if np.ndim(merged) == 1 else out


def _column(records: Sequence[dict[str, Any]], section: str, key: str) -> np.ndarray:
    """``records[i][section][key]`` as floats, NaN where absent (a missing sample is not a zero)."""
    out = np.full(len(records), np.nan)
    for i, record in enumerate(records):
        part = record.get(section) if section else record
        if isinstance(part, dict):
            value = part.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[i] = float(value)
    return out


@dataclass
class RunData:
    """One run, ready for plots and comparisons: one results file, or several repeats of the same run
    pooled (their intervals one after the other; ``repeat[i]`` says which file interval ``i`` came from).
    """

    results: Results  # the first (or only) file
    label: str
    start_s: np.ndarray
    end_s: np.ndarray
    phase: list[str]
    counters: dict[str, np.ndarray]
    clients_connected: np.ndarray
    generator: dict[str, np.ndarray]
    server: dict[str, np.ndarray]
    parts: list[Results] = field(default_factory=list)
    repeat: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _records: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _hist: dict[str, HistogramMatrix] = field(default_factory=dict, repr=False)
    _summary: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def summary(self) -> dict[str, Any]:
        """``wsbench.core.summary.summarize`` of the file (what ``wsbench report --json`` prints)."""
        if self._summary is None:
            self._summary = summarize(self.results)
        return self._summary

    @classmethod
    def from_results(cls, results: Results, label: str | None = None) -> RunData:
        return cls.from_repeats([results], label)

    @classmethod
    def from_repeats(cls, parts: Sequence[Results], label: str | None = None) -> RunData:
        """Pool repeats of one run (same scenario, same server): percentiles merge their histograms."""
        if not parts:
            raise ValueError("no results to pool")
        records = [r for part in parts for r in part.intervals]
        repeat = np.concatenate([np.full(len(part.intervals), i, dtype=np.int64) for i, part in enumerate(parts)])
        counter_names = sorted({k for r in records for k in (r.get("counters") or {})})
        counters = {name: np.nan_to_num(_column(records, "counters", name)) for name in counter_names}
        for name in ("sent", "delivered", "expected", "duplicated", "reordered", "connect_ok", "connect_errors"):
            counters.setdefault(name, np.zeros(len(records)))
        generator_keys = sorted({k for r in records for k in (r.get("generator") or {})})
        server_keys = sorted({k for r in records for k in (r.get("server") or {})})
        server = {k: _column(records, "server", k) for k in server_keys}
        if "rss_bytes_max" in server:  # a row's RSS: its highest sample (plots), and their mean (comparisons)
            server["rss_bytes_last"] = server["rss_bytes"]
            server["rss_bytes"] = server["rss_bytes_max"]
            with np.errstate(divide="ignore", invalid="ignore"):
                server["rss_bytes_mean"] = server["rss_bytes_sum"] / server["rss_samples"]
        if "cpu_span_s" in server:  # the server CPU a row spent (NaN where unknown), from cumulative samples
            server["cpu_s_interval"] = np.where(server["cpu_span_s"] > 0, server["cpu_spent_s"], np.nan)
        return cls(
            results=parts[0],
            label=label or default_label(parts[0]),
            start_s=np.nan_to_num(_column(records, "", "start_s")),
            end_s=np.nan_to_num(_column(records, "", "end_s")),
            phase=[str(r.get("phase", "")) for r in records],
            counters=counters,
            clients_connected=_column(records, "", "clients_connected"),
            generator={k: _column(records, "generator", k) for k in generator_keys},
            server=server,
            parts=list(parts),
            repeat=repeat,
            _records=records,
        )

    @property
    def repeats(self) -> list[np.ndarray]:
        """The interval indexes of each repeat (one array per results file)."""
        return [np.flatnonzero(self.repeat == i) for i in range(len(self.parts))]

    # -- interval selections -------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.phase)

    @property
    def duration_s(self) -> np.ndarray:
        return np.maximum(self.end_s - self.start_s, 0.0)

    @property
    def mid_s(self) -> np.ndarray:
        return (self.start_s + self.end_s) / 2.0

    @property
    def measured(self) -> np.ndarray:
        """Intervals a summary merges (``Results.measured_intervals``: all but connect and warmup)."""
        return np.array([p not in UNMEASURED_PHASES for p in self.phase], dtype=bool)

    @property
    def sending(self) -> np.ndarray:
        """Measured intervals where the send schedule runs (not a drain): the base of rates, as in the summary.

        A phase's kind comes from its ``phase`` event (``name``, ``phase_kind``); names alone otherwise.
        """
        drains = {"drain"} | {
            str(e.get("name")) for part in self.parts for e in part.events_of("phase") if e.get("phase_kind") == "drain"
        }
        return np.array([p not in NOT_SENDING_PHASES and p not in drains for p in self.phase], dtype=bool)

    def histogram(self, name: str) -> HistogramMatrix:
        if name not in self._hist:
            self._hist[name] = HistogramMatrix.from_encoded(
                [(r.get("histograms") or {}).get(name) for r in self._records]
            )
        return self._hist[name]

    def has_histogram(self, name: str) -> bool:
        return any((r.get("histograms") or {}).get(name) for r in self._records)

    def has_samples(self, section: str, key: str) -> bool:
        column = (self.generator if section == "generator" else self.server).get(key)
        return column is not None and bool(np.isfinite(column).any())

    # -- whole-run figures ---------------------------------------------------------------------
    def distribution_ms(self, name: str, rows: np.ndarray | None = None, points: int = 300) -> tuple[np.ndarray, ...]:
        """HdrHistogram-style percentile distribution: ``(percentile, value_ms)`` up to 99.999 % (or max).

        Percentiles are sampled evenly on the ``1/(1-p)`` axis the plot uses, so the tail is as dense
        as the body. The last point is the maximum when the run has fewer than 100,000 values.
        """
        matrix = self.histogram(name)
        merged = matrix.total(self.measured if rows is None else rows)
        total = float(merged.sum())
        if total <= 0:
            return np.zeros(0), np.zeros(0)
        top = min(99.999, 100.0 * (1.0 - 1.0 / total)) if total > 1 else 0.0
        x = np.logspace(0.0, np.log10(1.0 / (1.0 - top / 100.0)) if top > 0 else 0.0, points)
        pcts = 100.0 * (1.0 - 1.0 / x)
        values = percentiles_ms(merged, matrix.values_us, np.maximum(pcts, 1e-9))
        return pcts, values


def default_label(results: Results) -> str:
    """A short name for a run: its server (and non-default options), else the file name."""
    target = results.header.get("target") or {}
    server = target.get("label") or target.get("server") or target.get("command") or target.get("url")
    stem = Path(results.path).stem
    return str(server) if server else stem


def unique_labels(labels: Sequence[str], paths: Sequence[str]) -> list[str]:
    """Labels made unique by adding the file name where two runs share one (tornado vs tornado)."""
    out = list(labels)
    for i, label in enumerate(labels):
        if labels.count(label) > 1:
            out[i] = f"{label} ({Path(paths[i]).stem})"
    if len(set(out)) < len(out):  # same label and same file stem: number them
        out = [f"{label} #{i + 1}" for i, label in enumerate(out)]
    return out
