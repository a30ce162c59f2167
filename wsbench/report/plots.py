"""The report's plots, drawn with matplotlib as inline SVG (no JavaScript, no network, no fonts to fetch).

Every function takes one run (a report) or several (a comparison: the same plot overlaid, one colour per
run) and returns a :class:`Plot`: its SVG text, or ``svg=None`` and a note saying why there is nothing to
draw (a target without ``/stats``, a conformance file), so that no blank plot is ever shown.

matplotlib is used through its object API (``Figure``, no pyplot), so nothing global changes and no GUI
backend is touched. SVG settings: text is kept as text (``svg.fonttype = none``: smaller files, the
browser's sans-serif font), and ids are salted with the plot's name so that several SVGs can share one
HTML document without clashing ids, and the same data gives the same bytes.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from wsbench.core.server_stats import min_span_of, rss_fit_line
from wsbench.report.rundata import RunData, percentiles_ms

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
PHASE_SHADES = {"connect": "#eeeeee", "warmup": "#f4f0e0", "drain": "#e8eef4"}
WIDTH_IN, HEIGHT_IN = 9.0, 3.3
PERCENTILE_TICKS = (0.0, 90.0, 99.0, 99.9, 99.99, 99.999)
#: points per line and repeat: a longer run is drawn in buckets of consecutive intervals, merged
#: exactly (histograms added, counts summed over the bucket's time), so an hour-long soak does not
#: make a megabyte of SVG while its spikes stay visible (maxima stay maxima).
MAX_POINTS = 600

RC = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "lines.linewidth": 1.4,
}


@dataclass
class Plot:
    id: str
    title: str
    svg: str | None
    note: str = ""


def color(index: int) -> str:
    return COLORS[index % len(COLORS)]


def _render(plot_id: str, title: str, draw: Callable[[Figure], None], height: float = HEIGHT_IN) -> Plot:
    with matplotlib.rc_context({**RC, "svg.hashsalt": plot_id}):
        fig = Figure(figsize=(WIDTH_IN, height), layout="constrained")
        draw(fig)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML declaration and DOCTYPE: the SVG is inlined in HTML
    svg = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 class="plot" role="img"', svg, count=1)
    svg = svg.replace('class="plot" role="img"', f'class="plot" role="img" aria-label="{title}"', 1)
    return Plot(plot_id, title, svg)


def _empty(plot_id: str, title: str, note: str) -> Plot:
    return Plot(plot_id, title, None, note)


def _shade_phases(ax: Axes, run: RunData) -> None:
    """Background bands for the set-up and drain phases of the first run (its first repeat)."""
    rows = run.repeats[0] if run.n else np.zeros(0, dtype=np.int64)
    for start, end, phase in zip(run.start_s[rows], run.end_s[rows], [run.phase[i] for i in rows], strict=True):
        shade = PHASE_SHADES.get(phase)
        if shade:
            ax.axvspan(start, end, color=shade, zorder=0, linewidth=0)


def _time_axis(ax: Axes, runs: Sequence[RunData]) -> None:
    _shade_phases(ax, runs[0])
    widest = max((len(rows) for run in runs for rows in run.repeats), default=0)
    starts = _bucket_starts(widest)
    width = max(run.results.row_width for run in runs)  # the reader's rows hold this many intervals
    per_point = (int(starts[1]) if starts is not None else 1) * width
    merged = f"  -  {per_point} intervals per point" if per_point > 1 else ""
    ax.set_xlabel(f"time since start (s)  -  shaded: connect, warm-up, drain{merged}")
    ax.set_xlim(0, max(float(run.end_s.max()) if run.n else 1.0 for run in runs))


def _marker(run: RunData) -> str:
    """Dots on each interval while they can be told apart; a plain line for long runs (smaller file)."""
    return "." if run.n <= 120 * len(run.parts) else ""


def _bucket_starts(n: int) -> np.ndarray | None:
    """Offsets of the buckets that ``n`` consecutive intervals are drawn in, or ``None``: one point each."""
    if n <= MAX_POINTS:
        return None
    return np.arange(0, n, -(-n // MAX_POINTS))


def _bucket_x(run: RunData, rows: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return (np.minimum.reduceat(run.start_s[rows], starts) + np.maximum.reduceat(run.end_s[rows], starts)) / 2.0


def series_over_time(run: RunData, rows: np.ndarray, y: np.ndarray, agg: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, values)`` of one repeat: per interval, or per bucket when the repeat is long.

    ``agg`` says how intervals merge: ``rate`` (``y`` holds counts: their sum over the bucket's time),
    ``mean`` (time-weighted, missing samples left out), ``max`` or ``last`` (for running totals).
    """
    values, duration = y[rows].astype(np.float64), run.duration_s[rows]
    starts = _bucket_starts(len(rows))
    with np.errstate(divide="ignore", invalid="ignore"):
        if starts is None:
            return run.mid_s[rows], (np.where(duration > 0, values / duration, np.nan) if agg == "rate" else values)
        x = _bucket_x(run, rows, starts)
        if agg == "max":
            return x, np.fmax.reduceat(values, starts)
        if agg == "last":
            return x, values[np.append(starts[1:], len(rows)) - 1]
        known = np.isfinite(values)
        weight = np.add.reduceat(np.where(known, duration, 0.0), starts)
        total = np.add.reduceat(np.where(known, values if agg == "rate" else values * duration, 0.0), starts)
        return x, np.where(weight > 0, total / weight, np.nan)


