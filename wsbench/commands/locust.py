"""``wsbench locust SCENARIO``: run a scenario with Locust (web UI, headless, or master + local workers).

    wsbench locust scenarios/broadcast.yaml                        # web UI on http://127.0.0.1:8089
    wsbench locust scenarios/broadcast.yaml --headless -o reports/locust.jsonl
    wsbench locust scenarios/broadcast.yaml --workers 2            # a master plus 2 local worker processes
    locust -f "$(wsbench locust --path)" --master ...              # the module, for Locust's own command line

Locust runs in child processes (it monkey-patches the standard library with gevent on import, so it
never runs inside this process); they are stopped by PID at the end. With no ``--url`` the scenario's
target is started (by default the Tornado reference server). In headless mode the scenario's
thresholds give the exit code, as for ``wsbench run``; every run ends by itself when the scenario's
plan is over and is killed if it overruns by a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from wsbench import metrics
from wsbench.errors import EXIT_OK, EXIT_RUN_BROKEN, RunBroken, ServerDied, UsageError
from wsbench.locust.summary_bridge import SUMMARY_FD_ENV
from wsbench.target import free_port

LOCUSTFILE = Path(__file__).resolve().parent.parent / "locust" / "locustfile.py"
TARGET_ENV = "WSBENCH_TARGET"  # the target record for the results header, handed to the Locust master
OVERRUN_S = 60.0
SERVER_GONE_WAIT_S = 10.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "locust",
        help="run a scenario with Locust: web UI with wsbench's numbers, headless, or master + workers",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Exit status (headless): 0 thresholds met, 1 a threshold failed, 2 usage or scenario error, "
        "3 the run broke.",
    )
    p.add_argument("scenario", nargs="?", help="scenario YAML file")
    p.add_argument("--headless", action="store_true", help="no web UI: run the scenario once and exit")
    p.add_argument("-o", "--output", metavar="FILE", help="results file (default reports/locust-<time>.jsonl)")
    p.add_argument("--workers", type=int, default=0, metavar="N", help="start a Locust master and N local workers")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--server", metavar="KIND[:ARGS]", help="reference server to start: tornado or aiohttp")
    target.add_argument("--url", help="a running server on loopback, http://127.0.0.1:PORT")
    target.add_argument("--server-cmd", metavar="COMMAND", help="start this SPEC.md server (SPEC 15)")
    p.add_argument("--web-port", type=int, default=8089, help="web UI port on 127.0.0.1 (default 8089)")
    p.add_argument("--cpu", metavar="CPUS", help="pin the Locust processes to these CPUs, e.g. 1 or 2,3")
    p.add_argument("--server-cpu", metavar="CPUS", help="pin the server wsbench starts to these CPUs, e.g. 0")
    p.add_argument(
        "--no-delivery-events",
        action="store_true",
        help="do not make every delivery a Locust request (saves CPU; wsbench's own numbers are unchanged)",
    )
    p.add_argument("--path", action="store_true", help="print the locustfile's path (for locust -f) and exit")
    metrics.add_arguments(p)  # served by the master (or the single local process)
    p.set_defaults(func=run)



def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def run(args: argparse.Namespace) -> int:
    if args.path:
        print(LOCUSTFILE)
        return EXIT_OK
    if not args.scenario:
        raise UsageError("wsbench locust: give a scenario file (or --path)")
    if args.workers < 0:
        raise UsageError("--workers must be 0 or more")
    from wsbench.core.results import check_writable, default_results_path
    from wsbench.core.scenario_loading import load_scenario
    from wsbench.locust.plan import RunPlan, check_locust_limits
    from wsbench.scenario_target import (
        apply_cli_target,
        ensure_open_files_for,
        parse_cpus,
        start_target,
        target_record,
    )
    from wsbench.target import LOOPBACK_HOSTS

    scenario = load_scenario(args.scenario, args.overrides)
    plan = RunPlan(scenario)  # refuses what the Locust driver cannot run, before anything starts
    check_locust_limits(plan)
    short_drift = scenario.short_drift_warning()
    if short_drift:  # said before the run, as `wsbench run` says it, not only in the threshold's verdict
        print(f"wsbench: warning: {short_drift}", file=sys.stderr, flush=True)
    # the target as `wsbench run` resolves and starts it (same flags, same defaults)
    scenario, extra = apply_cli_target(scenario, args)
    if scenario.target.mode == "url":
        host = (scenario.target.url or "").split("//", 1)[-1].rsplit(":", 1)[0].strip("/")
        if host not in LOOPBACK_HOSTS:
            raise UsageError(f"{scenario.target.url}: only loopback targets are allowed here (127.0.0.1, ::1)")
    own_cpus = parse_cpus(args.cpu, "--cpu")
    server_cpus = parse_cpus(args.server_cpu, "--server-cpu")
    output = Path(args.output) if args.output else default_results_path("locust")
    check_writable(output)  # the master writes it: an unwritable -o is refused before anything starts
    # the server, the master and the workers inherit this process's limit
    ensure_open_files_for(scenario, processes=max(args.workers, 1))
    url, server = start_target(scenario, extra, server_cpus)
    target = target_record(scenario, url, server)

    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    common = [
        "--host", url,
        "--wsbench-scenario", str(args.scenario),
        "--wsbench-set", ";".join(args.overrides),
        "--wsbench-results", str(output),
        "--wsbench-delivery-events", "none" if args.no_delivery_events else "each",
    ]  # fmt: skip
    master = [*base, *common, "--web-host", "127.0.0.1", "--web-port", str(args.web_port)]
    if args.metrics:
        metrics.parse_address(args.metrics)  # a bad address is a usage error here, not in the master's log
        metrics.require_client()
        master += ["--wsbench-metrics", args.metrics, "--wsbench-metrics-linger", args.metrics_linger]
    if args.headless:
        master += ["--headless"]
    workers: list[list[str]] = []
    if args.workers:
        port = free_port()
        master += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
        if args.headless:
            master += ["--expect-workers", str(args.workers)]
        workers = [
            [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)] for _ in range(args.workers)
        ]
    budget = float(scenario.connect.barrier_timeout) + plan.load_duration_s + OVERRUN_S
    if args.metrics:
        budget += metrics.linger_seconds(args.metrics_linger)

    # a full disk: the master hands the whole run's summary over through this pipe (summary_bridge)
    handed = _HandOver()
    env = {**os.environ, TARGET_ENV: json.dumps(target), SUMMARY_FD_ENV: str(handed.write_fd)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(master, env=env, pass_fds=(handed.write_fd,)))
        handed.started()
        procs.extend(subprocess.Popen(argv) for argv in workers)
        if own_cpus:
            for proc in procs:
                os.sched_setaffinity(proc.pid, own_cpus)
        pids = " ".join(str(p.pid) for p in procs[1:])
        said = f"wsbench: Locust pid {procs[0].pid}" + (f", workers {pids}" if pids else "")
        print(said, file=sys.stderr, flush=True)
        if not args.headless:
            print(f"Locust web UI with wsbench's numbers: http://127.0.0.1:{args.web_port}  (Ctrl-C to stop)")
        deadline = time.monotonic() + budget if args.headless else None
        server_gone: float | None = None
        while procs[0].poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                print(f"wsbench: Locust overran the scenario by {OVERRUN_S:g}s; stopping it", file=sys.stderr)
                break
            if server is not None and not server.alive():
                # the master notices lost connections within a few seconds and ends the run as broken
                server_gone = server_gone or time.monotonic()
                if time.monotonic() - server_gone > SERVER_GONE_WAIT_S:
                    break
            if workers and all(p.poll() is not None for p in procs[1:]):
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for i, proc in enumerate(procs):  # the master first: it writes the footer after the workers' final reports
            _stop(proc, grace=30.0 if i == 0 else 10.0)
        server_died = server is not None and not server.alive()
        died_message = server.death_message() if server is not None and server_died else ""
        if server is not None:
            server.stop()
        handed.started()  # the parent's write end is closed whatever happened

    return _report(
        output, master_code=procs[0].returncode if procs else None, server_died=died_message, handed=handed.take()
    )


class _HandOver:
    """The read end of the summary pipe, drained by a thread (a summary can exceed a pipe's buffer)."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()
        self._open = True

    def _drain(self) -> None:
        with os.fdopen(self.read_fd, "rb") as pipe:
            while chunk := pipe.read(65536):
                self._chunks.append(chunk)

    def started(self) -> None:
        """The master holds the write end now: this process closes its own (EOF when the master exits)."""
        if self._open:
            self._open = False
            with contextlib.suppress(OSError):
                os.close(self.write_fd)

    def take(self) -> bytes:
        self._thread.join(timeout=5.0)
        return b"".join(self._chunks)


def _latest(output: Path) -> Path:
    """The results file of the last test: a web UI session writes FILE, then FILE-2, FILE-3, ..."""
    numbered = []
    for p in output.parent.glob(f"{output.stem}-*{output.suffix}"):
        tail = p.name[len(output.stem) + 1 : len(p.name) - len(output.suffix)]
        if tail.isdigit():
            numbered.append((int(tail), p))
    return max(numbered)[1] if numbered else output


def _report(output: Path, master_code: int | None, server_died: str, handed: bytes = b"") -> int:
    from wsbench.locust.summary_bridge import print_handed_over, print_summary

    output = _latest(output)
    if handed:  # the results file could not be written to the end: the master's summary of the whole run
        if server_died:
            print(f"wsbench: {server_died}", file=sys.stderr)
        return print_handed_over(handed, output)
    if not output.exists():
        if server_died:
            raise ServerDied(server_died)
        raise RunBroken(f"Locust wrote no results file (exit code {master_code}); see its output above")
    code = print_summary(output)
    if server_died:
        print(f"wsbench: {server_died}", file=sys.stderr)
        return EXIT_RUN_BROKEN
    return code
