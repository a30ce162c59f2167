"""The Tornado reference chat server (SPEC.md), the tutorial's chat room done right.

Run: ``python -m wsbench_servers.tornado_server --port 0`` (or ``wsbench serve tornado``).

Structure. All policy lives in one class, :class:`ChatServer`; the request handlers are thin and
delegate to it. Each behaviour is one small method, so a test fixture can subclass ``ChatServer``,
change one method (inject one fault) and run it with ``main(argv, server_class=Faulty)``:

==========================  =====================================================================
method                      behaviour (SPEC clause)
==========================  =====================================================================
``validate_nickname``       login nickname rules and hints (3.2)
``nickname_in_use``         "is this nickname online" for login 409 (3.3) and 4409 (6.6)
``authenticate``            signed-cookie check for ``/`` (4.1) and ``/chat`` (6.2)
``refuse_handshake``        the handshake checks in SPEC 6.5 order: ``check_version`` (6.1),
                            ``authenticate`` (6.2), ``check_origin`` (6.3), ``check_capacity`` (6.4)
``on_open``                 ``apply_nodelay`` (13.1), 4409 via ``refuse_duplicate`` (6.6),
                            ``on_join`` (7.1), ``schedule_pings`` (10.1)
``on_message``              1003 for binary (8.1), relays text via ``broadcast`` (7.2)
``broadcast``               fan-out to ``relay_targets`` (7.2: everyone but the sender) through
                            ``deliver``; never awaits a connection (7.4, 11.3)
``enforce_send_buffer``     "may this connection queue N more bytes" (11.1)
``close_slow_consumer``     1008 ``slow consumer`` (11.1, 11.2)
``on_leave``                the leave line, exactly once (7.5)
``send_ping``/``check_pong``  the ping policy (10.1, 10.2); ``close_ping_timeout`` sends 1011
``message_size_limit``      the inclusive size limit handed to the frame reader (9.1)
``shutdown``                1001 to everyone, wait up to 2 s, exit 0 (12.1)
``on_ping``                 every ping answered, pongs counted against the send buffer (8.6, 11.1)
``login_body_limit``        the ``POST /login`` body bound (3.9); ``request_head_timeout`` (16.1)
``check_key``               ``Sec-WebSocket-Key`` (6.1 e); ``static_handler_class`` 404s bad paths (16.2)
``protocol_class``          the frame-level protocol (:class:`ChatProtocol`, deflate offers 16.5)
==========================  =====================================================================

``ChatServer`` is assembled from a few parts, each about one thing and each in its own module:
:class:`HandshakePolicy` (SPEC 6, here, with the ``/chat`` handler), ``LoginPolicy`` (3, 4:
``tornado_pages``, with the page handlers), ``RoomPolicy``, ``RelayPolicy`` and ``PingPolicy`` (7, 10,
11: ``tornado_room``) and ``ServerLifecycle`` (12, 15, 16: ``tornado_running``). The frame layer is
:class:`ChatProtocol` (``tornado_protocol``: Tornado 6.6.1's frame-level defaults that break SPEC 8,
fixed); the process figures of ``/stats`` are a :class:`~wsbench_servers.meter.ProcessMeter`.
The parts are base classes rather than separate objects because the method map above is the fault
fixtures' interface: one override on ``ChatServer`` must change that behaviour wherever it is used.
The modules never import this one at run time (it is ``__main__`` under ``python -m``).

Handshake checks follow SPEC 6.1's order in ``refuse_handshake`` (Connection and Sec-WebSocket-Key
before the cookie; Tornado's own checks come after it); a 405 carries ``Allow`` and ``HEAD`` is
answered like ``GET`` (SPEC 2.2). Nickname, Origin and close-code rules are ``servers/policy.py``'s.

Tornado's own ping (``websocket_ping_interval``) closes with 1000 and is not used; pings follow
SPEC 10 via ``send_ping``/``check_pong`` (``tornado_room``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import tornado
import tornado.web
import tornado.websocket
from tornado.iostream import IOStream
from tornado.websocket import _WebSocketParams

from .hardening import ClientNoiseFilter, Throttle, ensure_fd_limit
from .meter import ProcessMeter
from .options import Options, parse_options
from .policy import METHODS_CHAT, has_token, origin_allowed, valid_websocket_key
from .tornado_pages import (
    AllowMixin,
    ChatPageHandler,
    LoginHandler,
    LoginPolicy,
    StaticHandler,
    StatsHandler,
)
from .tornado_protocol import ChatProtocol, deflate_offer, parse_extension_offers, text_frame
from .tornado_room import PingPolicy, RelayPolicy, RoomPolicy
from .tornado_running import GuardedHTTPServer, ServerLifecycle, is_client_noise

#: The names this module has always offered (fixtures subclass ``ChatProtocol``; ``main`` runs it).
__all__ = [
    "ChatPageHandler",
    "ChatProtocol",
    "ChatServer",
    "ChatSocketHandler",
    "GuardedHTTPServer",
    "LoginHandler",
    "StaticHandler",
    "StatsHandler",
    "deflate_offer",
    "is_client_noise",
    "main",
    "parse_extension_offers",
    "text_frame",
]

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

log = logging.getLogger("wsbench_servers.tornado")


class ChatSocketHandler(AllowMixin, tornado.websocket.WebSocketHandler):
    """One ``/chat`` connection. Protocol decisions are the server's; this only plumbs."""

    server: ChatServer
    ALLOW = METHODS_CHAT

    def prepare(self) -> None:
        if self.request.method not in self.ALLOW:  # SPEC 6.1 a, before every other check
            raise tornado.web.HTTPError(405)

    def initialize(self, server: ChatServer) -> None:
        self.server = server
        self.nickname = ""
        self.joined = False
        self.last_pong = 0.0
        self.ping_handle: asyncio.TimerHandle | None = None
        self.pong_checks: set[asyncio.TimerHandle] = set()

    async def get(self, *args: Any, **kwargs: Any) -> None:
        refusal = self.server.refuse_handshake(self)
        if refusal is not None:
            status, text, headers = refusal
            self.set_status(status)
            for name, value in headers.items():
                self.set_header(name, value)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(text + "\n")
            return
        await super().get(*args, **kwargs)

    def check_origin(self, origin: str) -> bool:
        return self.server.check_origin(self.request.headers.get_list("Origin"), self.request.headers.get("Host", ""))

    @property
    def max_message_size(self) -> int:
        return self.server.message_size_limit()

    def get_compression_options(self) -> dict[str, Any] | None:
        return {} if self.server.options.compression else None

    def get_websocket_protocol(self) -> ChatProtocol | None:
        if self.request.headers.get("Sec-WebSocket-Version") != "13":
            return None
        params = _WebSocketParams(
            ping_interval=None,  # Tornado's own pings are off: SPEC 10 pings are the server's
            ping_timeout=None,
            max_message_size=self.max_message_size,
            compression_options=self.get_compression_options(),
        )
        protocol_class = self.server.protocol_class or ChatProtocol  # the module's, looked up now
        return protocol_class(self, False, params)

    def open(self, *args: str, **kwargs: str) -> None:
        self.server.on_open(self)

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        return self.server.on_message(self, message)

    def on_pong(self, data: bytes) -> None:
        self.server.on_pong(self, data)

    def on_close(self) -> None:
        self.server.on_close(self)

    @property
    def ws_stream(self) -> IOStream | None:
        conn = self.ws_connection
        return getattr(conn, "stream", None)


