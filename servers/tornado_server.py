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

Frame-level fixes (Tornado 6.6.1 defaults that break SPEC 8) live in :class:`ChatProtocol`, a
subclass of ``tornado.websocket.WebSocketProtocol13`` that overrides the private ``_receive_frame``
and ``_handle_message``:

- unmasked client frames, RSV bits, reserved opcodes, fragmented or oversize control frames, stray
  continuations: close 1002 then drop (Tornado: accepted, or dropped without a close frame);
- invalid UTF-8 text: close 1007 (Tornado: dropped without a close frame);
- client close codes: valid ones echoed, invalid ones and 1-byte payloads answered 1002, a close
  reason that is not UTF-8 answered 1007 (Tornado echoes any code verbatim);
- an oversize message is answered 1009 and its payload read and discarded, so the close handshake
  completes cleanly (Tornado: 1009 then an immediate RST);
- RSV1 on a control or continuation frame with compression on is a protocol error (Tornado let a
  control frame reset the compression flag of a fragmented message).
- a close the server starts (1003, 1007, 1009, 4409, ...) waited 5 s for the client's close frame and
  sent the leave line only when TCP closed: ``close`` bounds the wait by CLOSE_GRACE and frees the
  nickname at once (SPEC 8.7).

Handshake checks follow SPEC 6.1's order in ``refuse_handshake`` (Connection and Sec-WebSocket-Key
before the cookie; Tornado's own checks come after it); a 405 carries ``Allow`` and ``HEAD`` is
answered like ``GET`` (SPEC 2.2). Nickname, Origin and close-code rules are ``servers/policy.py``'s.

Tornado's own ping (``websocket_ping_interval``) closes with 1000 and is not used; pings follow
SPEC 10 via ``send_ping``/``check_pong``. Broadcast frames are built once and written to each
connection's IOStream (``deliver``); ``write_message`` is used only for compressed connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import struct
import sys
import time
import unicodedata
import weakref
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import psutil
import tornado
import tornado.httpserver
import tornado.httputil
import tornado.netutil
import tornado.web
import tornado.websocket
from tornado.iostream import IOStream, StreamClosedError
from tornado.util import _websocket_mask
from tornado.websocket import WebSocketClosedError, _DecompressTooLargeError, _WebSocketParams

from .hardening import (
    LOGIN_BODY_LIMIT,
    REQUEST_BODY_TIMEOUT,
    REQUEST_HEAD_TIMEOUT,
    Acceptor,
    ClientNoiseFilter,
    Throttle,
    ensure_fd_limit,
    pick_shed,
)
from .options import CLOSE_GRACE, PING_TIMEOUT_CLOSE_GRACE, Options, listening_line, parse_options
from .policy import (
    COOKIE_MAX_AGE_DAYS,
    METHODS_CHAT,
    METHODS_LOGIN,
    METHODS_PAGE,
    VALID_CLOSE_CODES,
    has_token,
    origin_allowed,
    strip_nickname,
    valid_websocket_key,
)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

NICKNAME_COOKIE = "nickname"
MAX_NICKNAME_LENGTH = 32
HINT_EMPTY = "请输入昵称"
HINT_TOO_LONG = f"昵称最多{MAX_NICKNAME_LENGTH}个字符"
HINT_CONTROL = "昵称不能包含控制字符"
HINT_ENCODING = "昵称不是有效的UTF-8文本"
HINT_IN_USE = "昵称已被使用，请更换昵称"

DATA_OPCODES = (0x1, 0x2)
KNOWN_OPCODES = frozenset([0x0, 0x1, 0x2, 0x8, 0x9, 0xA])
DISCARD_CHUNK = 65536
#: Longest static path looked up (SPEC 16.2: a longer one is 404).
MAX_STATIC_PATH = 1024
#: RFC 7692 §7: the parameters of a permessage-deflate offer, and which of them carry a value.
DEFLATE_FLAGS = frozenset({"server_no_context_takeover", "client_no_context_takeover"})
DEFLATE_WINDOW_BITS = frozenset({"server_max_window_bits", "client_max_window_bits"})
#: zlib cannot compress raw deflate with an 8-bit window (it uses 9), so server_max_window_bits=8,
#: valid under RFC 7692 §7.1.2.1, is declined (as §7.1.2.1 allows) rather than broken.
SERVER_MIN_WINDOW_BITS = 9

