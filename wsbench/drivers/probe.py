"""Probe receivers of the asyncio driver: chat clients that read their own socket with kernel stamps.

A probe is an ordinary client of the room (HTTP login, ``GET /chat``, joined and accounted like every
other receiver: its text frames go into the engine's shared
:class:`~wsbench.drivers.chat_client.ReceiveBuffer` with the user-space receive time, exactly as a
picows client's do). What differs is how it reads: on its own non-blocking socket, with
``recvmsg`` and ``SO_TIMESTAMPNS`` (:mod:`wsbench.core.stamps`), one frame's bytes per read
(:mod:`wsbench.core.frame_reads`), so that each frame carries the kernel's arrival stamp of its own
last segment. Per text frame it adds the stamp to a :class:`~wsbench.core.socket_latency.ProbeFrames`
beside the shared buffer, and marks stamps it shares with the next frame (a coalesced socket buffer,
see :mod:`wsbench.core.socket_latency`) as not its own.

Why by hand: picows (like every fast client) reads with plain ``recv`` and many frames per call, so it
cannot carry the stamp. A probe costs two ``recvmsg`` calls per frame (header, then the rest): a few
receivers' worth of extra syscalls, not the room's.

:class:`ProbeTransport` offers the part of picows' ``WSTransport`` the engine uses (``send``,
``send_close``, ``disconnect``, ``wait_disconnected``), so the engine treats a probe like any client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import os
import socket
import struct
import time
import urllib.parse
from typing import Any

from picows import WSMsgType

from wsbench.core import stamps
from wsbench.core.frame_reads import OneFrameReads
from wsbench.core.socket_latency import ProbeFrames
from wsbench.drivers.chat_client import ClientState, LoginFailed, ReceiveBuffer
from wsbench.locust.frames import OP_CLOSE, OP_PING, FrameError, close_code_reason

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_clock = time.monotonic_ns
_MAX_HEAD = 64 * 1024
READ_MAX = 256 * 1024


def _frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 5.3)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = os.urandom(4)
    if n:
        key = (mask * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + mask + payload


class ProbeTransport:
    """One probe's WebSocket on a raw socket (after the handshake)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        state: ClientState,
        on_close: Any,
        rx: ReceiveBuffer,
        probe_frames: ProbeFrames,
        max_message: int,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.state = state
        self.on_close = on_close
        self.rx = rx
        self.pf = probe_frames
        self.reads = OneFrameReads(max_message)
        self.underlying_transport = None  # no asyncio transport underneath (the engine asks for the socket)
        self._out = bytearray()
        self._writing = False
        self._done: asyncio.Future[None] = loop.create_future()
        self._closed = False
        loop.add_reader(sock.fileno(), self._on_readable)

    # -- reading ----------------------------------------------------------------------------------------
    def _on_readable(self) -> None:
        sock, reads, rx, pf = self.sock, self.reads, self.rx, self.pf
        cid = self.state.cid
        last_stamp = -1  # the stamp of the previous text frame read in this call
        while not self._closed:
            try:
                # at most 256 KiB a read: recvmsg allocates what it is asked for (a frame may be 64 MiB)
                data, anc, _flags, _addr = sock.recvmsg(min(reads.want(), READ_MAX), stamps.ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._lost(f"read failed: {exc}")
                return
            if not data:
                self._lost(None)
                return
            try:
                if not reads.feed(data):
                    continue
            except FrameError as exc:
                self._protocol_error(exc)
                return
            now = _clock()
            if reads.texts:
                stamp = stamps.stamp_ns(anc)
                for text in reads.texts:
                    rx.frames.append(text)
                    rx.times.append(now)
                    rx.owners.append(cid)
                    if stamp and stamp == last_stamp:
                        pf.own[-1] = 0  # the previous frame came from the same merged buffer
                    pf.position.append(len(rx.frames) - 1)
                    pf.kernel_ns.append(stamp)
                    pf.own.append(1)
                    last_stamp = stamp
                reads.texts.clear()
            if reads.controls:
                controls = reads.controls[:]
                reads.controls.clear()
                for c in controls:
                    if c.opcode == OP_PING:
                        self._write(_frame(0xA, c.payload))
                    elif c.opcode == OP_CLOSE:
                        self._on_close_frame(c.payload)
                        return

    def _on_close_frame(self, payload: bytes) -> None:
        st = self.state
        code, reason = close_code_reason(payload)
        if st.close_code is None:
            st.close_code, st.close_reason = code, reason
        if not st.we_closed:  # answer the server's close; after our own, its reply ends it
            self._write(_frame(OP_CLOSE, payload[:2]))
        self.disconnect()

    def _protocol_error(self, exc: FrameError) -> None:
        st = self.state
        st.error = f"the server broke RFC 6455: {exc}"
        with contextlib.suppress(Exception):
            self._write(_frame(OP_CLOSE, struct.pack("!H", exc.code)))
        self.disconnect()

    def _lost(self, why: str | None) -> None:
        if why is not None and self.state.error is None:
            self.state.error = why
        self.disconnect()

    # -- writing --------------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self._closed:
            return
        if not self._out:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.disconnect()
                return
            if sent == len(data):
                return
            data = data[sent:]
        self._out += data
        if not self._writing:
            self._writing = True
            self.loop.add_writer(self.sock.fileno(), self._on_writable)

    def _on_writable(self) -> None:
        try:
            sent = self.sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.disconnect()
            return
        del self._out[:sent]
        if not self._out:
            self._writing = False
            self.loop.remove_writer(self.sock.fileno())
            if self._closing_after_write:
                self._close_now()

    _closing_after_write = False

    def send(self, msg_type: WSMsgType, data: bytes) -> None:
        self._write(_frame(int(msg_type), data))

    def send_close(self, code: Any = 1000) -> None:
        value = code.value if hasattr(code, "value") else int(code)
        self._write(_frame(OP_CLOSE, struct.pack("!H", value)))

    def disconnect(self) -> None:
        """Close the socket once what is queued is written (picows' ``disconnect``)."""
        if self._closed:
            return
        if self._out:
            self._closing_after_write = True
            self.loop.remove_reader(self.sock.fileno())
            return
        self._close_now()

    def _close_now(self) -> None:
        if self._closed:
            return
        self._closed = True
        fd = self.sock.fileno()
        with contextlib.suppress(Exception):
            self.loop.remove_reader(fd)
        with contextlib.suppress(Exception):
            self.loop.remove_writer(fd)
        with contextlib.suppress(OSError):
            self.sock.close()
        self.state.closed_ns = _clock()
        if not self._done.done():
            self._done.set_result(None)
        if callable(self.on_close):
            self.on_close(self.state)

    async def wait_disconnected(self) -> None:
        await asyncio.shield(self._done)


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    fut: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()
    loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        loop.remove_reader(fd)


async def _read_head(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    """The HTTP response head, read to its last byte and not one byte further (frames may follow)."""
    while True:
        await _readable(loop, sock)
        try:
            peek = sock.recv(_MAX_HEAD, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            continue
        if not peek:
            raise LoginFailed("handshake", "the server closed the connection during the WebSocket handshake")
        end = peek.find(b"\r\n\r\n")
        if end >= 0:
            return sock.recv(end + 4)
        if len(peek) >= _MAX_HEAD:
            raise LoginFailed("handshake", "the handshake answer's head is over 64 KiB")
        await asyncio.sleep(0.001)  # a partial head: the socket stays readable until the rest comes


async def open_probe(
    ws_url: str,
    cookie: str,
    state: ClientState,
    on_close: Any,
    timeout: float,
    rx: ReceiveBuffer,
    probe_frames: ProbeFrames,
    max_message: int = 64 * 1024 * 1024,
) -> tuple[ProbeTransport, str | None]:
    """Open ``/chat`` as a probe; returns the transport and why the kernel does not stamp (``None``: it does)."""
    parts = urllib.parse.urlsplit(ws_url)
    if parts.scheme != "ws":
        raise LoginFailed("connect", f"probe receivers read plain TCP, not {parts.scheme}://")
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, proto, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM, proto)
    except OSError as exc:
        raise LoginFailed("connect", f"cannot open {ws_url}: {exc}") from None
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        no_stamps = stamps.enable(sock)
        key = base64.b64encode(os.urandom(16)).decode()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nCookie: {cookie}\r\n\r\n"
        ).encode("latin-1")
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, addr)
            await loop.sock_sendall(sock, request)
            head = await _read_head(loop, sock)
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        if len(status) < 2 or status[1] != "101":
            raise LoginFailed("handshake", f"GET /chat was refused ({' '.join(status[1:]) or lines[0]})")
        accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            raise LoginFailed("handshake", "GET /chat answered 101 with a wrong Sec-WebSocket-Accept")
    except LoginFailed:
        sock.close()
        raise
    except TimeoutError:
        sock.close()
        raise LoginFailed("timeout", "the WebSocket handshake timed out") from None
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ECONNREFUSED:
            raise LoginFailed("connect", f"cannot open {ws_url}: connection refused") from None
        raise LoginFailed("connect", f"cannot open {ws_url}: {exc}") from None
    transport = ProbeTransport(loop, sock, state, on_close, rx, probe_frames, max_message)
    state.transport = transport  # type: ignore[assignment]
    return transport, no_stamps
