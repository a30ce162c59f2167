"""What wsbench keeps of a server's ``/stats`` answers (SPEC 5.1), and the server's CPU per interval.

An interval record's ``server`` is the last ``/stats`` sample taken during that interval. Its counters
are totals since the server started, and so is ``cpu_s`` (optional in SPEC 5.1: CPU seconds, user +
system, of the server process). The CPU one interval cost the server is therefore the difference
between its sample and the previous interval's; when either sample is missing (``/stats`` did not
answer in time) or the total went down (a restarted server), that interval has no CPU figure rather
than a wrong one.
"""

from __future__ import annotations

import math
import statistics
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


#: two-sided confidence of the slope intervals (Sen 1968, normal approximation of Kendall's S)
SLOPE_CONFIDENCE = 0.95
_Z = 1.959963984540054  # the standard normal's 97.5 % quantile
#: a drift slope (per hour) is given only from at least this many samples ...
MIN_SLOPE_SAMPLES = 10
#: ... spanning at least this long (seconds; scenario key ``drift_min_span``), see :func:`drift`
MIN_DRIFT_SPAN_S = 300.0


def theil_sen(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float] | None:
    """The Theil-Sen slope of ``y`` over ``x`` (the median of all pairwise slopes) and its 95 % interval.

    Robust: up to 29 % of the samples can be wild (a GC pause, a page-cache flush) without moving it.
    The interval is Sen's (1968, eq. 2.6, ties in ``x`` and ``y`` corrected), the same as
    ``scipy.stats.theilslopes``; written with numpy here rather than adding scipy for twenty lines.
    ``None`` with fewer than two distinct ``x``.
    """
    import numpy as np

    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    i, j = np.triu_indices(xs.size, k=1)
    dx = xs[j] - xs[i]
    keep = dx != 0
    if not keep.any():
        return None
    slopes = np.sort((ys[j] - ys[i])[keep] / dx[keep])
    median = float(np.median(slopes))
    n, nt = ys.size, slopes.size

    def ties(values: np.ndarray) -> float:
        _, counts = np.unique(values, return_counts=True)
        counts = counts[counts > 1].astype(np.float64)
        return float((counts * (counts - 1) * (2 * counts + 5)).sum())

    sigma = math.sqrt(max((n * (n - 1) * (2 * n + 5) - ties(xs) - ties(ys)) / 18.0, 0.0))
    low = max(round((nt - _Z * sigma) / 2.0) - 1, 0)
    high = min(round((nt + _Z * sigma) / 2.0), nt - 1)
    return median, float(slopes[low]), float(slopes[high])


def _series(rows: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[float, float]], ...]:
    """``(hours, value)`` points of RSS (MiB), connections and CPU (% of a core) from rows' samples."""
    rss: list[tuple[float, float]] = []
    conns: list[tuple[float, float]] = []
    cpu: list[tuple[float, float]] = []
    for row in rows:
        sample = row.get("server") or {}
        t_h = _number(sample.get("t_s", row.get("end_s")))
        if t_h is None:
            continue
        t_h /= 3600.0
        if _number(sample.get("rss_bytes")) is not None:
            rss.append((t_h, float(sample["rss_bytes"]) / 2**20))
        if _number(sample.get("connections")) is not None:
            conns.append((t_h, float(sample["connections"])))
        span = _number(sample.get("cpu_span_s")) or 0.0
        if span > 0:
            mid = (float(row.get("start_s", 0.0)) + float(row.get("end_s", 0.0))) / 2 / 3600.0
            cpu.append((mid, 100.0 * float(sample.get("cpu_spent_s", 0.0)) / span))
    return rss, conns, cpu


def min_span_of(scenario: Mapping[str, Any] | None) -> float:
    """The drift's minimum span (s) for a results header's scenario (files before the key: the default)."""
    value = _number((scenario or {}).get("drift_min_span"))
    return MIN_DRIFT_SPAN_S if value is None else value