log = logging.getLogger("wsbench_servers.tornado")


def text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented server text frame, built once per broadcast (see ``deliver``)."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def deflate_offer(params: dict[str, str | None]) -> dict[str, str | None] | None:
    """The response parameters for one permessage-deflate offer, or None to decline it (RFC 7692 §7).

    Declined: an unknown parameter, a value on a ``*_no_context_takeover`` flag, a window size that
    is not a plain integer from 8 to 15 (``client_max_window_bits`` may also come without a value),
    or a ``server_max_window_bits`` below what zlib can do. Tornado 6.6 answers all of these with a 500
    and a traceback, and echoes ``server_no_context_takeover=1`` verbatim.
    """
    answer: dict[str, str | None] = {}
    for key, value in params.items():
        if key in DEFLATE_FLAGS:
            if value is not None:
                return None
            answer[key] = None
        elif key in DEFLATE_WINDOW_BITS:
            if value is None:
                if key == "server_max_window_bits":
                    return None
                continue  # client_max_window_bits without a value: the client accepts any; not echoed
            if not (value.isascii() and value.isdigit() and len(value) <= 2 and 8 <= int(value) <= 15):
                return None
            if key == "server_max_window_bits" and int(value) < SERVER_MIN_WINDOW_BITS:
                return None
            answer[key] = str(int(value))
        else:
            return None
    return answer


def parse_extension_offers(header: str) -> list[tuple[str, dict[str, str | None]]] | None:
    """``Sec-WebSocket-Extensions`` as (name, parameters) offers; None when a parameter repeats."""
    offers: list[tuple[str, dict[str, str | None]]] = []
    for item in header.split(","):
        name, *raw = (part.strip() for part in item.split(";"))
        params: dict[str, str | None] = {}
        for param in raw:
            key, eq, value = param.partition("=")
            key = key.strip().lower()
            if key in params:
                return None
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            params[key] = value if eq else None
        offers.append((name.lower(), params))
    return offers


