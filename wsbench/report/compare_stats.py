"""The statistics of a comparison (:mod:`wsbench.report.compare`): each metric computed from a run's
intervals, the bootstrap that gives its run-to-run noise, and the interval of a ratio.

How noise is measured (also printed under every comparison): a run is a sequence of 1-second
intervals, and each interval is a small repetition of the same experiment. For every metric and
every run we draw ``resamples`` bootstrap resamples of its intervals (with replacement, in contiguous
blocks of intervals when there are more than :data:`MAX_BLOCKS`, to keep slow drifts together) and
recompute the metric on each resample - for percentiles by merging the resampled intervals' HdrHistogram
counts exactly, not by averaging per-interval percentiles. Resampling each run independently gives
the distribution of the ratio run/baseline; its central 95 % interval is the ratio's confidence
interval. A difference is **within noise** (``≈``) when that interval contains 1.0, or when the
ratio is within :data:`SAME_WITHIN` of 1 (too small to matter). Loss counts are few and not spread
evenly over intervals, so their uncertainty is drawn instead from the Jeffreys posterior of a Poisson
rate, ``Gamma(lost + 1/2) / expected``. Resampling is seeded, so a comparison is reproducible.

The bootstrap is written here with numpy rather than taken from a library (``scipy.stats.bootstrap``)
because the statistic is a percentile of *merged histograms*: each resample is one weight vector
times the per-interval counts matrix (:class:`~wsbench.report.rundata.HistogramMatrix`), which a
generic bootstrap over 1-D samples cannot express cheaply, and scipy would be a large dependency for
twenty lines.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from wsbench.report.rundata import RunData, percentiles_ms

RESAMPLES = 2000
CONFIDENCE = 0.95
MAX_BLOCKS = 60
SAME_WITHIN = 0.005
SEED = 20260401

Statistic = Callable[[RunData, np.ndarray, np.ndarray], np.ndarray]
"""``(run, rows, weights)`` -> the metric for each weight vector; ``weights`` is ``(B, len(rows))``."""


def _ratio_of_sums(num: np.ndarray, den: np.ndarray, weights: np.ndarray, scale: float = 1.0) -> np.ndarray:
    top, bottom = weights @ num, weights @ den
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(bottom > 0, scale * top / bottom, np.nan)


def _throughput(run: RunData, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return _ratio_of_sums(run.counters["delivered"][rows], run.duration_s[rows], weights)


def _percentile(p: float, name: str = "latency") -> Statistic:
    def statistic(run: RunData, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        matrix = run.histogram(name)
        merged = weights @ matrix.counts[rows]
        return percentiles_ms(merged, matrix.values_us, [p])[:, 0]

    return statistic


def cpu_source_of(runs: Sequence[RunData]) -> str:
    return "server" if all(run.has_samples("server", "cpu_s_interval") for run in runs) else "generator"


def _cpu_column(run: RunData, source: str) -> np.ndarray | None:
    """CPU seconds per interval: the server's (from its cumulative /stats ``cpu_s``) or the generator's."""
    return run.server.get("cpu_s_interval") if source == "server" else run.generator.get("cpu_s")


def _cpu_per_delivery(source: str) -> Statistic:
    def statistic(run: RunData, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        cpu = _cpu_column(run, source)
        assert cpu is not None
        return _ratio_of_sums(np.nan_to_num(cpu[rows]), run.counters["delivered"][rows], weights, scale=1e6)

    return statistic


def _rss(run: RunData, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    rss = run.server.get("rss_bytes_mean", run.server["rss_bytes"])
    return _ratio_of_sums(rss[rows], np.ones(rows.size), weights, scale=1.0 / 2**20)


def rows_for(key: str, run: RunData, cpu_source: str) -> np.ndarray:
    """The intervals a metric is computed over (indexes)."""
    if key == "throughput":
        mask = run.sending
    elif key == "rss":
        column = run.server.get("rss_bytes")
        mask = run.measured & np.isfinite(column) if column is not None else np.zeros(run.n, dtype=bool)
    elif key == "cpu_per_delivery":
        column = _cpu_column(run, cpu_source)
        mask = run.measured & np.isfinite(column) if column is not None else np.zeros(run.n, dtype=bool)
    else:
        mask = run.measured
    return np.flatnonzero(mask)


def _block_weights(n: int, resamples: int, rng: np.random.Generator, scale: np.ndarray | None = None) -> np.ndarray:
    """``(resamples, n)`` interval weights: multinomial resampling of contiguous blocks of intervals.

    ``scale`` (one factor per resample) multiplies the weights: how often a repeat was drawn.
    """
    blocks = min(n, MAX_BLOCKS)
    edges = np.linspace(0, n, blocks + 1).round().astype(int)
    picks = rng.multinomial(blocks, np.full(blocks, 1.0 / blocks), size=resamples).astype(np.float64)  # (B, blocks)
    if scale is not None:
        picks *= scale[:, None]
    return np.repeat(picks, np.diff(edges), axis=1)


def bootstrap_weights(run: RunData, rows: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap weights over ``rows``: blocks of intervals, and with repeats, repeats first (two stages).

    With several repeats of a run, each resample first draws repeats with replacement, then blocks of
    intervals within each drawn repeat, so that differences between repeats (the machine was busier
    during one of them) widen the interval as they should.
    """
    groups = run.repeat[rows]
    present = np.unique(groups)
    if present.size <= 1:
        return _block_weights(rows.size, resamples, rng)
    drawn = rng.multinomial(present.size, np.full(present.size, 1.0 / present.size), size=resamples)
    weights = np.zeros((resamples, rows.size))
    for k, group in enumerate(present):
        columns = np.flatnonzero(groups == group)
        weights[:, columns] = _block_weights(columns.size, resamples, rng, scale=drawn[:, k].astype(np.float64))
    return weights


