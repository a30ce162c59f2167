"""The self-contained HTML report: one file, inline CSS and SVG plots, no script, nothing fetched.

``render_report(results)`` renders one results file (a load run, or the conformance matrix of a
conformance file); ``render_comparison(comparison, verdicts)`` renders several runs with their plots
overlaid and the ratio table. The page is a Jinja2 template (``assets/report.html.j2``, autoescaped:
every string from a results file is shown as text) with the stylesheet ``assets/report.css`` inlined.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml

from wsbench import __version__
from wsbench.core.results import Results
from wsbench.core.server_stats import span_text
from wsbench.core.summary import generator_bound
from wsbench.errors import ResultsFileError
from wsbench.report import plots
from wsbench.report.compare import Comparison
from wsbench.report.compare_terminal import NOISE_MARK, format_ratio, format_value, metric_title
from wsbench.report.compare_thresholds import ThresholdVerdict
from wsbench.report.rundata import RunData

HISTOGRAM_ROWS = (
    ("latency", "latency (corrected)"),
    ("latency_uncorrected", "latency (uncorrected)"),
    ("latency_probes", "latency, probe receivers (user space)"),
    ("latency_socket", "latency at the socket (probes, kernel stamp)"),
    ("generator_delay", "generator's own delay (probes: user space - kernel stamp)"),
    ("latency_socket_uncorrected", "latency at the socket, from the actual send (probes)"),
    ("fanout", "fan-out completion"),
    ("connect", "connect (login + handshake)"),
)
PERCENTILE_COLUMNS = ("p50", "p90", "p99", "p99_9", "p99_99", "max")


@dataclass
class TableView:
    title: str
    header: list[str]
    rows: list[list[Any]]
    left: int = 1  # columns aligned left; the rest are numbers
    empty: str = "none"


@dataclass
class RunView:
    heading: str
    path: str
    color: str
    tables: list[TableView] = field(default_factory=list)
    scenario: str = ""


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("wsbench.report", "assets"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _css() -> str:
    return resources.files("wsbench.report").joinpath("assets/report.css").read_text(encoding="utf-8")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:,.1f}"


def _count(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def _percentile_table(summary: dict[str, Any]) -> TableView:
    rows: list[list[Any]] = []
    for name, title in HISTOGRAM_ROWS:
        h = summary.get(name) or {}
        if not h.get("count"):
            continue
        rows.append([title, _count(h["count"]), *(_ms(h.get(k)) for k in PERCENTILE_COLUMNS)])
    return TableView(
        "Latency percentiles (ms)",
        ["histogram", "count", "p50", "p90", "p99", "p99.9", "p99.99", "max"],
        rows,
        empty="no histogram holds a value",
    )


def _observed(value: Any, unit: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "no data" if value is None else str(value)
    return f"{value:,.4g} {unit}".strip()


def _threshold_table(summary: dict[str, Any]) -> TableView:
    rows = []
    for t in summary.get("thresholds") or []:
        verdict = "passed" if t.get("passed") else "failed"
        observed = _observed(t.get("observed"), t.get("unit") or "")
        if t.get("observed") is None and t.get("reason") and t["reason"] != "no data":
            observed = f"no data: {t['reason']}"
        rows.append([t.get("expr", ""), observed, _badge(verdict)])
    return TableView("Thresholds", ["threshold", "observed", "verdict"], rows, left=1, empty="no thresholds")


def _badge(verdict: str) -> dict[str, str]:
    return {"cls": "", "badge": verdict, "text": verdict}


def _accounting_table(summary: dict[str, Any]) -> TableView:
    d = summary.get("delivery") or {}
    rate = summary.get("rate") or {}
    messages = summary.get("messages") or {}
    rows: list[list[Any]] = [
        ["messages sent", _count(messages.get("sent"))],
        ["messages sent in the measured phases", _count(messages.get("sent_measured"))],
    ]
    for key in ("expected", "delivered", "lost", "duplicated", "reordered"):
        rows.append([f"deliveries {key}", _count(d.get(key)) if d.get(key) is not None else "unknown"])
    if d.get("loss_ratio") is not None:
        rows.append(["loss ratio", f"{100.0 * d['loss_ratio']:.4f} %"])
    for key in ("pairs", "pairs_with_loss", "fanout_incomplete"):
        if d.get(key) is not None:
            rows.append([key.replace("_", " ") + (" (sender, receiver)" if key == "pairs" else ""), _count(d[key])])
    uncounted = (
        ("deliveries back to their sender (SPEC 7.2)", d.get("back_to_sender")),
        ("text frames without a wsbench trailer", d.get("no_trailer")),
        ("messages their sender never sent (replayed from another run, or forged)", d.get("never_sent")),
        ("scheduled sends skipped (sender not connected)", messages.get("send_skipped")),
        ("latencies above the 60 s ceiling", (summary.get("latency") or {}).get("above_ceiling")),
    )
    for title, n in uncounted:
        if n is not None:
            rows.append([title, _count(n)])
    for key, title in (("target", "target send rate"), ("sent", "send rate"), ("delivered", "deliveries")):
        if rate.get(key) is not None:
            rows.append([f"{title} per second (while sending)", f"{rate[key]:,.1f}"])
    churn = summary.get("churn")
    if churn:
        rows.append(["receivers replaced (churn): left / joined", f"{churn['left']:,} / {churn['joined']:,}"])
    title = "Delivery accounting"
    if d.get("lost") is None:
        title += " (losses unknown: they are counted after the drain, and the file has no footer)"
    return TableView(title, ["", "value"], rows)


def _events_table(summary: dict[str, Any]) -> TableView:
    rows: list[list[Any]] = []
    for code, n in sorted((summary.get("closes") or {}).get("by_code", {}).items()):
        rows.append(["close", code, n])
    for kind, n in sorted((summary.get("errors") or {}).get("by_kind", {}).items()):
        rows.append(["error", kind, n])
    connect = summary.get("connect") or {}
    if connect.get("errors"):
        rows.append(["connect errors", "", connect["errors"]])
    return TableView("Close codes and errors", ["", "code or kind", "count"], rows, left=2, empty="none")


def _generator_table(summary: dict[str, Any]) -> TableView:
    g = summary.get("generator") or {}
    server = summary.get("server") or {}
    rows: list[list[Any]] = []
    for key, title, fmt in (
        ("cpu_s", "generator CPU (s)", "{:,.2f}"),
        ("cpu_us_per_delivery", "generator CPU per delivery (us)", "{:,.2f}"),
        ("cpu_pct_max", "generator CPU peak (%)", "{:,.0f}"),
        ("loop_lag_ms_max", "event-loop lag max (ms)", "{:,.1f}"),
        ("send_lag_ms_max", "send lag max (ms)", "{:,.1f}"),
        ("open_fds_max", "open file descriptors max", "{:,}"),
        ("cpu_got_ratio", "CPU time got, of what its event loop asked for", "{:.0%}"),
        ("cpu_wait_ms_per_slice", "wait for a CPU each time it ran (ms)", "{:,.3f}"),
    ):
        if g.get(key) is not None:
            rows.append([title, fmt.format(g[key])])
    if g.get("delay_detail"):
        rows.append(["self-check (measured)", str(g["delay_detail"])])
    if g.get("bottleneck"):
        rows.append(["bottleneck", str(g.get("bottleneck_detail") or "the generator was the bottleneck")])
    probes = summary.get("probes") or {}
    if probes:
        stamps = "kernel stamps" if probes.get("kernel_stamps") else f"no kernel stamps: {probes.get('detail')}"
        rows.append(
            [
                "probe receivers",
                f"{probes.get('receivers')} ({stamps}); {_count(probes.get('stamped'))} of "
                f"{_count(probes.get('delivered'))} deliveries with their own stamp",
            ]
        )
    for key, title in (
        ("rss_bytes_max", "server RSS max (MiB)"),
        ("rss_bytes_last", "server RSS last (MiB)"),
    ):
        if server.get(key) is not None:
            rows.append([title, f"{server[key] / 2**20:,.1f}"])
    if server.get("drift_note"):
        rows.append(["server growth", str(server["drift_note"])])
    if server.get("rss_slope_mib_per_hour") is not None:
        rows.append(
            [
                f"server RSS growth (MiB/h over {span_text(float(server.get('drift_span_s') or 0.0))}, "
                "Theil-Sen, 95% interval)",
                f"{server['rss_slope_mib_per_hour']:+,.3g} [{server['rss_slope_mib_per_hour_low']:+,.3g}, "
                f"{server['rss_slope_mib_per_hour_high']:+,.3g}]",
            ]
        )
    for key, title, fmt in (
        ("connections_slope_per_hour", "server connections drift (per hour)", "{:+,.3g}"),
        ("cpu_pct_slope_per_hour", "server CPU drift (points of a core per hour)", "{:+,.3g}"),
    ):
        if server.get(key) is not None:
            rows.append([title, fmt.format(server[key])])
    for key, title, fmt in (
        ("cpu_s_measured", "server CPU, measured (s)", "{:,.2f}"),
        ("cpu_us_per_delivery", "server CPU per delivery (us)", "{:,.2f}"),
        ("cpu_pct_mean", "server CPU mean (%)", "{:,.0f}"),
    ):
        if server.get(key) is not None:
            rows.append([title, fmt.format(server[key])])
    for key in ("connections_max", "messages_in", "deliveries_out", "slow_consumer_closes", "samples"):
        if server.get(key) is not None:
            rows.append([f"server {key.replace('_', ' ')}", _count(server[key])])
    return TableView("Generator and server", ["", "value"], rows, empty="no samples")


def _stages_table(summary: dict[str, Any]) -> TableView | None:
    stages = summary.get("stages") or []
    if len(stages) < 2:
        return None
    rows = []
    for st in stages:
        verdict = "-" if st.get("passed") is None else ("passed" if st["passed"] else "failed")
        rows.append(
            [
                st.get("name"),
                _observed(st.get("rate_target"), "/s"),
                _observed(st.get("rate_delivered"), "/s"),
                _ms(st.get("latency_p50")),
                _ms(st.get("latency_p99")),
                _ms(st.get("latency_max")),
                _count(st.get("lost")) if st.get("lost") is not None else "-",
                _badge(verdict) if verdict != "-" else "-",
            ]
        )
    capacity = summary.get("capacity") or {}
    title = "Stages"
    if capacity.get("highest_rate_held") is not None:
        title += f" (highest rate that held: {capacity['highest_rate_held']:,.0f}/s, stage {capacity['stage_held']})"
    if generator_bound(summary):
        title += " (the generator was the bottleneck in the deciding stage: the limit may be its own)"
    return TableView(
        title, ["stage", "target rate", "deliveries", "p50 ms", "p99 ms", "max ms", "lost", "verdict"], rows
    )


def _key_value_table(title: str, mapping: dict[str, Any] | None) -> TableView:
    rows = [
        [
            str(k),
            ""
            if v is None
            else (yaml.safe_dump(v, default_flow_style=True).strip() if isinstance(v, dict | list) else str(v)),
        ]
        for k, v in (mapping or {}).items()
    ]
    return TableView(title, ["", "value"], rows, left=2)


def _run_view(run: RunData, index: int) -> RunView:
    results = run.results
    header = results.header
    view = RunView(
        heading=f"{run.label}: {(header.get('scenario') or {}).get('name') or header.get('scenario_path') or 'run'}",
        path=f"{results.path} ({results.status})",
        color=plots.color(index),
    )
    if results.kind == "run":
        summary = run.summary
        stages = _stages_table(summary)
        view.tables += [_threshold_table(summary), _percentile_table(summary)]
        view.tables += [stages] if stages else []
        view.tables += [_accounting_table(summary), _events_table(summary), _generator_table(summary)]
    targets = header.get("targets") or [header.get("target") or {}]
    for target in targets:
        shown = {k: v for k, v in dict(target).items() if k != "argv"}
        if header.get("driver"):
            shown["driver"] = header["driver"]
        title = f"Target {target.get('label') or ''}".strip() if len(targets) > 1 else "Target"
        view.tables.append(_key_value_table(title, shown))
    view.tables.append(_key_value_table("Versions", header.get("versions")))
    if header.get("scenario"):
        view.scenario = yaml.safe_dump(header["scenario"], sort_keys=False, allow_unicode=True)
    return view


def _cards(summary: dict[str, Any]) -> list[dict[str, str]]:
    latency = summary.get("latency") or {}
    rate = summary.get("rate") or {}
    cards = []
    if rate.get("delivered") is not None:
        cards.append({"key": "deliveries/s", "value": f"{rate['delivered']:,.0f}"})
    for key, title in (("p50", "p50"), ("p99", "p99"), ("p99_9", "p99.9"), ("max", "max")):
        cards.append({"key": f"latency {title} (ms)", "value": _ms(latency.get(key))})
    lost = (summary.get("delivery") or {}).get("lost")
    cards.append({"key": "lost", "value": "unknown" if lost is None else _count(lost)})
    errors = (summary.get("errors") or {}).get("total", 0) + (summary.get("connect") or {}).get("errors", 0)
    cards.append({"key": "errors", "value": _count(errors)})
    cpu = (summary.get("generator") or {}).get("cpu_pct_max")
    if cpu is not None:
        cards.append({"key": "generator CPU peak", "value": f"{cpu:.0f}%"})
    return cards


def _conformance(results_list: Sequence[Results]) -> dict[str, Any] | None:
    cases = [c for r in results_list for c in r.cases]
    if not cases:
        return None
    servers = list(dict.fromkeys(str(c.get("server", "")) for c in cases))
    by_id: dict[str, dict[str, dict[str, Any]]] = {}
    meta: dict[str, dict[str, Any]] = {}
    for c in cases:
        case_id = str(c.get("id", ""))
        by_id.setdefault(case_id, {})[str(c.get("server", ""))] = c
        meta.setdefault(case_id, c)
    rows = [
        {
            "id": case_id,
            "title": meta[case_id].get("title") or "",
            "category": meta[case_id].get("category") or "",
            "clause": meta[case_id].get("clause") or "",
            "rfc": meta[case_id].get("rfc") or "",
            "cells": [by_id[case_id].get(s) for s in servers],
        }
        for case_id in by_id
    ]
    totals = {s: dict(Counter(str(c.get("verdict")) for c in cases if c.get("server") == s)) for s in servers}
    details = [c for c in cases if c.get("verdict") not in ("pass", "skipped")]
    return {"servers": servers, "rows": rows, "totals": totals, "details": details}


def _warnings(run: RunData, label: str | None = None) -> list[str]:
    """The summary's warnings (truncation, unknown losses, a generator bottleneck) and why a run stopped."""
    results = run.results
    prefix = f"{label}: " if label else ""
    warnings = list(run.summary.get("warnings") or []) if results.kind == "run" else list(results.warnings)
    footer = results.footer or {}
    if footer.get("status") in ("broken", "interrupted"):
        reason = f": {footer['reason']}" if footer.get("reason") else ""
        warnings.append(f"the run {'broke' if footer['status'] == 'broken' else 'was interrupted'}{reason}")
    return [prefix + w for w in dict.fromkeys(warnings)]