class ChatProtocol(tornado.websocket.WebSocketProtocol13):
    """WebSocketProtocol13 with the frame-level behaviour of SPEC 8 and 9.1 (see module docstring).

    ``_receive_frame`` and ``_handle_message`` are private Tornado methods (checked against 6.6.1);
    the spec test suite exercises every branch, so a Tornado upgrade that changes them shows up there.
    """

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Tornado's close, with SPEC 8.7: wait at most CLOSE_GRACE (not Tornado's 5 s) for the
        client's close frame, and a close the server starts frees the nickname at once."""
        starting = not self.server_terminated and not self.client_terminated
        waiting_before = self._waiting
        super().close(code, reason)
        if waiting_before is None and self._waiting is not None:
            io_loop = self.stream.io_loop
            io_loop.remove_timeout(self._waiting)
            self._waiting = io_loop.add_timeout(io_loop.time() + CLOSE_GRACE, self._abort)
        if starting:
            handler = self.handler
            assert isinstance(handler, ChatSocketHandler)
            handler.server.on_leave(handler)

    _failed = False

    def _parse_extensions_header(self, headers: tornado.httputil.HTTPHeaders) -> list[tuple[str, dict[str, Any]]]:
        """Only the first acceptable permessage-deflate offer, normalized (see :func:`deflate_offer`).

        Tornado accepts the first permessage-deflate offer it is given, whatever its parameters.
        """
        offers = parse_extension_offers(",".join(headers.get_list("Sec-WebSocket-Extensions")))
        for name, params in offers or ():
            if name == "permessage-deflate":
                answer = deflate_offer(params)
                if answer is not None:
                    return [(name, answer)]
        return []

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): close frame, then close TCP once the frame is out.

        Closing at once, with bytes of the client still unread, makes the kernel answer with a reset,
        which can destroy the close frame before the client reads it (the gate saw "dropped without
        close frame" in 1 of 10 runs of a byte-wise violation). So: stop parsing (the stream is out of
        sync), shut the write side once the close frame is flushed, and discard what the client still
        sends until it closes its side; the close wait (CLOSE_GRACE, ``close``) bounds all of it.
        """
        if self._failed:
            return
        self._failed = True
        self.close(code, reason)
        stream = self.stream
        if stream.closed():
            return

        def shut_write(future: asyncio.Future[None]) -> None:
            sock = stream.socket
            if not future.cancelled() and future.exception() is None and sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)

        with contextlib.suppress(StreamClosedError):
            stream.write(b"").add_done_callback(shut_write)  # resolves when the close frame is written

    async def _discard(self, count: int) -> None:
        while count > 0:
            chunk = min(count, DISCARD_CHUNK)
            await self._read_bytes(chunk)
            count -= chunk

    async def _receive_frame(self) -> None:
        if self._failed:  # after a protocol error: read and discard until the client closes (see _fail)
            await self.stream.read_bytes(DISCARD_CHUNK, partial=True)
            return None
        data = await self._read_bytes(2)
        header, mask_payloadlen = data[0], data[1]
        is_final_frame = bool(header & self.FIN)
        reserved_bits = header & self.RSV_MASK
        opcode = header & self.OPCODE_MASK
        opcode_is_control = bool(opcode & 0x8)
        if self._decompressor is not None and reserved_bits & self.RSV1:
            # RFC 7692 §6.1: RSV1 marks the first frame of a compressed data message, nothing else.
            if opcode not in DATA_OPCODES:
                return self._fail(1002, "RSV1 on a control or continuation frame")
            reserved_bits &= ~self.RSV1
        if reserved_bits:
            return self._fail(1002, "reserved bits set")
        if opcode not in KNOWN_OPCODES:
            return self._fail(1002, "reserved opcode")
        if not mask_payloadlen & 0x80:
            return self._fail(1002, "unmasked client frame")
        payloadlen = mask_payloadlen & 0x7F
        if opcode_is_control and payloadlen >= 126:
            return self._fail(1002, "control frame payload over 125 bytes")
        if opcode_is_control and not is_final_frame:
            return self._fail(1002, "fragmented control frame")
        if payloadlen == 126:
            payloadlen = struct.unpack("!H", await self._read_bytes(2))[0]
        elif payloadlen == 127:
            payloadlen = struct.unpack("!Q", await self._read_bytes(8))[0]

        if not opcode_is_control:
            if self.server_terminated:
                # We sent a close frame (1009, 1007, 1003, shutdown...): read and ignore data frames
                # until the client's close frame arrives.
                await self._discard(4 + payloadlen)
                return None
            if opcode == 0 and self._fragmented_message_buffer is None:
                return self._fail(1002, "continuation frame without a message in progress")
            if opcode != 0 and self._fragmented_message_buffer is not None:
                return self._fail(1002, "new data frame while a fragmented message is in progress")
            if opcode in DATA_OPCODES:
                self._frame_compressed = bool(self._decompressor is not None and header & self.RSV1)
            so_far = len(self._fragmented_message_buffer) if self._fragmented_message_buffer is not None else 0
            if so_far + payloadlen > self.params.max_message_size:
                # SPEC 9.1: over the limit (inclusive limit: exactly max passes). Close 1009, drop
                # what was buffered, and discard the payload so the close handshake stays clean.
                self._fragmented_message_buffer = None
                self.close(1009, "message too big")
                await self._discard(4 + payloadlen)
                return None

        self._frame_mask = await self._read_bytes(4)
        data = _websocket_mask(self._frame_mask, await self._read_bytes(payloadlen))

        if opcode_is_control:
            pass
        elif opcode == 0:
            assert self._fragmented_message_buffer is not None
            self._fragmented_message_buffer.extend(data)
            if is_final_frame:
                opcode = self._fragmented_message_opcode
                data = bytes(self._fragmented_message_buffer)
                self._fragmented_message_buffer = None
        elif not is_final_frame:
            self._fragmented_message_opcode = opcode
            self._fragmented_message_buffer = bytearray(data)

        if is_final_frame:
            handled = self._handle_message(opcode, data)
            if handled is not None:
                await handled
        return None

    def _handle_message(self, opcode: int, data: bytes) -> asyncio.Future[None] | None:
        if self.client_terminated:
            return None
        if opcode in DATA_OPCODES:
            if self.server_terminated:
                return None
            if self._frame_compressed:
                assert self._decompressor is not None
                try:
                    data = self._decompressor.decompress(data)
                except _DecompressTooLargeError:
                    self.close(1009, "message too big")
                    return None
            self._message_bytes_in += len(data)
            if opcode == 0x2:
                return self._run_callback(self.handler.on_message, data)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self.close(1007, "invalid UTF-8 text")  # SPEC 8.2
                return None
            return self._run_callback(self.handler.on_message, text)
        if opcode == 0x8:
            self.client_terminated = True
            code, reason = self.close_answer(data)
            self.close(code, reason)
            return None
        if opcode == 0x9:
            # SPEC 8.6: every ping is answered (Tornado keeps only the latest unanswered one);
            # the pongs count against the send buffer limit like any queued frame (11.1).
            self.handler.server.on_ping(self.handler, data)
            return None
        if opcode == 0xA:
            self._received_pong = True
            return self._run_callback(self.handler.on_pong, data)
        self._fail(1002, "reserved opcode")
        return None

    @property
    def compressing(self) -> bool:
        """permessage-deflate was negotiated for this connection."""
        return self._compressor is not None

    def pong_frame(self, data: bytes) -> bytes:
        return struct.pack("!BB", 0x8A, len(data)) + data

    def write_frame_bytes(self, frame: bytes) -> None:
        """Queue a frame built elsewhere; a closed stream is not an error here (on_close follows)."""
        with contextlib.suppress(StreamClosedError):
            self.stream.write(frame)

    def close_answer(self, payload: bytes) -> tuple[int, str | None]:
        """The close frame answering a client's close frame (SPEC 8.4, 8.5); records code and reason."""
        if not payload:
            return 1000, None
        if len(payload) == 1:
            return 1002, "invalid close frame"
        code = struct.unpack("!H", payload[:2])[0]
        self.close_code = code
        if code not in VALID_CLOSE_CODES:
            return 1002, "invalid close code"
        try:
            self.close_reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            return 1007, "invalid UTF-8 in close reason"
        return code, None


