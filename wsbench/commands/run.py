"""``wsbench run SCENARIO``: run a load scenario, write the results file, print the summary.

Exit codes: 0 every threshold met; 1 a threshold failed; 2 usage or scenario error; 3 the run broke
(the server died, or could not be reached); 130 interrupted (Ctrl-C). A run that breaks or is
interrupted still writes everything it measured, and a footer saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from wsbench import metrics
from wsbench.core.results import ResultsWriter, check_writable, default_results_path, library_versions
from wsbench.core.scenario import Scenario
from wsbench.core.scenario_loading import load_scenario
from wsbench.core.summary import summarize
from wsbench.errors import ResultsWriteError, RunBroken
from wsbench.scenario_target import (
    apply_cli_target,
    ensure_open_files_for,
    parse_cpus,
    start_target,
    target_record,
)
from wsbench.target import ServerProcess


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a load scenario against a chat server and write a results file",
        description="Run a load scenario (YAML). Without --server/--url/--server-cmd the scenario's target "
        "is used, by default the Tornado reference server, started by wsbench on a free port.",
        epilog="exit codes: 0 thresholds met, 1 a threshold failed, 2 usage or scenario error, "
        "3 the run broke (server died, could not connect), 130 interrupted",
    )
    p.add_argument("scenario", help="scenario file (YAML), e.g. scenarios/broadcast.yaml")
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--server",
        metavar="KIND[:FLAGS]",
        help="start a reference server: tornado or aiohttp, optionally with flags, e.g. 'tornado:--no-nodelay'",
    )
    target.add_argument("--url", help="an already running server, e.g. http://127.0.0.1:8888")
    target.add_argument(
        "--server-cmd", metavar="CMD", help="start this server command (wsbench adds --host, --port 0 and options)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario key (dotted, e.g. --set clients=500 --set stages.0.rate=2000/s)",
    )
    p.add_argument("-o", "--output", help="results file (default: reports/NAME-TIMESTAMP.jsonl)")
    p.add_argument("--cpu", metavar="CPUS", help="pin wsbench to these CPUs, e.g. 1 or 2,3")
    p.add_argument("--server-cpu", metavar="CPUS", help="pin the server wsbench starts to these CPUs, e.g. 0")
    p.add_argument("-q", "--quiet", action="store_true", help="no live view")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of the rich report")
    metrics.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario, args.overrides)
    scenario, extra = apply_cli_target(scenario, args)
    own_cpus = parse_cpus(args.cpu, "--cpu")
    server_cpus = parse_cpus(args.server_cpu, "--server-cpu")
    if own_cpus:
        os.sched_setaffinity(0, own_cpus)
    out_path = Path(args.output) if args.output else default_results_path(scenario.name)
    check_writable(out_path)  # an unwritable -o is refused before anything starts
    ensure_open_files_for(scenario)  # before the server starts: it inherits the limit
    http_url, server = start_target(scenario, extra, server_cpus)
    try:
        return _run_with_server(args, scenario, http_url, server, out_path)
    finally:
        if server is not None:
            server.stop()


def _run_with_server(
    args: argparse.Namespace, scenario: Scenario, http_url: str, server: ServerProcess | None, out_path: Path
) -> int:
    from wsbench.console import make_console
    from wsbench.drivers.engine import Engine
    from wsbench.report.terminal import render

    console = make_console(stderr=True)
    live_ok = not args.quiet and not args.json and scenario.live and console.is_terminal

    def say(text: str) -> None:
        console.print(f"[dim]wsbench:[/] {text}")

    with (
        metrics.serving(getattr(args, "metrics", None), getattr(args, "metrics_linger", "0s"), say) as live,
        ResultsWriter(out_path) as writer,
    ):
        if live is not None:
            writer.observers.append(live)
        writer.header(
            kind="run",
            scenario_path=str(args.scenario),
            scenario=scenario.resolved(),
            target=target_record(scenario, http_url, server),
            versions=library_versions("picows", "uvloop", "aiohttp", "tornado", "numpy", "hdrhistogram", "pydantic"),
            driver="asyncio",
            client_library="picows",
            clock="time.monotonic_ns, one process",
            interval_s=scenario.interval,
            cpu_affinity=sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        )
        started = time.monotonic()
        view = None
        if live_ok:
            from wsbench.drivers.live import LiveView

            view = LiveView(scenario.name, console)
        engine = Engine(scenario, http_url, writer, server, on_progress=view.update if view else None)
        # a full disk stops the load cleanly; what follows is kept in memory and summarized from there
        writer.on_failure = lambda failure: engine.request_stop("broken", str(failure))
        if not args.json and not live_ok:
            console.print(f"[dim]wsbench:[/] running {scenario.name} against {http_url} -> {out_path}")
        short_drift = scenario.short_drift_warning()
        if short_drift and not args.json:
            from rich.markup import escape
  # said before the run, not only in the threshold's verdict after it
            console.print(f"[yellow]warning:[/] {escape(short_drift)}")
        outcome = _drive(engine, view)
        accounting = engine.final_accounting()
        status, reason = outcome.status, outcome.reason
        if server is not None and status == "broken" and server.alive():
            # connections drop while the process is still exiting: give it a moment to be reaped
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.proc.wait(timeout=1.0)
        if server is not None and not server.alive():
            status, reason = "broken", f"the server died during the run: {server.death_message()}"
        if writer.failure is not None and status != "broken":  # the disk filled during the teardown
            status, reason = "broken", str(writer.failure)
        if status == "broken":
            died = server is not None and not server.alive()
            writer.event(
                "server_exit" if died else "error",
                engine.t_s(),
                error="server_died" if died else "run_broken",
                detail=reason,
            )
        # the footer's verdicts come from the same summary the report computes from this file
        results = writer.read()
        results.footer = {"status": status, "reason": reason, "accounting": accounting}
        summary = summarize(results)
        writer.footer(
            status=status,
            reason=reason,
            duration_s=round(time.monotonic() - started, 3),
            accounting=accounting,
            thresholds=summary["thresholds"],
            exit_code=summary["exit_code"],
        )
        summary = summarize(writer.read())
    if args.json:
        import json

        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        render(summary, make_console())
    if writer.failure is not None:
        failure = writer.failure
        raise ResultsWriteError(
            failure.path,
            failure.error,
            failure.written,
            f"{failure.got}; the summary above is the whole run, from memory; `wsbench report {out_path}` "
            "reads what the file holds, as a run cut short",
        )
    if status == "broken":
        raise RunBroken(f"the run broke: {reason}. What it measured is in {out_path}")
    return int(summary["exit_code"])


def _drive(engine: Any, view: Any) -> Any:
    """Run the engine on uvloop (the loop it was measured on); Ctrl-C and SIGTERM stop it cleanly."""
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        factory = None

    async def main() -> Any:
        loop = asyncio.get_running_loop()

        def stop(sig: int, why: str) -> None:
            engine.request_stop("interrupted", why)
            # a second Ctrl-C is not polite any more: Python's default (KeyboardInterrupt) takes over
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)

        for sig, why in ((signal.SIGINT, "interrupted (Ctrl-C)"), (signal.SIGTERM, "terminated (SIGTERM)")):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop, sig, why)
        return await engine.run()

    with asyncio.Runner(loop_factory=factory) as runner:
        if view is not None:
            with view:
                return runner.run(main())
        return runner.run(main())
