"""The aiohttp reference chat server (SPEC.md), the tutorial's chat room written for aiohttp.

Run: ``python -m wsbench_servers.aiohttp_server --port 0`` (or ``wsbench serve aiohttp``).

Structure. All policy lives in one class, :class:`ChatServer`, with the same method names as the
Tornado server (but no shared code: one bug cannot hide in both). Each behaviour is one small method,
so a test fixture can subclass ``ChatServer``, change one method (inject one fault) and run it with
``main(argv, server_class=Faulty)``:

==========================  =====================================================================
method                      behaviour (SPEC clause)
==========================  =====================================================================
``validate_nickname``       login nickname rules and hints (3.2)
``nickname_in_use``         "is this nickname online" for login 409 (3.3) and 4409 (6.6)
``sign_nickname``           the signed cookie value (3.4); ``authenticate`` checks it (4.1, 6.2)
``refuse_handshake``        the handshake checks in SPEC 6.5 order: ``check_version`` (6.1),
                            ``authenticate`` (6.2), ``check_origin`` (6.3), ``check_capacity`` (6.4)
``on_open``                 ``apply_nodelay`` (13.1), 4409 (6.6), ``on_join`` (7.1),
                            ``schedule_pings`` (10.1)
``receive_loop``            1003 for binary (8.1), close-code answers (8.4, 8.5), pongs (8.6)
``on_message``              relays text via ``broadcast`` (7.2)
``broadcast``               fan-out to ``relay_targets`` (7.2: everyone but the sender) through
                            ``deliver``; never awaits a connection (7.4, 11.3)
``enforce_send_buffer``     "may this connection queue N more bytes" (11.1)
``close_slow_consumer``     1008 ``slow consumer`` (11.1, 11.2)
``on_leave``                the leave line, exactly once (7.5)
``send_ping``/``check_pong``  the ping policy (10.1, 10.2); ``close_ping_timeout`` sends 1011
``message_size_limit``      the inclusive size limit (9.1)
``shutdown``                1001 to everyone, wait up to 2 s, exit 0 (12.1)
``login_body_limit``        the ``POST /login`` body bound (3.9); ``request_head_timeout`` (16.1)
``check_key``               ``Sec-WebSocket-Key`` (6.1 e); ``guard_static`` 404s unusable paths (16.2)
``websocket_class``         the WebSocketResponse subclass (its reader, handshake, single close frame)
==========================  =====================================================================

``ChatServer`` is assembled from a few parts, each about one thing and each in its own module:
:class:`HandshakePolicy` (SPEC 6, here), ``PagesPolicy``, ``LoginPolicy`` and ``CookiePolicy`` (2-5,
16.2: ``aiohttp_pages``), ``RoomPolicy``, ``ReceivePolicy``, ``RelayPolicy`` and ``PingPolicy`` (7-11:
``aiohttp_room``, with :class:`Connection`) and ``ServerLifecycle`` (12, 15, 16: ``aiohttp_running``).
The frame layer (hand-built frames, :class:`StrictReader`, :class:`ChatWebSocketResponse`) is
``aiohttp_protocol``; the process figures of ``/stats`` are a :class:`~wsbench_servers.meter.ProcessMeter`.
The parts are base classes rather than separate objects because the method map above is the fault
fixtures' interface: one override on ``ChatServer`` must change that behaviour wherever it is used.
The modules never import this one at run time (it is ``__main__`` under ``python -m``).

aiohttp 3.14 defaults overridden here:

- ``max_msg_size`` is exclusive (a message of exactly the limit is refused): the server passes
  ``message_size_limit() + 1``;
- no ``Sec-WebSocket-Version`` check (8 and 7 are accepted) and no ``Origin`` check: done in
  ``refuse_handshake`` before ``prepare``;
- a client close code is always answered with 1000 and 1006 and 5000+ are accepted: with
  ``autoclose=False`` the server answers per SPEC 8.4/8.5 itself;
- unmasked client frames are accepted: :class:`StrictReader` (a subclass of aiohttp's pure-Python
  frame reader, installed by :class:`ChatWebSocketResponse`) fails them with 1002;
- ``heartbeat`` drops the connection without a close frame and counts any inbound data as a pong:
  not used; pings follow SPEC 10 via ``send_ping``/``check_pong``;
- ``send_str`` awaits the transport's drain, which would stall a broadcast on one slow client: the
  broadcast writes one pre-built frame to each transport instead (``deliver``);
- ``ws.close()`` called while the handler is inside ``receive()`` closes TCP right after its close
  frame, without waiting for the client's answer: server-initiated closes (1001, 1003, 1008, 1011,
  4409) write the close frame themselves (``start_close``) and ``receive_loop`` completes the
  handshake, with a grace timer that drops TCP if the client never answers;
- ``run_app``'s shutdown drops inbound frames and ends with a bare FIN: the server runs its own
  ``AppRunner`` and sends 1001 first.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp._websocket import reader_py
from aiohttp.http_websocket import WebSocketError

from .aiohttp_pages import CookiePolicy, LoginPolicy, PagesPolicy
from .aiohttp_protocol import ChatWebSocketResponse, StrictReader, close_frame, text_frame
from .aiohttp_room import Connection, PingPolicy, ReceivePolicy, RelayPolicy, RoomPolicy
from .aiohttp_running import ServerLifecycle, is_client_noise, listening_socket
from .hardening import ClientNoiseFilter, Throttle, ensure_fd_limit
from .meter import ProcessMeter
from .options import CLOSE_GRACE, Options, parse_options
from .policy import has_token, origin_allowed, valid_websocket_key

#: The names this module has always offered (fixtures subclass ``StrictReader`` and
#: ``ChatWebSocketResponse`` and reach ``reader_py``, ``WebSocketError`` and ``web`` through it).
__all__ = [
    "ChatServer",
    "ChatWebSocketResponse",
    "Connection",
    "StrictReader",
    "WebSocketError",
    "close_frame",
    "is_client_noise",
    "listening_socket",
    "main",
    "reader_py",
    "text_frame",
    "web",
]

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

log = logging.getLogger("wsbench_servers.aiohttp")


Refusal = tuple[int, str, dict[str, str]]


class HandshakePolicy:
    """Which ``/chat`` upgrades are accepted (SPEC 6), the upgrade itself, and the size limit (9.1)."""

    options: Options
    sockets: set[Connection]
    handshakes: int
    shutting_down: bool
    throttle: Throttle
    websocket_class: type[ChatWebSocketResponse]

    def refuse_handshake(self, request: web.Request) -> tuple[Refusal | None, str]:
        """(refusal, nickname) for this upgrade request, checks in SPEC 6.5 order."""
        headers = request.headers
        if headers.get("Upgrade", "").strip().lower() != "websocket":
            return (400, 'Can "Upgrade" only to "WebSocket".', {}), ""
        if not has_token(headers.get("Connection"), "upgrade"):
            return (400, 'Bad Request: "Connection" must include "Upgrade"', {}), ""
        if not self.check_version(headers.get("Sec-WebSocket-Version")):
            return (426, "Upgrade Required: Sec-WebSocket-Version 13 only", {"Sec-WebSocket-Version": "13"}), ""
        if not self.check_key(headers.getall("Sec-WebSocket-Key", [])):
            return (400, "Bad Request: Sec-WebSocket-Key must be the base64 of 16 bytes", {}), ""
        nickname = self.authenticate(request)
        if nickname is None:
            return (401, "Unauthorized: log in at /login first", {}), ""
        if not self.check_origin(headers.getall("Origin", []), headers.get("Host", "")):
            return (403, "Forbidden: cross-origin WebSocket", {}), ""
        if not self.check_capacity():
            return (503, "Service Unavailable: too many connections", {}), ""
        return None, nickname

    def check_version(self, version: str | None) -> bool:
        return version is not None and version.strip() == "13"

    def check_key(self, values: list[str]) -> bool:
        """SPEC 6.1 e, RFC 6455 §4.2.1: one key, the base64 of 16 bytes."""
        return valid_websocket_key(values)

    def check_origin(self, origins: list[str], host: str) -> bool:
        """SPEC 6.3: no Origin, or one that is our Host (default ports), or one in the allow-list."""
        return origin_allowed(origins, host, self.options.allowed_origin)

    def check_capacity(self) -> bool:
        return self.handshakes < self.options.max_connections

    async def chat(self, request: web.Request) -> web.StreamResponse:
        refusal, nickname = self.refuse_handshake(request)
        if refusal is not None:
            status, text, headers = refusal
            return web.Response(status=status, text=text + "\n", headers=headers)
        if self.shutting_down:
            return web.Response(status=503, text="Service Unavailable: shutting down\n")
        self.handshakes += 1  # reserved before prepare() yields, so 6.4 holds under concurrency
        conn: Connection | None = None
        try:
            ws = self.websocket_class(
                autoclose=False,
                autoping=False,
                heartbeat=None,
                compress=self.options.compression,
                max_msg_size=self.message_size_limit() + 1,  # aiohttp's limit is exclusive
                timeout=CLOSE_GRACE,
            )
            try:
                await ws.prepare(request)
            except (ConnectionError, RuntimeError):  # the client reset the connection during the upgrade
                self.throttle.warn("upgrade", "client went away during the /chat upgrade")
                return ws
            transport = request.transport
            if transport is None or transport.is_closing():
                return ws
            conn = Connection(ws, transport, nickname)
            self.sockets.add(conn)
            self.on_open(conn)
            await self.receive_loop(conn)
            return ws
        finally:
            self.handshakes -= 1
            if conn is not None:
                self.on_close(conn)

    def message_size_limit(self) -> int:
        """Largest accepted message, inclusive (``chat`` adds 1 for aiohttp's exclusive check)."""
        return self.options.max_message_size


class ChatServer(
    HandshakePolicy,
    PagesPolicy,
    LoginPolicy,
    CookiePolicy,
    RoomPolicy,
    ReceivePolicy,
    RelayPolicy,
    PingPolicy,
    ServerLifecycle,
):
    """State and policy of one chat room; see the module docstring for the method map."""

    name = "aiohttp"
    websocket_class: type[ChatWebSocketResponse] = ChatWebSocketResponse

    def __init__(self, options: Options) -> None:
        self.options = options
        self.room: dict[str, Connection] = {}  # online nicknames (SPEC 1.3)
        self.sockets: set[Connection] = set()  # every accepted /chat connection (12.1)
        self.handshakes = 0  # /chat upgrades reserved or open (6.4)
        self.messages_in = 0
        self.deliveries_out = 0
        self.slow_consumer_closes = 0
        self.meter = ProcessMeter()  # rss_bytes, uptime_s, cpu_s of /stats (SPEC 5)
        self.throttle = Throttle(log)
        self._runner_server: web.Server | None = None
        self.shutting_down = False
        self._all_closed: asyncio.Event | None = None
        self._cookie_key = hashlib.sha256(b"wsbench nickname cookie\0" + options.cookie_secret.encode()).digest()
        self._templates = {name: (TEMPLATES / name).read_text("utf-8") for name in ("login.html", "chat.html")}

    # ---- application ----------------------------------------------------------------------

    def make_app(self) -> web.Application:
        # client_max_size bounds every request body (SPEC 3.9: only POST /login takes one)
        app = web.Application(client_max_size=self.login_body_limit(), middlewares=[self.guard_static])
        app.router.add_get("/", self.chat_page)
        app.router.add_get("/login", self.login_page)
        app.router.add_post("/login", self.login)
        app.router.add_get("/stats", self.stats_page)
        app.router.add_get("/chat", self.chat, allow_head=False)  # SPEC 2.2: /chat is GET only
        app.router.add_static("/static/", STATIC)
        return app

    def stats(self) -> dict[str, Any]:
        return self.meter.stats(
            self.name,
            aiohttp.__version__,
            connections=len(self.sockets),
            online=len(self.room),
            messages_in=self.messages_in,
            deliveries_out=self.deliveries_out,
            slow_consumer_closes=self.slow_consumer_closes,
        )


def main(
    argv: Sequence[str] | None = None, prog: str | None = None, *, server_class: type[ChatServer] = ChatServer
) -> int:
    options = parse_options(argv, prog or "python -m wsbench_servers.aiohttp_server", "aiohttp")
    problem = ensure_fd_limit(options.max_connections)  # SPEC 16.3
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    noise = ClientNoiseFilter(Throttle(log), is_client_noise)
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.websocket", "asyncio"):
        logging.getLogger(name).addFilter(noise)
    return asyncio.run(server_class(options).run())


if __name__ == "__main__":
    sys.exit(main())