class AllowMixin:
    """SPEC 2.2: a 405 names the methods of the resource in ``Allow``."""

    ALLOW: tuple[str, ...] = ()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.ALLOW))  # type: ignore[attr-defined]
        super().write_error(status_code, **kwargs)  # type: ignore[misc]


class ServerHandler(AllowMixin, tornado.web.RequestHandler):
    server: ChatServer
    ALLOW = METHODS_PAGE

    def initialize(self, server: ChatServer) -> None:
        self.server = server

    def prepare(self) -> None:
        if self.request.method not in self.ALLOW:
            raise tornado.web.HTTPError(405)

    def head(self, *args: Any) -> Awaitable[None] | None:
        """SPEC 2.2: HEAD as GET (Tornado writes no body for a HEAD request)."""
        return self.get(*args)  # type: ignore[attr-defined, no-any-return]


class StaticHandler(AllowMixin, tornado.web.StaticFileHandler):
    """Static files. SPEC 16.2: a path that cannot name a file (NUL, too long, an OS error) is 404."""

    ALLOW = METHODS_PAGE

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        if "\0" in absolute_path or len(absolute_path) > len(root) + MAX_STATIC_PATH:
            raise tornado.web.HTTPError(404)
        try:
            return super().validate_absolute_path(root, absolute_path)
        except (OSError, ValueError):
            raise tornado.web.HTTPError(404) from None


