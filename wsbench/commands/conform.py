"""``wsbench conform``: the conformance gate (SPEC.md clause x server), for people and for CI.

    wsbench conform                                    # the Tornado reference server, started by wsbench
    wsbench conform --server tornado --server aiohttp  # a clause x server matrix
    wsbench conform --url http://127.0.0.1:9000 --junit reports/conformance.xml
    wsbench conform --baseline servers/known-deviations.yaml --only close,limits
    wsbench conform --server-cmd "node my_server.js" --max-message-size 1024 --ping-interval 1 --ping-timeout 1

Exit status: 0 every case passed (or is a known deviation, or was skipped); 1 a case failed
unexpectedly, or a baseline entry passes now; 2 usage error; 3 a server could not be started or died.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wsbench.conform.baseline import (
    Baseline,
    apply_baseline,
    default_baseline_path,
    entry_record,
    framework_warnings,
    load_baseline,
)
from wsbench.conform.cases import BY_ID, CATEGORIES, select
from wsbench.conform.http_client import Endpoint
from wsbench.conform.junit import write_junit
from wsbench.conform.model import PROFILES, Case, CaseResult
from wsbench.conform.options import add_option_arguments, given_options, parse_server_args, resolve
from wsbench.conform.preflight import ensure_open_files_for_gate
from wsbench.conform.runner import Target, TargetReport, run_target
from wsbench.conform.spec import SPEC_VERSION
from wsbench.conform.table import counts, render
from wsbench.console import make_console
from wsbench.core.results import ResultsWriter, default_results_path, library_versions
from wsbench.errors import EXIT_OK, EXIT_RUN_BROKEN, EXIT_THRESHOLD_FAILED, RunBroken, UsageError
from wsbench.target import (
    LOOPBACK_HOSTS,
    command_server_argv,
    free_port,
    option_flags,
    parse_server_spec,
    reference_server_argv,
)


class _AddTarget(argparse.Action):
    """Collects --server/--url/--server-cmd in command-line order (the matrix columns follow it)."""

    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace, value: Any, option: Any = None) -> None:
        items = list(getattr(ns, self.dest, None) or [])
        items.append((self.const, value))
        setattr(ns, self.dest, items)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "conform",
        help="conformance gate: check servers against SPEC.md (JUnit XML for CI)",
        description="The conformance gate: check chat servers against SPEC.md on the wire, case by case, "
        "as a clause x server matrix, with JUnit XML and a results file for CI.",
        epilog="Categories for --only: " + ", ".join(CATEGORIES) + ". Exit status: 0 conformant (known "
        "deviations allowed), 1 unexpected failure or stale baseline entry, 2 usage error, 3 server broke.",
    )
    targets = p.add_argument_group("servers to check (repeatable, in any mix; default: --server tornado)")
    targets.add_argument(
        "--server", dest="targets", action=_AddTarget, const="server", metavar="KIND[:ARGS]",
        help="a reference server wsbench starts: tornado or aiohttp, optionally with server arguments "
        "after a colon, e.g. 'tornado:--no-nodelay'",
    )  # fmt: skip
    targets.add_argument(
        "--server-cmd", dest="targets", action=_AddTarget, const="command", metavar="COMMAND",
        help="start any server that follows SPEC 15 (accepts --host/--port 0 and the server options, prints "
        "'listening on http://HOST:PORT'); lifecycle cases (shutdown) run on it too",
    )  # fmt: skip
    targets.add_argument(
        "--url", dest="targets", action=_AddTarget, const="url", metavar="URL",
        help="a server already running on loopback (http://127.0.0.1:PORT); cases that need to signal the "
        "process are skipped; give the options it was started with",
    )  # fmt: skip
    out = p.add_argument_group("output")
    out.add_argument("--junit", metavar="PATH", help="write JUnit XML here")
    out.add_argument(
        "--results", "-o", metavar="PATH", help="results file (JSON Lines); default reports/conform-<time>.jsonl"
    )
    sel = p.add_argument_group("selection and baseline")
    sel.add_argument(
        "--only", action="append", metavar="LIST",
        help="comma-separated categories, case ids, id prefixes or globs (repeatable)",
    )  # fmt: skip
    sel.add_argument(
        "--baseline", metavar="PATH",
        help="known deviations (default: the known-deviations.yaml shipped with the reference servers)",
    )  # fmt: skip
    sel.add_argument("--no-baseline", action="store_true", help="apply no baseline: every failure counts")
    sel.add_argument(
        "--scenario", metavar="FILE",
        help="take the server options (target.options) from a scenario file, and its target (server, url or "
        "command) when none is given here; options given here win",
    )  # fmt: skip
    sel.add_argument("--list", action="store_true", help="list the cases (with --only: the selected ones) and exit")
    sel.add_argument(
        "--profile", choices=PROFILES, default="chat",
        help="chat: a SPEC.md chat server (default); echo: any WebSocket server that echoes each text and binary "
        "message (RFC 6455 cases only; the SPEC-only ones are skipped)",
    )  # fmt: skip
    sel.add_argument(
        "--ws-path", metavar="PATH",
        help="echo profile: the WebSocket path of a --server-cmd server (default /; a --url gives its own)",
    )  # fmt: skip
    sel.add_argument(
        "--impl", metavar="NAME",
        help="the implementation name baseline entries match (default: /stats 'server', or the target label); "
        "one target only",
    )  # fmt: skip
    sel.add_argument("--concurrency", type=int, default=24, metavar="N", help="cases run at once (default 24)")
    add_option_arguments(p)
    p.set_defaults(func=run, targets=None)


def _label(base: str, used: set[str]) -> str:
    label, n = base, 2
    while label in used:
        label, n = f"{base} #{n}", n + 1
    used.add(label)
    return label


def build_echo_targets(items: Sequence[tuple[str, str]], given: dict[str, Any], ws_path: str | None) -> list[Target]:
    """Echo-profile targets: the options only set expectations (nothing is passed to the server), and
    the size cases run only when --max-message-size is given."""
    used: set[str] = set()
    targets: list[Target] = []
    options = resolve(False, given)
    known = "max_message_size" in given
    if not items:
        raise UsageError("--profile echo needs a target: --url ws://127.0.0.1:PORT/PATH or --server-cmd CMD")
    for mode, value in items:
        if mode == "server":
            raise UsageError(
                f"--server {value}: the reference servers are chat servers; the echo profile checks "
                "--url or --server-cmd targets"
            )
        if mode == "command":
            if not value.strip():
                raise UsageError("--server-cmd is empty")
            path = ws_path or "/"
            port = None
            if "{port}" in value:
                port = free_port()
                argv = shlex.split(value.replace("{port}", str(port)))
            else:
                argv = [*shlex.split(value), "--host", "127.0.0.1", "--port", "0"]
            short = value if len(value) <= 40 else "..." + value[-37:]
            targets.append(
                Target(_label(short, used), "command", options, argv=argv, command=value, profile="echo",
                       ws_path=path, size_known=known, port=port)
            )  # fmt: skip
            continue
        try:
            endpoint = Endpoint.from_url(value)
        except ValueError as exc:
            raise UsageError(f"--url {exc}") from None
        if endpoint.host not in LOOPBACK_HOSTS:
            raise UsageError(f"--url {value}: only loopback servers (127.0.0.1, ::1, localhost) can be checked")
        path = urlsplit(value).path or ws_path or "/"
        targets.append(
            Target(_label(endpoint.host_header + path, used), "url", options, url=endpoint.url, profile="echo",
                   ws_path=path, size_known=known)
        )  # fmt: skip
    return targets


def build_targets(items: Sequence[tuple[str, str]], given: dict[str, Any]) -> list[Target]:
    used: set[str] = set()
    targets: list[Target] = []
    for mode, value in items or [("server", "tornado")]:
        if mode == "server":
            kind, extra = parse_server_spec(value)
            options = resolve(True, given, parse_server_args(extra, f"--server {value}"))
            argv = reference_server_argv(kind, [*option_flags(options.as_flags_dict()), *extra])
            label = _label(kind + (" " + " ".join(extra) if extra else ""), used)
            targets.append(Target(label, "embedded", options, argv=argv, kind=kind))
        elif mode == "command":
            if not value.strip():
                raise UsageError("--server-cmd is empty")
            options = resolve(True, given, parse_server_args(shlex.split(value), "--server-cmd"))
            argv = command_server_argv(value, option_flags(options.as_flags_dict()))
            # the end of a command is what tells variants apart ("... --fault x --base aiohttp")
            short = value if len(value) <= 40 else "..." + value[-37:]
            targets.append(Target(_label(short, used), "command", options, argv=argv, command=value))
        else:
            try:
                endpoint = Endpoint.from_url(value)
            except ValueError as exc:
                raise UsageError(f"--url {exc}") from None
            if endpoint.host not in LOOPBACK_HOSTS:
                raise UsageError(f"--url {value}: only loopback servers (127.0.0.1, ::1, localhost) can be checked")
            options = resolve(False, given)
            targets.append(Target(_label(endpoint.host_header, used), "url", options, url=endpoint.url))
    return targets


def scenario_target(path: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The server options and the target of a scenario file (``wsbench run``'s format)."""
    from wsbench.core.scenario_loading import load_scenario

    target = load_scenario(path).target
    options: dict[str, Any] = {}
    for key, value in target.options.model_dump().items():
        if value is None or key == "cookie_secret":
            continue
        options[key] = tuple(value) if key == "allowed_origin" else value
    if target.url:
        return options, [("url", target.url)]
    if target.command:
        return options, [("command", target.command)]
    return options, [("server", target.server or "tornado")]


