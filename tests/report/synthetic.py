"""Realistic synthetic results files for report tests, written with the real ``ResultsWriter``.

The histograms are real HdrHistograms filled with recorded values drawn from a seeded random source
(lognormal latencies around ``base_ms``, a periodic stall in the corrected view only, as coordinated
omission would hide it), so reports and comparisons are exercised on the same bytes a run writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wsbench.core import histograms
from wsbench.core.results import ResultsWriter

SCENARIO: dict[str, Any] = {
    "name": "broadcast",
    "clients": 20,
    "senders": 20,
    "rate": 200.0,
    "message_size": 64,
    "phases": [
        {"name": "warmup", "duration_s": 2.0},
        {"name": "measure", "duration_s": 10.0},
    ],
    "drain_s": 1.0,
    "seed": 1,
    "thresholds": ["latency.p99 < 50ms", "delivery.lost == 0"],
}


def write_run(
    path: Path,
    *,
    server: str = "tornado",
    base_ms: float = 2.0,
    seed: int = 1,
    measure_intervals: int = 10,
    clients: int = 20,
    rate: float = 200.0,
    lost: int = 0,
    rss_mb: float = 40.0,
    cpu_pct: float = 35.0,
    stall_every: int = 4,
    truncate_after: int | None = None,
    with_server_samples: bool = True,
    server_cpu_pct: float | None = None,
    generator_bottleneck: bool = False,
    drift_min_span: float | None = None,
    cpu_wait_s: float | None = None,
) -> Path:
    """Write a results file for a broadcast run; ``truncate_after`` intervals then stop with no footer.

    ``generator_bottleneck``: the generator's CPU is at ~97 % of a core in every measured interval.
    ``cpu_wait_s``: its event loop waited this long for a CPU in every interval, over 100 slices."""
    rng = np.random.default_rng(seed)
    phases = ["connect"] + ["warmup"] * 2 + ["measure"] * measure_intervals + ["drain"]
    fanout = clients - 1
    totals = {"expected": 0, "delivered": 0, "sent": 0}
    with ResultsWriter(path) as writer:
        writer.header(
            kind="run",
            scenario_path="scenarios/broadcast.yaml",
            scenario={
                **SCENARIO,
                "clients": clients,
                "senders": clients,
                "rate": rate,
                # as a real run's header has them (the resolved scenario): the plan, in seconds
                "interval": 1.0,
                **({"drift_min_span": drift_min_span} if drift_min_span is not None else {}),
                "warmup": {"duration": 2.0, "rate": None},
                "drain": 1.0,
                "resolved_stages": [
                    {"name": "measure", "duration": float(measure_intervals), "rate": rate, "rate_to": None}
                ],
            },
            target={
                "mode": "embedded",
                "server": server,
                "url": "http://127.0.0.1:40000",
                "command": None,
                "options": {"max_message_size": 65536, "nodelay": True},
            },
            versions={"python": "3.11.7", "platform": "Linux-test", "picows": "1.0", server: "1.0"},
            driver="asyncio",
            interval_s=1.0,
        )
        writer.event("phase", 0.0, name="connect", detail=f"connecting {clients} clients")
        for index, phase in enumerate(phases):
            if truncate_after is not None and index >= truncate_after:
                return path
            if generator_bottleneck and index == 5:  # the per-interval sign; the verdict is the summary's
                detail = "the generator was at its limits in an interval: generator CPU at 97% of a core"
                writer.event("warning", float(index), warning="generator_busy", detail=detail)
            if index in (1, 3, len(phases) - 1):
                writer.event(
                    "phase", float(index), name=phase, phase_kind=phase, rate=0.0 if phase == "drain" else rate
                )
            sending = phase in ("warmup", "measure")
            busy = generator_bottleneck and phase == "measure"
            sent = int(rate) if sending else 0
            delivered = sent * fanout
            if phase == "measure" and index == len(phases) - 2:
                delivered -= lost
            hists: dict[str, Any] = {}
            if phase == "connect":
                connect = histograms.new_histogram()
                histograms.record_many(connect, (rng.lognormal(np.log(3000), 0.4, clients)).astype(np.int64))
                hists["connect"] = connect
            if phase in ("measure", "drain") and delivered:
                values = rng.lognormal(np.log(base_ms * 1000), 0.35, delivered)
                uncorrected = values.copy()
                if stall_every and (index % stall_every == 0):  # a stall: late sends pile up
                    stalled = rng.random(delivered) < 0.02
                    values[stalled] += rng.uniform(50_000, 200_000, int(stalled.sum()))
                lat, unc, fan = histograms.new_histogram(), histograms.new_histogram(), histograms.new_histogram()
                histograms.record_many(lat, values.astype(np.int64))
                histograms.record_many(unc, uncorrected.astype(np.int64))
                histograms.record_many(fan, (values[:sent] * 1.6).astype(np.int64))
                hists.update(latency=lat, latency_uncorrected=unc, fanout=fan)
            expected = sent * fanout
            if phase != "warmup":
                totals["expected"] += expected
                totals["delivered"] += delivered
                totals["sent"] += sent
            gen_pct = 97.0 if busy else cpu_pct
            cpu_jitter, pct_jitter = rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1)
            record: dict[str, Any] = {
                "index": index,
                "start_s": float(index),
                "end_s": float(index + 1),
                "phase": phase,
                "counters": {
                    "sent": sent,
                    "delivered": delivered,
                    "expected": expected,
                    "duplicated": 0,
                    "reordered": 0,
                    "connect_ok": clients if phase == "connect" else 0,
                    "connect_errors": 0,
                    "closes": 0,
                    "errors": 0,
                },
                "clients_connected": clients,
                "histograms": hists,
                "generator": {
                    "cpu_s": round(gen_pct / 100 * cpu_jitter, 4),
                    "cpu_pct": round(97 + 20 * (pct_jitter - 1) if busy else gen_pct * pct_jitter, 2),
                    "loop_lag_ms_max": round(float(rng.uniform(0.2, 3.0)), 3),
                    "send_lag_ms_max": round(float(rng.uniform(0.1, 2.0)), 3),
                    "open_fds": clients + 12,
                    **({"cpu_wait_s": cpu_wait_s, "cpu_slices": 100} if cpu_wait_s is not None else {}),
                },
                "server": (
                    {
                        "rss_bytes": int((rss_mb + index * 0.2 + rng.uniform(-0.3, 0.3)) * 2**20),
                        "connections": clients,
                        "messages_in": sent,
                        "deliveries_out": delivered,
                        "slow_consumer_closes": 0,
                        **({"cpu_s": round(server_cpu_pct / 100 * (index + 1), 4)} if server_cpu_pct else {}),
                    }
                    if with_server_samples
                    else None
                ),
            }
            writer.interval(record)
        writer.event("close", float(len(phases)), client=3, code=1000, reason="", role="receiver")
        writer.event("error", float(len(phases)), client=5, error="timeout", detail="no pong within 1 s")
        thresholds = [
            {
                "expr": "latency.p99 < 50ms",
                "metric": "latency.p99",
                "op": "<",
                "limit": 50.0,
                "unit": "ms",
                "observed": base_ms * 2.5,
                "passed": base_ms * 2.5 < 50,
            },
            {
                "expr": "delivery.lost == 0",
                "metric": "delivery.lost",
                "op": "==",
                "limit": 0,
                "unit": "",
                "observed": lost,
                "passed": lost == 0,
            },
        ]
        writer.footer(
            status="completed",
            reason=None,
            duration_s=float(len(phases)),
            accounting={
                "expected": totals["expected"],
                "delivered": totals["delivered"],
                "lost": lost,
                "duplicated": 0,
                "reordered": 0,
                "pairs": clients * fanout,
                "pairs_with_loss": 1 if lost else 0,
            },
            thresholds=thresholds,
            exit_code=0 if all(t["passed"] for t in thresholds) else 1,
        )
    return path


CASE_IDS = [
    ("login.form", "login", "3.1", None),
    ("login.invalid", "login", "3.2", None),
    ("handshake.version", "handshake", "6.1", "RFC 6455 §4.4"),
    ("frames.binary", "frames", "8.1", None),
    ("frames.utf8", "frames", "8.2", "RFC 6455 §8.1"),
    ("limits.size.exact", "limits", "9.1", "RFC 6455 §5.4"),
]


def write_conformance(path: Path, servers: tuple[str, ...] = ("tornado", "aiohttp")) -> Path:
    with ResultsWriter(path) as writer:
        writer.header(
            kind="conformance",
            scenario_path=None,
            scenario={},
            target={"mode": "embedded", "server": ",".join(servers), "url": None, "command": None, "options": {}},
            versions={"python": "3.11.7", "platform": "Linux-test"},
            driver="asyncio",
            interval_s=1.0,
        )
        for server in servers:
            for i, (case_id, category, clause, rfc) in enumerate(CASE_IDS):
                verdict = "pass"
                if server == "aiohttp" and case_id == "frames.utf8":
                    verdict = "deviation"
                if server == "tornado" and i == 5:
                    verdict = "fail"
                writer.case(
                    server=server,
                    id=case_id,
                    category=category,
                    clause=clause,
                    rfc=rfc,
                    expected="relayed",
                    observed="relayed in 0.4 ms" if verdict == "pass" else "closed 1002",
                    verdict=verdict,
                    reason=None if verdict == "pass" else "observed differs",
                    duration_s=0.012,
                )
        writer.footer(status="completed", reason=None, duration_s=1.0, exit_code=1)
    return path