@tornado.web.stream_request_body
class LoginHandler(ServerHandler):
    """``/login``. The body is streamed in and counted, so that SPEC 3.9's bound gives a 413 (with a
    whole-connection ``max_body_size`` Tornado would answer a bare 400)."""

    ALLOW = METHODS_LOGIN
    body: bytearray

    def prepare(self) -> None:
        super().prepare()
        self.body = bytearray()
        if self.request.method != "POST":
            return
        declared = self.request.headers.get("Content-Length")
        limit = self.server.login_body_limit()
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            self.too_large()
            return
        # Tornado's own bound stays as a safety net above ours (it would answer a bare 400)
        self.request.connection.set_max_body_size(2 * limit)  # type: ignore[union-attr]

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        self.body += chunk
        if len(self.body) > self.server.login_body_limit():
            self.too_large()

    def too_large(self) -> None:
        self.set_status(413)
        self.set_header("Connection", "close")
        self.finish(f"Payload Too Large: a login form is at most {self.server.login_body_limit()} bytes\n")

    def get(self) -> None:
        self.render("login.html", hint="")

    def post(self) -> None:
        arguments: dict[str, list[bytes]] = {}
        files: dict[str, list[tornado.httputil.HTTPFile]] = {}
        try:
            tornado.httputil.parse_body_arguments(
                self.request.headers.get("Content-Type", ""), bytes(self.body), arguments, files, self.request.headers
            )
        except tornado.httputil.HTTPInputError:
            arguments = {}  # a malformed form has no nickname field: 400 below
        # Not get_body_argument(): it turns control characters into spaces, hiding them from 3.2.
        values = arguments.get("nickname") or [b""]
        try:
            raw = values[0].decode("utf-8")
        except UnicodeDecodeError:
            self.set_status(400)
            self.render("login.html", hint=HINT_ENCODING)
            return
        nickname, hint = self.server.validate_nickname(raw)
        if nickname is None:
            self.set_status(400)
            self.render("login.html", hint=hint)
        elif self.server.nickname_in_use(nickname):
            self.set_status(409)
            self.render("login.html", hint=HINT_IN_USE)
        else:
            self.set_signed_cookie(
                NICKNAME_COOKIE, nickname, expires_days=None, httponly=True, samesite="Lax", path="/"
            )
            self.redirect("/", status=303)


class ChatPageHandler(ServerHandler):
    def get(self) -> None:
        nickname = self.server.authenticate(self)
        if nickname is None:
            self.redirect("/login", status=303)
        else:
            self.render("chat.html", nickname=nickname)


class StatsHandler(ServerHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(self.server.stats()))


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


