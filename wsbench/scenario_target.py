"""The scenario's target as the command line sets it, shared by ``wsbench run`` and ``wsbench locust``.

``--server`` / ``--url`` / ``--server-cmd`` over the scenario's ``target``; starting the target
(pinned with ``--server-cpu``); ``--cpu`` lists; and the ``target`` record of a results header.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
from typing import Any

from wsbench.core.scenario import Scenario
from wsbench.errors import UsageError
from wsbench.fdlimit import UNLIMITED, OpenFiles, current, ensure_open_files, needed_for_clients
from wsbench.target import (
    ServerProcess,
    command_server_argv,
    option_flags,
    parse_server_spec,
    reference_server_argv,
    start_server,
)


def parse_cpus(text: str | None, flag: str) -> set[int] | None:
    """``--cpu 1``, ``0,2`` or ``2-3`` as a set of CPU numbers of this machine (``None`` when not given)."""
    if not text:
        return None
    out: set[int] = set()
    try:
        for part in text.split(","):
            if "-" in part:
                a, b = part.split("-", 1)
                out.update(range(int(a), int(b) + 1))
            elif part.strip():
                out.add(int(part))
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected CPU numbers such as 1 or 0,2 or 2-3") from None
    if not out or not out <= set(range(os.cpu_count() or 1)):
        raise UsageError(f"{flag} {text!r}: this machine has CPUs 0-{(os.cpu_count() or 1) - 1}")
    return out


def apply_cli_target(scenario: Scenario, args: argparse.Namespace) -> tuple[Scenario, list[str]]:
    """The scenario with --server/--url/--server-cmd applied; and extra server flags from --server."""
    extra: list[str] = []
    t = scenario.target
    if getattr(args, "server", None):
        kind, extra = parse_server_spec(args.server)
        t = t.model_copy(update={"server": kind, "url": None, "command": None})
    elif getattr(args, "url", None):
        url = args.url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"--url {args.url!r}: expected http://HOST:PORT")
        t = t.model_copy(update={"server": None, "url": url, "command": None})
    elif getattr(args, "server_cmd", None):
        t = t.model_copy(update={"server": None, "url": None, "command": args.server_cmd})
    elif t.mode == "embedded" and t.server is None:
        t = t.model_copy(update={"server": "tornado"})
    return scenario.model_copy(update={"target": t}), extra


def ensure_open_files_for(scenario: Scenario, processes: int = 1) -> OpenFiles:
    """Raise the open-file limit for this run (clients, connections in flight, the server wsbench starts),
    or refuse before anything starts (:mod:`wsbench.fdlimit`). ``processes``: load processes sharing the
    clients (Locust workers). The server wsbench starts inherits the limit and holds every client."""
    clients = scenario.clients
    per_process = math.ceil(clients / max(processes, 1))
    churn = scenario.churn
    # replacements connect outside the connect phase's window; their predecessors may still be closing
    in_flight = min(scenario.connect.concurrency, clients) + (min(churn.max or clients, 64) if churn else 0)
    t = scenario.target
    starts_server = t.mode != "url"
    counted = clients if starts_server else per_process
    needed = needed_for_clients(counted, in_flight)
    load = f"{per_process:,} clients in each of {processes} processes" if processes > 1 else f"{clients:,} clients"
    server = f"the {t.server or 'tornado'} reference server" if t.mode == "embedded" else f"`{t.command}`"
    against = f" against {server} (started by wsbench, with the same limit)" if starts_server else ""
    what = f"a run of {load} (and up to {in_flight} connecting at once){against}"
    _, hard = current()
    fits = hard - (needed - counted) if hard != UNLIMITED else clients
    fits = fits * (1 if starts_server else max(processes, 1))
    fewer = f"--set clients={fits}" if 2 <= fits < clients else ""
    return ensure_open_files(needed, what, fewer=fewer)


def start_target(
    scenario: Scenario, extra: list[str], server_cpus: set[int] | None
) -> tuple[str, ServerProcess | None]:
    """Start the scenario's server (unless it is a URL); returns its http URL and the process."""
    t = scenario.target
    if t.mode == "url":
        assert t.url is not None
        return t.url.rstrip("/"), None
    flags = option_flags(t.options.flags())
    if t.mode == "command":
        assert t.command is not None
        argv = command_server_argv(t.command, [*flags, *extra])
        label = t.command
    else:
        argv = reference_server_argv(t.server or "tornado", [*flags, *extra])
        label = f"{t.server} reference server"
    server = start_server(argv, label=label)
    if server_cpus:
        try:
            os.sched_setaffinity(server.pid, server_cpus)
        except OSError as exc:
            server.stop()
            raise UsageError(f"--server-cpu: cannot pin pid {server.pid}: {exc}") from None
    return server.url, server


def target_record(scenario: Scenario, http_url: str, server: ServerProcess | None) -> dict[str, Any]:
    """The results header's ``target`` (docs/results-format.md)."""
    t = scenario.target
    return {
        "mode": t.mode,
        "server": t.server if t.mode == "embedded" else None,
        "url": http_url,
        "command": shlex.join(server.argv) if server is not None else None,
        "pid": server.pid if server is not None else None,
        "options": t.options.flags(),
    }
