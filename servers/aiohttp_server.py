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
import base64
import contextlib
import hashlib
import hmac
import html
import json
import logging
import signal
import socket
import struct
import sys
import time
import unicodedata
import urllib.parse
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiohttp import WSCloseCode, WSMsgType, hdrs, web
from aiohttp._websocket import reader_py
from aiohttp.helpers import DEFAULT_CHUNK_SIZE
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_websocket import WebSocketError, ws_ext_gen, ws_ext_parse

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

PING_FRAME = b"\x89\x00"
OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
#: Longest static path looked up (SPEC 16.2: a longer one is 404, not the OS's "File name too long").
MAX_STATIC_PATH = 1024

log = logging.getLogger("wsbench_servers.aiohttp")


def text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented server text frame.

    Written by hand because aiohttp has no synchronous frame API: ``send_str`` is a coroutine that
    awaits the transport's drain. Building the frame once per broadcast and writing the same bytes to
    every transport is also what keeps the fan-out cheap.
    """
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def close_frame(code: int, reason: str) -> bytes:
    """An unmasked server close frame (see ``text_frame`` for why frames are built here)."""
    payload = struct.pack("!H", code) + reason.encode("utf-8")[:123]
    return struct.pack("!BB", 0x88, len(payload)) + payload


def first_urlencoded_field(body: bytes, name: bytes) -> bytes | None:
    """The percent-decoded value of the first ``name`` field of an urlencoded body, as bytes."""
    for field in body.split(b"&"):
        key, _, value = field.partition(b"=")
        if urllib.parse.unquote_to_bytes(key.replace(b"+", b" ")) == name:
            return urllib.parse.unquote_to_bytes(value.replace(b"+", b" "))
    return None


def is_client_noise(record: logging.LogRecord) -> str | None:
    """SPEC 16.4: what kind of client misbehaviour a framework log record is about, or None.

    aiohttp logs "Error handling request" with a traceback for every malformed request line or
    header and for a client that resets mid-request; asyncio logs a reset during a write.
    """
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError) and (exc.code or 400) < 500:
        return "sent a malformed request"
    if isinstance(exc, ConnectionError | asyncio.IncompleteReadError | aiohttp.ClientPayloadError):
        return "went away mid-request"
    return None


class StrictReader(reader_py.WebSocketReader):
    """aiohttp's frame reader plus the checks it lacks (RFC 6455 §5.1, §5.4; SPEC 8.3).

    Subclasses the pure-Python reader (``_has_mask`` holds the current frame's mask bit when
    ``_handle_frame`` runs); the compiled reader's attributes are not reachable from Python.

    - the mask check;
    - "a message in progress" tracked here, by frame: aiohttp 3.14 takes it to mean "the reassembly
      buffer is not empty", so after an empty first fragment (``TEXT fin=0 ""``) it accepts a new
      data frame (relayed) and then a stray continuation (relayed too).
    """

    message_in_progress = False  # a data frame with fin=0 was read, its final fragment was not

    def _feed_data(self, data: bytes) -> None:
        """aiohttp checks a frame's announced size before the frame's own validity: an unmasked,
        stray or out-of-order data frame with a large length got 1009. The violation comes first."""
        try:
            super()._feed_data(data)
        except WebSocketError as exc:
            if exc.code == WSCloseCode.MESSAGE_TOO_BIG and self._frame_breaks_order():
                raise WebSocketError(WSCloseCode.PROTOCOL_ERROR, "protocol violation") from None
            raise

    def _frame_breaks_order(self) -> bool:
        """The frame whose header was just read is unmasked, or out of place (RFC 6455 §5.1, §5.4)."""
        opcode = self._frame_opcode
        if not self._has_mask:
            return True
        if opcode == OP_CONTINUATION:
            return not self.message_in_progress
        return opcode in (OP_TEXT, OP_BINARY) and self.message_in_progress

    def _handle_frame(self, fin: bool, opcode: int, payload: bytes | bytearray, compressed: int) -> None:
        if not self._has_mask:
            raise WebSocketError(WSCloseCode.PROTOCOL_ERROR, "unmasked client frame")
        if opcode in (OP_TEXT, OP_BINARY):
            if self.message_in_progress:
                raise WebSocketError(WSCloseCode.PROTOCOL_ERROR, "new data frame inside a fragmented message")
            self.message_in_progress = not fin
        elif opcode == OP_CONTINUATION:
            if not self.message_in_progress:
                raise WebSocketError(WSCloseCode.PROTOCOL_ERROR, "continuation frame without a message in progress")
            self.message_in_progress = not fin
        super()._handle_frame(fin, opcode, payload, compressed)


def deflate_offer_valid(params: list[tuple[str, str | None]]) -> bool:
    """RFC 7692 §7: is this permessage-deflate offer one the server may accept?

    Invalid: an unknown or repeated parameter, a value on a ``*_no_context_takeover`` flag, a window
    size that is not an integer from 8 to 15 (``client_max_window_bits`` may come without a value).
    aiohttp's own parser accepts several of these (it ignores what it does not understand).
    """
    names = [name for name, _ in params]
    if len(names) != len(set(names)):
        return False
    for name, value in params:
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return False
        elif name in ("server_max_window_bits", "client_max_window_bits"):
            if value is None:
                if name == "server_max_window_bits":
                    return False
            elif not (value.isascii() and value.isdigit() and len(value) <= 2 and 8 <= int(value) <= 15):
                return False
        else:
            return False
    return True


def valid_deflate_offers(header: str) -> str:
    """The permessage-deflate offers of a ``Sec-WebSocket-Extensions`` value that are valid, joined."""
    kept = []
    for offer in header.split(","):
        name, *raw = (part.strip() for part in offer.split(";"))
        params = []
        for param in raw:
            key, eq, value = param.partition("=")
            value = value.strip().strip('"')
            params.append((key.strip().lower(), value if eq else None))
        if name.lower() == "permessage-deflate" and deflate_offer_valid(params):
            kept.append(offer.strip())
    return ", ".join(kept)


class ChatWebSocketResponse(web.WebSocketResponse):
    """WebSocketResponse that parses client frames with :class:`StrictReader`.

    ``_post_start`` is aiohttp 3.14's own, with the reader classes swapped for the pure-Python ones.
    ``close`` sends a close frame only if none was sent yet: ``start_close`` writes its close frame
    itself (sets ``close_sent``), and aiohttp would answer a later protocol error with a second one
    (RFC 6455 §5.5.1: a close frame is sent once).
    """

    close_sent = False
    reader_class: type[reader_py.WebSocketReader] = StrictReader

    def _handshake(self, request: web.BaseRequest) -> tuple[Any, str | None, int, bool]:
        """aiohttp's handshake, with the permessage-deflate negotiation redone on the valid offers only
        (SPEC 16.5): an invalid offer is declined, not accepted with its parameters ignored."""
        headers, protocol, compress, notakeover = super()._handshake(request)
        if self._compress:
            offers = valid_deflate_offers(",".join(request.headers.getall(hdrs.SEC_WEBSOCKET_EXTENSIONS, [])))
            compress, notakeover = ws_ext_parse(offers or None, isserver=True)
            headers.pop(hdrs.SEC_WEBSOCKET_EXTENSIONS, None)
            if compress:
                headers[hdrs.SEC_WEBSOCKET_EXTENSIONS] = ws_ext_gen(
                    compress=compress, isserver=True, server_notakeover=notakeover
                )
        return headers, protocol, compress, notakeover

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if self._writer is None:  # prepare() failed (the client went away): nothing to close
            return False
        if self.close_sent:
            self._set_closed()
            self._close_transport()
            return True
        self.close_sent = True
        return await super().close(code=code, message=message, drain=drain)

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        self._ws_protocol = protocol
        self._writer = writer
        self._reset_heartbeat()
        loop = self._loop
        assert loop is not None
        self._reader = reader_py.WebSocketDataQueue(request._protocol, DEFAULT_CHUNK_SIZE, loop=loop)
        self._parser = self.reader_class(
            self._reader, self._max_msg_size, compress=bool(self._compress), decode_text=self._decode_text
        )
        request.protocol.set_parser(self._parser, data_received_cb=None)
        request.protocol.keep_alive(False)


class Connection:
    """One accepted ``/chat`` connection."""

    __slots__ = (
        "close_task",
        "closing",
        "joined",
        "last_pong",
        "nickname",
        "pending",
        "ping_handle",
        "pong_checks",
        "send_tail",
        "transport",
        "ws",
    )

    def __init__(self, ws: ChatWebSocketResponse, transport: asyncio.Transport, nickname: str) -> None:
        self.ws = ws
        self.transport = transport
        self.nickname = nickname
        self.joined = False
        self.closing = False  # a close frame was sent or the transport is going away: send nothing more
        self.last_pong = 0.0
        self.pending = 0  # bytes handed to send_str tasks (compressed connections) but not yet written
        self.ping_handle: asyncio.TimerHandle | None = None
        self.pong_checks: set[asyncio.TimerHandle] = set()
        self.close_task: asyncio.Task[None] | None = None
        self.send_tail: asyncio.Future[None] | None = None  # the last send_str task (compressed only)

    @property
    def compressed(self) -> bool:
        return bool(self.ws.compress)


Refusal = tuple[int, str, dict[str, str]]


class ChatServer:
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
        self.started = time.monotonic()
        self.process = psutil.Process()
        self._rss = 0
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

    @web.middleware
    async def guard_static(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """SPEC 16.2: a static path that cannot name a file (NUL, too long, an OS error) is 404, not 500."""
        if not request.path.startswith("/static/"):
            return await handler(request)
        if len(request.path) > MAX_STATIC_PATH or "\0" in request.path:
            raise web.HTTPNotFound()
        try:
            return await handler(request)
        except (OSError, ValueError):
            raise web.HTTPNotFound() from None

    def render(self, name: str, status: int = 200, **values: str) -> web.Response:
        """Fill ``{{ key }}`` placeholders of a shared template, HTML-escaped (SPEC 3.6)."""
        page = self._templates[name]
        for key, value in values.items():
            page = page.replace("{{ " + key + " }}", html.escape(value))
        return web.Response(status=status, text=page, content_type="text/html", charset="utf-8")

    def rss_bytes(self) -> int:
        """The resident set size; the last one read when /proc cannot be opened (out of descriptors)."""
        with contextlib.suppress(OSError, psutil.Error):
            self._rss = self.process.memory_info().rss
        return self._rss

    def stats(self) -> dict[str, Any]:
        return {
            "server": self.name,
            "framework_version": aiohttp.__version__,
            "connections": len(self.sockets),
            "online": len(self.room),
            "messages_in": self.messages_in,
            "deliveries_out": self.deliveries_out,
            "slow_consumer_closes": self.slow_consumer_closes,
            "rss_bytes": self.rss_bytes(),
            "uptime_s": round(time.monotonic() - self.started, 3),
            "cpu_s": round(time.process_time(), 4),
        }

    async def stats_page(self, request: web.Request) -> web.Response:
        return web.Response(
            text=json.dumps(self.stats()), content_type="application/json", headers={"Cache-Control": "no-store"}
        )

    # ---- login (SPEC 3, 4) -----------------------------------------------------------------

    async def login_page(self, request: web.Request) -> web.Response:
        return self.render("login.html", hint="")

    async def login(self, request: web.Request) -> web.Response:
        limit = self.login_body_limit()
        if request.content_length is not None and request.content_length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
        try:
            async with asyncio.timeout(REQUEST_BODY_TIMEOUT):  # SPEC 16.1
                raw = await self.form_nickname(request)
        except UnicodeDecodeError:
            return self.render("login.html", status=400, hint=HINT_ENCODING)
        except TimeoutError:
            self.throttle.warn("slow body", "client sent a /login body slower than %g s: closed", REQUEST_BODY_TIMEOUT)
            raise web.HTTPRequestTimeout() from None
        except (web.HTTPException, asyncio.CancelledError):
            raise
        except (ConnectionError, HttpProcessingError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
            # the client went away, or its body is cut short: nobody to answer (SPEC 16.4: no traceback)
            self.throttle.warn("body", "client /login body ended early or was malformed")
            raise web.HTTPBadRequest() from None
        except (ValueError, LookupError, TypeError, AssertionError):
            # a malformed multipart body (aiohttp's parser raises these)
            return self.render("login.html", status=400, hint=HINT_ENCODING)
        nickname, hint = self.validate_nickname(raw)
        if nickname is None:
            return self.render("login.html", status=400, hint=hint)
        if self.nickname_in_use(nickname):
            return self.render("login.html", status=409, hint=HINT_IN_USE)
        response = web.Response(status=303, headers={"Location": "/"})
        response.set_cookie(NICKNAME_COOKIE, self.sign_nickname(nickname), httponly=True, samesite="Lax", path="/")
        return response

    async def form_nickname(self, request: web.Request) -> str | None:
        """The first ``nickname`` form field (SPEC 3.2); raises UnicodeDecodeError when it is not UTF-8.

        Parsed here, not with ``request.post()``: that decodes every field with errors="replace" (bad
        bytes become U+FFFD instead of a 400) or with a multipart part's declared charset (latin-1
        bytes become text), and an invalid *other* field must not refuse a valid nickname.
        """
        if request.content_type == "application/x-www-form-urlencoded":
            value = first_urlencoded_field(await request.read(), b"nickname")
        elif request.content_type.startswith("multipart/"):
            value = await self.first_multipart_field(request, "nickname")
        else:
            await request.read()  # no form: no nickname, but the body is bounded all the same (3.9)
            return None
        return None if value is None else value.decode("utf-8")

    async def first_multipart_field(self, request: web.Request, name: str) -> bytes | None:
        """The raw bytes of the first part named ``name``; the whole body counted against 3.9's bound."""
        reader = await request.multipart()
        total = 0
        found: bytes | None = None
        while True:
            part = await reader.next()
            if part is None:
                return found
            if not isinstance(part, aiohttp.BodyPartReader):
                raise ValueError("nested multipart")
            data = bytearray()
            while chunk := await part.read_chunk(4096):
                total += len(chunk)
                if total > self.login_body_limit():
                    raise web.HTTPRequestEntityTooLarge(max_size=self.login_body_limit(), actual_size=total)
                data += chunk
            if found is None and part.name == name:
                found = bytes(data)

    async def chat_page(self, request: web.Request) -> web.Response:
        nickname = self.authenticate(request)
        if nickname is None:
            return web.Response(status=303, headers={"Location": "/login"})
        return self.render("chat.html", nickname=nickname)

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

    def _mac(self, payload: str) -> str:
        """The MAC of an ASCII payload (``authenticate`` refuses any other cookie before this)."""
        digest = hmac.new(self._cookie_key, payload.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def sign_nickname(self, nickname: str, issued: int | None = None) -> str:
        """``base64url(nickname).ISSUED.base64url(HMAC-SHA256)``: aiohttp has no signed cookies of its own.

        ISSUED is the login time (Unix seconds), covered by the MAC, for SPEC 3.4's 31-day lifetime.
        (aiohttp_session would add a session store; a stdlib HMAC is all SPEC 3.4 needs.)
        """
        payload = base64.urlsafe_b64encode(nickname.encode("utf-8")).rstrip(b"=").decode("ascii")
        signed = f"{payload}.{int(time.time()) if issued is None else issued}"
        return f"{signed}.{self._mac(signed)}"

    def authenticate(self, request: web.Request) -> str | None:
        """The nickname from a valid signed cookie, else None (SPEC 4.1, 6.2)."""
        return self.cookie_nickname(request.cookies.get(NICKNAME_COOKIE, ""), time.time())

    def cookie_nickname(self, value: str, now: float) -> str | None:
        """The nickname of a signed cookie value that is at most COOKIE_MAX_AGE_DAYS old (SPEC 3.4)."""
        signed, dot, mac = value.rpartition(".")
        payload, dot2, issued = signed.partition(".")
        if not dot or not dot2 or not payload or not issued.isdigit() or not value.isascii():
            return None
        if not hmac.compare_digest(self._mac(signed), mac):
            return None
        if now - int(issued) > COOKIE_MAX_AGE_DAYS * 86400:
            return None
        try:
            return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None

    # ---- handshake (SPEC 6) ----------------------------------------------------------------

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

    # ---- connection life cycle (SPEC 6.6, 7, 8) --------------------------------------------

    def on_open(self, conn: Connection) -> None:
        self.apply_nodelay(conn)
        if self.shutting_down:
            self.start_close(conn, 1001, "server shutdown", CLOSE_GRACE)
            return
        if self.nickname_in_use(conn.nickname):
            self.refuse_duplicate(conn)
            return
        self.room[conn.nickname] = conn
        conn.joined = True
        self.on_join(conn)
        self.schedule_pings(conn)

    def apply_nodelay(self, conn: Connection) -> None:
        """SPEC 13.1: TCP_NODELAY set, or explicitly cleared with --no-nodelay (asyncio sets it)."""
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if self.options.nodelay else 0)

    def refuse_duplicate(self, conn: Connection) -> None:
        self.start_close(conn, 4409, "nickname in use", CLOSE_GRACE)

    def on_join(self, conn: Connection) -> None:
        self.broadcast(f"~~~{conn.nickname}进入了聊天室~~~", exclude=conn)

    async def receive_loop(self, conn: Connection) -> None:
        """Read until the close handshake is over or the connection is gone."""
        ws = conn.ws
        while True:
            msg = await ws.receive()
            kind = msg.type
            if kind is WSMsgType.TEXT:
                if conn.closing:
                    continue  # we sent a close frame: ignore data until the client's close frame
                if conn.compressed and len(msg.data.encode("utf-8")) > self.message_size_limit():
                    # aiohttp checks inflated messages with ">" against max_msg_size (uncompressed
                    # ones with ">="), so the +1 in ``chat`` lets one byte too many through here.
                    self.start_close(conn, 1009, "message too big", CLOSE_GRACE)
                    continue
                result = self.on_message(conn, msg.data)
                if result is not None:
                    await result
            elif kind is WSMsgType.PING:
                if not conn.closing:
                    # SPEC 8.6. pong() awaits the drain, so a client that pings without reading is
                    # paced by its own socket. It raises once the client has reset the connection.
                    try:
                        await ws.pong(msg.data)
                    except (ConnectionError, RuntimeError):
                        return
            elif kind is WSMsgType.PONG:
                self.on_pong(conn, msg.data)
            elif kind is WSMsgType.BINARY:
                self.start_close(conn, 1003, "binary messages are not accepted", CLOSE_GRACE)  # SPEC 8.1
            elif kind is WSMsgType.CLOSE:
                if conn.closing:
                    conn.transport.close()  # the client answered our close frame: handshake over
                else:
                    conn.closing = True
                    code, reason = self.close_answer(msg.data)
                    with contextlib.suppress(ConnectionError):
                        await ws.close(code=code, message=reason.encode("utf-8"), drain=False)
                return
            else:  # CLOSED, or ERROR (aiohttp itself closed with 1002/1007/1009)
                return

    def close_answer(self, code: int) -> tuple[int, str]:
        """The close frame answering a client's close frame (SPEC 8.4, 8.5).

        aiohttp already answered 1-byte payloads and codes below 3000 it does not know with 1002,
        and bad UTF-8 reasons with 1007; an empty close frame arrives as code 0.
        """
        if code == 0:
            return 1000, ""
        if code not in VALID_CLOSE_CODES:
            return 1002, "invalid close code"
        return code, ""

    def on_message(self, conn: Connection, text: str) -> Awaitable[None] | None:
        if not conn.joined:
            return None
        self.messages_in += 1
        return self.broadcast(f"{conn.nickname}说：{text}", exclude=conn)

    def on_leave(self, conn: Connection) -> None:
        """SPEC 7.5: the leave line exactly once, whatever closed the connection."""
        if not conn.joined:
            return
        conn.joined = False
        if self.room.get(conn.nickname) is conn:
            del self.room[conn.nickname]
        self.cancel_pings(conn)
        self.broadcast(f"~~~{conn.nickname}离开了聊天室~~~", exclude=conn)

    def on_close(self, conn: Connection) -> None:
        conn.closing = True
        self.sockets.discard(conn)
        self.on_leave(conn)
        self.cancel_pings(conn)
        if self._all_closed is not None and not self.sockets:
            self._all_closed.set()

    def start_close(self, conn: Connection, code: int, reason: str, grace: float) -> None:
        """Send a close frame now, and drop TCP if the client has not answered it after ``grace`` s.

        The frame is written to the transport directly rather than with ``ws.close()``: that
        coroutine closes TCP right after the frame when the handler is inside ``receive()``,
        without waiting for the client's close frame; ``receive_loop`` finishes the handshake.
        """
        if conn.closing:
            return
        conn.closing = True
        conn.ws.close_sent = True
        frame = close_frame(code, reason)
        if conn.pending:
            task = asyncio.ensure_future(self._close_after_pending(conn, frame))
            task.add_done_callback(_retrieve)
            conn.close_task = task
        elif not conn.transport.is_closing():
            conn.transport.write(frame)
        asyncio.get_running_loop().call_later(grace, conn.transport.abort)

    async def _close_after_pending(self, conn: Connection, frame: bytes) -> None:
        """Compressed connections: the close frame goes after the send_str tasks already queued."""
        while conn.pending and not conn.transport.is_closing():
            await asyncio.sleep(0.005)
        if not conn.transport.is_closing():
            conn.transport.write(frame)

    # ---- relaying (SPEC 7.2-7.4, 11) -------------------------------------------------------

    def relay_targets(self, exclude: Connection | None) -> list[Connection]:
        return [conn for conn in self.room.values() if conn is not exclude]

    def broadcast(self, text: str, exclude: Connection | None = None) -> Awaitable[None] | None:
        """Queue ``text`` to every relay target without waiting on any of them (SPEC 7.4)."""
        frame = text_frame(text.encode("utf-8"))
        slow = [conn for conn in self.relay_targets(exclude) if not self.deliver(conn, text, frame)]
        for conn in slow:
            self.close_slow_consumer(conn)
        return None

    def deliver(self, conn: Connection, text: str, frame: bytes) -> bool:
        """Queue one frame; False when the connection is over its send buffer limit."""
        if conn.closing or conn.transport.is_closing():
            return True
        if not self.enforce_send_buffer(conn, len(frame)):
            return False
        if conn.compressed:
            # permessage-deflate state is per connection, and aiohttp compresses a large message in an
            # executor, so a later small one could overtake it (SPEC 7.3): each send waits for the last.
            size = len(frame)
            conn.pending += size
            task = asyncio.ensure_future(_send_after(conn.send_tail, conn.ws, text))
            conn.send_tail = task
            task.add_done_callback(lambda t, c=conn, n=size: _sent(t, c, n))
        else:
            conn.transport.write(frame)
        self.deliveries_out += 1
        return True

    def queued_bytes(self, conn: Connection) -> int:
        """Bytes queued for ``conn`` but not yet written to its socket."""
        return conn.transport.get_write_buffer_size() + conn.pending

    def enforce_send_buffer(self, conn: Connection, size: int) -> bool:
        """SPEC 11.1: may ``size`` more bytes be queued for ``conn``?"""
        return self.queued_bytes(conn) + size <= self.options.send_buffer_limit

    def close_slow_consumer(self, conn: Connection) -> None:
        if not conn.joined:
            return
        self.slow_consumer_closes += 1
        self.start_close(conn, 1008, "slow consumer", CLOSE_GRACE)
        self.on_leave(conn)

    # ---- pings (SPEC 10) -------------------------------------------------------------------

    def schedule_pings(self, conn: Connection) -> None:
        if self.options.ping_interval > 0:
            loop = asyncio.get_running_loop()
            conn.ping_handle = loop.call_later(self.options.ping_interval, self.send_ping, conn)

    def send_ping(self, conn: Connection) -> None:
        conn.ping_handle = None
        if not conn.joined or conn.closing or conn.transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        conn.transport.write(PING_FRAME)  # written directly like the broadcast frames (no drain wait)
        if self.options.ping_timeout > 0:
            check: asyncio.TimerHandle | None = None

            def fire() -> None:
                conn.pong_checks.discard(check)  # type: ignore[arg-type]
                self.check_pong(conn, sent_at)

            check = loop.call_later(self.options.ping_timeout, fire)
            conn.pong_checks.add(check)
        conn.ping_handle = loop.call_later(self.options.ping_interval, self.send_ping, conn)

    def on_pong(self, conn: Connection, data: bytes) -> None:
        conn.last_pong = asyncio.get_running_loop().time()

    def check_pong(self, conn: Connection, sent_at: float) -> None:
        if conn.joined and conn.last_pong < sent_at:
            self.close_ping_timeout(conn)

    def close_ping_timeout(self, conn: Connection) -> None:
        """SPEC 10.2: close 1011 ``ping timeout``, TCP closed within ping_timeout + 1 s of the ping."""
        self.start_close(conn, 1011, "ping timeout", PING_TIMEOUT_CLOSE_GRACE)
        self.on_leave(conn)

    def cancel_pings(self, conn: Connection) -> None:
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
        """Largest accepted message, inclusive (``chat`` adds 1 for aiohttp's exclusive check)."""
        return self.options.max_message_size

    # ---- running and shutdown (SPEC 12, 15) ------------------------------------------------

    async def run(self) -> int:
        # keepalive_timeout also bounds the wait for the first request head (SPEC 16.1): aiohttp arms
        # it at connection_made and closes a connection whose handler is still waiting for a request.
        runner = web.AppRunner(
            self.make_app(),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=0.5,
            keepalive_timeout=self.request_head_timeout(),
        )
        await runner.setup()
        assert runner.server is not None
        self._runner_server = runner.server
        try:
            sock = listening_socket(self.options.host, self.options.port)
        except OSError as exc:
            print(f"error: cannot listen on {self.options.host}:{self.options.port}: {exc}", file=sys.stderr)
            await runner.cleanup()
            return 2
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self.loop_exception)
        self.acceptor = Acceptor(sock, self.accepted, self.throttle, shed=self.shed_idle)
        self.acceptor.start()
        port = sock.getsockname()[1]
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # Signal handlers first: whoever reads this line may signal at once.
        print(listening_line(self.options.host, port), flush=True)
        await stop.wait()
        self.acceptor.stop()
        sock.close()
        await self.shutdown(runner)
        return 0

    def accepted(self, sock: socket.socket, address: object) -> None:
        """Hand an accepted socket to aiohttp (our :class:`Acceptor` replaces asyncio's accept loop)."""
        task = asyncio.ensure_future(asyncio.get_running_loop().connect_accepted_socket(self._runner_server, sock))
        task.add_done_callback(_retrieve)

    def shed_idle(self) -> int:
        """Out of descriptors: close connections that have not sent a complete request (SPEC 16.3).

        aiohttp keeps no accept time; ``_next_keepalive_close_time`` is connection_made's time plus
        the keep-alive (= request head) timeout until the first request arrives.
        """
        server = self._runner_server
        if server is None:
            return 0
        waiting = {
            handler: getattr(handler, "_next_keepalive_close_time", 0.0) - self.request_head_timeout()
            for handler in server.connections
            if getattr(handler, "_request_count", 1) == 0
        }
        chosen = pick_shed(waiting, asyncio.get_running_loop().time())
        for handler in chosen:
            if handler.transport is not None:  # type: ignore[attr-defined]
                handler.transport.abort()  # type: ignore[attr-defined]
        return len(chosen)

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, ConnectionError):  # a client reset while asyncio wrote to it
            self.throttle.warn("reset", "client reset its connection: %s", exc)
            return
        loop.default_exception_handler(context)

    async def shutdown(self, runner: web.AppRunner) -> None:
        """SPEC 12.1: stop accepting, close every client with 1001, wait up to 2 s for them."""
        self.shutting_down = True
        self._all_closed = asyncio.Event()
        conns = list(self.sockets)
        for conn in conns:
            conn.joined = False  # no leave lines after the close frames
            self.cancel_pings(conn)
        self.room.clear()
        for conn in conns:
            self.start_close(conn, 1001, "server shutdown", CLOSE_GRACE)
        if self.sockets:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), CLOSE_GRACE)
        for conn in list(self.sockets):
            conn.transport.abort()
        await runner.cleanup()


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a task's outcome as seen: a write to a connection that closed meanwhile is not an error."""
    if not task.cancelled():
        task.exception()


async def _send_after(previous: asyncio.Future[None] | None, ws: web.WebSocketResponse, text: str) -> None:
    if previous is not None and not previous.done():
        await asyncio.wait([previous])  # its outcome is _sent's business
    await ws.send_str(text)


def _sent(task: asyncio.Future[None], conn: Connection, size: int) -> None:
    conn.pending -= size
    _retrieve(task)


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock


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
