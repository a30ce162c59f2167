"""The live view of a running load test (rich): phase progress, rates, latency so far, errors, CPU.

Updated once per interval from the engine's progress callback; drawn on standard error so standard
output keeps only the final report. Shown only on a terminal.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f} ms"


class LiveView:
    def __init__(self, title: str, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.title = title
        self.state: dict[str, Any] = {}
        self.worst_p99: float | None = None
        self._live = Live(self._render(), console=self.console, refresh_per_second=2, transient=True)

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)

    def update(self, progress: dict[str, Any]) -> None:
        self.state = progress
        p99 = progress.get("p99_ms")
        if p99 is not None and progress.get("phase") not in ("connect", "warmup"):
            self.worst_p99 = p99 if self.worst_p99 is None else max(self.worst_p99, p99)
        self._live.update(self._render())

    def _render(self) -> Group:
        s = self.state
        total = float(s.get("total_s") or 0.0)
        elapsed = float(s.get("elapsed_s") or 0.0)
        phase = s.get("phase", "connect")
        head = Text.assemble(("wsbench run ", "bold"), (self.title, "cyan"), "  phase ", (str(phase), "bold magenta"))
        bar = ProgressBar(total=max(total, 1e-9), completed=min(elapsed, total), width=50)
        table = Table.grid(padding=(0, 2))
        table.add_column(style="dim")
        table.add_column(justify="right")
        table.add_column(style="dim")
        table.add_column(justify="right")
        table.add_row(
            "clients",
            f"{s.get('clients', 0)}/{s.get('clients_total', 0)}",
            "send rate",
            f"{s.get('sent_rate', 0.0):,.0f}/s",
        )
        table.add_row(
            "deliveries",
            f"{s.get('delivery_rate', 0.0):,.0f}/s",
            "p50 / p99 (last interval)",
            f"{_ms(s.get('p50_ms'))} / {_ms(s.get('p99_ms'))}",
        )
        table.add_row(
            "errors",
            str(s.get("errors", 0)),
            "generator CPU",
            f"{s.get('cpu_pct', 0.0):.0f}%",
        )
        table.add_row("worst p99 so far", _ms(self.worst_p99), "elapsed", f"{elapsed:,.0f} / {total:,.0f} s")
        return Group(head, bar, table)