def latency_series(
    run: RunData, rows: np.ndarray, percentiles: Sequence[float], name: str = "latency"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, percentiles_ms[points, len(percentiles)], max_ms)`` of one repeat, per interval or per bucket:
    a bucket's percentiles come from the exact sum of its intervals' histograms."""
    matrix = run.histogram(name)
    starts = _bucket_starts(len(rows))
    if starts is None:
        x, counts, maxima = run.mid_s[rows], matrix.counts[rows], matrix.max_us[rows]
    else:
        x = _bucket_x(run, rows, starts)
        counts = np.add.reduceat(matrix.counts[rows], starts, axis=0)
        maxima = np.maximum.reduceat(matrix.max_us[rows], starts)
    pct = np.atleast_2d(percentiles_ms(counts, matrix.values_us, percentiles)).reshape(len(x), len(percentiles))
    mx = maxima.astype(np.float64) / 1000.0
    return x, pct, np.where(mx > 0, mx, np.nan)


def _plot(ax: Axes, run: RunData, index: int, k: int, x: np.ndarray, y: np.ndarray, label: str, **style: Any) -> None:
    style.setdefault("marker", _marker(run))
    ax.plot(x, y, color=color(index), label=label if k == 0 else "_nolegend_", **style)


def _line(ax: Axes, run: RunData, index: int, y: np.ndarray, label: str, agg: str = "mean", **style: Any) -> None:
    """A series over time in the run's colour; repeats of a run are drawn each from time 0, labelled once."""
    for k, rows in enumerate(run.repeats):
        x, values = series_over_time(run, rows, y, agg)
        _plot(ax, run, index, k, x, values, label, **style)


def _per_repeat_cumsum(run: RunData, values: np.ndarray) -> np.ndarray:
    out = np.zeros(run.n)
    for rows in run.repeats:
        out[rows] = np.cumsum(values[rows])
    return out


def _label(runs: Sequence[RunData], run: RunData, what: str) -> str:
    return f"{run.label} {what}" if len(runs) > 1 else what


# -- latency percentile distribution ----------------------------------------------------------------
def _percentile_axis(ax: Axes) -> None:
    ax.set_xscale("log")
    ticks = [1.0 / (1.0 - p / 100.0) for p in PERCENTILE_TICKS]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    labels = {t: f"{p:g}%" for t, p in zip(ticks, PERCENTILE_TICKS, strict=True)}
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: labels.get(x, "")))
    ax.set_xlim(1.0, ticks[-1])
    ax.set_xlabel("percentile")


def _minor_label(y: float, _: object) -> str:
    """Label the 2s and 5s between decades: a log axis spanning less than a decade still reads."""
    mantissa = y / 10 ** np.floor(np.log10(y)) if y > 0 else 0.0
    return f"{y:g}" if round(mantissa) in (2, 5) else ""


def _ms_log_axis(ax: Axes, label: str = "latency (ms)") -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(_minor_label))
    ax.set_ylabel(label)


def _distribution_step(
    ax: Axes, runs: Sequence[RunData], i: int, dist: tuple[np.ndarray, ...], what: str, style: str = "-"
) -> None:
    """One run's percentile distribution (``RunData.distribution_ms``) as a step on the ``1/(1-p)`` axis."""
    pcts, values = dist
    if pcts.size:
        x = 1.0 / (1.0 - pcts / 100.0)
        ax.step(x, values, where="post", color=color(i), linestyle=style, label=_label(runs, runs[i], what))


