"""HdrHistograms for latencies in microseconds (1 us to 60 s, 3 significant digits).

The histograms themselves are the ``hdrhistogram`` package's (HdrHistogram V2 wire format, so files
can be read by any HdrHistogram implementation). What is written here by hand is the bulk recording:
``HdrHistogram.record_value`` costs a few microseconds of Python per value, which is the whole
per-delivery budget of the load generator, so :class:`BatchRecorder` appends raw values to a plain list
on the hot path and, once per interval, computes the counts-array indexes for the whole batch with
numpy (the same arithmetic as ``HdrHistogram._counts_index_for``) and adds them to the histogram's
counts array in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99_9", 99.9),
    ("p99_99", 99.99),
)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def encode(histogram: HdrHistogram) -> str:
    """HdrHistogram V2 compressed, base64 (as ASCII text)."""
    data = histogram.encode()
    return data.decode("ascii") if isinstance(data, bytes) else data


def decode(text: str) -> HdrHistogram:
    return HdrHistogram.decode(text.encode("ascii") if isinstance(text, str) else text)


def merge(items: Iterable[Any]) -> HdrHistogram:
    """Exact merge of histograms (objects, encoded strings or rows' ``Counts``); ``None`` entries are skipped."""
    total = new_histogram()
    for item in items:
        if item is None:
            continue
        if isinstance(item, str | bytes):
            item = decode(item if isinstance(item, str) else item.decode("ascii"))
        elif not isinstance(item, HdrHistogram):  # merged counts of a results row (wsbench.core.rollup.Counts)
            item = item.histogram()
        if item.get_total_count():
            total.add(item)
    return total


def add(into: HdrHistogram, other: HdrHistogram) -> None:
    """``into.add(other)`` that leaves ``into`` alone when ``other`` is empty (the hdrh package's ``add``
    takes an empty histogram's minimum, 0, as a value: a merged per-stage ``min`` would read 0)."""
    if other.get_total_count():
        into.add(other)


def value_ms(histogram: HdrHistogram, percentile: float) -> float:
    return float(histogram.get_value_at_percentile(percentile)) / 1000.0


def _index_tables(h: HdrHistogram) -> tuple[np.ndarray, np.ndarray]:
    """Per counts-array index: the lowest value it holds and the size of its value range (vectorized
    ``get_value_from_index`` and ``_hdr_size_of_equiv_value_range``)."""
    i = np.arange(h.counts_len, dtype=np.int64)
    bucket = (i >> h.sub_bucket_half_count_magnitude) - 1
    sub = (i & (h.sub_bucket_half_count - 1)) + h.sub_bucket_half_count
    low_bucket = bucket < 0
    sub = np.where(low_bucket, sub - h.sub_bucket_half_count, sub)
    bucket = np.where(low_bucket, 0, bucket)
    return sub << (bucket + h.unit_magnitude), np.left_shift(1, bucket + h.unit_magnitude)


_TABLES = _index_tables(new_histogram())


def percentiles_us(histogram: HdrHistogram, percentiles: Sequence[float]) -> list[int]:
    """``get_value_at_percentile`` for several percentiles at once, vectorized (the hdrh package walks
    the 17,408 counts in Python for each call: about half a second for a summary)."""
    counts = np.ctypeslib.as_array(histogram.counts)[: histogram.counts_len]
    cumulative = np.cumsum(counts, dtype=np.int64)
    total = int(cumulative[-1]) if len(cumulative) else 0
    targets = [max(int(min(p, 100.0) * total / 100 + 0.5), 1) for p in percentiles]
    idx = np.minimum(np.searchsorted(cumulative, targets, side="left"), len(counts) - 1)
    lows, sizes = _TABLES
    return [int(lows[i] + sizes[i] - 1) if p else int(lows[i]) for i, p in zip(idx, percentiles, strict=True)]


def mean_us(histogram: HdrHistogram) -> float:
    """``get_mean_value`` vectorized (each count at the middle of its value range)."""
    counts = np.ctypeslib.as_array(histogram.counts)[: histogram.counts_len]
    total = int(counts.sum())
    if not total:
        return 0.0
    lows, sizes = _TABLES
    return float((counts * (lows + (sizes >> 1))).sum()) / total


def summary_ms(histogram: HdrHistogram) -> dict[str, float | int | None]:
    """Percentiles, min, max and mean in milliseconds, and the count. ``None`` values when empty."""
    count = histogram.get_total_count()
    out: dict[str, float | int | None] = {"count": count}
    if not count:
        for key, _ in PERCENTILES:
            out[key] = None
        out.update(min=None, max=None, mean=None)
        return out
    values = percentiles_us(histogram, [p for _, p in PERCENTILES])
    for (key, _), value in zip(PERCENTILES, values, strict=True):
        out[key] = value / 1000.0
    out["min"] = histogram.get_min_value() / 1000.0
    out["max"] = histogram.get_max_value() / 1000.0
    out["mean"] = mean_us(histogram) / 1000.0
    return out


def percentile_distribution(histogram: HdrHistogram, ticks_per_half_distance: int = 5) -> list[tuple[float, float]]:
    """``(percentile, value_ms)`` pairs, HdrHistogram style (dense towards 100%), for plots."""
    if not histogram.get_total_count():
        return []
    points = [
        (item.percentile_level_iterated_to, item.value_iterated_to / 1000.0)
        for item in histogram.get_percentile_iterator(ticks_per_half_distance)
    ]
    return points


class _IndexMath:
    """Vectorized ``HdrHistogram._counts_index_for`` for one histogram geometry."""

    def __init__(self, h: HdrHistogram) -> None:
        self.unit_magnitude = h.unit_magnitude
        self.sub_bucket_half_count_magnitude = h.sub_bucket_half_count_magnitude
        self.sub_bucket_half_count = h.sub_bucket_half_count
        self.sub_bucket_mask = h.sub_bucket_mask
        self.counts_len = h.counts_len

    def indexes(self, values: np.ndarray) -> np.ndarray:
        # bit length of (v | mask) == 64 - clz(v | mask); frexp's exponent is exact for ints < 2**53
        _, bit_length = np.frexp((values | self.sub_bucket_mask).astype(np.float64))
        bucket = bit_length.astype(np.int64) - self.unit_magnitude - (self.sub_bucket_half_count_magnitude + 1)
        sub_bucket = values >> (bucket + self.unit_magnitude)
        index: np.ndarray = (
            ((bucket + 1) << self.sub_bucket_half_count_magnitude) + sub_bucket - self.sub_bucket_half_count
        )
        return index


_MATH = _IndexMath(new_histogram())


def record_many(histogram: HdrHistogram, values: Sequence[int] | np.ndarray) -> int:
    """Record integer microsecond values in bulk. Values are clamped to [0, HIGHEST_US].

    Returns how many values were clamped (out of range), so callers can report them.
    """
    if len(values) == 0:
        return 0
    arr = np.asarray(values, dtype=np.int64)
    clamped = int(np.count_nonzero((arr < 0) | (arr > HIGHEST_US)))
    if clamped:
        arr = np.clip(arr, 0, HIGHEST_US)
    idx = _MATH.indexes(arr)
    counts = np.ctypeslib.as_array(histogram.counts)
    # a bincount over the span of indexes touched, added as one slice: 2-5x faster than np.add.at
    lo, hi = int(idx.min()), int(idx.max())
    counts[lo : hi + 1] += np.bincount(idx - lo, minlength=hi - lo + 1).astype(counts.dtype, copy=False)
    histogram.total_count += len(arr)
    lo, hi = int(arr.min()), int(arr.max())
    histogram.min_value = min(histogram.min_value, lo)
    histogram.max_value = max(histogram.max_value, hi)
    return clamped


class BatchRecorder:
    """A histogram fed in bulk: ``add(value_us)`` on the hot path is one list append.

    ``take()`` folds the pending values in and returns the histogram of the interval, starting a
    new one; ``clamped`` counts values outside [0, 60 s].
    """

    __slots__ = ("_histogram", "_pending", "add", "clamped")

    def __init__(self) -> None:
        self._histogram = new_histogram()
        self._pending: list[int] = []
        self.add = self._pending.append
        self.clamped = 0

    def flush(self) -> HdrHistogram:
        if self._pending:
            self.clamped += record_many(self._histogram, self._pending)
            self._pending.clear()
        return self._histogram

    def take(self) -> HdrHistogram:
        histogram = self.flush()
        self._histogram = new_histogram()
        return histogram

    def __len__(self) -> int:
        return int(self._histogram.get_total_count()) + len(self._pending)


def same_counts(a: HdrHistogram, b: HdrHistogram) -> bool:
    """Whether two histograms hold the same counts (for tests and self-checks)."""
    return a.get_total_count() == b.get_total_count() and bool(
        np.array_equal(np.ctypeslib.as_array(a.counts), np.ctypeslib.as_array(b.counts))
    )