def resample_seed(key: str, index: int) -> int:
    return SEED + zlib.crc32(f"{key}:{index}".encode())


def loss_counts(run: RunData) -> tuple[float, float]:
    """``(lost, expected)``: each repeat's final accounting (footer), else what its intervals show."""
    lost_total = expected_total = 0.0
    for i, part in enumerate(run.parts):
        accounting = (part.footer or {}).get("accounting") or {}
        if "lost" in accounting and accounting.get("expected"):
            lost_total += float(accounting["lost"])
            expected_total += float(accounting["expected"])
            continue
        rows = run.measured & (run.repeat == i)
        expected = float(run.counters["expected"][rows].sum())
        delivered = float(run.counters["delivered"][rows].sum())
        lost_total += max(expected - delivered, 0.0)
        expected_total += expected
    return lost_total, expected_total


def metric_statistics(cpu_source: str) -> dict[str, Statistic]:
    """The bootstrapped metrics' statistics, by key (``cpu_source`` from :func:`cpu_source_of`)."""
    return {
        "throughput": _throughput,
        "p50": _percentile(50.0),
        "p99": _percentile(99.0),
        "p99_9": _percentile(99.9),
        "cpu_per_delivery": _cpu_per_delivery(cpu_source),
        "rss": _rss,
        "socket_p50": _percentile(50.0, "latency_socket"),
        "socket_p99": _percentile(99.0, "latency_socket"),
    }


def ratio_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float] | None:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = b / a
    ratios = ratios[np.isfinite(ratios)]
    if ratios.size < 10:
        return None
    tail = (1.0 - CONFIDENCE) / 2.0 * 100.0
    low, high = np.percentile(ratios, [tail, 100.0 - tail])
    return float(low), float(high)


def ratio(value: float | None, base: float | None) -> float | None:
    """``value / base``; 1.0 when both are zero; ``inf`` when only the base is zero; None when unknown."""
    if value is None or base is None:
        return None
    if base == 0:
        return 1.0 if value == 0 else math.inf
    return value / base