def latency_distribution(runs: Sequence[RunData]) -> Plot:
    plot_id, title = "latency-distribution", "Latency percentile distribution (corrected and uncorrected)"
    if not any(run.has_histogram("latency") for run in runs):
        return _empty(plot_id, title, "no latency was recorded")

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        for i, run in enumerate(runs):
            for name, style, what in (("latency", "-", "corrected"), ("latency_uncorrected", "--", "uncorrected")):
                _distribution_step(ax, runs, i, run.distribution_ms(name), what, style)
        _percentile_axis(ax)
        _ms_log_axis(ax)
        ax.legend(loc="upper left")
        ax.set_title("corrected: from intended send time (no coordinated omission); uncorrected: from actual send")

    return _render(plot_id, title, draw)


def connect_distribution(runs: Sequence[RunData]) -> Plot:
    plot_id, title = "connect-distribution", "Connect time distribution (login + WebSocket handshake)"
    if not any(run.has_histogram("connect") for run in runs):
        return _empty(plot_id, title, "no connect times were recorded")

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        for i, run in enumerate(runs):
            _distribution_step(ax, runs, i, run.distribution_ms("connect", rows=np.ones(run.n, dtype=bool)), "connect")
        _percentile_axis(ax)
        _ms_log_axis(ax, "connect time (ms)")
        ax.legend(loc="upper left")

    return _render(plot_id, title, draw, height=2.8)


# -- over time -------------------------------------------------------------------------------------
def latency_over_time(runs: Sequence[RunData]) -> Plot:
    plot_id, title = "latency-over-time", "Latency p50, p99 and max per interval (corrected)"
    if not any(run.has_histogram("latency") for run in runs):
        return _empty(plot_id, title, "no latency was recorded")

    def draw(fig: Figure) -> None:
        ax = fig.subplots()
        for i, run in enumerate(runs):
            for k, rows in enumerate(run.repeats):
                x, series, maxima = latency_series(run, rows, (50.0, 99.0))
                _plot(ax, run, i, k, x, series[:, 0], _label(runs, run, "p50"), linestyle="-")
                _plot(ax, run, i, k, x, series[:, 1], _label(runs, run, "p99"), linestyle="--")
                _plot(ax, run, i, k, x, maxima, _label(runs, run, "max"), linestyle=":", marker="")
        _time_axis(ax, runs)
        _ms_log_axis(ax)
        ax.legend(loc="upper left", ncols=min(3 * len(runs), 6))

    return _render(plot_id, title, draw)


def rates_over_time(runs: Sequence[RunData]) -> Plot:
    plot_id, title = "rates-over-time", "Send rate, deliveries per second and undelivered messages"

    def draw(fig: Figure) -> None:
        sent_ax, delivered_ax, lost_ax = fig.subplots(3, 1, sharex=True)
        for i, run in enumerate(runs):
            _line(sent_ax, run, i, run.counters["sent"], _label(runs, run, "sent/s"), agg="rate")
            _line(delivered_ax, run, i, run.counters["delivered"], _label(runs, run, "deliveries/s"), agg="rate")
            outstanding = np.maximum(_per_repeat_cumsum(run, run.counters["expected"] - run.counters["delivered"]), 0)
            _line(lost_ax, run, i, outstanding, _label(runs, run, "undelivered"), agg="last", marker="")
            final = (run.results.footer or {}).get("accounting", {}).get("lost")
            if final and len(run.parts) == 1:
                lost_ax.annotate(f"lost: {final:,}", (run.mid_s[-1], float(outstanding[-1])), color=color(i))
        sent_ax.set_ylabel("messages sent/s")
        delivered_ax.set_ylabel("deliveries/s")
        lost_ax.set_ylabel("undelivered")
        for ax in (sent_ax, delivered_ax, lost_ax):
            _shade_phases(ax, runs[0])
            ax.set_ylim(bottom=0)
        _time_axis(lost_ax, runs)
        if len(runs) > 1:
            sent_ax.legend(loc="lower right", ncols=len(runs))
        lost_ax.set_title("expected − delivered so far (late deliveries arrive in the drain; what is left is lost)")

    return _render(plot_id, title, draw, height=6.0)


