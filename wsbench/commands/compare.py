"""``wsbench compare``: compare runs side by side, from results files or by running a scenario per server.

::

    wsbench compare reports/tornado.jsonl reports/aiohttp.jsonl [--html reports/compare.html]
    wsbench compare scenarios/broadcast.yaml --server tornado --server aiohttp
    wsbench compare scenarios/conversation.yaml --server tornado --server tornado:--no-nodelay
    wsbench compare reports/new.jsonl --baseline reports/baseline.jsonl --threshold 'compare.p99 < 1.1x'

The first run is the baseline (``--baseline FILE`` makes a stored results file the first); ratios are
run / baseline. Exit code: 1 a threshold on a ratio failed; else 3 when a compared run broke, was
interrupted or cut short (the comparison is shown, on what it measured) or left nothing to compare;
2 usage error; 0 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from wsbench.console import make_console
from wsbench.core.results import read_results
from wsbench.errors import EXIT_OK, EXIT_RUN_BROKEN, EXIT_THRESHOLD_FAILED, EXIT_USAGE, RunBroken, UsageError
from wsbench.report.compare import compare_runs, load_runs
from wsbench.report.compare_stats import RESAMPLES
from wsbench.report.compare_terminal import render_comparison
from wsbench.report.compare_thresholds import RatioThreshold, evaluate_thresholds

SCENARIO_SUFFIXES = (".yaml", ".yml")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare runs side by side (results files, or a scenario run once per --server)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="FILE",
        help="results files (.jsonl) to compare, or one scenario (.yaml) to run once per --server",
    )
    p.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="SPEC",
        help="with a scenario: a reference server to run it against, e.g. tornado, aiohttp, "
        "'tornado:--no-nodelay' (repeat; at least two, or one with --baseline)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with a scenario: override a scenario key for every run",
    )
    p.add_argument(
        "--cpu", metavar="CPUS", help="with a scenario: pin wsbench run to these CPUs (as wsbench run --cpu)"
    )
    p.add_argument(
        "--server-cpu",
        metavar="CPUS",
        help="with a scenario: pin each server to these CPUs (as wsbench run --server-cpu)",
    )
    p.add_argument("--baseline", metavar="FILE", help="a stored results file to compare against (the first column)")
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="EXPR",
        help="a limit on a ratio run/baseline, e.g. 'compare.p99 < 1.1x' (repeat); a failed one exits 1",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="with a scenario: run each server N times, interleaved (A B A B ...), and pool the repeats, so "
        "that the noise includes what changes between runs (default 1)",
    )
    p.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="NAME",
        help="names for the results files, in order; files with the same name are pooled as repeats of one run",
    )
    p.add_argument("--html", metavar="OUT", help="also write the comparison as a self-contained HTML file")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON instead of a table")
    p.add_argument("-o", "--output-dir", default="reports", metavar="DIR", help="with a scenario: where results go")
    p.add_argument("--resamples", type=int, default=RESAMPLES, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


def spec_label(spec: str) -> str:
    """``tornado:--no-nodelay`` -> ``tornado --no-nodelay`` (a column name)."""
    kind, _, extra = spec.partition(":")
    return f"{kind} {extra.strip()}".strip()


def spec_labels(specs: list[str]) -> list[str]:
    """Column names for ``--server`` specs; the same spec given twice gets ``(2)``, ``(3)``..."""
    out: list[str] = []
    for spec in specs:
        name = spec_label(spec)
        count = sum(1 for earlier in out if earlier == name or earlier.startswith(f"{name} ("))
        out.append(name if count == 0 else f"{name} ({count + 1})")
    return out


def run_scenario(
    scenario: str, spec: str, sets: list[str], out: Path, console: Console, pinning: Sequence[str] = ()
) -> Path:
    """Run ``wsbench run SCENARIO --server SPEC`` in a child process; the results file it wrote.

    A child process per run keeps each run's event loop, memory and file descriptors apart. Its
    summary (``--json`` on stdout) is not shown: the comparison shows the numbers; its errors (stderr)
    are.
    """
    argv = [sys.executable, "-m", "wsbench.cli", "run", scenario, "--server", spec, "-o", str(out), "-q", "--json"]
    for item in sets:
        argv += ["--set", item]
    argv += list(pinning)
    console.print(f"[bold]running[/] {scenario} against [bold]{spec_label(spec)}[/] -> {out}", highlight=False)
    child = subprocess.run(argv, check=False, stdout=subprocess.PIPE, text=True)
    if child.returncode == EXIT_USAGE:
        raise UsageError(f"wsbench run {scenario} --server {spec} refused its arguments (exit code 2, see above)")
    if not out.exists():
        raise RunBroken(f"wsbench run {scenario} --server {spec} wrote no results (exit code {child.returncode})")
    try:
        summary = json.loads(child.stdout)
        latency = summary.get("latency") or {}
        console.print(
            f"  {summary.get('status')}: p50 {latency.get('p50')} ms, p99 {latency.get('p99')} ms, "
            f"lost {(summary.get('delivery') or {}).get('lost')}, thresholds "
            f"{'met' if summary.get('passed') else 'FAILED'}",
            highlight=False,
        )
    except (ValueError, AttributeError):
        console.print(f"  exit code {child.returncode}", highlight=False)
    return out


def run(args: argparse.Namespace) -> int:
    console = make_console(stderr=args.json)
    scenarios = [i for i in args.inputs if i.lower().endswith(SCENARIO_SUFFIXES)]
    thresholds = [RatioThreshold.parse(expr) for expr in args.threshold]
    labels: list[str | None] = []
    paths: list[str] = []
    if args.baseline:
        paths.append(args.baseline)
        labels.append(None)
    if scenarios:
        if len(args.inputs) != 1:
            raise UsageError("give either one scenario (.yaml) with --server options, or results files (.jsonl)")
        needed = 1 if args.baseline else 2
        if len(args.server) < needed:
            raise UsageError(
                f"comparing {args.inputs[0]} needs at least {needed} --server options "
                "(e.g. --server tornado --server aiohttp)"
            )
        scenario = args.inputs[0]
        if not Path(scenario).is_file():
            raise UsageError(f"{scenario}: no such scenario file")
        if args.repeat < 1:
            raise UsageError(f"--repeat {args.repeat}: expected 1 or more")
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out_dir = Path(args.output_dir)
        names = spec_labels(args.server)
        pinning = [
            *(["--cpu", args.cpu] if args.cpu else []),
            *(["--server-cpu", args.server_cpu] if args.server_cpu else []),
        ]
        for rep in range(1, args.repeat + 1):  # interleaved, so that a slow drift hits every server alike
            for n, (spec, name) in enumerate(zip(args.server, names, strict=True), start=1):
                tag = f"-r{rep}" if args.repeat > 1 else ""
                out = out_dir / f"compare-{Path(scenario).stem}-{stamp}-{n}-{_slug(name)}{tag}.jsonl"
                paths.append(str(run_scenario(scenario, spec, args.set, out, console, pinning)))
                labels.append(name)
    else:
        if args.server or args.set or args.repeat != 1 or args.cpu or args.server_cpu:
            raise UsageError(
                "--server, --set, --repeat, --cpu and --server-cpu apply to a scenario (.yaml), not to results files"
            )
        paths += args.inputs
        labels += [None] * len(args.inputs)
    if len(paths) < 2:
        raise UsageError("a comparison needs at least two runs (two results files, or one and --baseline)")
    if args.label and len(args.label) != len(paths):
        raise UsageError(f"{len(args.label)} --label options for {len(paths)} results files: give one per file")
    if args.label:
        labels = list(args.label)
    results = [read_results(p) for p in paths]
    comparison = compare_runs(load_runs(results, labels), resamples=args.resamples)
    verdicts = evaluate_thresholds(comparison, thresholds)
    if args.json:
        print(json.dumps(comparison.to_dict(verdicts), indent=2))
    else:
        render_comparison(comparison, verdicts, console)
    if args.html:
        from wsbench.report.html import render_comparison as render_html
        from wsbench.report.html import write_html

        out = write_html(render_html(comparison, verdicts), args.html)
        console.print(f"HTML comparison: {out}", highlight=False)
    if any(not v.passed for v in verdicts):
        return EXIT_THRESHOLD_FAILED
    if any(part.status != "completed" for run in comparison.runs for part in run.parts):
        return EXIT_RUN_BROKEN  # compared on what an incomplete run measured: say so to CI
    return EXIT_OK
