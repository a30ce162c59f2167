"""Live metrics for Prometheus: ``wsbench run --metrics ADDR:PORT`` (and ``wsbench locust --metrics``).

The exporter watches the records a run writes to its results file (an observer of
:class:`~wsbench.core.results.ResultsWriter`: one interval record per interval, per Locust worker, the
events, the footer), so that what Prometheus scrapes is the same numbers the report computes later,
interval by interval, and nothing in the drivers' hot path changes. It is served with the official
``prometheus_client`` library (OpenMetrics when the scraper asks for it, as Prometheus does), from a
custom collector: the latency histograms come from the intervals' HdrHistograms, added bucket by
bucket, instead of one ``observe()`` per delivery.

Metrics (all prefixed ``wsbench_``):

* counters: ``sent``, ``delivered``, ``expected`` (deliveries due), ``duplicated``, ``reordered``,
  ``errors`` (by ``kind``), ``closes`` (by ``code``), ``lost`` (set once the final accounting is known,
  after the drain); gauge ``undelivered`` (expected minus delivered so far: in flight or lost);
* gauges: ``clients_connected``, ``phase`` (1 for the current phase, by ``phase``), ``generator_cpu_percent``
  and ``generator_loop_lag_seconds`` (by ``worker``), ``server_rss_bytes``, ``server_cpu_seconds``
  (cumulative, from ``/stats``) and ``server_connections``;
* histograms ``latency_seconds`` (from the intended send time, corrected for coordinated omission) and
  ``latency_uncorrected_seconds``, buckets :data:`BUCKETS_S` (100 us to 60 s), of the measured phases
  (not connect and warm-up, as the summary's percentiles); ``_sum`` takes each value at the middle of
  its HdrHistogram bucket;
* gauges ``interval_latency_seconds`` (by ``quantile`` and ``view``): the last interval's HdrHistogram
  percentiles, exact, not estimated from buckets.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from wsbench.core import histograms
from wsbench.core.results import UNMEASURED_PHASES
from wsbench.core.rollup import Counts
from wsbench.errors import UsageError

#: Prometheus histogram buckets, seconds: 1-2-5 from 100 us to 60 s (a latency above 60 s is clamped by
#: the HdrHistograms already)
BUCKETS_S: tuple[float, ...] = (
    0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
    0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0,
)  # fmt: skip
QUANTILES: tuple[tuple[str, float], ...] = (("0.5", 50.0), ("0.9", 90.0), ("0.99", 99.0), ("0.999", 99.9))
VIEWS = {"latency": "corrected", "latency_uncorrected": "uncorrected"}
DEFAULT_HOST = "127.0.0.1"

_PROBE = histograms.new_histogram()
#: per HdrHistogram bucket: the lowest value it holds, in seconds (a value is counted in the first
#: Prometheus bucket whose bound is at least that: within HdrHistogram's resolution of the bound)
_LOW_S = np.array([_PROBE.get_value_from_index(i) for i in range(_PROBE.counts_len)], dtype=np.float64) / 1e6
_BUCKET_OF = np.searchsorted(np.array(BUCKETS_S), _LOW_S, side="left")  # len(BUCKETS_S) is +Inf
_MID_S = (
    _LOW_S
    + np.array(
        [_PROBE.get_highest_equivalent_value(_PROBE.get_value_from_index(i)) for i in range(_PROBE.counts_len)],
        dtype=np.float64,
    )
    / 1e6
)
_MID_S /= 2.0


def parse_address(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); the host defaults to 127.0.0.1."""
    value = text.strip()
    host, port = DEFAULT_HOST, value
    if value.startswith("["):
        head, _, port = value[1:].partition("]:")
        host = head
    elif ":" in value:
        host, _, port = value.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f"--metrics {text!r}: expected PORT or ADDR:PORT, e.g. 127.0.0.1:9464") from None
    if not 0 <= number <= 65535:
        raise UsageError(f"--metrics {text!r}: port {number} is not in 0-65535")
    return host or DEFAULT_HOST, number


@dataclass
class _Histogram:
    buckets: np.ndarray  # cumulative counts per bucket (len(BUCKETS_S) + 1, the last +Inf), not summed
    sum_s: float = 0.0

    @classmethod
    def empty(cls) -> _Histogram:
        return cls(np.zeros(len(BUCKETS_S) + 1, dtype=np.int64))

    def add(self, item: Any) -> None:
        counts = Counts()
        counts.add(item)
        idx, vals = counts.sparse()
        if idx.size:
            self.buckets += np.bincount(_BUCKET_OF[idx], weights=vals, minlength=len(BUCKETS_S) + 1).astype(np.int64)
            self.sum_s += float((vals * _MID_S[idx]).sum())


