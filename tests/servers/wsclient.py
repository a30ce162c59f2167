"""A blocking, raw-socket WebSocket client for the spec tests.

Written by hand rather than on wsproto or websocket-client on purpose: the tests must send frames no
library will produce (unmasked, RSV bits, reserved opcodes, invalid close codes, split UTF-8) and
observe exactly what the server puts on the wire (the close code it really sent, whether a close
frame came before EOF or RST), which libraries validate or hide.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import http.cookies
import os
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
) -> bytes:
    """One client frame. ``rsv`` is the 3 RSV bits (0-7); ``length`` overrides the declared length."""
    declared = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv & 7) << 4 | opcode & 0xF
    mask_bit = 0x80 if mask else 0
    if declared < 126:
        header = struct.pack("!BB", first, mask_bit | declared)
    elif declared < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, declared)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, declared)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + _mask(payload, key)


def _mask(payload: bytes, key: bytes) -> bytes:
    """RFC 6455 §5.3 masking, as one big-integer XOR with the repeated key (fast for long payloads)."""
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    payload: bytes


class Dropped(Exception):
    """The server closed TCP (``how`` is "eof" or "reset") without (further) frames."""

    def __init__(self, how: str) -> None:
        super().__init__(f"connection dropped by the server ({how})")
        self.how = how


class ServerClosed(Exception):
    """The server sent a close frame."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"server closed the WebSocket with {code} {reason!r}")
        self.code = code
        self.reason = reason


class HandshakeRefused(Exception):
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(f"handshake refused with HTTP {status}: {body[:200]!r}")
        self.status = status
        self.headers = headers
        self.body = body


@dataclass
class CloseResult:
    """How a connection ended: ``code`` None and ``dropped`` True when no close frame came."""

    code: int | None
    reason: str
    dropped: bool
    tcp_end: str  # "eof", "reset" or "open" (still open when we gave up waiting)
    messages: list[str | bytes] = field(default_factory=list)  # data received before the close