def _page(**context: Any) -> str:
    context.setdefault("version", __version__)
    context.setdefault("generated", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    context.setdefault("css", _css())
    for key in ("warnings", "headline", "comparison", "cards", "plots", "conformance", "runs", "status"):
        context.setdefault(key, None if key in ("headline", "comparison", "conformance", "status") else [])
    return _env().get_template("report.html.j2").render(**context)


def render_report(results: Results, label: str | None = None) -> str:
    """The HTML report of one results file."""
    if label is None and results.cases:
        label = ", ".join(dict.fromkeys(str(c.get("server", "")) for c in results.cases))
    run = RunData.from_results(results, label)
    header = results.header
    scenario = (header.get("scenario") or {}).get("name") or header.get("scenario_path") or ""
    is_run = results.kind == "run"
    return _page(
        title=f"wsbench {'report' if is_run else 'conformance'}: {scenario or run.label}".rstrip(": "),
        subtitle=(
            f"{run.label} · {header.get('created', '')} · "
            f"{(results.footer or {}).get('duration_s', run.end_s.max() if run.n else 0):.1f} s · {results.path}"
        ),
        status=results.status,
        warnings=_warnings(run),
        cards=_cards(run.summary) if is_run and run.n else [],
        plots=plots.all_plots([run]) if is_run else [],
        conformance=_conformance([results]),
        runs=[_run_view(run, 0)],
        sources=os.path.basename(results.path),
    )


def render_comparison(comparison: Comparison, verdicts: Sequence[ThresholdVerdict] = ()) -> str:
    """The HTML comparison of several runs: ratio table, overlaid plots, each run's tables."""
    labels = comparison.labels
    rows = []
    for row in comparison.rows:
        ratios = []
        for cell in row.cells[1:]:
            text = format_ratio(cell.ratio)
            if cell.verdict in ("noise", "same"):
                text += f" {NOISE_MARK}"
            if cell.low is not None and cell.high is not None:
                text += f" [{format_ratio(cell.low)[:-1]}–{format_ratio(cell.high)[:-1]}]"
            ratios.append({"text": text, "cls": cell.verdict})
        if row.note:
            winner, winner_cls = row.note, "muted"
        elif row.winner is None:
            winner, winner_cls = f"{NOISE_MARK} equal", "noise"
        elif row.winner_within_noise:
            winner, winner_cls = f"{NOISE_MARK} {labels[row.winner]}", "noise"
        else:
            winner, winner_cls = labels[row.winner], "better"
        rows.append(
            {
                "title": metric_title(row),
                "run_values": [format_value(row.spec.key, c.value) for c in row.cells],
                "ratios": ratios,
                "winner": winner,
                "winner_cls": winner_cls,
            }
        )
    model = {
        "base": labels[0],
        "runs": [{"label": label, "color": plots.color(i)} for i, label in enumerate(labels)],
        "rows": rows,
        "method": comparison.method,
        "verdicts": [
            {
                "expr": v.threshold.expr,
                "run": v.run,
                "observed": format_ratio(v.observed) + (f" {NOISE_MARK}" if v.within_noise else ""),
                "passed": v.passed,
            }
            for v in verdicts
        ],
    }
    scenario = {str((p.header.get("scenario") or {}).get("name") or "") for run in comparison.runs for p in run.parts}
    # each results file gets its own section; repeats of a run are numbered
    files: list[tuple[RunData, int]] = []
    for i, run in enumerate(comparison.runs):
        for k, part in enumerate(run.parts):
            label = run.label if len(run.parts) == 1 else f"{run.label} #{k + 1}"
            files.append((run if len(run.parts) == 1 else RunData.from_results(part, label), i))
    warnings = list(comparison.warnings)  # every file's summary warnings and incomplete status, named
    return _page(
        title=f"wsbench comparison: {' vs '.join(labels)}",
        subtitle=f"scenario {', '.join(sorted(s for s in scenario if s)) or '?'} · baseline {labels[0]}",
        status=None,
        warnings=warnings,
        headline=comparison.headline(),
        comparison=model,
        plots=plots.all_plots(comparison.runs),
        runs=[_run_view(view, i) for view, i in files],
        sources=", ".join(os.path.basename(view.results.path) for view, _ in files),
    )


def write_html(text: str, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ResultsFileError(f"cannot write HTML report {out}: {exc.strerror}") from exc
    return out
