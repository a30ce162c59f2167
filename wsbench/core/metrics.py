"""Every numeric key of the run summary (docs/summary-json.md), and how a threshold writes its limit.

This table is the one place the summary's numeric keys are listed: thresholds accept exactly these
(``latency.p99 < 50ms``, ``closes.total == 0``, ``capacity.highest_rate_held >= 1000/s``), the error
for an unknown one suggests the nearest, and a test walks a real summary to check that every numeric
key it holds is here and every key here is in it. Per-code and per-kind maps are open-ended:
``closes.by_code.<code>`` and ``errors.by_kind.<kind>`` are keys for any code or kind.

The kind of a key says what unit its limit is written in, from the summary's naming rule: times in
milliseconds unless the key ends in ``_s`` (seconds) or has ``_us`` (microseconds); ``_pct`` percent;
``ratio`` a fraction (or ``%``); ``rate.*`` and ``*_rate*`` per second; ``_bytes`` a size.
"""

from __future__ import annotations

import difflib

PERCENTILE_KEYS = ("p50", "p90", "p99", "p99_9", "p99_99", "max", "min", "mean")
#: summary sections that are percentile objects (``count`` beside the percentiles)
PERCENTILE_SECTIONS = (
    "latency",
    "latency_uncorrected",
    "fanout",
    "latency_socket",
    "generator_delay",
    "latency_probes",
    "latency_socket_uncorrected",
    "connect",
    "connect_handshake",
)
#: keys that can be null for a reason the summary states: where it states it (a threshold's verdict says so)
NOTE_OF = {
    f"server.{leaf}": "server.drift_note"
    for leaf in (
        "rss_slope_mib_per_hour",
        "rss_slope_mib_per_hour_low",
        "rss_slope_mib_per_hour_high",
        "connections_slope_per_hour",
        "cpu_pct_slope_per_hour",
    )
}
#: open-ended maps: any key below them is a count
OPEN_MAPS = ("closes.by_code", "errors.by_kind")

_SECTIONS: dict[str, tuple[str, ...]] = {
    "": ("summary_version", "duration_s", "measured_s", "exit_code"),
    "scenario": ("clients", "senders", "stalled_clients"),
    "latency": ("above_ceiling",),
    "connect": ("ok", "errors"),
    "delivery": (
        "expected",
        "delivered",
        "lost",
        "duplicated",
        "reordered",
        "pairs",
        "pairs_with_loss",
        "fanout_incomplete",
        "loss_ratio",
        "back_to_sender",
        "never_sent",
        "no_trailer",
    ),
    "messages": ("sent", "sent_measured", "send_skipped"),
    "rate": ("target", "sent", "delivered"),
    "closes": ("total", "unexpected"),
    "errors": ("total",),
    "churn": ("left", "joined"),
    "generator": (
        "cpu_s",
        "cpu_s_measured",
        "cpu_pct_max",
        "cpu_pct_mean",
        "cpu_us_per_delivery",
        "loop_lag_ms_max",
        "send_lag_ms_max",
        "open_fds_max",
        "cpu_busy_ratio",
        "cpu_wait_s_measured",
        "cpu_got_ratio",
        "cpu_wait_ms_per_slice",
    ),
    "server": (
        "rss_bytes_max",
        "rss_bytes_min",
        "rss_bytes_last",
        "connections_max",
        "messages_in",
        "deliveries_out",
        "slow_consumer_closes",
        "cpu_s_measured",
        "cpu_pct_mean",
        "cpu_us_per_delivery",
        "samples",
        # issue 14: growth over the measured phases (Theil-Sen), server_stats.drift
        "rss_slope_mib_per_hour",
        "rss_slope_mib_per_hour_low",
        "rss_slope_mib_per_hour_high",
        "connections_slope_per_hour",
        "cpu_pct_slope_per_hour",
        "drift_span_s",
        "drift_samples",
    ),
    "capacity": ("highest_rate_held", "broke_at_rate"),
    "probes": ("receivers", "delivered", "stamped", "coalesced", "clock_steps"),
}


def kind_of(key: str) -> str:
    """``time`` (ms), ``seconds``, ``us``, ``percent``, ``ratio``, ``rate``, ``size`` or ``count``."""
    section, _, leaf = key.rpartition(".")
    if section in PERCENTILE_SECTIONS and leaf in PERCENTILE_KEYS:
        return "time"
    if leaf.endswith("ratio"):
        return "ratio"
    if "_pct" in leaf:
        return "percent"
    if "_us_" in leaf or leaf.endswith("_us"):
        return "us"
    if "_ms" in leaf:
        return "time"
    if leaf.endswith("_s") or "_s_" in leaf:
        return "seconds"
    if "bytes" in leaf:
        return "size"
    if section == "rate" or "rate" in leaf:
        return "rate"
    return "count"


def _all_keys() -> dict[str, str]:
    keys: list[str] = []
    for section in PERCENTILE_SECTIONS:
        keys += [f"{section}.{p}" for p in (*PERCENTILE_KEYS, "count")]
    for section, leaves in _SECTIONS.items():
        keys += [f"{section}.{leaf}" if section else leaf for leaf in leaves]
    return {k: kind_of(k) for k in keys}


#: dotted summary key -> kind
METRICS: dict[str, str] = _all_keys()


def metric_kind(key: str) -> str | None:
    """The kind of a threshold key, ``None`` when the summary has no such numeric key."""
    if key in METRICS:
        return METRICS[key]
    for prefix in OPEN_MAPS:
        if key.startswith(prefix + ".") and len(key) > len(prefix) + 1:
            return "count"
    return None


def suggest(key: str) -> list[str]:
    """The known keys nearest to ``key`` (for "did you mean")."""
    return difflib.get_close_matches(key, list(METRICS), n=3, cutoff=0.6)
