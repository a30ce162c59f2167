"""The summary of a results file: every number the reports show, with stable keys.

``summarize(read_results(path))`` is what ``wsbench report --json`` prints, what the terminal and
HTML reports render and what thresholds are checked against. The keys are documented in
``docs/summary-json.md``; adding a key is compatible, renaming or removing one bumps
``SUMMARY_VERSION``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from wsbench.core import histograms, selfcheck, server_stats, socket_latency
from wsbench.core.results import UNMEASURED_PHASES, Results
from wsbench.core.thresholds import evaluate

SUMMARY_VERSION = 1
#: warning events (by their ``warning`` kind) that a summary repeats: they say a number may mislead
SUMMARY_WARNINGS = frozenset(
    {"short_drain", "latency_ceiling", "back_to_sender", "no_trailer", "never_sent", "send_skipped", "no_socket_stamps"}
)
EXIT_INTERRUPTED = 130


def _latency(h: Any) -> dict[str, Any]:
    return histograms.summary_ms(h)


def _span(records: list[dict[str, Any]]) -> float:
    return sum(max(float(r.get("end_s", 0.0)) - float(r.get("start_s", 0.0)), 0.0) for r in records)


def _count(records: list[dict[str, Any]], name: str) -> int:
    return sum(int(r.get("counters", {}).get(name, 0)) for r in records)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return a / b


def _phase_kinds(results: Results) -> dict[str, str]:
    """Phase name -> kind (warmup, measure, drain, connect) from the phase events."""
    kinds = {"connect": "connect", "warmup": "warmup", "drain": "drain"}
    for e in results.events_of("phase"):
        if e.get("name") and e.get("phase_kind"):
            kinds[str(e["name"])] = str(e["phase_kind"])
    return kinds


def metrics(
    latency: Any,
    latency_uncorrected: Any,
    fanout: Any,
    counters: dict[str, int],
    span_s: float,
    totals: dict[str, Any] | None = None,
    probe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Summary-shaped metrics of one span (a stage): what per-stage thresholds are checked against.

    ``probe``: the span's probe histograms by name (``socket_latency.HISTOGRAMS``), when there are any.
    """
    sent, delivered = int(counters.get("sent", 0)), int(counters.get("delivered", 0))
    out: dict[str, Any] = {
        "latency": _latency(latency),
        "latency_uncorrected": _latency(latency_uncorrected),
        "fanout": _latency(fanout),
        "rate": {"sent": _ratio(sent, span_s), "delivered": _ratio(delivered, span_s)},
        "messages": {"sent": sent},
        "errors": {"total": int(counters.get("errors", 0))},
        "delivery": {
            "delivered": delivered,
            "duplicated": int(counters.get("duplicated", 0)),
            "reordered": int(counters.get("reordered", 0)),
        },
    }
    for name, h in (probe or {}).items():
        out[name] = _latency(h)
    if totals:
        d = out["delivery"]
        d.update({k: totals[k] for k in ("expected", "lost", "pairs_with_loss") if k in totals})
        d["loss_ratio"] = _ratio(totals.get("lost"), totals.get("expected"))
    return out