def host_port(base_url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(base_url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


@dataclass
class LoginResult:
    status: int
    headers: http.client.HTTPMessage
    body: str
    cookie: str | None  # "nickname=<value>" ready for a Cookie header
    set_cookie: str | None  # the raw Set-Cookie header


def http_request(
    base_url: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    host, port = host_port(base_url)
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def login(base_url: str, nickname: str | None, *, body: bytes | None = None) -> LoginResult:
    """POST /login (form-encoded); the redirect is not followed."""
    if body is None:
        body = b"" if nickname is None else urllib.parse.urlencode({"nickname": nickname}).encode()
    status, headers, data = http_request(
        base_url, "POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    raw = headers.get("Set-Cookie")
    cookie = None
    if raw:
        jar = http.cookies.SimpleCookie()
        jar.load(raw)
        if "nickname" in jar:
            cookie = f"nickname={jar['nickname'].coded_value}"
    return LoginResult(status, headers, data.decode("utf-8", "replace"), cookie, raw)


def login_cookie(base_url: str, nickname: str) -> str:
    result = login(base_url, nickname)
    assert result.status == 303 and result.cookie, (result.status, result.body[:300])
    return result.cookie


class WsClient:
    """One raw WebSocket connection to ``/chat``."""

    def __init__(self, sock: socket.socket, leftover: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.sock = sock
        self.buf = bytearray(leftover)
        self.headers = headers or {}
        self.pings: list[tuple[float, bytes]] = []  # (monotonic time, payload) of server pings seen
        self.autopong = True
        self.closed_by_server: ServerClosed | None = None
        # On a server shared between tests: only text messages containing ``keep`` are returned
        # (tests tag their nicknames with a unique token, so earlier tests' leave lines are skipped).
        self.keep: str | None = None

    # ---- connecting ------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        base_url: str,
        cookie: str | None = None,
        *,
        origin: str | None = None,
        version: str | None = "13",
        extra_headers: dict[str, str] | None = None,
        rcvbuf: int | None = None,
        timeout: float = 5.0,
    ) -> WsClient:
        host, port = host_port(base_url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            "GET /chat HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
        ]
        if version is not None:
            lines.append(f"Sec-WebSocket-Version: {version}")
        if cookie is not None:
            lines.append(f"Cookie: {cookie}")
        if origin is not None:
            lines.append(f"Origin: {origin}")
        for name, value in (extra_headers or {}).items():
            lines.append(f"{name}: {value}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        data = bytearray()
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in data:
            if time.monotonic() > deadline:
                sock.close()
                raise TimeoutError("no handshake answer")
            chunk = sock.recv(65536)
            if not chunk:
                sock.close()
                raise Dropped("eof")
            data += chunk
        head, _, rest = bytes(data).partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status != 101:
            length = int(headers.get("content-length", "0") or 0)
            body = bytearray(rest)
            sock.settimeout(1.0)
            try:
                while len(body) < length:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    body += chunk
            except OSError:
                pass
            sock.close()
            raise HandshakeRefused(status, headers, bytes(body))
        expected = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        assert headers.get("sec-websocket-accept") == expected, headers
        return cls(sock, rest, headers)

    # ---- sending ---------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, opcode: int, payload: bytes = b"", **kwargs: object) -> None:
        self.sock.sendall(build_frame(opcode, payload, **kwargs))  # type: ignore[arg-type]

    def send_text(self, text: str) -> None:
        self.send_frame(OP_TEXT, text.encode("utf-8"))

    def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    # ---- receiving -------------------------------------------------------------------------

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("nothing from the server in time")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(262144)
        except ConnectionResetError:
            raise Dropped("reset") from None
        except TimeoutError:
            raise TimeoutError("nothing from the server in time") from None
        if not chunk:
            raise Dropped("eof")
        self.buf += chunk

    def _need(self, n: int, deadline: float) -> None:
        while len(self.buf) < n:
            self._fill(deadline)

    def recv_frame(self, timeout: float = 5.0) -> Frame:
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        first, second = self.buf[0], self.buf[1]
        assert not second & 0x80, "the server masked a frame"
        length, offset = second & 0x7F, 2
        if length == 126:
            self._need(4, deadline)
            length, offset = struct.unpack("!H", self.buf[2:4])[0], 4
        elif length == 127:
            self._need(10, deadline)
            length, offset = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(offset + length, deadline)
        payload = bytes(self.buf[offset : offset + length])
        del self.buf[: offset + length]
        return Frame(bool(first & 0x80), (first >> 4) & 7, first & 0xF, payload)

    def recv_message(self, timeout: float = 5.0) -> str | bytes:
        """The next data message (fragments joined); answers pings; raises ServerClosed/Dropped."""
        deadline = time.monotonic() + timeout
        parts: list[bytes] = []
        opcode = None
        while True:
            frame = self.recv_frame(max(0.0, deadline - time.monotonic()) or 0.001)
            if frame.opcode == OP_PING:
                self.pings.append((time.monotonic(), frame.payload))
                if self.autopong:
                    self.send_frame(OP_PONG, frame.payload)
                continue
            if frame.opcode == OP_PONG:
                continue
            if frame.opcode == OP_CLOSE:
                code = struct.unpack("!H", frame.payload[:2])[0] if len(frame.payload) >= 2 else None
                self.closed_by_server = ServerClosed(code, frame.payload[2:].decode("utf-8", "replace"))
                raise self.closed_by_server
            if frame.opcode != OP_CONT:
                opcode = frame.opcode
            parts.append(frame.payload)
            if frame.fin:
                data = b"".join(parts)
                parts = []
                if opcode != OP_TEXT:
                    return data
                text = data.decode("utf-8")
                if self.keep is None or self.keep in text:
                    return text

    def recv_text(self, timeout: float = 5.0) -> str:
        message = self.recv_message(timeout)
        assert isinstance(message, str), message
        return message

    def recv_until(self, predicate: object, timeout: float = 5.0) -> list[str | bytes]:
        """Messages up to and including the first one for which ``predicate(message)`` is true."""
        deadline = time.monotonic() + timeout
        seen: list[str | bytes] = []
        while True:
            message = self.recv_message(max(0.001, deadline - time.monotonic()))
            seen.append(message)
            if predicate(message):  # type: ignore[operator]
                return seen

    def messages_within(self, seconds: float) -> list[str | bytes]:
        """Every data message that arrives in the next ``seconds`` (the connection must stay open)."""
        deadline = time.monotonic() + seconds
        seen: list[str | bytes] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return seen
            try:
                seen.append(self.recv_message(remaining))
            except TimeoutError:
                return seen

    def expect_close(self, timeout: float = 5.0, *, reply: bool = True, eof_timeout: float = 3.0) -> CloseResult:
        """Read until the server's close frame (answering it when ``reply``) and the end of TCP."""
        deadline = time.monotonic() + timeout
        messages: list[str | bytes] = []
        try:
            while True:
                messages.append(self.recv_message(max(0.001, deadline - time.monotonic())))
        except ServerClosed as closed:
            if reply:
                with contextlib.suppress(OSError):
                    self.send_close(closed.code if closed.code is not None else None)
            return CloseResult(closed.code, closed.reason, False, self.wait_tcp_end(eof_timeout), messages)
        except Dropped as dropped:
            return CloseResult(None, "", True, dropped.how, messages)

    def wait_tcp_end(self, timeout: float = 3.0) -> str:
        """ "eof" or "reset" once the server closed TCP (frames after the close are ignored)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "open"
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(262144)
            except ConnectionResetError:
                return "reset"
            except TimeoutError:
                return "open"
            if not chunk:
                return "eof"

    def close(self, code: int = 1000, timeout: float = 3.0) -> CloseResult:
        """Clean close from our side: send close, wait for the answer and the server's TCP close."""
        try:
            self.send_close(code)
        except OSError:
            self.sock.close()
            return CloseResult(None, "", True, "reset")
        result = self.expect_close(timeout, reply=False)
        self.sock.close()
        return result

    def abort(self, reset: bool = False) -> None:
        """Drop TCP without a close frame: FIN, or RST with ``reset``."""
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def __enter__(self) -> WsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def join_line(nickname: str) -> str:
    return f"~~~{nickname}进入了聊天室~~~"


def leave_line(nickname: str) -> str:
    return f"~~~{nickname}离开了聊天室~~~"


def said_line(nickname: str, message: str) -> str:
    return f"{nickname}说：{message}"


def unique(prefix: str) -> str:
    return f"{prefix}{os.urandom(3).hex()}"


def chat_client(base_url: str, nickname: str, *, keep: str | None = None, **kwargs: object) -> WsClient:
    """Log in as ``nickname`` and open ``/chat``; ``keep`` filters messages (see ``WsClient.keep``)."""
    client = WsClient.connect(base_url, login_cookie(base_url, nickname), **kwargs)  # type: ignore[arg-type]
    client.keep = keep
    return client


class Room:
    """Clients of one test on a shared server: nicknames get a unique tag, and every client only
    sees lines that mention this test's nicknames."""

    def __init__(self, base_url: str) -> None:
        self.url = base_url
        self.tag = os.urandom(3).hex()
        self.clients: list[WsClient] = []

    def name(self, nickname: str) -> str:
        return f"{nickname}{self.tag}"

    def join(self, nickname: str, **kwargs: object) -> WsClient:
        client = chat_client(self.url, self.name(nickname), keep=self.tag, **kwargs)
        self.clients.append(client)
        return client

    def close_all(self) -> None:
        for client in self.clients:
            with contextlib.suppress(OSError):
                client.close(timeout=1)


class Pump:
    """Reads ``client`` on a background thread (answering its pings) and collects its messages.

    For tests that block on one client while another must keep answering pings. Do not touch the
    pumped client from the test thread until ``stop()``.
    """

    def __init__(self, client: WsClient) -> None:
        self.client = client
        self.messages: list[str | bytes] = []
        self.ended: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.client.recv_message(0.05))
            except TimeoutError:
                continue
            except (ServerClosed, Dropped, OSError) as exc:
                self.ended = exc
                return

    def wait_for(self, message: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while message not in self.messages:
            assert time.monotonic() < deadline, f"{message!r} not received; got {self.messages[-5:]!r}"
            time.sleep(0.01)

    def stop(self) -> list[str | bytes]:
        self._stop.set()
        self._thread.join(2)
        return self.messages
