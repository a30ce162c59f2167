"""``wsbench report FILE``: render a results file (finished or cut short) in the terminal, or as JSON.

Everything is computed from the file. A file without a footer (a crash, a kill) still reports, with
a warning. Exit code 0 when the file could be read (use ``--check`` to get the run's verdict instead:
0 thresholds met, 1 a threshold failed, 3 the run broke or was cut short).
"""

from __future__ import annotations

import argparse
import json
import sys

from wsbench.core.results import read_results
from wsbench.core.summary import summarize


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="summarize a results file (terminal, or --json)",
        description="Summarize a results file written by wsbench run (or locust). Computed from the file alone.",
    )
    p.add_argument("file", help="results file (.jsonl)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (keys: docs/summary-json.md)")
    p.add_argument("--html", metavar="OUT", help="also write a self-contained HTML report (plots, tables) to OUT")
    p.add_argument(
        "--check", action="store_true", help="exit with the run's verdict (0 ok, 1 threshold failed, 3 broken)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    results = read_results(args.file)
    if args.html:
        from wsbench.report.html import render_report, write_html

        print(f"HTML report: {write_html(render_report(results), args.html)}", file=sys.stderr)
    if results.kind == "conformance" and not args.json:  # the conformance matrix, as wsbench conform shows it
        from wsbench.conform.table import render as render_matrix
        from wsbench.conform.table import reports_from_records
        from wsbench.console import make_console

        make_console().print(render_matrix(reports_from_records(results.header, results.cases, results.footer)))
        return int((results.footer or {}).get("exit_code", 3)) if args.check else 0
    summary = summarize(results)
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        from wsbench.console import make_console
        from wsbench.report.terminal import render

        render(summary, make_console())
    return int(summary["exit_code"]) if args.check else 0