def _load_baseline(args: argparse.Namespace) -> Baseline | None:
    if args.no_baseline:
        if args.baseline:
            raise UsageError("--baseline and --no-baseline contradict each other")
        return None
    if args.baseline:
        return load_baseline(args.baseline, BY_ID)
    path = default_baseline_path()
    return load_baseline(path, BY_ID) if path is not None else None


def _list_cases(console: Console, cases: Sequence[Any], given: dict[str, Any]) -> int:
    options = resolve(True, given)
    table = Table(title=f"{len(cases)} conformance cases (expectations with the gate's default options)")
    for name in ("case", "clause", "Autobahn", "profiles", "what", "expected"):
        table.add_column(name, no_wrap=name in ("case", "Autobahn", "profiles"))
    for case in cases:
        table.add_row(
            case.id, escape(f"SPEC {case.clause}" + (f"; {case.rfc}" if case.rfc else "")), case.autobahn or "",
            ",".join(case.profiles), escape(case.title), escape(case.expected_text(options)),
        )  # fmt: skip
    console.print(table)
    return EXIT_OK


def _check_target(
    target: Target,
    cases: Sequence[Case],
    concurrency: int,
    baseline: Baseline | None,
    writer: ResultsWriter,
    warnings: list[str],
    err: Console,
) -> TargetReport:
    """Run the cases on one target, writing each result (baseline applied) as soon as it is known, so
    Ctrl-C or a crash keeps every verdict reached so far."""
    err.print(f"[bold]checking {escape(target.label)}[/] against SPEC.md v{SPEC_VERSION}: {len(cases)} cases ...")
    t0 = time.perf_counter()
    done = 0
    status = err.status("", spinner="dots") if err.is_terminal else None

    def on_result(result: CaseResult, report: TargetReport) -> None:
        nonlocal done
        warnings.extend(apply_baseline([result], report.impl, baseline))
        writer.case(**result.record())
        done += 1
        if status is not None:
            status.update(f"{escape(target.label)}: {done}/{len(cases)} cases, last {escape(result.id)}")

    try:
        if status is not None:
            status.start()
        return run_target(target, cases, concurrency=concurrency, on_result=on_result)
    except (RunBroken, OSError) as exc:
        report = TargetReport(target=target, impl=target.kind or target.label, url=target.url or "")
        report.broken = str(exc)
        report.duration_s = time.perf_counter() - t0
        return report
    finally:
        if status is not None:
            status.stop()


