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
import numpy as np
import yaml

from wsbench import __version__
from wsbench.core import histograms
from wsbench.core.results import Results
from wsbench.errors import ResultsFileError
from wsbench.report import plots
from wsbench.report.compare import Comparison, ThresholdVerdict
from wsbench.report.compare_terminal import NOISE_MARK, format_ratio, format_value, metric_title
from wsbench.report.rundata import RunData

HISTOGRAM_ROWS = (
    ("latency", "latency (corrected)"),
    ("latency_uncorrected", "latency (uncorrected)"),
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


def _percentile_table(results: Results) -> TableView:
    rows: list[list[Any]] = []
    everything = sorted({str(r.get("phase", "")) for r in results.intervals})
    for name, title in HISTOGRAM_ROWS:
        # connect times are recorded while clients connect, before the measured phases begin
        h = results.histogram(name, phases=everything if name == "connect" else None)
        s = histograms.summary_ms(h)
        if not s["count"]:
            continue
        rows.append([title, _count(s["count"]), *(_ms(s[k]) for k in PERCENTILE_COLUMNS)])  # type: ignore[arg-type]
    return TableView(
        "Latency percentiles (ms)",
        ["histogram", "count", "p50", "p90", "p99", "p99.9", "p99.99", "max"],
        rows,
        empty="no histogram holds a value",
    )


def _threshold_table(results: Results) -> TableView:
    rows = []
    for t in (results.footer or {}).get("thresholds") or []:
        observed = t.get("observed")
        unit = t.get("unit") or ""
        shown = f"{observed:g} {unit}".strip() if isinstance(observed, int | float) else "-"
        verdict = "passed" if t.get("passed") else "failed"
        rows.append([t.get("expr", ""), shown, {"cls": "", "badge": verdict, "text": verdict}])
    empty = "no thresholds" if results.footer else "unknown: the run was cut short before its verdicts"
    return TableView("Thresholds", ["threshold", "observed", "verdict"], rows, left=1, empty=empty)


def _accounting_table(results: Results, run: RunData) -> TableView:
    accounting = (results.footer or {}).get("accounting")
    rows: list[list[Any]] = [["messages sent (measured)", _count(results.counter("sent"))]]
    if accounting:
        for key in ("expected", "delivered", "lost", "duplicated", "reordered", "pairs", "pairs_with_loss"):
            if key in accounting:
                rows.append(
                    [
                        f"deliveries {key}" if key not in ("pairs", "pairs_with_loss") else key.replace("_", " "),
                        _count(accounting[key]),
                    ]
                )
        title = "Delivery accounting"
    else:
        for key in ("expected", "delivered", "duplicated", "reordered"):
            rows.append([f"deliveries {key}", _count(results.counter(key))])
        title = "Delivery accounting (from the intervals: losses are only final after the drain, which is missing)"
    rates = [
        (c, run.counters[c][run.sending].sum() / run.duration_s[run.sending].sum())
        for c in ("sent", "delivered")
        if run.duration_s[run.sending].sum() > 0
    ]
    for counter, value in rates:
        rows.append([f"{counter} per second (while sending)", f"{value:,.1f}"])
    return TableView(title, ["", "value"], rows)


def _events_table(results: Results) -> TableView:
    groups: Counter[tuple[str, str, str]] = Counter()
    example: dict[tuple[str, str, str], str] = {}
    for e in results.events:
        kind = str(e.get("kind", ""))
        if kind not in ("close", "error", "server_exit", "warning"):
            continue
        code = "" if e.get("code") is None else str(e.get("code"))
        key = (kind, code, str(e.get("reason") or ""))
        groups[key] += 1
        example.setdefault(key, str(e.get("detail") or ""))
    rows = [[kind, code, reason, example[(kind, code, reason)], n] for (kind, code, reason), n in groups.most_common()]
    for interval_total in ("connect_errors", "errors", "closes"):
        n = results.counter(interval_total, phases=sorted({str(r.get("phase")) for r in results.intervals}))
        if n:
            rows.append(["counter", "", interval_total.replace("_", " "), "sum over all intervals", n])
    return TableView(
        "Close codes, errors and warnings",
        ["kind", "code", "reason", "detail (first)", "count"],
        rows,
        left=4,
        empty="no close codes, errors or warnings",
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
        view.tables += [
            _threshold_table(results),
            _percentile_table(results),
            _accounting_table(results, run),
            _events_table(results),
        ]
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


def _cards(results: Results, run: RunData) -> list[dict[str, str]]:
    latency = histograms.summary_ms(results.histogram("latency"))
    cards = []
    sending = run.duration_s[run.sending].sum()
    if sending > 0:
        cards.append({"key": "deliveries/s", "value": f"{run.counters['delivered'][run.sending].sum() / sending:,.0f}"})
    for key, title in (("p50", "p50"), ("p99", "p99"), ("p99_9", "p99.9"), ("max", "max")):
        cards.append({"key": f"latency {title} (ms)", "value": _ms(latency[key])})  # type: ignore[arg-type]
    accounting = (results.footer or {}).get("accounting") or {}
    cards.append({"key": "lost", "value": _count(accounting["lost"]) if "lost" in accounting else "unknown"})
    all_phases = sorted({str(r.get("phase")) for r in results.intervals})
    errors = results.counter("errors", all_phases) + results.counter("connect_errors", all_phases)
    cards.append({"key": "errors", "value": _count(errors)})
    if run.has_samples("generator", "cpu_pct"):
        cards.append({"key": "generator CPU max", "value": f"{np.nanmax(run.generator['cpu_pct']):.0f}%"})
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


def _warnings(results: Results, label: str | None = None) -> list[str]:
    prefix = f"{label}: " if label else ""
    out = [prefix + w for w in results.warnings]
    footer = results.footer or {}
    if footer.get("status") in ("broken", "interrupted"):
        out.append(
            f"{prefix}the run {'broke' if footer['status'] == 'broken' else 'was interrupted'}"
            f"{': ' + str(footer.get('reason')) if footer.get('reason') else ''}"
        )
    for e in results.events_of("warning"):
        out.append(f"{prefix}{e.get('detail') or e.get('reason') or 'warning'}")
    return out


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
        warnings=_warnings(results),
        cards=_cards(results, run) if is_run and run.n else [],
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
    scenario = {str((run.results.header.get("scenario") or {}).get("name") or "") for run in comparison.runs}
    warnings = list(comparison.warnings)
    for run in comparison.runs:
        warnings += [w for w in _warnings(run.results, run.label) if w.split(": ", 1)[-1] not in run.results.warnings]
    return _page(
        title=f"wsbench comparison: {' vs '.join(labels)}",
        subtitle=f"scenario {', '.join(sorted(s for s in scenario if s)) or '?'} · baseline {labels[0]}",
        status=None,
        warnings=warnings,
        headline=comparison.headline(),
        comparison=model,
        plots=plots.all_plots(comparison.runs),
        runs=[_run_view(run, i) for i, run in enumerate(comparison.runs)],
        sources=", ".join(os.path.basename(run.results.path) for run in comparison.runs),
    )


def write_html(text: str, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ResultsFileError(f"cannot write HTML report {out}: {exc.strerror}") from exc
    return out