Refusal = tuple[int, str, dict[str, str]]


class HandshakePolicy:
    """Which ``/chat`` upgrades are accepted (SPEC 6), and the message size limit (9.1)."""

    options: Options
    sockets: set[ChatSocketHandler]

    def refuse_handshake(self, handler: ChatSocketHandler) -> Refusal | None:
        """The refusal for this upgrade request, checks in SPEC 6.5 order; None accepts it."""
        headers = handler.request.headers
        if headers.get("Upgrade", "").strip().lower() != "websocket":
            return 400, 'Can "Upgrade" only to "WebSocket".', {}
        if not has_token(headers.get("Connection"), "upgrade"):
            return 400, 'Bad Request: "Connection" must include "Upgrade"', {}
        if not self.check_version(headers.get("Sec-WebSocket-Version")):
            return 426, "Upgrade Required: Sec-WebSocket-Version 13 only", {"Sec-WebSocket-Version": "13"}
        if not self.check_key(headers.get_list("Sec-WebSocket-Key")):
            return 400, "Bad Request: Sec-WebSocket-Key must be the base64 of 16 bytes", {}
        nickname = self.authenticate(handler)
        if nickname is None:
            return 401, "Unauthorized: log in at /login first", {}
        if not self.check_origin(headers.get_list("Origin"), headers.get("Host", "")):
            return 403, "Forbidden: cross-origin WebSocket", {}
        if not self.check_capacity():
            return 503, "Service Unavailable: too many connections", {}
        handler.nickname = nickname
        return None

    def check_version(self, version: str | None) -> bool:
        return version is not None and version.strip() == "13"

    def check_key(self, values: list[str]) -> bool:
        """SPEC 6.1 e, RFC 6455 §4.2.1: one key, the base64 of 16 bytes."""
        return valid_websocket_key(values)

    def check_origin(self, origins: list[str], host: str) -> bool:
        """SPEC 6.3: no Origin, or one that is our Host (default ports), or one in the allow-list."""
        return origin_allowed(origins, host, self.options.allowed_origin)

    def check_capacity(self) -> bool:
        return len(self.sockets) < self.options.max_connections

    def message_size_limit(self) -> int:
        """Largest accepted message; Tornado's check is inclusive (exactly the limit passes)."""
        return self.options.max_message_size