class ChatServer:
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
        self.started = time.monotonic()
        self.process = psutil.Process()
        self._rss = 0
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

    def rss_bytes(self) -> int:
        """The resident set size; the last one read when /proc cannot be opened (out of descriptors)."""
        with contextlib.suppress(OSError, psutil.Error):
            self._rss = self.process.memory_info().rss
        return self._rss

    def stats(self) -> dict[str, Any]:
        return {
            "server": self.name,
            "framework_version": tornado.version,
            "connections": len(self.sockets),
            "online": len(self.room),
            "messages_in": self.messages_in,
            "deliveries_out": self.deliveries_out,
            "slow_consumer_closes": self.slow_consumer_closes,
            "rss_bytes": self.rss_bytes(),
            "uptime_s": round(time.monotonic() - self.started, 3),
            "cpu_s": round(time.process_time(), 4),
        }

    # ---- login (SPEC 3, 4) -----------------------------------------------------------------

    def validate_nickname(self, raw: str | None) -> tuple[str | None, str]:
        """(nickname, "") when valid, else (None, hint). SPEC 3.2."""
        nickname = strip_nickname(raw or "")
        if not nickname:
            return None, HINT_EMPTY
        if len(nickname) > MAX_NICKNAME_LENGTH:
            return None, HINT_TOO_LONG
        if any(unicodedata.category(ch) == "Cc" for ch in nickname):
            return None, HINT_CONTROL
        return nickname, ""

    def nickname_in_use(self, nickname: str) -> bool:
        return nickname in self.room

    def authenticate(self, handler: tornado.web.RequestHandler) -> str | None:
        """The nickname from a valid signed cookie, else None (SPEC 4.1, 6.2)."""
        value = handler.get_signed_cookie(NICKNAME_COOKIE, max_age_days=COOKIE_MAX_AGE_DAYS)
        if value is None:
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None

    # ---- handshake (SPEC 6) ----------------------------------------------------------------

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

    # ---- connection life cycle (SPEC 6.6, 7) -----------------------------------------------

    def on_open(self, conn: ChatSocketHandler) -> None:
        self.sockets.add(conn)
        self.apply_nodelay(conn)
        if self.shutting_down:
            conn.close(1001, "server shutdown")
            return
        if self.nickname_in_use(conn.nickname):
            self.refuse_duplicate(conn)
            return
        self.room[conn.nickname] = conn
        conn.joined = True
        self.on_join(conn)
        self.schedule_pings(conn)

    def apply_nodelay(self, conn: ChatSocketHandler) -> None:
        """SPEC 13.1: TCP_NODELAY set, or explicitly cleared with --no-nodelay."""
        conn.set_nodelay(self.options.nodelay)

    def refuse_duplicate(self, conn: ChatSocketHandler) -> None:
        conn.close(4409, "nickname in use")

    def on_join(self, conn: ChatSocketHandler) -> None:
        self.broadcast(f"~~~{conn.nickname}进入了聊天室~~~", exclude=conn)

    def on_message(self, conn: ChatSocketHandler, message: str | bytes) -> Awaitable[None] | None:
        if isinstance(message, bytes):
            conn.close(1003, "binary messages are not accepted")  # SPEC 8.1
            return None
        if not conn.joined:
            return None
        self.messages_in += 1
        return self.broadcast(f"{conn.nickname}说：{message}", exclude=conn)

    def on_leave(self, conn: ChatSocketHandler) -> None:
        """SPEC 7.5: the leave line exactly once, whatever closed the connection."""
        if not conn.joined:
            return
        conn.joined = False
        if self.room.get(conn.nickname) is conn:
            del self.room[conn.nickname]
        self.cancel_pings(conn)
        self.broadcast(f"~~~{conn.nickname}离开了聊天室~~~", exclude=conn)

    def on_close(self, conn: ChatSocketHandler) -> None:
        self.sockets.discard(conn)
        self.on_leave(conn)
        self.cancel_pings(conn)
        if self._all_closed is not None and not self.sockets:
            self._all_closed.set()

    # ---- relaying (SPEC 7.2-7.4, 11) -------------------------------------------------------

    def relay_targets(self, exclude: ChatSocketHandler | None) -> list[ChatSocketHandler]:
        return [conn for conn in self.room.values() if conn is not exclude]

    def broadcast(self, text: str, exclude: ChatSocketHandler | None = None) -> Awaitable[None] | None:
        """Queue ``text`` to every relay target without waiting on any of them (SPEC 7.4)."""
        frame = text_frame(text.encode("utf-8"))
        slow = [conn for conn in self.relay_targets(exclude) if not self.deliver(conn, text, frame)]
        for conn in slow:
            self.close_slow_consumer(conn)
        return None

    def deliver(self, conn: ChatSocketHandler, text: str, frame: bytes) -> bool:
        """Queue one frame; False when the connection is over its send buffer limit.

        Uncompressed connections get the frame built once per broadcast, written to the IOStream:
        ``write_message`` would encode and frame the text again per receiver and wrap every write in
        an asyncio Task, which for a stalled client costs ~1.5 KB of memory per queued message on top
        of the message itself (measured), breaking SPEC 11.3's bound for small messages.
        """
        proto = conn.ws_connection
        if not isinstance(proto, ChatProtocol) or proto.is_closing():
            return True
        if not self.enforce_send_buffer(conn, len(frame)):
            return False
        if proto.compressing:  # per-connection compressor state: Tornado frames it
            try:
                conn.write_message(text).add_done_callback(_retrieve)
            except WebSocketClosedError:
                return True
        else:
            proto.write_frame_bytes(frame)
        self.deliveries_out += 1
        return True

    def queued_bytes(self, conn: ChatSocketHandler) -> int:
        """Bytes queued for ``conn`` but not yet written to its socket.

        IOStream has no public accessor; ``len(_write_buffer)`` is what its own
        ``max_write_buffer_size`` check uses. (Setting ``max_write_buffer_size`` instead would make
        every write, close frames included, raise StreamBufferFullError.)
        """
        stream = conn.ws_stream
        return len(stream._write_buffer) if stream is not None else 0

    def enforce_send_buffer(self, conn: ChatSocketHandler, size: int) -> bool:
        """SPEC 11.1: may ``size`` more bytes be queued for ``conn``?"""
        return self.queued_bytes(conn) + size <= self.options.send_buffer_limit

    def close_slow_consumer(self, conn: ChatSocketHandler) -> None:
        if not conn.joined:
            return
        self.slow_consumer_closes += 1
        self.close_and_drop(conn, 1008, "slow consumer", CLOSE_GRACE)
        self.on_leave(conn)

    def close_and_drop(self, conn: ChatSocketHandler, code: int, reason: str, grace: float) -> None:
        """Send a close frame, and drop TCP if the close handshake is not over after ``grace`` s."""
        stream = conn.ws_stream
        conn.close(code, reason)
        if stream is not None and not stream.closed():
            asyncio.get_running_loop().call_later(grace, stream.close)

    # ---- pings (SPEC 10) -------------------------------------------------------------------

    def schedule_pings(self, conn: ChatSocketHandler) -> None:
        if self.options.ping_interval > 0:
            loop = asyncio.get_running_loop()
            conn.ping_handle = loop.call_later(self.options.ping_interval, self.send_ping, conn)

    def send_ping(self, conn: ChatSocketHandler) -> None:
        conn.ping_handle = None
        if not conn.joined:
            return
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        try:
            conn.ping(b"")
        except (WebSocketClosedError, StreamClosedError):
            return
        if self.options.ping_timeout > 0:
            check: asyncio.TimerHandle | None = None

            def fire() -> None:
                conn.pong_checks.discard(check)  # type: ignore[arg-type]
                self.check_pong(conn, sent_at)

            check = loop.call_later(self.options.ping_timeout, fire)
            conn.pong_checks.add(check)
        conn.ping_handle = loop.call_later(self.options.ping_interval, self.send_ping, conn)

    def on_ping(self, conn: ChatSocketHandler, data: bytes) -> None:
        """SPEC 8.6: answer every ping, in order; a client that pings without reading its pongs is a
        slow consumer once they pass ``send_buffer_limit`` (11.1)."""
        proto = conn.ws_connection
        if not isinstance(proto, ChatProtocol) or proto.is_closing():
            return
        frame = proto.pong_frame(data)
        if not self.enforce_send_buffer(conn, len(frame)):
            self.close_slow_consumer(conn)
            return
        proto.write_frame_bytes(frame)

    def on_pong(self, conn: ChatSocketHandler, data: bytes) -> None:
        conn.last_pong = asyncio.get_running_loop().time()

    def check_pong(self, conn: ChatSocketHandler, sent_at: float) -> None:
        if conn.joined and conn.last_pong < sent_at:
            self.close_ping_timeout(conn)

    def close_ping_timeout(self, conn: ChatSocketHandler) -> None:
        """SPEC 10.2: close 1011 ``ping timeout``, TCP closed within ping_timeout + 1 s of the ping."""
        self.close_and_drop(conn, 1011, "ping timeout", PING_TIMEOUT_CLOSE_GRACE)
        self.on_leave(conn)

    def cancel_pings(self, conn: ChatSocketHandler) -> None:
        if conn.ping_handle is not None:
            conn.ping_handle.cancel()
            conn.ping_handle = None
        for check in conn.pong_checks:
            check.cancel()
        conn.pong_checks.clear()

    # ---- limits (SPEC 9, 3.9, 16.1) --------------------------------------------------------

    def login_body_limit(self) -> int:
        """Largest ``POST /login`` body (SPEC 3.9)."""
        return LOGIN_BODY_LIMIT

    def request_head_timeout(self) -> float:
        """Seconds a connection has for a complete request head (SPEC 16.1)."""
        return REQUEST_HEAD_TIMEOUT

    def message_size_limit(self) -> int:
        """Largest accepted message; Tornado's check is inclusive (exactly the limit passes)."""
        return self.options.max_message_size

    # ---- running and shutdown (SPEC 12, 15) ------------------------------------------------

    async def run(self) -> int:
        app = self.make_app()
        http_server = GuardedHTTPServer(
            app,
            idle_connection_timeout=self.request_head_timeout(),  # Tornado's header_timeout (SPEC 16.1)
            body_timeout=REQUEST_BODY_TIMEOUT,
            max_body_size=self.login_body_limit(),  # SPEC 3.9 (the login handler answers 413 itself)
        )
        http_server.throttle = self.throttle
        try:
            sockets = tornado.netutil.bind_sockets(self.options.port, self.options.host)
        except OSError as exc:
            print(f"error: cannot listen on {self.options.host}:{self.options.port}: {exc}", file=sys.stderr)
            return 2
        http_server.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self.loop_exception)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # Signal handlers first: whoever reads this line may signal at once.
        print(listening_line(self.options.host, port), flush=True)
        await stop.wait()
        await self.shutdown(http_server)
        return 0

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, ConnectionError | StreamClosedError):  # a client reset while we wrote to it
            self.throttle.warn("reset", "client reset its connection: %s", exc)
            return
        loop.default_exception_handler(context)

    async def shutdown(self, http_server: tornado.httpserver.HTTPServer) -> None:
        """SPEC 12.1: stop accepting, close every client with 1001, wait up to 2 s for them."""
        http_server.stop()
        self.shutting_down = True
        self._all_closed = asyncio.Event()
        conns = list(self.sockets)
        for conn in conns:
            conn.joined = False  # no leave lines after the close frames
            self.cancel_pings(conn)
        self.room.clear()
        for conn in conns:
            conn.close(1001, "server shutdown")
        if self.sockets:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), CLOSE_GRACE)
        for conn in list(self.sockets):
            stream = conn.ws_stream
            if stream is not None:
                stream.close()