class LiveMetrics:
    """The collector: fold records in (from the writer's thread), collect (from the HTTP thread)."""

    COUNTERS = ("sent", "delivered", "expected", "duplicated", "reordered")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters = dict.fromkeys(self.COUNTERS, 0)
        self.errors: dict[str, int] = {}
        self.closes: dict[str, int] = {}
        self.lost: int | None = None
        self.clients: dict[str, float] = {}  # worker -> clients connected in its latest interval
        self.latest_index: dict[str, int] = {}
        self.phase: str | None = None
        self.phases: list[str] = []
        self.generator: dict[str, dict[str, float]] = {}
        self.server: dict[str, float] = {}
        self.hists = {name: _Histogram.empty() for name in VIEWS}
        self.interval_quantiles: dict[str, list[float]] = {}

    # -- folding (the writer calls these) -------------------------------------------------------
    def __call__(self, kind: str, record: Mapping[str, Any]) -> None:
        if kind == "interval":
            self.interval(record)
        elif kind == "event":
            self.event(record)
        elif kind == "footer":
            self.footer(record)

    def interval(self, record: Mapping[str, Any]) -> None:
        worker = str(record.get("worker") or "")
        hists = record.get("histograms") or {}
        quantiles: dict[str, list[float]] = {}
        for name in VIEWS:
            item = hists.get(name)
            if item:
                h = item if hasattr(item, "get_total_count") else Counts()
                if not hasattr(item, "get_total_count"):
                    h.add(item)
                    h = h.histogram()
                if h.get_total_count():
                    values = histograms.percentiles_us(h, [p for _, p in QUANTILES])
                    quantiles[name] = [v / 1e6 for v in values]
        with self._lock:
            counters = record.get("counters") or {}
            for key in self.COUNTERS:
                self.counters[key] += int(counters.get(key, 0) or 0)
            if record.get("phase") not in UNMEASURED_PHASES:  # as the summary: not the connect and warm-up
                for name in VIEWS:
                    if hists.get(name):
                        self.hists[name].add(hists[name])
            self.interval_quantiles.update(quantiles)
            index = int(record.get("index", 0))
            if worker != "master" and index >= self.latest_index.get(worker, -1):
                self.latest_index[worker] = index
                if record.get("clients_connected") is not None:
                    self.clients[worker] = float(record["clients_connected"])
            phase = record.get("phase")
            if phase and worker != "master":
                self.phase = str(phase)
                if phase not in self.phases:
                    self.phases.append(str(phase))
            gen = record.get("generator") or {}
            if gen:
                self.generator[worker] = {k: float(v) for k, v in gen.items() if isinstance(v, int | float)}
            server = record.get("server") or {}
            if server:
                self.server = {k: float(v) for k, v in server.items() if isinstance(v, int | float)}

    def event(self, record: Mapping[str, Any]) -> None:
        with self._lock:
            if record.get("kind") == "close":
                code = str(record["code"]) if record.get("code") is not None else "dropped"
                self.closes[code] = self.closes.get(code, 0) + 1
            elif record.get("kind") == "error":
                kind = str(record.get("error") or "error")
                self.errors[kind] = self.errors.get(kind, 0) + 1

    def footer(self, record: Mapping[str, Any]) -> None:
        accounting = record.get("accounting") or {}
        with self._lock:
            if accounting.get("lost") is not None:
                self.lost = int(accounting["lost"])

    # -- collecting (prometheus_client calls this) ---------------------------------------------
    def describe(self) -> list[Any]:
        return []  # no describe-time registration check: metrics appear as the run goes

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        with self._lock:
            helps = {
                "sent": "messages sent",
                "delivered": "deliveries received (one per message per receiver)",
                "expected": "deliveries due for the messages sent",
                "duplicated": "deliveries received more than once",
                "reordered": "deliveries received out of order",
            }
            for key, text in helps.items():
                yield CounterMetricFamily(f"wsbench_{key}", text, value=self.counters[key])
            errors = CounterMetricFamily("wsbench_errors", "errors by kind", labels=["kind"])
            for kind, n in sorted(self.errors.items()):
                errors.add_metric([kind], n)
            yield errors
            closes = CounterMetricFamily("wsbench_closes", "WebSocket closes by code", labels=["code"])
            for code, n in sorted(self.closes.items()):
                closes.add_metric([code], n)
            yield closes
            if self.lost is not None:
                yield CounterMetricFamily("wsbench_lost", "deliveries lost (final, after the drain)", value=self.lost)
            yield GaugeMetricFamily(
                "wsbench_undelivered",
                "deliveries due but not received so far (in flight or lost)",
                value=max(self.counters["expected"] - self.counters["delivered"], 0),
            )
            yield GaugeMetricFamily("wsbench_clients_connected", "clients connected", value=sum(self.clients.values()))
            phase = GaugeMetricFamily("wsbench_phase", "1 for the phase the run is in", labels=["phase"])
            for name in self.phases:
                phase.add_metric([name], 1.0 if name == self.phase else 0.0)
            yield phase
            cpu = GaugeMetricFamily("wsbench_generator_cpu_percent", "load generator CPU", labels=["worker"])
            lag = GaugeMetricFamily(
                "wsbench_generator_loop_lag_seconds",
                "load generator event-loop lag, interval maximum",
                labels=["worker"],
            )
            for worker, gen in sorted(self.generator.items()):
                if "cpu_pct" in gen:
                    cpu.add_metric([worker], gen["cpu_pct"])
                if "loop_lag_ms_max" in gen:
                    lag.add_metric([worker], gen["loop_lag_ms_max"] / 1e3)
            yield cpu
            yield lag
            for key, name, text in (
                ("rss_bytes", "wsbench_server_rss_bytes", "server resident memory (/stats)"),
                ("cpu_s", "wsbench_server_cpu_seconds", "server CPU seconds since it started (/stats)"),
                ("connections", "wsbench_server_connections", "server open connections (/stats)"),
            ):
                if key in self.server:
                    yield GaugeMetricFamily(name, text, value=self.server[key])
            for hist_name, view in VIEWS.items():
                h = self.hists[hist_name]
                cumulative = np.cumsum(h.buckets)
                bounds = [*(f"{b:g}" for b in BUCKETS_S), "+Inf"]
                start = "intended" if view == "corrected" else "actual"
                text = f"broadcast latency per delivery ({view}: from the {start} send time)"
                yield HistogramMetricFamily(
                    f"wsbench_{hist_name}_seconds",
                    text,
                    buckets=list(zip(bounds, (float(c) for c in cumulative), strict=True)),
                    sum_value=h.sum_s,
                )
            quantiles = GaugeMetricFamily(
                "wsbench_interval_latency_seconds",
                "the last interval's HdrHistogram percentiles (exact)",
                labels=["view", "quantile"],
            )
            for hist_name, values in sorted(self.interval_quantiles.items()):
                for (q, _), v in zip(QUANTILES, values, strict=True):
                    quantiles.add_metric([VIEWS[hist_name], q], v)
            yield quantiles