def span_text(seconds: float) -> str:
    """``15 s``, ``14 min``, ``2.5 h``: how long a drift estimate's samples span."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _span_s(points: Sequence[tuple[float, float]]) -> float:
    return (max(p[0] for p in points) - min(p[0] for p in points)) * 3600.0 if points else 0.0


def _enough(points: Sequence[tuple[float, float]], min_span_s: float) -> bool:
    return len(points) >= MIN_SLOPE_SAMPLES and _span_s(points) >= min_span_s


def drift(rows: Sequence[Mapping[str, Any]], min_span_s: float = MIN_DRIFT_SPAN_S) -> dict[str, Any]:
    """Does the server keep growing? Theil-Sen slopes over the measured rows' ``/stats`` samples.

    ``rss_slope_mib_per_hour`` (with ``_low`` and ``_high``, its 95 % interval), ``connections_slope_per_hour``
    and ``cpu_pct_slope_per_hour`` (percentage points of a core per hour). Each row gives its last sample
    (at ``t_s``), and its CPU over the span it has a figure for (at the row's middle). Beside them
    ``drift_span_s`` and ``drift_samples`` (what the ``/stats`` samples cover) and ``drift_note``.

    A slope is given only from at least :data:`MIN_SLOPE_SAMPLES` samples spanning at least
    ``min_span_s`` (:data:`MIN_DRIFT_SPAN_S`, 5 minutes, unless the scenario's ``drift_min_span`` says
    otherwise); otherwise it is ``None`` and ``drift_note`` says "too short to estimate drift (15 s)".
    Why 5 minutes: a server's memory and CPU settle after a warm-up of tens of seconds to minutes
    (allocator arenas, buffers sized to the connections, caches), and garbage collection and allocator
    trimming come in cycles of seconds to minutes; a slope over less than several such cycles fits the
    warm-up or the phase of one cycle, and reporting it per hour multiplies that by 3,600 / span (240x
    for 15 s, 12x at 5 minutes). Why 10 samples: Sen's interval rests on the normal approximation of
    Kendall's S, adequate from about 10 samples (the exact tables stop there), and the Theil-Sen slope
    then survives two wild samples (its breakdown point is 29 %).
    """
    rss, conns, cpu = _series(rows)

    def fit(points: list[tuple[float, float]]) -> tuple[float, float, float] | None:
        if not _enough(points, min_span_s):
            return None
        return theil_sen([p[0] for p in points], [p[1] for p in points])

    out: dict[str, Any] = {}
    fitted = fit(rss)
    out["rss_slope_mib_per_hour"] = round(fitted[0], 4) if fitted else None
    out["rss_slope_mib_per_hour_low"] = round(fitted[1], 4) if fitted else None
    out["rss_slope_mib_per_hour_high"] = round(fitted[2], 4) if fitted else None
    fitted = fit(conns)
    out["connections_slope_per_hour"] = round(fitted[0], 4) if fitted else None
    fitted = fit(cpu)
    out["cpu_pct_slope_per_hour"] = round(fitted[0], 4) if fitted else None
    samples = max(rss, conns, key=len)
    span = _span_s(samples)
    out["drift_span_s"] = round(span, 3)
    out["drift_samples"] = len(samples)
    out["drift_note"] = None
    if samples and not _enough(samples, min_span_s):
        out["drift_note"] = (
            f"too short to estimate drift ({span_text(span)}, {len(samples)} samples; a slope needs "
            f"{span_text(min_span_s)} and {MIN_SLOPE_SAMPLES} samples: scenario key drift_min_span)"
        )
    return out


def drift_line(server: Mapping[str, Any]) -> str | None:
    """The summary's ``server`` growth in words: the slopes with the span they were estimated over, or
    why there are none (``drift_note``); ``None`` when the summary has neither (no ``/stats`` samples)."""
    if server.get("drift_note"):
        return str(server["drift_note"])
    if server.get("rss_slope_mib_per_hour") is None:
        return None

    def signed(key: str) -> str:
        value = _number(server.get(key))
        return "-" if value is None else f"{value:+,.4g}"

    over = f"over {span_text(float(server.get('drift_span_s') or 0.0))}"
    if server.get("drift_samples"):
        over += f" ({int(server['drift_samples']):,} samples)"
    cpu = _number(server.get("cpu_pct_slope_per_hour"))
    return (
        f"{over}: RSS {signed('rss_slope_mib_per_hour')} MiB/h (95% {signed('rss_slope_mib_per_hour_low')} to "
        f"{signed('rss_slope_mib_per_hour_high')}, Theil-Sen)  connections {signed('connections_slope_per_hour')}/h"
        + (f"  CPU {cpu:+,.4g} points/h" if cpu is not None else "")
    )


def rss_fit_line(
    rows: Sequence[Mapping[str, Any]], min_span_s: float = MIN_DRIFT_SPAN_S
) -> tuple[float, float] | None:
    """``(slope MiB/h, intercept MiB)`` of the Theil-Sen line through the rows' RSS samples, for a plot
    that draws each row at its middle (hours since the start): the slope of :func:`drift` (``None`` when
    it gives none), the intercept the median of ``y - slope * x`` (as ``scipy.stats.theilslopes``)."""
    points = _series(rows)[0]
    if not _enough(points, min_span_s):
        return None
    fitted = theil_sen([p[0] for p in points], [p[1] for p in points])
    if fitted is None:
        return None
    slope = fitted[0]
    mids = [
        ((float(r.get("start_s", 0.0)) + float(r.get("end_s", 0.0))) / 7200.0, float(r["server"]["rss_bytes"]) / 2**20)
        for r in rows
        if r.get("server") and _number(r["server"].get("rss_bytes")) is not None
    ]
    return slope, statistics.median(y - slope * x for x, y in mids)
