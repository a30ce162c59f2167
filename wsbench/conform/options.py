"""The server options a conformance run checks against (SPEC 15.1), and how they reach a server.

The same values do two jobs: they are passed as flags to a server wsbench starts, and they are the
expectations of the cases (``max_message_size`` bytes pass, one more closes with 1009; pings every
``ping_interval`` seconds...). For a server given by ``--url`` they only set the expectations, so they
must match how that server was started.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wsbench_servers.options import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_SEND_BUFFER_LIMIT,
    OPTION_TYPES,
)

from wsbench.errors import UsageError


@dataclass(frozen=True)
class ServerOptions:
    """SPEC 15.1 options that cases depend on; defaults are SPEC's (``wsbench_servers.options``, the one
    definition of the options, their defaults and their accepted values)."""

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ping_interval: float = DEFAULT_PING_INTERVAL
    ping_timeout: float = DEFAULT_PING_TIMEOUT
    nodelay: bool = True
    allowed_origin: tuple[str, ...] = ()  # SPEC 6.3 canonical entries (``scheme://host:port``), see resolve()
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    send_buffer_limit: int = DEFAULT_SEND_BUFFER_LIMIT
    compression: bool = False

    def replace(self, **changes: Any) -> ServerOptions:
        return dataclasses.replace(self, **changes)

    def as_flags_dict(self) -> dict[str, object]:
        """For :func:`wsbench.target.option_flags` (``compression`` only when on: it is an extension)."""
        out: dict[str, object] = {
            "max_message_size": self.max_message_size,
            "ping_interval": _num(self.ping_interval),
            "ping_timeout": _num(self.ping_timeout),
            "nodelay": self.nodelay,
            "allowed_origin": list(self.allowed_origin),
            "max_connections": self.max_connections,
            "send_buffer_limit": self.send_buffer_limit,
        }
        if self.compression:
            out["compression"] = True
        return out

    def as_record(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "allowed_origin": list(self.allowed_origin)}


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


#: What wsbench uses when it starts the server itself and the user did not say otherwise: short pings
#: and small limits, so that the ping, slow-consumer and max-connections cases finish in seconds.
GATE_DEFAULTS: Mapping[str, object] = {
    "ping_interval": 1.0,
    # 2 s, not 1: every client of every case must pong in time, even while the gate process is busy
    "ping_timeout": 2.0,
    # 64: 48 connections for the concurrent cases (75 %), so that 24 of them run at once (runner.py)
    "max_connections": 64,
    # above one max-size frame (64 KiB + header), or every receiver of a 64 KiB message is "slow"
    "send_buffer_limit": 262144,
    "allowed_origin": ("https://chat.example",),
}

OPTION_NAMES = tuple(f.name for f in dataclasses.fields(ServerOptions))


# the values each option accepts: the servers' own parsers (SPEC 15.1), not a copy
_size = OPTION_TYPES["max_message_size"]
_connections = OPTION_TYPES["max_connections"]
_seconds = OPTION_TYPES["ping_interval"]


#: SPEC 6.3: an allow-list entry as the servers read it, with its port written out
#: (``https://Chat.example/`` -> ``https://chat.example:443``), so that what a case expects the server
#: to allow is what SPEC 6.3 says it allows.
_origin = OPTION_TYPES["allowed_origin"]


def canonical_origins(values: Sequence[str]) -> tuple[str, ...]:
    """Allow-list entries from any source (flags, a scenario, the gate's defaults) in the servers' one
    form, each once."""
    out = []
    for value in values:
        try:
            out.append(_origin(value))
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--allowed-origin {exc}") from None
    return tuple(dict.fromkeys(out))


def add_option_arguments(parser: argparse.ArgumentParser, *, defaults_none: bool = True) -> None:
    """The server options as flags (``--max-message-size`` ...). With ``defaults_none`` an option the
    user did not give stays ``None``, so the caller can tell "not given" from "given the default"."""
    d = (lambda v: None) if defaults_none else (lambda v: v)
    base = ServerOptions()

    def both(name: str) -> str:
        spec, started = getattr(base, name), GATE_DEFAULTS.get(name, getattr(base, name))
        return f"(SPEC default {_num(spec)}; servers wsbench starts get {_num(started)})"

    group = parser.add_argument_group(
        "server options (passed to servers wsbench starts, and what every server is expected to do)"
    )
    group.add_argument(
        "--max-message-size", type=_size, default=d(base.max_message_size), metavar="BYTES",
        help=f"largest message relayed; one byte more closes with 1009 {both('max_message_size')}",
    )  # fmt: skip
    group.add_argument(
        "--ping-interval", type=_seconds, default=d(base.ping_interval), metavar="SECONDS",
        help=f"seconds between server pings, 0 for none {both('ping_interval')}",
    )  # fmt: skip
    group.add_argument(
        "--ping-timeout", type=_seconds, default=d(base.ping_timeout), metavar="SECONDS",
        help=f"seconds to pong before a 1011 close {both('ping_timeout')}",
    )  # fmt: skip
    group.add_argument(
        "--send-buffer-limit", type=_size, default=d(base.send_buffer_limit), metavar="BYTES",
        help=f"bytes queued per client before a 1008 slow-consumer close {both('send_buffer_limit')}",
    )  # fmt: skip
    group.add_argument(
        "--max-connections", type=_connections, default=d(base.max_connections), metavar="N",
        help=f"open /chat connections before 503 {both('max_connections')}",
    )  # fmt: skip
    group.add_argument(
        "--allowed-origin", type=_origin, action="append", default=None, metavar="ORIGIN",
        help="an extra allowed Origin, repeatable (servers wsbench starts: https://chat.example)",
    )  # fmt: skip
    group.add_argument(
        "--nodelay", action=argparse.BooleanOptionalAction, default=d(base.nodelay),
        help="TCP_NODELAY on /chat connections (default on); with --no-nodelay the Nagle stall must show",
    )  # fmt: skip
    group.add_argument(
        "--compression", action=argparse.BooleanOptionalAction, default=d(base.compression),
        help="permessage-deflate offered (default off)",
    )  # fmt: skip


def given_options(ns: argparse.Namespace | Mapping[str, Any]) -> dict[str, Any]:
    """The options present (not ``None``) in a parsed namespace."""
    values = vars(ns) if isinstance(ns, argparse.Namespace) else dict(ns)
    out: dict[str, Any] = {}
    for name in OPTION_NAMES:
        value = values.get(name)
        if value is None:
            continue
        out[name] = tuple(value) if name == "allowed_origin" else value
    return out


class _QuietParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise UsageError(message)


def parse_server_args(args: Sequence[str], where: str) -> dict[str, Any]:
    """Read the SPEC 15.1 options among extra server arguments (``tornado:--no-nodelay``), so the
    cases expect what the server was told. Arguments that are not server options are left alone."""
    parser = _QuietParser(prog=where, add_help=False)
    add_option_arguments(parser)
    try:
        ns, _unknown = parser.parse_known_args(list(args))
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    return given_options(ns)


def resolve(
    started_by_wsbench: bool, given: Mapping[str, Any], extra: Mapping[str, Any] | None = None
) -> ServerOptions:
    """The options of one target: SPEC defaults, then the gate's short settings when wsbench starts
    the server, then the user's command-line options, then options in the server's own arguments."""
    values: dict[str, Any] = {}
    if started_by_wsbench:
        values.update(GATE_DEFAULTS)
    values.update(given)
    if extra:
        values.update(extra)
    if "allowed_origin" in values:
        values["allowed_origin"] = canonical_origins(values["allowed_origin"])
    return ServerOptions(**values)
