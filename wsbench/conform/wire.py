"""A low-level WebSocket client for conformance checks: full control of what goes on the wire, and a
record of what comes back.

The HTTP side (login, requests, the upgrade request's exchange, the endpoint) is
:mod:`wsbench.conform.http_client`.

Frames are built and parsed here by hand, on purpose: the conformance cases must *send* frames that
every WebSocket library refuses to produce (unmasked, RSV bits, reserved opcodes, fragmented or
oversize pings, stray continuations, invalid close codes) and must *observe* frames a library would
refuse to deliver (a server echoing close code 1005, say). RFC 6455 §5.2 framing is a few lines.

Every connection has a reader task that records, with ``time.perf_counter()`` timestamps, each data
message, ping, pong, the close frame, and how the TCP stream ended (``fin``: EOF; ``rst``: reset).
It answers pings (unless told not to) and answers a server's close frame with the same code, as a
well-behaved client does. Cases wait on that record with :meth:`WsConnection.wait_until`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import h11

from wsbench.conform.http_client import (
    HTTP_TIMEOUT,
    READ_CHUNK,
    Endpoint,
    HttpResponse,
    exchange,
    fmt_duration,
    now,
    open_socket,
    request_headers,
)

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
CONTROL_OPCODES = frozenset({OP_CLOSE, OP_PING, OP_PONG})

RSV1 = 0x4
RSV2 = 0x2
RSV3 = 0x1


EndKind = Literal["fin", "rst"]


# --------------------------------------------------------------------------------------------------
# Frames


def encode_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    mask_key: bytes | None = None,
) -> bytes:
    """One RFC 6455 frame, exactly as asked (no validation: invalid frames are the point)."""
    first = (0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0xF)
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not mask:
        return header + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return header + key + apply_mask(payload, key)


def apply_mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``key`` (RFC 6455 §5.3), at C speed via int arithmetic."""
    if not payload:
        return b""
    n = len(payload)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def split_payload(data: bytes, parts: int) -> list[bytes]:
    """``data`` cut into at most ``parts`` pieces of equal size (the last shorter); one empty piece for
    empty data."""
    step = max(1, -(-len(data) // max(1, parts)))
    return [data[i : i + step] for i in range(0, len(data), step)] or [b""]


def fragment_frames(opcode: int, parts: Sequence[bytes]) -> list[bytes]:
    """One message as ``len(parts)`` frames: ``opcode`` first, then continuations, FIN on the last."""
    return [
        encode_frame(opcode if i == 0 else OP_CONTINUATION, part, fin=i == len(parts) - 1)
        for i, part in enumerate(parts)
    ]


def close_payload(code: int | None, reason: bytes | str = b"") -> bytes:
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


@dataclass(frozen=True)
class Frame:
    """A frame received from the server."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0
    masked: bool = False
    t: float = 0.0


class FrameParser:
    """Incremental parser of server-to-client frames (sans-I/O: feed bytes, get frames)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes, t: float = 0.0) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while True:
            frame = self._next(t)
            if frame is None:
                return frames
            frames.append(frame)

    def _next(self, t: float) -> Frame | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        length = b1 & 0x7F
        pos = 2
        if length == 126:
            if len(buf) < 4:
                return None
            (length,) = struct.unpack_from("!H", buf, 2)
            pos = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            (length,) = struct.unpack_from("!Q", buf, 2)
            pos = 10
        masked = bool(b1 & 0x80)
        key = b""
        if masked:
            if len(buf) < pos + 4:
                return None
            key = bytes(buf[pos : pos + 4])
            pos += 4
        if len(buf) < pos + length:
            return None
        payload = bytes(buf[pos : pos + length])
        del buf[: pos + length]
        if masked:
            payload = apply_mask(payload, key)
        return Frame(opcode=b0 & 0x0F, payload=payload, fin=bool(b0 & 0x80), rsv=(b0 >> 4) & 0x7, masked=masked, t=t)


# --------------------------------------------------------------------------------------------------
# WebSocket connections


@dataclass(frozen=True)
class Message:
    """A data message from the server (fragments reassembled)."""

    t: float
    opcode: int
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class CloseFrame:
    t: float
    code: int | None
    reason: bytes
    raw: bytes

    @property
    def reason_text(self) -> str:
        return self.reason.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class StreamEnd:
    t: float
    kind: EndKind


@dataclass(frozen=True)
class CloseObservation:
    """How a connection ended after some action of ours, as seen on the wire."""

    kind: Literal["close", "dropped", "open"]
    since: float
    code: int | None = None
    reason: str = ""
    close_at: float | None = None
    end: StreamEnd | None = None
    waited: float = 0.0

    @property
    def after_s(self) -> float | None:
        if self.kind == "close" and self.close_at is not None:
            return self.close_at - self.since
        if self.kind == "dropped" and self.end is not None:
            return self.end.t - self.since
        return None

    def describe(self) -> str:
        if self.kind == "open":
            return f"no close frame, connection still open after {fmt_duration(self.waited)}"
        if self.kind == "dropped":
            assert self.end is not None
            how = "TCP reset" if self.end.kind == "rst" else "FIN"
            return f"dropped without close frame ({how}) after {fmt_duration(self.after_s)}"
        code = "no status code" if self.code is None else str(self.code)
        text = f"close {code}"
        if self.reason:
            text += f" {self.reason!r}"
        text += f" after {fmt_duration(self.after_s)}"
        if self.end is None:
            text += ", TCP still open"
        else:
            text += ", then " + ("TCP reset" if self.end.kind == "rst" else "FIN")
        return text


class WsConnection:
    """An open WebSocket connection with a background reader that records what arrives."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        response: HttpResponse,
        leftover: bytes = b"",
        *,
        auto_pong: bool = True,
        reply_close: bool = True,
        read: bool = True,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.response = response
        self.opened_at = now()
        self.auto_pong = auto_pong
        self.reply_close = reply_close
        self.messages: list[Message] = []
        self.pings: list[Frame] = []
        self.pongs: list[Frame] = []
        self.close_frame: CloseFrame | None = None
        self.close_frames: list[CloseFrame] = []  # every close frame the server sent (RFC 6455 §5.5.1: one)
        self.end: StreamEnd | None = None
        self.close_sent_at: float | None = None
        self.bytes_received = 0
        self.anomalies: list[str] = []  # server frames that break RFC 6455 (masked, RSV, bad opcode)
        self._parser = FrameParser()
        self._fragments: list[Frame] = []
        self._changed = asyncio.Condition()
        self._leftover = leftover
        self._task: asyncio.Task[None] | None = None
        self._holding = 0  # > 0 while a frame is written in pieces: answers wait, not cut into it
        self._held: list[bytes] = []
        if read:
            self.start_reading()

    # -- reading

    def start_reading(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        if self._leftover:
            await self._handle(self._parser.feed(self._leftover, now()))
            self.bytes_received += len(self._leftover)
            self._leftover = b""
        while True:
            try:
                chunk = await self.reader.read(READ_CHUNK)
            except OSError:  # ConnectionResetError and kin: the peer reset the connection
                await self._ended("rst")
                return
            if not chunk:
                await self._ended("fin")
                return
            self.bytes_received += len(chunk)
            await self._handle(self._parser.feed(chunk, now()))

    async def _ended(self, kind: EndKind) -> None:
        async with self._changed:
            if self.end is None:
                self.end = StreamEnd(now(), kind)
            self._changed.notify_all()

    async def _handle(self, frames: Sequence[Frame]) -> None:
        if not frames:
            return
        for frame in frames:
            if frame.masked:
                self.anomalies.append("masked server frame")
            if frame.rsv:
                self.anomalies.append(f"server frame with RSV bits {frame.rsv:03b}")
            if frame.opcode == OP_PING:
                self.pings.append(frame)
                if self.auto_pong and self.close_sent_at is None:
                    self._answer(encode_frame(OP_PONG, frame.payload))
            elif frame.opcode == OP_PONG:
                self.pongs.append(frame)
            elif frame.opcode == OP_CLOSE:
                code = struct.unpack("!H", frame.payload[:2])[0] if len(frame.payload) >= 2 else None
                self.close_frames.append(CloseFrame(frame.t, code, frame.payload[2:], frame.payload))
                if self.close_frame is None:
                    self.close_frame = self.close_frames[-1]
                    if self.reply_close and self.close_sent_at is None:
                        self._answer(encode_frame(OP_CLOSE, frame.payload[:2]))
                        self.close_sent_at = now()
            elif frame.opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
                self._data_frame(frame)
            else:
                self.anomalies.append(f"server frame with reserved opcode {frame.opcode:#x}")
        async with self._changed:
            self._changed.notify_all()

    def _data_frame(self, frame: Frame) -> None:
        if frame.opcode != OP_CONTINUATION:
            if self._fragments:
                self.anomalies.append("server started a new message inside a fragmented one")
            self._fragments = [frame]
        elif not self._fragments:
            self.anomalies.append("server sent a continuation frame with no message in progress")
            return
        else:
            self._fragments.append(frame)
        if frame.fin:
            data = b"".join(f.payload for f in self._fragments)
            self.messages.append(Message(frame.t, self._fragments[0].opcode, data))
            self._fragments = []

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds (re-checked on every frame and at the end of the stream)."""
        if predicate():
            return True
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
            return True
        except TimeoutError:
            return predicate()

    async def wait_closed(self, timeout: float) -> bool:
        return await self.wait_until(lambda: self.end is not None, timeout)

    @property
    def ended(self) -> bool:
        """The server answered or ended it: its close frame arrived, or the TCP stream ended (SPEC 12.1)."""
        return self.close_frame is not None or self.end is not None

    async def wait_ended(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the server's close frame or the end of the stream."""
        return await self.wait_until(lambda: self.ended, timeout)

    async def observe_close(self, since: float, timeout: float, end_timeout: float = 1.0) -> CloseObservation:
        """Wait up to ``timeout`` for a close frame or the end of the stream, then up to ``end_timeout``
        for the server to close TCP after its close frame."""
        await self.wait_ended(timeout)
        cf = self.close_frame
        if cf is not None:
            await self.wait_until(lambda: self.end is not None, end_timeout)
            return CloseObservation("close", since, cf.code, cf.reason_text, cf.t, self.end, waited=now() - since)
        if self.end is not None:
            return CloseObservation("dropped", since, end=self.end, waited=now() - since)
        return CloseObservation("open", since, waited=now() - since)

    def texts(self) -> list[str]:
        return [m.text for m in self.messages if m.opcode == OP_TEXT]

    # -- writing

    def _answer(self, data: bytes) -> None:
        """A pong or close answer: written at once, or after the frame being written in pieces."""
        if self._holding:
            self._held.append(data)
        else:
            self._write(data)

    @contextlib.contextmanager
    def writing_in_pieces(self) -> Iterator[None]:
        """While frames go out in several writes (one byte per write...), hold automatic answers so
        they are not written into the middle of a frame; they follow at the end."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding:
                held, self._held = self._held, []
                for data in held:
                    self._write(data)

    def _write(self, data: bytes) -> None:
        if self.writer.is_closing():
            return
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            self.writer.write(data)

    async def send_raw(self, data: bytes) -> float:
        """Write bytes as they are. Returns the time they were handed to the kernel."""
        self._write(data)
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            await self.writer.drain()
        return now()

    async def send_frame(
        self, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True
    ) -> float:
        return await self.send_raw(encode_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask))

    async def send_text(self, text: str | bytes) -> float:
        return await self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    async def send_fragments(self, opcode: int, parts: Sequence[bytes]) -> float:
        """One message in ``len(parts)`` frames, written in one go."""
        return await self.send_raw(b"".join(fragment_frames(opcode, parts)))

    async def send_close(
        self, code: int | None = 1000, reason: bytes | str = b"", *, payload: bytes | None = None
    ) -> float:
        raw = close_payload(code, reason) if payload is None else payload
        self.close_sent_at = now()
        return await self.send_frame(OP_CLOSE, raw)

    async def close(self, code: int = 1000, timeout: float = 1.0) -> None:
        """A polite close handshake (best effort), then the socket is closed."""
        if self.end is None and self.close_sent_at is None:
            await self.send_close(code)
            await self.wait_until(lambda: self.end is not None, timeout)
        await self.aclose()

    def drop(self) -> None:
        """Close TCP without a close frame (FIN)."""
        with contextlib.suppress(Exception):
            self.writer.close()

    def reset(self) -> None:
        """Abort with a TCP reset (SO_LINGER 0), no close frame."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(Exception):
            self.writer.transport.abort()

    async def aclose(self) -> None:
        """Stop reading and close the socket (no close frame)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.drop()


@dataclass
class Handshake:
    """The outcome of an upgrade request: the HTTP answer, and the connection when it was 101."""

    response: HttpResponse
    ws: WsConnection | None

    @property
    def status(self) -> int | None:
        return self.response.status


def handshake_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def upgrade_headers(
    *, upgrade: bool = True, connection: str | None = "Upgrade", key: str | None = "random", version: str | None = "13"
) -> list[tuple[str, str]]:
    """The headers of an upgrade request (RFC 6455 §4.1); ``upgrade=False``: without ``Upgrade`` and
    ``Connection``; ``connection``/``key``/``version`` None: without that header."""
    headers = [("Upgrade", "websocket")] if upgrade else []
    if upgrade and connection is not None:
        headers.append(("Connection", connection))
    if key is not None:
        headers.append(("Sec-WebSocket-Key", handshake_key() if key == "random" else key))
    if version is not None:
        headers.append(("Sec-WebSocket-Version", version))
    return headers


async def ws_connect(
    endpoint: Endpoint,
    *,
    cookie: str | None = None,
    origin: str | None = None,
    version: str | None = "13",
    path: str = "/chat",
    extra_headers: Iterable[tuple[str, str]] = (),
    auto_pong: bool = True,
    reply_close: bool = True,
    read: bool = True,
    rcvbuf: int | None = None,
    upgrade: bool = True,
    timeout: float = HTTP_TIMEOUT,
    method: str = "GET",
    connection: str | None = "Upgrade",
    key: str | None = "random",
) -> Handshake:
    """Send an upgrade request with exactly these headers (``upgrade=False``: without ``Upgrade`` and
    ``Connection``; ``connection``/``key`` None: without that header); on 101 return the open connection."""
    started = now()
    try:
        reader, writer = await open_socket(endpoint, rcvbuf=rcvbuf, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        return Handshake(HttpResponse(status=None, error=f"cannot connect: {exc}", elapsed_s=now() - started), None)
    headers = upgrade_headers(upgrade=upgrade, connection=connection, key=key, version=version)
    if origin is not None:
        headers.append(("Origin", origin))
    if cookie is not None:
        headers.append(("Cookie", cookie))
    headers += list(extra_headers)
    conn = h11.Connection(our_role=h11.CLIENT)
    request = h11.Request(method=method, target=path, headers=request_headers(endpoint, headers))
    try:
        response, leftover = await exchange(reader, writer, conn, request, b"", started, timeout)
    except BaseException:
        writer.close()
        raise
    if response.status != 101:
        writer.close()
        return Handshake(response, None)
    ws = WsConnection(reader, writer, response, leftover, auto_pong=auto_pong, reply_close=reply_close, read=read)
    return Handshake(response, ws)