def run(args: argparse.Namespace) -> int:
    console = make_console()  # CI logs: COLUMNS or 200 columns, lines never wrapped (wsbench.console)
    err = make_console(stderr=True, highlight=False)
    given = given_options(args)
    items = list(args.targets or [])
    if args.scenario:
        from_scenario, scenario_items = scenario_target(args.scenario)
        given = {**from_scenario, **given}
        items = items or scenario_items
    cases = select(args.only, profile=args.profile)
    if args.list:
        return _list_cases(console, cases, given)
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if args.profile == "echo":
        targets = build_echo_targets(items, given, args.ws_path)
    else:
        if args.ws_path:
            raise UsageError("--ws-path is for the echo profile (the chat profile checks /chat)")
        targets = build_targets(items, given)
    if args.impl:
        if len(targets) != 1:
            raise UsageError("--impl names one target's implementation: give one target with it")
        targets[0].impl = args.impl
    ensure_open_files_for_gate(targets)
    baseline = _load_baseline(args)
    results_path = Path(args.results) if args.results else default_results_path("conform")
    started = time.perf_counter()
    reports: list[TargetReport] = []
    warnings: list[str] = []
    with ResultsWriter(results_path) as writer:
        writer.header(
            kind="conformance",
            spec_version=SPEC_VERSION,
            target=targets[0].record(),
            targets=[t.record() for t in targets],
            versions=library_versions("tornado", "aiohttp", "h11"),
            cases=[c.id for c in cases],
            only=args.only,
            baseline=baseline.path if baseline else None,
            baseline_entries=[entry_record(d) for d in baseline.deviations] if baseline else [],
        )
        for target in targets:
            report = _check_target(target, cases, args.concurrency, baseline, writer, warnings, err)
            warnings += framework_warnings(baseline, report.impl, report.framework_version)
            if report.broken:
                writer.event("server_exit", time.perf_counter() - started, server=target.label, detail=report.broken)
            reports.append(report)
        duration = time.perf_counter() - started
        any_fail = any(r.verdict == "fail" for rep in reports for r in rep.results)
        broken = any(rep.broken for rep in reports)
        code = EXIT_RUN_BROKEN if broken else EXIT_THRESHOLD_FAILED if any_fail else EXIT_OK
        writer.footer(
            status="broken" if broken else "completed",
            reason="; ".join(rep.broken for rep in reports if rep.broken) or None,
            duration_s=round(duration, 3),
            summary={
                rep.target.label: {**counts(rep.results), "duration_s": round(rep.duration_s, 3), "impl": rep.impl}
                for rep in reports
            },
            exit_code=code,
        )
    if writer.failure is not None:  # a full disk: every verdict is still in memory, and shown below
        code = EXIT_RUN_BROKEN
    shown = [rep for rep in reports if rep.results]  # a target that ran no case is told once, below
    if shown:
        console.print(render(shown))
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    if args.junit:
        path = write_junit(args.junit, reports, duration)
        err.print(f"JUnit XML: {escape(str(path))}")
    err.print(f"results: {escape(str(results_path))} ({duration:.1f} s)")
    if code == EXIT_THRESHOLD_FAILED:
        stale = sum(1 for rep in reports for r in rep.results if r.stale_baseline)
        fails = sum(1 for rep in reports for r in rep.results if r.verdict == "fail") - stale
        parts = [f"{fails} case(s) failed"] if fails else []
        if stale:
            parts.append(f"{stale} baseline entr{'y' if stale == 1 else 'ies'} now pass(es)")
        err.print(f"[bold red]not conformant:[/] {', '.join(parts)}")
    elif code == EXIT_RUN_BROKEN and any(rep.broken for rep in reports):
        err.print("[bold red]the run broke:[/] " + escape("; ".join(rep.broken or "" for rep in reports if rep.broken)))
    if writer.failure is not None:
        err.print(f"[bold red]the run broke:[/] {escape(str(writer.failure))}; the verdicts above are all there")
    return code


if __name__ == "__main__":  # pragma: no cover
    from wsbench.cli import main

    sys.exit(main(["conform", *sys.argv[1:]]))