class ChatServer(HandshakePolicy, LoginPolicy, RoomPolicy, RelayPolicy, PingPolicy, ServerLifecycle):
    """State and policy of one chat room; see the module docstring for the method map."""

    name = "tornado"
    protocol_class: type[ChatProtocol] | None = None  # None: this module's ChatProtocol
    static_handler_class: type[tornado.web.StaticFileHandler] = StaticHandler

    def __init__(self, options: Options) -> None:
        self.options = options
        self.room: dict[str, ChatSocketHandler] = {}  # online nicknames (SPEC 1.3)
        self.sockets: set[ChatSocketHandler] = set()  # every open /chat connection (6.4, 12.1)
        self.messages_in = 0
        self.deliveries_out = 0
        self.slow_consumer_closes = 0
        self.meter = ProcessMeter()  # rss_bytes, uptime_s, cpu_s of /stats (SPEC 5)
        self.throttle = Throttle(log)
        self.shutting_down = False
        self._all_closed: asyncio.Event | None = None

    # ---- application ----------------------------------------------------------------------

    def make_app(self) -> tornado.web.Application:
        kwargs = {"server": self}
        return tornado.web.Application(
            [
                (r"/", ChatPageHandler, kwargs),
                (r"/login", LoginHandler, kwargs),
                (r"/stats", StatsHandler, kwargs),
                (r"/chat", ChatSocketHandler, kwargs),
            ],
            template_path=str(TEMPLATES),
            static_path=str(STATIC),
            static_handler_class=self.static_handler_class,
            cookie_secret=self.options.cookie_secret,
            log_function=self.log_request,
        )

    def log_request(self, handler: tornado.web.RequestHandler) -> None:
        status = handler.get_status()
        if status == 503:  # SPEC 6.4's answer to one connection too many: load, not a server error
            self.throttle.warn("503", "refused a /chat handshake with 503: %d connections open", len(self.sockets))
        elif status >= 500:
            log.error("%d %s %s", status, handler.request.method, handler.request.uri[:200])

    def stats(self) -> dict[str, Any]:
        return self.meter.stats(
            self.name,
            tornado.version,
            connections=len(self.sockets),
            online=len(self.room),
            messages_in=self.messages_in,
            deliveries_out=self.deliveries_out,
            slow_consumer_closes=self.slow_consumer_closes,
        )


def main(
    argv: Sequence[str] | None = None, prog: str | None = None, *, server_class: type[ChatServer] = ChatServer
) -> int:
    options = parse_options(argv, prog or "python -m wsbench_servers.tornado_server", "Tornado")
    problem = ensure_fd_limit(options.max_connections)  # SPEC 16.3
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tornado.access").setLevel(logging.ERROR)
    noise = ClientNoiseFilter(Throttle(log), is_client_noise)
    for name in ("tornado.general", "tornado.application", "tornado.websocket", "asyncio"):
        logging.getLogger(name).addFilter(noise)
    return asyncio.run(server_class(options).run())


if __name__ == "__main__":
    sys.exit(main())