class GuardedHTTPServer(tornado.httpserver.HTTPServer):
    """HTTPServer whose accept loop survives running out of descriptors (SPEC 16.3).

    ``add_sockets`` registers :class:`~wsbench_servers.hardening.Acceptor` instead of Tornado's
    accept handler (which raises on EMFILE and stays registered: a busy loop of tracebacks), in the
    ``_sockets``/``_handlers`` maps ``stop()`` reads.
    """

    throttle: Throttle

    def add_sockets(self, sockets: Any) -> None:
        # weak: Tornado's HTTP1Connection replaces any close callback set on the stream
        self._accepted_at: weakref.WeakKeyDictionary[IOStream, float] = weakref.WeakKeyDictionary()
        for sock in sockets:
            acceptor = Acceptor(sock, self._handle_connection, self.throttle, shed=self.shed_idle)
            acceptor.start()
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = acceptor.stop

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        self._accepted_at[stream] = time.monotonic()
        super().handle_stream(stream, address)

    def shed_idle(self) -> int:
        """Close connections still served as HTTP (not upgraded) that have waited too long (SPEC 16.3)."""
        now = time.monotonic()
        waiting = {
            conn.stream: self._accepted_at.get(conn.stream, now)
            for conn in self._connections
            if not conn.stream.closed()
        }
        chosen = pick_shed(waiting, now)  # type: ignore[arg-type]
        for stream in chosen:
            stream.close()  # type: ignore[attr-defined]
        return len(chosen)


def is_client_noise(record: logging.LogRecord) -> str | None:
    """SPEC 16.4: what kind of client misbehaviour a Tornado or asyncio log record is about, or None."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, ConnectionError | StreamClosedError):
        return "went away mid-request"
    message = str(record.msg)
    args = record.args if isinstance(record.args, tuple) else ()
    if message.startswith("%d %s") and args and isinstance(args[0], int) and 400 <= args[0] < 500:
        return f"got {args[0]}"  # RequestHandler.log_exception's warning per HTTPError (403, 400, 405...)
    for prefix, key in COOKIE_NOISE:
        if message.startswith(prefix):
            return key
    return None


COOKIE_NOISE = (
    ("Invalid cookie signature", "sent a forged cookie"),
    ("Tampered cookie", "sent a forged cookie"),
    ("Expired cookie", "sent an expired cookie"),
    ("Cookie timestamp in future", "sent a forged cookie"),
    ("Unsupported signed value version", "sent a forged cookie"),
    ("Malformed HTTP message", "sent a malformed request"),
    ("Cross origin websockets not allowed", "sent a cross-origin upgrade"),
)


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a write's outcome as seen: a write to a connection that closed meanwhile is not an error."""
    if not future.cancelled():
        future.exception()


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
