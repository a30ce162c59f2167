"""Thresholds and the terminal summary of a Locust run, from its results file, as for ``wsbench run``.

Nothing here imports Locust: the master process calls :func:`verdicts` before writing the footer,
and ``wsbench locust`` (which never imports Locust) calls :func:`print_summary` after the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wsbench.core.results import read_results
from wsbench.core.summary import summarize


def verdicts(path: str | Path, footer: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Threshold verdicts and exit code for the run in ``path`` once ``footer`` is written.

    The summary is computed from the file as it stands plus the footer about to be written (the
    final accounting is in the footer), exactly as ``wsbench report`` will compute it later.
    """
    results = read_results(path)
    results.footer = {"type": "footer", **footer}
    results.warnings = [w for w in results.warnings if "no footer" not in w]
    summary = summarize(results)
    return summary["thresholds"], int(summary["exit_code"])


def print_summary(path: str | Path) -> int:
    """Render the summary of a finished Locust run; returns the run's exit code."""
    from wsbench.console import make_console
    from wsbench.report.terminal import render  # the same rendering as `wsbench report`

    results = read_results(path)
    summary = summarize(results)
    render(summary, make_console())
    footer = results.footer or {}
    return int(footer.get("exit_code", summary["exit_code"]))
