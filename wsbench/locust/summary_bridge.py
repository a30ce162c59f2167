"""Thresholds and the terminal summary of a Locust run, from its results file, as for ``wsbench run``.

Nothing here imports Locust: the master process calls :func:`verdicts` before writing the footer,
and ``wsbench locust`` (which never imports Locust) calls :func:`print_summary` after the run.

A full disk: the master's results file is cut back to its last whole record and the rest of the run
is kept in the master's memory (:class:`~wsbench.core.results.ResultsWriter`), so the master hands the
whole run's summary to ``wsbench locust`` through a pipe (:data:`SUMMARY_FD_ENV`, :func:`hand_over`),
which prints it as ``wsbench run`` does (:func:`print_handed_over`); a master started by hand prints
it itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from wsbench.core.results import Results, ResultsWriter, read_results
from wsbench.core.summary import summarize
from wsbench.errors import ResultsWriteError

#: the file descriptor (in the master's environment) of the pipe ``wsbench locust`` reads a summary from
SUMMARY_FD_ENV = "WSBENCH_SUMMARY_FD"


def verdicts(results: str | Path | Results, footer: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Threshold verdicts and exit code for the run in ``results`` (a path, or what a writer holds)
    once ``footer`` is written.

    The summary is computed from the file as it stands plus the footer about to be written (the
    final accounting is in the footer), exactly as ``wsbench report`` will compute it later.
    """
    if not isinstance(results, Results):
        results = read_results(results)
    results.footer = {"type": "footer", **footer}
    results.warnings = [w for w in results.warnings if "no footer" not in w]
    summary = summarize(results)
    return summary["thresholds"], int(summary["exit_code"])


def hand_over(writer: ResultsWriter) -> None:
    """After a failed write (a full disk): the whole run's summary, from the writer's memory, to
    ``wsbench locust`` (or, for a master started by hand, printed here)."""
    failure = writer.failure
    if failure is None:
        return
    summary = summarize(writer.read())
    fd = os.environ.get(SUMMARY_FD_ENV)
    if not fd:
        from wsbench.console import make_console
        from wsbench.report.terminal import render

        render(summary, make_console())
        return
    message = {
        "summary": summary,
        "failure": {"path": failure.path, "error": failure.error, "written": failure.written, "got": failure.got},
    }
    data = json.dumps(message, ensure_ascii=False, default=str).encode()
    with os.fdopen(int(fd), "wb") as pipe:
        pipe.write(data)


def print_handed_over(data: bytes, output: Path) -> int:
    """Print the whole run's summary a master handed over (:func:`hand_over`); raises the write error."""
    from wsbench.console import make_console
    from wsbench.report.terminal import render

    message = json.loads(data)
    render(message["summary"], make_console())
    f = message["failure"]
    raise ResultsWriteError(
        f["path"],
        f["error"],
        int(f["written"]),
        f"{f['got']}; the summary above is the whole run, from memory; `wsbench report {output}` reads what "
        "the file holds, as a run cut short",
    )


def print_summary(path: str | Path) -> int:
    """Render the summary of a finished Locust run; returns the run's exit code."""
    from wsbench.console import make_console
    from wsbench.report.terminal import render  # the same rendering as `wsbench report`

    results = read_results(path)
    summary = summarize(results)
    render(summary, make_console())
    footer = results.footer or {}
    return int(footer.get("exit_code", summary["exit_code"]))
