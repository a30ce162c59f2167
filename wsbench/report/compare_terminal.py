"""The comparison as a ``rich`` table: runs as columns, then the ratio to the baseline with its
confidence interval, the noise mark and the winner per metric, green for better and red for worse."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from wsbench.console import make_console
from wsbench.report.compare import Cell, Comparison, MetricRow
from wsbench.report.compare_thresholds import ThresholdVerdict

NOISE_MARK = "≈"
STYLE_OF_VERDICT = {"better": "green", "worse": "red", "noise": "dim", "same": "dim", "n/a": "dim"}


def format_value(key: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key == "throughput":
        return f"{value:,.0f}"
    if key == "loss":
        return f"{value:.3f}%" if value else "0"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def format_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "∞"
    if value >= 100:
        return f"{value:,.0f}x"
    if value < 0.1:
        return f"{value:.3f}x"
    return f"{value:.2f}x"


def _ratio_text(cell: Cell) -> Text:
    text = Text(format_ratio(cell.ratio), style=STYLE_OF_VERDICT.get(cell.verdict, ""))
    if cell.verdict in ("noise", "same"):
        text.append(f" {NOISE_MARK}", style="dim")
    if cell.low is not None and cell.high is not None:
        text.append(f" [{format_ratio(cell.low)[:-1]}-{format_ratio(cell.high)[:-1]}]", style="dim")
    return text


def metric_title(row: MetricRow) -> str:
    unit = f" ({row.spec.unit})" if row.spec.unit else ""
    return f"{row.spec.title}{unit} {'↑' if row.spec.better == 'higher' else '↓'}"


def winner_text(row: MetricRow, labels: Sequence[str]) -> Text:
    if row.winner is None:
        return Text(f"{NOISE_MARK} equal" if any(c.value is not None for c in row.cells) else "-", style="dim")
    name = labels[row.winner]
    if row.winner_within_noise:
        return Text(f"{NOISE_MARK} {name}", style="dim")
    return Text(name, style="bold green")


def comparison_table(comparison: Comparison) -> Table:
    labels = comparison.labels
    base = labels[0]
    table = Table(
        title=f"Comparison against {base} (ratio = run / {base})",
        title_style="bold",
        header_style="bold",
        show_lines=False,
    )
    table.add_column("metric")
    for i, label in enumerate(labels):
        table.add_column(escape(label) + (" (base)" if i == 0 else ""), justify="right")
    for label in labels[1:]:
        table.add_column(f"{escape(label)}/{escape(base)}", justify="left")
    table.add_column("winner")
    for row in comparison.rows:
        cells: list[Text | str] = [metric_title(row)]
        for i, cell in enumerate(row.cells):
            text = Text(format_value(row.spec.key, cell.value))
            if row.winner == i and not row.winner_within_noise:
                text.stylize("bold")
            cells.append(text)
        cells += [_ratio_text(cell) for cell in row.cells[1:]]
        cells.append(winner_text(row, labels) if not row.note else Text(row.note, style="dim"))
        table.add_row(*cells)
    table.caption = Text(
        f"↑ higher is better, ↓ lower; [low-high] 95% interval of the ratio; {NOISE_MARK} within noise"
    )
    return table


def thresholds_table(verdicts: Sequence[ThresholdVerdict]) -> Table:
    table = Table(title="Thresholds on ratios", title_style="bold", header_style="bold")
    for name in ("threshold", "run", "ratio", "verdict"):
        table.add_column(name)
    for v in verdicts:
        noise = f" {NOISE_MARK}" if v.within_noise else ""
        table.add_row(
            v.threshold.expr,
            escape(v.run),
            format_ratio(v.observed) + noise,
            Text("passed", style="green") if v.passed else Text("FAILED", style="bold red"),
        )
    return table


def render_comparison(
    comparison: Comparison, verdicts: Sequence[ThresholdVerdict] = (), console: Console | None = None
) -> None:
    console = console or make_console()
    parts: list[object] = [comparison_table(comparison), Text(comparison.headline(), style="bold")]
    parts.append(Text(comparison.method, style="dim"))
    if verdicts:
        parts.append(thresholds_table(verdicts))
    for warning in comparison.warnings:
        parts.append(Text(f"warning: {warning}", style="yellow"))
    console.print(Group(*parts))
