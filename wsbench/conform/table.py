"""The terminal report: a ``rich`` table, clause x server, grouped by category."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from wsbench.conform.cases import CATEGORIES
from wsbench.conform.model import CaseResult
from wsbench.conform.options import ServerOptions
from wsbench.conform.runner import Target, TargetReport
from wsbench.conform.spec import SPEC_VERSION

STYLE = {
    "pass": "green",
    "non-strict": "dark_orange",
    "informational": "blue",
    "fail": "bold red",
    "deviation": "yellow",
    "skipped": "dim",
}
LABEL = {
    "pass": "pass",
    "non-strict": "non-strict",
    "informational": "informational",
    "fail": "FAIL",
    "deviation": "known deviation",
    "skipped": "skipped",
}


def _cell(result: CaseResult | None) -> Text:
    if result is None:
        return Text("—", style="dim")
    text = Text(LABEL[result.verdict], style=STYLE[result.verdict])
    if result.observed:
        text.append("  " + result.observed, style="default" if result.verdict != "skipped" else "dim")
    if result.reason:
        text.append(f"\n{result.reason}", style="italic " + STYLE[result.verdict])
    return text


def counts(results: Sequence[CaseResult]) -> dict[str, int]:
    out = {"pass": 0, "non-strict": 0, "informational": 0, "fail": 0, "deviation": 0, "skipped": 0}
    for r in results:
        out[r.verdict] += 1
    return out


def summary_line(report: TargetReport) -> Text:
    c = counts(report.results)
    line = Text(f"{report.target.label}" + (f" ({report.url})" if report.url else "") + ": ", style="bold")
    line.append(f"{c['pass']} pass", style=STYLE["pass"])
    line.append(", ")
    for extra in ("non-strict", "informational"):
        if c[extra]:
            line.append(f"{c[extra]} {extra}", style=STYLE[extra])
            line.append(", ")
    line.append(f"{c['fail']} fail", style=STYLE["fail"] if c["fail"] else "default")
    line.append(", ")
    line.append(f"{c['deviation']} known deviation(s)", style=STYLE["deviation"] if c["deviation"] else "default")
    line.append(f", {c['skipped']} skipped in {report.duration_s:.1f} s")
    if report.broken:
        line.append(f"\n  the run broke: {report.broken}", style=STYLE["fail"])
    return line


def render(reports: Sequence[TargetReport]) -> Group:
    """The matrix: one row per case, one column per server, categories as sections."""
    title = f"wsbench conform: SPEC.md v{SPEC_VERSION}"
    table = Table(title=title, show_lines=False, expand=True, title_style="bold")
    table.add_column("case", no_wrap=True, style="cyan")
    table.add_column("clause", no_wrap=True)
    table.add_column("expected", ratio=2)
    for report in reports:
        table.add_column(report.target.label, ratio=3)
    by_server = [{r.id: r for r in report.results} for report in reports]
    ordered: list[CaseResult] = []
    seen: set[str] = set()
    for report in reports:
        for r in report.results:
            if r.id not in seen:
                seen.add(r.id)
                ordered.append(r)
    for category in CATEGORIES:
        rows = [r for r in ordered if r.category == category]
        if not rows:
            continue
        table.add_section()
        table.add_row(Text(category, style="bold magenta"), "", "", *["" for _ in reports])
        for r in rows:
            clause = f"SPEC {r.clause}" + (f"\n{r.rfc}" if r.rfc else "")
            clause += f"\nAutobahn {r.autobahn}" if r.autobahn else ""
            table.add_row(r.id, clause, escape(r.expected), *[_cell(results.get(r.id)) for results in by_server])
    return Group(table, *[summary_line(report) for report in reports])


def print_report(reports: Sequence[TargetReport], console: Console | None = None) -> None:
    (console or Console()).print(render(reports))


def reports_from_records(
    header: dict[str, Any], cases: Sequence[dict[str, Any]], footer: dict[str, Any] | None
) -> list[TargetReport]:
    """The matrix of a results file (``wsbench report``): one report per server, in file order."""
    targets = {str(t.get("label")): t for t in header.get("targets") or []}
    summary = (footer or {}).get("summary") or {}
    fields = set(CaseResult.__dataclass_fields__)
    by_server: dict[str, list[CaseResult]] = {}
    for record in cases:
        result = CaseResult(**{k: v for k, v in record.items() if k in fields})
        by_server.setdefault(result.server, []).append(result)
    reports = []
    for label, results in by_server.items():
        t = targets.get(label, {})
        target = Target(label, t.get("mode") or "url", ServerOptions(), profile=t.get("profile") or "chat")
        info = summary.get(label) or {}
        report = TargetReport(target, str(info.get("impl") or label), str(t.get("url") or ""), results)
        report.duration_s = float(info.get("duration_s") or 0.0)
        reports.append(report)
    return reports
