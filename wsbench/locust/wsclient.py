"""One chat client under gevent: log in (SPEC 3), open ``/chat`` (SPEC 6), send, read in a greenlet.

The login is one ``http.client`` POST (gevent-patched socket). The WebSocket handshake and sending are
websocket-client's (a well-kept library that runs on gevent-patched sockets); receiving bypasses
its per-frame ``recv`` path and cuts frames out of whole socket reads with
:class:`wsbench.locust.frames.FrameReader` (measured several times cheaper, see that module).

Nothing here imports Locust; the callbacks decide what a received batch or a close means.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

import gevent
import websocket

from wsbench.core import stamps
from wsbench.core.frame_reads import OneFrameReads
from wsbench.locust.frames import OP_CLOSE, OP_PING, Control, FrameError, FrameReader, close_code_reason

ABNORMAL = 1006  # RFC 6455 §7.4.1: the connection closed without a close frame
RECV_BYTES = 256 * 1024

#: ``on_texts(texts, recv_ns)``: text messages completed by one socket read, and when it returned
OnTexts = Callable[[list[bytes], int], None]
#: ``on_closed(code, reason, initiated_by_us)``
OnClosed = Callable[[int, str, bool], None]
#: a probe receiver's ``on_probe_text(text, recv_ns, kernel_realtime_ns, same_stamp_as_previous)``
OnProbeText = Callable[[bytes, int, int, bool], None]


class ConnectFailure(Exception):
    """Login or handshake failed; ``kind`` is ``login`` or ``connect``, ``status`` the HTTP status if any."""

    def __init__(self, kind: str, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.status = status


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int

    @classmethod
    def from_url(cls, url: str) -> Target:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected http://HOST:PORT, got {url!r}")
        return cls(parts.hostname, parts.port or 80)

    @property
    def ws_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}/chat"


def login(target: Target, nickname: str, timeout: float) -> str:
    """POST /login; returns the ``Cookie`` header value (SPEC 3.4, 3.5: any 2xx/3xx that sets it)."""
    conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        body = urllib.parse.urlencode({"nickname": nickname})
        conn.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ConnectFailure("login", f"POST /login: {exc or type(exc).__name__}") from None
    finally:
        conn.close()
    if not 200 <= response.status < 400:
        raise ConnectFailure("login", f"POST /login answered {response.status}", response.status)
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_all("Set-Cookie") or []:
        try:
            jar.load(header)
        except CookieError:
            continue
    morsel = jar.get("nickname")
    if morsel is None:
        raise ConnectFailure("login", f"POST /login answered {response.status} without a nickname cookie")
    return f"nickname={morsel.coded_value}"


class ChatConnection:
    """An open ``/chat`` WebSocket with a reading greenlet (started by :meth:`start_reading`)."""

    def __init__(self, ws: websocket.WebSocket, on_texts: OnTexts, on_closed: OnClosed, clock_ns: Callable[[], int]):
        self.ws = ws
        self.on_texts = on_texts
        self.on_closed = on_closed
        self.clock_ns = clock_ns
        self.closed = False
        self.close_code: int | None = None
        self.stalled = False
        self._closing_by_us = False
        self._reader: gevent.Greenlet | None = None
        self.on_probe_text: OnProbeText | None = None  # set: read as a kernel-stamped probe receiver
        self.no_stamps: str | None = None

    @classmethod
    def open(
        cls,
        target: Target,
        nickname: str,
        on_texts: OnTexts,
        on_closed: OnClosed,
        clock_ns: Callable[[], int],
        timeout: float = 10.0,
    ) -> ChatConnection:
        cookie = login(target, nickname, timeout)
        ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=True)
        try:
            ws.connect(target.ws_url, cookie=cookie, timeout=timeout, suppress_origin=True)
        except websocket.WebSocketBadStatusException as exc:
            raise ConnectFailure("connect", f"GET /chat answered {exc.status_code}", exc.status_code) from None
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectFailure("connect", f"GET /chat: {exc or type(exc).__name__}") from None
        ws.sock.settimeout(None)
        ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(ws, on_texts, on_closed, clock_ns)

    def start_reading(self) -> None:
        self._reader = gevent.spawn(self._probe_read_loop if self.on_probe_text is not None else self._read_loop)

    def make_probe(self, on_probe_text: OnProbeText) -> str | None:
        """Read this connection as a probe receiver (one frame per ``recvmsg``, with kernel receive
        stamps: :mod:`wsbench.drivers.probe` explains why); returns why the kernel does not stamp."""
        self.on_probe_text = on_probe_text
        self.no_stamps = stamps.enable(self.ws.sock)
        return self.no_stamps

    def stall(self) -> None:
        """Stop reading (a slow consumer): the reading greenlet ends, the socket stays open."""
        self.stalled = True
        if self._reader is not None:
            self._reader.kill(block=False)

    def send(self, text: str) -> None:
        self.ws.send(text)

    def close(self, code: int = 1000, wait: float = 1.0) -> None:
        """Start the close handshake and wait up to ``wait`` seconds for the server's close frame."""
        if self.closed:
            return
        self._closing_by_us = True
        try:
            self.ws.send(code.to_bytes(2, "big"), websocket.ABNF.OPCODE_CLOSE)
        except (OSError, websocket.WebSocketException):
            self._finish(ABNORMAL, "connection lost while closing")
            return
        if self._reader is not None and not self._reader.dead and not self.stalled:
            self._reader.join(timeout=wait)
        if not self.closed:
            self._finish(code, "closed by the client")

    def _finish(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        with contextlib.suppress(OSError):
            self.ws.shutdown()
        self.on_closed(code, reason, self._closing_by_us)

    def _probe_read_loop(self) -> None:
        sock = self.ws.sock
        reads = OneFrameReads()
        clock = self.clock_ns
        on_text = self.on_probe_text
        assert on_text is not None
        last_stamp = -1
        try:
            while True:
                data, anc, _flags, _addr = sock.recvmsg(min(reads.want(), RECV_BYTES), stamps.ANCILLARY_SPACE)
                now = clock()
                if not data:
                    self._finish(ABNORMAL, "connection closed without a close frame")
                    return
                if not reads.feed(data):
                    continue
                if reads.texts:
                    stamp = stamps.stamp_ns(anc)
                    for text in reads.texts:
                        on_text(text, now, stamp, stamp != 0 and stamp == last_stamp)
                        last_stamp = stamp
                    reads.texts.clear()
                if reads.controls:
                    controls = reads.controls[:]
                    reads.controls.clear()
                    if self._controls(controls):
                        return
        except FrameError as exc:
            with contextlib.suppress(OSError, websocket.WebSocketException):
                self.ws.send(exc.code.to_bytes(2, "big"), websocket.ABNF.OPCODE_CLOSE)
            self._finish(exc.code, f"protocol error: {exc}")
        except OSError as exc:
            self._finish(ABNORMAL, f"connection error: {exc}")

    def _controls(self, controls: list[Control]) -> bool:
        """Answer pings and a close; returns whether the connection is over."""
        for control in controls:
            if control.opcode == OP_PING:
                self.ws.pong(control.payload)
            elif control.opcode == OP_CLOSE:
                code, reason = close_code_reason(control.payload)
                if not self._closing_by_us:
                    try:  # echo the code (RFC 6455 §5.5.1); 1005 is never sent on the wire
                        echo = b"" if code == 1005 else control.payload[:2]
                        self.ws.send(echo, websocket.ABNF.OPCODE_CLOSE)
                    except (OSError, websocket.WebSocketException):
                        pass
                self._finish(code, reason)
                return True
        return False

    def _read_loop(self) -> None:
        sock = self.ws.sock
        reader = FrameReader()
        recv = sock.recv
        clock = self.clock_ns
        on_texts = self.on_texts
        controls = reader.controls
        try:
            while True:
                data = recv(RECV_BYTES)
                now = clock()
                if not data:
                    self._finish(ABNORMAL, "connection closed without a close frame")
                    return
                texts = reader.feed(data)
                if texts:
                    on_texts(texts, now)
                if controls:
                    if self._controls(controls):
                        return
                    controls.clear()
        except FrameError as exc:
            with contextlib.suppress(OSError, websocket.WebSocketException):
                self.ws.send(exc.code.to_bytes(2, "big"), websocket.ABNF.OPCODE_CLOSE)
            self._finish(exc.code, f"protocol error: {exc}")
        except OSError as exc:
            self._finish(ABNORMAL, f"connection error: {exc}")
