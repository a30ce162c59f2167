"""``wsbench serve tornado|aiohttp [server options]``: run a reference server in the foreground."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from wsbench_servers.options import DEFAULT_MAX_CONNECTIONS

from wsbench.fdlimit import UNLIMITED, current, ensure_open_files, needed_for_server
from wsbench.target import REFERENCE_SERVERS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run a reference chat server (SPEC.md) in the foreground",
        description="Run a reference chat server. Server options follow the server name; "
        "see `wsbench serve tornado --help`.",
        add_help=False,
    )
    p.add_argument("server", choices=sorted(REFERENCE_SERVERS), help="which implementation")
    p.add_argument("server_args", nargs=argparse.REMAINDER, help="options passed to the server")
    p.set_defaults(func=run)


def max_connections_of(server_args: Sequence[str]) -> int:
    """The ``--max-connections`` among the server's options (a bad value is left to the server to refuse)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--max-connections", default=str(DEFAULT_MAX_CONNECTIONS))
    known, _ = parser.parse_known_args(list(server_args))
    try:
        return max(int(known.max_connections), 1)
    except ValueError:
        return DEFAULT_MAX_CONNECTIONS


def run(args: argparse.Namespace) -> int:
    if not {"-h", "--help"} & set(args.server_args):
        limit = max_connections_of(args.server_args)
        needed = needed_for_server(limit)
        _, hard = current()
        fits = hard - (needed - limit) if hard != UNLIMITED else limit
        default = "" if "--max-connections" in " ".join(args.server_args) else " (the default)"
        ensure_open_files(
            needed,
            f"the {args.server} server with --max-connections {limit:,}{default}",
            fewer=f"--max-connections {fits}" if 1 <= fits < limit else "",
        )
    module = importlib.import_module(REFERENCE_SERVERS[args.server])
    return int(module.main(args.server_args, prog=f"wsbench serve {args.server}") or 0)