def stage_metrics(results: Results, phase: str, totals: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metrics of one phase alone, from a results file."""
    recs = [r for r in results.intervals if r.get("phase") == phase]
    counters = {k: _count(recs, k) for k in ("sent", "delivered", "errors", "duplicated", "reordered")}
    return metrics(
        results.histogram("latency", [phase]),
        results.histogram("latency_uncorrected", [phase]),
        results.histogram("fanout", [phase]),
        counters,
        _span(recs),
        totals,
        {name: results.histogram(name, [phase]) for name in socket_latency.HISTOGRAMS},
    )


def summarize(results: Results) -> dict[str, Any]:
    header = results.header
    scenario: dict[str, Any] = header.get("scenario") or {}
    footer = results.footer or {}
    kinds = _phase_kinds(results)
    measured = results.measured_intervals()
    sending = [r for r in measured if kinds.get(str(r.get("phase")), "measure") != "drain"]
    all_names = sorted({str(r.get("phase")) for r in results.intervals})
    warnings = list(results.warnings)

    latency = _latency(results.histogram("latency"))
    # deliveries later than the histograms' ceiling (60 s), recorded at the ceiling
    latency["above_ceiling"] = _count(results.intervals, "latency_above_ceiling")
    latency_unc = _latency(results.histogram("latency_uncorrected"))
    fanout = _latency(results.histogram("fanout"))
    # the probe receivers' latencies (latency_probes, latency_socket, generator_delay)
    probe = {name: _latency(results.histogram(name)) for name in socket_latency.HISTOGRAMS}
    connect = _latency(results.histogram("connect", all_names))
    connect["ok"] = _count(results.intervals, "connect_ok")
    connect["errors"] = _count(results.intervals, "connect_errors")
    # the login + handshake alone (``connect`` counts from the client's scheduled connect time)
    connect_handshake = _latency(results.histogram("connect_handshake", all_names))

    # deliveries: the footer's final accounting (every message of the run), else the interval counters
    acc = footer.get("accounting") or {}
    delivered_all = _count(results.intervals, "delivered")
    delivery: dict[str, Any] = {
        "expected": acc.get("expected", _count(results.intervals, "expected")),
        "delivered": acc.get("delivered", delivered_all),
        "lost": acc.get("lost"),
        "duplicated": acc.get("duplicated", _count(results.intervals, "duplicated")),
        "reordered": acc.get("reordered", _count(results.intervals, "reordered")),
        "pairs": acc.get("pairs"),
        "pairs_with_loss": acc.get("pairs_with_loss"),
        "fanout_incomplete": acc.get("fanout_incomplete"),
        # what the accounting could not count: a message back to its own sender (SPEC 7.2), a text
        # frame without a wsbench trailer (neither a join nor a leave line)
        "back_to_sender": _count(results.intervals, "back_to_sender"),
        "no_trailer": _count(results.intervals, "no_trailer"),
        # a trailer of a message this run never sent (replayed from another run, or forged)
        "never_sent": _count(results.intervals, "never_sent"),
    }
    delivery["loss_ratio"] = _ratio(delivery["lost"], delivery["expected"])
    if delivery["lost"] is None:
        warnings.append("losses are unknown: the run has no footer (losses are counted after the drain)")

    sending_s = _span(sending)
    sent_measured = _count(sending, "sent")
    rate = {
        "target": _target_rate(scenario, {str(r.get("phase")) for r in sending} if sending else None),
        "sent": _ratio(sent_measured, sending_s),
        "delivered": _ratio(_count(sending, "delivered"), sending_s),
    }

    closes: Counter[str] = Counter()
    unexpected = 0
    for e in results.events_of("close"):
        closes[str(e["code"]) if e.get("code") is not None else "dropped"] += 1
        if e.get("role") != "stalled":
            unexpected += 1
    errors: Counter[str] = Counter(str(e.get("error") or "error") for e in results.events_of("error"))

    # rows hold aggregates (wsbench.core.rollup): CPU % mean and max over full-length intervals only
    # (one much shorter than the others, cut at a phase boundary, is noise)
    gen_recs = [r.get("generator") or {} for r in measured]
    gen_all = [r.get("generator") or {} for r in results.intervals]
    cpu_measured = sum(float(g.get("cpu_s", 0.0)) for g in gen_recs)
    delivered_measured = _count(measured, "delivered")
    full_n = sum(int(g.get("cpu_pct_n", 0)) for g in gen_recs)
    generator: dict[str, Any] = {
        "cpu_s": round(sum(float(g.get("cpu_s", 0.0)) for g in gen_all), 4),
        "cpu_s_measured": round(cpu_measured, 4),
        "cpu_pct_max": max((float(m) for g in gen_recs if (m := g.get("cpu_pct_max")) is not None), default=None),
        "cpu_pct_mean": _ratio(sum(float(g.get("cpu_pct_sum", 0.0)) for g in gen_recs), full_n),
        "cpu_us_per_delivery": _ratio(cpu_measured * 1e6, delivered_measured),
        "loop_lag_ms_max": max((float(g.get("loop_lag_ms_max", 0.0)) for g in gen_recs), default=None),
        "send_lag_ms_max": max((float(g.get("send_lag_ms_max", 0.0)) for g in gen_recs), default=None),
        "open_fds_max": max((int(g.get("open_fds", 0)) for g in gen_all), default=None),
    }
    # the self-check (wsbench.core.selfcheck): what the generator added, and whether it was the limit
    signs = selfcheck.signs_from_rows(
        sending, latency, probe, _latency(results.histogram("send_lag")), results.events_of("warning")
    )
    waited = signs.cpu_wait  # its event loop's wait for a CPU (wsbench.schedstat)
    generator.update(
        cpu_wait_s_measured=waited.wait_s if waited else None,
        cpu_got_ratio=waited.got_ratio if waited else None,
        cpu_wait_ms_per_slice=waited.ms_per_slice if waited else None,
    )
    verdict = selfcheck.judge(signs)
    generator.update(
        bottleneck=verdict.bottleneck,
        bottleneck_detail=verdict.detail,
        self_check=verdict.self_check,  # "measured": from generator_delay; "estimated": CPU and send lag
        delay_detail=verdict.added,
        cpu_busy_ratio=verdict.cpu_busy_ratio,
        saturation=verdict.saturation,
    )
    if verdict.detail:
        warnings.append(verdict.detail)
    for e in results.events_of("warning"):  # named warnings about the measurement itself
        if e.get("warning") in SUMMARY_WARNINGS and e.get("detail"):
            warnings.append(str(e["detail"]))
    probes = socket_latency.probes_summary(results.intervals, results.events_of("probes"))

    samples = [r["server"] for r in results.intervals if r.get("server")]
    server: dict[str, Any] | None = None
    if samples:
        # the server's CPU in the measured intervals that have a figure (cumulative cpu_s differences)
        measured_samples = [r["server"] for r in measured if r.get("server")]
        cpu_span = sum(float(s.get("cpu_span_s", 0.0)) for s in measured_samples)
        server_cpu = sum(float(s.get("cpu_spent_s", 0.0)) for s in measured_samples) if cpu_span > 0 else None
        cpu_delivered = sum(int(s.get("cpu_delivered", 0)) for s in measured_samples)
        rss_max = [int(s["rss_bytes_max"]) for s in samples if s.get("rss_bytes_max") is not None]
        rss_min = [int(s["rss_bytes_min"]) for s in samples if s.get("rss_bytes_min") is not None]
        rss_last = [int(s["rss_bytes"]) for s in samples if s.get("rss_bytes") is not None]
        last = samples[-1]
        server = {
            "rss_bytes_max": max(rss_max) if rss_max else None,
            "rss_bytes_min": min(rss_min) if rss_min else None,
            "rss_bytes_last": rss_last[-1] if rss_last else None,
            "connections_max": max(
                (int(s["connections_max"]) for s in samples if s.get("connections_max") is not None), default=None
            ),
            "messages_in": last.get("messages_in"),
            "deliveries_out": last.get("deliveries_out"),
            "slow_consumer_closes": last.get("slow_consumer_closes"),
            "cpu_s_measured": round(server_cpu, 4) if server_cpu is not None else None,
            "cpu_pct_mean": _ratio(server_cpu * 100 if server_cpu is not None else None, cpu_span),
            "cpu_us_per_delivery": _ratio(server_cpu * 1e6 if server_cpu is not None else None, cpu_delivered),
            "samples": sum(int(s.get("samples", 1)) for s in samples),
            **server_stats.drift(measured, server_stats.min_span_of(scenario)),
        }

    stages = _stages(results, scenario, kinds, acc.get("by_phase") or {})
    capacity = None
    if scenario.get("search"):
        capacity = _capacity(stages)
    if not generator["bottleneck"]:  # the run as a whole was not, but a stage was (a search's top stage)
        bound = next((st for st in stages if st["generator_bottleneck"]), None)
        if bound is not None and len(stages) > 1:
            warnings.append(f"in stage {bound['name']}: {bound['generator_detail']}")

    summary: dict[str, Any] = {
        "summary_version": SUMMARY_VERSION,
        "file": results.path,
        "kind": results.kind,
        "status": results.status,
        "reason": footer.get("reason"),
        "warnings": warnings,
        "scenario": {
            "name": scenario.get("name"),
            "path": header.get("scenario_path"),
            "clients": scenario.get("clients"),
            "senders": scenario.get("senders"),
            "stalled_clients": scenario.get("stalled_clients"),
            "model": scenario.get("model"),
            "size": scenario.get("size"),
        },
        "target": header.get("target"),
        "driver": header.get("driver"),
        "created": header.get("created"),
        "duration_s": footer.get("duration_s", results.intervals[-1]["end_s"] if results.intervals else 0.0),
        "measured_s": round(sending_s, 3),
        "latency": latency,
        "latency_uncorrected": latency_unc,
        "fanout": fanout,
        **probe,
        "probes": probes,
        "connect": connect,
        "connect_handshake": connect_handshake,
        "delivery": delivery,
        "messages": {
            "sent": _count(results.intervals, "sent"),
            "sent_measured": sent_measured,
            "send_skipped": _count(results.intervals, "send_skipped"),
        },
        "rate": rate,
        "closes": {"by_code": dict(closes), "total": sum(closes.values()), "unexpected": unexpected},
        "errors": {"by_kind": dict(errors), "total": sum(errors.values())},
        "churn": (
            {"left": _count(results.intervals, "churn_left"), "joined": _count(results.intervals, "churn_joined")}
            if scenario.get("churn")
            else None
        ),
        "generator": generator,
        "server": server,
        "stages": stages,
        "capacity": capacity,
    }
    thresholds = list(scenario.get("thresholds") or [])
    verdicts = evaluate(thresholds, summary) if thresholds else []
    summary["thresholds"] = verdicts
    summary["passed"] = all(v["passed"] for v in verdicts)
    summary["exit_code"] = exit_code(results.status, summary["passed"])
    return summary


def exit_code(status: str, passed: bool) -> int:
    if status in ("broken", "truncated"):
        return 3
    if status == "interrupted":
        return EXIT_INTERRUPTED
    return 0 if passed else 1


def _target_rate(scenario: dict[str, Any], ran: set[str] | None = None) -> float | None:
    """The planned mean rate of the stages (of those that ran, when some were skipped)."""
    stages = [s for s in scenario.get("resolved_stages") or [] if ran is None or s.get("name") in ran]
    total = sum(float(s.get("duration", 0)) for s in stages)
    if not total or scenario.get("model") == "closed":
        return None
    msgs = sum(
        float(s["duration"])
        * (float(s["rate"]) + float(s["rate_to"] if s.get("rate_to") is not None else s["rate"]))
        / 2
        for s in stages
    )
    return msgs / total


def _stages(
    results: Results, scenario: dict[str, Any], kinds: dict[str, str], by_phase: dict[str, Any]
) -> list[dict[str, Any]]:
    planned = {s["name"]: s for s in scenario.get("resolved_stages") or []}
    verdicts = {e.get("stage"): e for e in results.events_of("threshold") if e.get("stage")}
    order: list[str] = []
    for r in results.intervals:
        name = str(r.get("phase"))
        if name not in order and name not in UNMEASURED_PHASES and kinds.get(name, "measure") != "drain":
            order.append(name)
    out = []
    signs = [e for e in results.events_of("warning") if e.get("warning") in selfcheck.BUSY_EVENTS]
    for name in order:
        plan = planned.get(name, {})
        m = stage_metrics(results, name, by_phase.get(name))
        v = verdicts.get(name)
        rows = [r for r in results.intervals if r.get("phase") == name]
        start = min((float(r.get("start_s", 0.0)) for r in rows), default=0.0)
        end = max((float(r.get("end_s", 0.0)) for r in rows), default=0.0)
        # the self-check of this stage alone: a search's top stages are where a generator saturates
        check = selfcheck.judge(
            selfcheck.signs_from_rows(
                rows,
                m["latency"],
                m,
                _latency(results.histogram("send_lag", [name])),
                [e for e in signs if start <= float(e.get("t_s", -1.0)) <= end],
            )
        )
        out.append(
            {
                "name": name,
                "rate_target": plan.get("rate_to") if plan.get("rate_to") is not None else plan.get("rate"),
                "duration_s": round(_span([r for r in results.intervals if r.get("phase") == name]), 3),
                "sent": m["messages"]["sent"],
                "rate_sent": m["rate"]["sent"],
                "delivered": m["delivery"]["delivered"],
                "rate_delivered": m["rate"]["delivered"],
                "latency_p50": m["latency"]["p50"],
                "latency_p99": m["latency"]["p99"],
                "latency_max": m["latency"]["max"],
                "latency_socket_p50": m["latency_socket"]["p50"],
                "latency_socket_p99": m["latency_socket"]["p99"],
                "lost": m["delivery"].get("lost"),
                "errors": m["errors"]["total"],
                "passed": None if v is None else bool(v.get("passed")),
                "generator_bottleneck": check.bottleneck,
                "generator_detail": check.detail,
            }
        )
    return out


def _capacity(stages: list[dict[str, Any]]) -> dict[str, Any]:
    held = None
    broke = None
    for st in stages:
        if st["passed"] is None:
            continue
        if st["passed"]:
            held = st
        else:
            broke = st
            break
    return {
        "highest_rate_held": held["rate_target"] if held else None,
        "stage_held": held["name"] if held else None,
        "broke_at_rate": broke["rate_target"] if broke else None,
        "stage_broke": broke["name"] if broke else None,
    }


def generator_bound(summary: dict[str, Any]) -> bool:
    """The capacity search's deciding stage (the one that broke, else the highest that held) had the
    generator as its bottleneck: the capacity found may be the generator's, not the server's."""
    cap = summary.get("capacity") or {}
    deciding = cap.get("stage_broke") or cap.get("stage_held")
    return any(st.get("name") == deciding and st.get("generator_bottleneck") for st in summary.get("stages") or [])
