"""Command-line options shared by both reference servers (SPEC 15.1): names, defaults, help.

This is configuration only. Protocol logic (validation, signing, relaying) lives in each server module
separately, so that one bug cannot hide in both.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .policy import canonical_origin, parse_origin

COOKIE_SECRET_ENV = "WSBENCH_COOKIE_SECRET"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8888
DEFAULT_MAX_MESSAGE_SIZE = 65536
DEFAULT_PING_INTERVAL = 20.0
DEFAULT_PING_TIMEOUT = 20.0
DEFAULT_MAX_CONNECTIONS = 10000
DEFAULT_SEND_BUFFER_LIMIT = 1048576

# Seconds a server waits for a client's answer to a close frame it sent (shutdown, slow consumer)
# before it drops the TCP connection (SPEC 11.1, 12.1).
CLOSE_GRACE = 2.0
# Seconds between the ping-timeout close frame and dropping the TCP connection (SPEC 10.2: all
# within ping_timeout + 1 s of the ping).
PING_TIMEOUT_CLOSE_GRACE = 0.5


@dataclass(frozen=True)
class Options:
    """Parsed server options. ``cookie_secret`` is always set (option, env, or random per start)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ping_interval: float = DEFAULT_PING_INTERVAL
    ping_timeout: float = DEFAULT_PING_TIMEOUT
    nodelay: bool = True
    allowed_origin: tuple[str, ...] = ()
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    send_buffer_limit: int = DEFAULT_SEND_BUFFER_LIMIT
    compression: bool = False
    cookie_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)


# SPEC 15.1: the accepted values of each option.
MAX_SIZE = 2**31 - 1
MAX_CONNECTIONS = 1_000_000
MIN_SECONDS = 0.01
MAX_SECONDS = 86400.0


_INT_RE = re.compile(r"^[+-]?[0-9]+$")


def _int(text: str, what: str) -> int:
    if not _INT_RE.match(text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return int(text)


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _int(text, "a whole number")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} must be {low} to {high}")
        return value

    return parse


_size = _bounded_int(1, MAX_SIZE)
_connections = _bounded_int(1, MAX_CONNECTIONS)


def _port(text: str) -> int:
    value = _int(text, "a port number")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value == 0 or MIN_SECONDS <= value <= MAX_SECONDS):
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or {MIN_SECONDS:g} to {MAX_SECONDS:g} seconds")
    return value


def _origin(text: str) -> str:
    """An allow-list entry, kept with its port written out (SPEC 6.3: default ports are explicit)."""
    origin = parse_origin(text)
    if origin is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an origin such as https://chat.example or http://host:8080")
    return canonical_origin(origin)


def _secret(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("the cookie secret must not be empty")
    return text


#: SPEC 15.1, once: each option's parser (command-line text -> value; ``argparse.ArgumentTypeError`` with
#: the reason when refused). The reference servers, ``wsbench conform`` (its expectations and the flags
#: of servers it starts) and scenarios (``target.options``) all check option values with these.
OPTION_TYPES: dict[str, Callable[[str], object]] = {
    "max_message_size": _size,
    "ping_interval": _seconds,
    "ping_timeout": _seconds,
    "max_connections": _connections,
    "send_buffer_limit": _size,
    "allowed_origin": _origin,
    "cookie_secret": _secret,
}
#: SPEC 15.1 defaults of the options that have one
OPTION_DEFAULTS: dict[str, object] = {
    "max_message_size": DEFAULT_MAX_MESSAGE_SIZE,
    "ping_interval": DEFAULT_PING_INTERVAL,
    "ping_timeout": DEFAULT_PING_TIMEOUT,
    "nodelay": True,
    "allowed_origin": (),
    "max_connections": DEFAULT_MAX_CONNECTIONS,
    "send_buffer_limit": DEFAULT_SEND_BUFFER_LIMIT,
    "compression": False,
}


def check_option(name: str, value: object) -> object:
    """``value`` of option ``name`` as the server would take it (``ValueError`` with the reason if not)."""
    parse = OPTION_TYPES.get(name)
    if parse is None or isinstance(value, bool):
        return value
    text = f"{value:g}" if isinstance(value, float) else str(value)
    try:
        return parse(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(str(exc)) from None


def build_parser(prog: str | None, server_name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"The wsbench reference chat server ({server_name}), as specified by SPEC.md. "
        "The first line on standard output is 'listening on http://HOST:PORT'.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,  # SPEC 15.1: abbreviated option names are a usage error
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="TCP port; 0 picks a free one")
    parser.add_argument(
        "--max-message-size",
        type=_size,
        default=DEFAULT_MAX_MESSAGE_SIZE,
        help="largest accepted message in bytes (exactly this size passes, one more closes with 1009)",
    )
    parser.add_argument(
        "--ping-interval",
        type=_seconds,
        default=DEFAULT_PING_INTERVAL,
        help="seconds between server pings to each client; 0 disables pings",
    )
    parser.add_argument(
        "--ping-timeout",
        type=_seconds,
        default=DEFAULT_PING_TIMEOUT,
        help="seconds to wait for a pong before closing with 1011",
    )
    parser.add_argument(
        "--nodelay",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="set TCP_NODELAY on every /chat connection (--no-nodelay clears it explicitly)",
    )
    parser.add_argument(
        "--allowed-origin",
        type=_origin,
        action="append",
        default=argparse.SUPPRESS,
        metavar="ORIGIN",
        help="an extra allowed WebSocket Origin such as https://chat.example (repeatable); "
        "the server's own host is always allowed (default: none)",
    )
    parser.add_argument(
        "--max-connections",
        type=_connections,
        default=DEFAULT_MAX_CONNECTIONS,
        help="open /chat connections at most; further handshakes get 503",
    )
    parser.add_argument(
        "--send-buffer-limit",
        type=_size,
        default=DEFAULT_SEND_BUFFER_LIMIT,
        help="bytes queued but unwritten per connection before it is closed with 1008 (slow consumer)",
    )
    parser.add_argument(
        "--compression",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="offer permessage-deflate",
    )
    parser.add_argument(
        "--cookie-secret",
        type=_secret,
        default=argparse.SUPPRESS,
        help=f"cookie signing secret (default: env {COOKIE_SECRET_ENV}, else a random secret per start)",
    )
    return parser


def parse_options(argv: Sequence[str] | None, prog: str | None, server_name: str) -> Options:
    """Parse ``argv`` (``sys.argv[1:]`` when None). Exits with status 2 and a message on bad options."""
    args = build_parser(prog, server_name).parse_args(argv)
    secret = getattr(args, "cookie_secret", None) or os.environ.get(COOKIE_SECRET_ENV) or secrets.token_urlsafe(32)
    return Options(
        host=args.host,
        port=args.port,
        max_message_size=args.max_message_size,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        nodelay=args.nodelay,
        allowed_origin=tuple(dict.fromkeys(getattr(args, "allowed_origin", []))),
        max_connections=args.max_connections,
        send_buffer_limit=args.send_buffer_limit,
        compression=args.compression,
        cookie_secret=secret,
    )


def listening_line(host: str, port: int) -> str:
    """SPEC 15.2: ``listening on http://HOST:PORT`` (IPv6 literals in brackets)."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"listening on http://{shown}:{port}"