class MetricsServer:
    """The collector served over HTTP on ``host:port`` (``prometheus_client.start_http_server``)."""

    def __init__(self, address: str) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        self.host, port = parse_address(address)
        self.metrics = LiveMetrics()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.metrics)  # type: ignore[arg-type]
        try:
            self._server, self._thread = start_http_server(port, addr=self.host, registry=self.registry)
        except OSError as exc:
            raise UsageError(f"--metrics {address}: cannot listen on {self.host}:{port}: {exc.strerror}") from None
        self.port = int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def require_client() -> None:
    """A clear error when ``prometheus_client`` is missing (it is the ``metrics`` extra)."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise UsageError("--metrics needs the prometheus_client package: pip install 'wsbench[metrics]'") from None


def add_arguments(parser: Any) -> None:
    """``--metrics`` and ``--metrics-linger``, the same for ``wsbench run`` and ``wsbench locust``."""
    parser.add_argument(
        "--metrics",
        metavar="[ADDR:]PORT",
        help="serve live metrics for Prometheus (OpenMetrics) at http://ADDR:PORT/metrics while the run goes "
        "(ADDR defaults to 127.0.0.1; port 0 picks a free one)",
    )
    parser.add_argument(
        "--metrics-linger",
        metavar="DURATION",
        default="0s",
        help="keep serving the final numbers this long after the run ends, for a last scrape (e.g. 30s)",
    )


def linger_seconds(text: str) -> float:
    from wsbench.core.units import UnitError, parse_duration

    try:
        return parse_duration(text)
    except (UnitError, ValueError) as exc:
        raise UsageError(f"--metrics-linger {text!r}: {exc}") from None


@contextlib.contextmanager
def serving(
    address: str | None, linger: str = "0s", say: Callable[[str], None] | None = None
) -> Iterator[LiveMetrics | None]:
    """The collector served on ``address`` for the duration of the ``with`` block (``None``: no metrics)."""
    if not address:
        yield None
        return
    linger_s = linger_seconds(linger)
    require_client()
    server = MetricsServer(address)
    if say is not None:
        say(f"metrics: {server.url}")
    try:
        yield server.metrics
    finally:
        if linger_s > 0:
            time.sleep(linger_s)
        server.close()