def server_over_time(runs: Sequence[RunData]) -> Plot:
    with_cpu = any(run.has_samples("server", "cpu_s_interval") for run in runs)
    plot_id = "server-over-time"
    title = f"Server RSS{', CPU' if with_cpu else ''} and open connections (from /stats)"
    if not any(run.has_samples("server", "rss_bytes") or run.has_samples("server", "connections") for run in runs):
        return _empty(plot_id, title, "the target offered no /stats samples")

    def draw(fig: Figure) -> None:
        axes = list(fig.subplots(3 if with_cpu else 2, 1, sharex=True))
        rss_ax, conn_ax = axes[0], axes[-1]
        fits: list[Any] = []
        for i, run in enumerate(runs):
            if "rss_bytes" in run.server:
                _line(rss_ax, run, i, run.server["rss_bytes"] / 2**20, run.label, agg="max")
                fits.append(_rss_fit(rss_ax, runs, run, i))
            if "connections" in run.server:
                _line(conn_ax, run, i, run.server["connections"], run.label, agg="max")
            if with_cpu and "cpu_s_interval" in run.server:
                _line(axes[1], run, i, run.server["cpu_s_interval"] * 100, run.label, agg="rate")
        rss_ax.set_ylabel("RSS (MiB)")
        conn_ax.set_ylabel("connections")
        if with_cpu:
            axes[1].set_ylabel("CPU (% of a core)")
        for ax in axes:
            _shade_phases(ax, runs[0])
            ax.set_ylim(bottom=0)
        _time_axis(conn_ax, runs)
        if len(runs) > 1:
            rss_ax.legend(loc="lower right", ncols=len(runs))
        elif any(f is not None for f in fits):
            rss_ax.legend(handles=[f for f in fits if f is not None], loc="lower right")

    return _render(plot_id, title, draw, height=5.8 if with_cpu else 4.4)


def _rss_fit(ax: Axes, runs: Sequence[RunData], run: RunData, index: int) -> Any:
    """The Theil-Sen line of the measured RSS samples (the summary's ``server.rss_slope_mib_per_hour``),
    dashed, over the measured phases; its legend entry names the slope. ``None`` when there is none."""
    if len(run.parts) != 1:
        return None
    measured = run.results.measured_intervals()
    fit = rss_fit_line(measured, min_span_of(run.results.header.get("scenario")))
    if fit is None:
        return None
    slope, intercept = fit
    t = np.array([float(measured[0]["start_s"]), float(measured[-1]["end_s"])])
    (line,) = ax.plot(
        t,
        intercept + slope * t / 3600.0,
        color=color(index),
        linestyle="--",
        linewidth=1.0,
        label=_label(runs, run, f"Theil-Sen fit {slope:+,.3g} MiB/h"),
    )
    return line


def generator_over_time(runs: Sequence[RunData]) -> Plot:
    plot_id, title = "generator-over-time", "Load generator CPU and event-loop lag"
    if not any(run.has_samples("generator", "cpu_pct") for run in runs):
        return _empty(plot_id, title, "no generator samples were recorded")

    def draw(fig: Figure) -> None:
        cpu_ax, lag_ax = fig.subplots(2, 1, sharex=True)
        for i, run in enumerate(runs):
            if "cpu_pct" in run.generator:
                _line(cpu_ax, run, i, run.generator["cpu_pct"], run.label)
            if "loop_lag_ms_max" in run.generator:
                _line(lag_ax, run, i, run.generator["loop_lag_ms_max"], run.label, agg="max")
        cpu_ax.set_ylabel("CPU %")
        cpu_ax.axhline(100.0, color="#999999", linewidth=0.8, linestyle=":")
        lag_ax.set_ylabel("loop lag max (ms)")
        for ax in (cpu_ax, lag_ax):
            _shade_phases(ax, runs[0])
            ax.set_ylim(bottom=0)
        _time_axis(lag_ax, runs)
        if len(runs) > 1:
            cpu_ax.legend(loc="lower right", ncols=len(runs))

    return _render(plot_id, title, draw, height=4.4)


ALL_PLOTS: tuple[Callable[[Sequence[RunData]], Plot], ...] = (
    latency_distribution,
    latency_over_time,
    rates_over_time,
    connect_distribution,
    server_over_time,
    generator_over_time,
)


def all_plots(runs: Sequence[RunData]) -> list[Plot]:
    return [make(runs) for make in ALL_PLOTS]
