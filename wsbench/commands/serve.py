"""``wsbench serve tornado|aiohttp [server options]``: run a reference server in the foreground."""

from __future__ import annotations

import argparse
import importlib

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


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(REFERENCE_SERVERS[args.server])
    return int(module.main(args.server_args, prog=f"wsbench serve {args.server}") or 0)
