"""Reading a server's WebSocket frames (RFC 6455 §5) from a byte stream: pure code, no socket.

Why by hand: under Locust the receive path runs once per delivered frame, and it is where the
generator's CPU goes. Measured here (``python -m wsbench.locust.bench_clients``, gevent, loopback,
~100-byte text frames; ranges over runs on the shared 2-core machine), CPU per received frame:

=====================================  ==============  ==============================
client                                 flooded (1x)    paced, 100 conns x 200/s
=====================================  ==============  ==============================
this reader on a gevent socket         0.8-1.1 us      12.5-14.2 us
websocket-client ``recv()``            7.6-8.6 us      19.3-23.5 us
wsproto on a gevent socket             7.1-7.4 us      24.3-29.0 us
simple-websocket (wsproto + threads)   13.0-15.9 us    18.9-31.1 us
=====================================  ==============  ==============================

websocket-client reads every frame with two or three ``recv`` calls (header, length, payload);
wsproto builds an event object per frame. This reader takes whatever one ``recv`` returned and cuts
every complete frame out of it. The handshake and sending stay with websocket-client (a library),
see :mod:`wsbench.locust.wsclient`.

Server frames are unmasked (§5.1); a masked one is a protocol error. Fragmented messages (§5.4) are
reassembled; control frames may arrive between fragments.
"""

from __future__ import annotations

from dataclasses import dataclass

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

NO_STATUS = 1005  # RFC 6455 §7.4.1: a close frame without a code


class FrameError(Exception):
    """The server broke RFC 6455; ``code`` is the close code a client answers with (1002 or 1009)."""

    def __init__(self, message: str, code: int = 1002) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Control:
    """A control frame, or a binary message (which a chat server never sends)."""

    opcode: int
    payload: bytes


def close_code_reason(payload: bytes) -> tuple[int, str]:
    """Code and reason of a close frame's payload (1005 when it carries no code)."""
    if len(payload) < 2:
        return NO_STATUS, ""
    return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")


class FrameReader:
    """``feed(data)`` returns the text messages completed by ``data`` (as UTF-8 bytes, in order);
    control frames and binary messages completed by it are appended to ``controls``.

    ``max_message`` bounds a message's size (a longer one raises :class:`FrameError` with 1009).
    """

    __slots__ = ("_buf", "_frag", "_frag_op", "controls", "max_message")

    def __init__(self, max_message: int = 64 * 1024 * 1024) -> None:
        self._buf = b""
        self._frag: list[bytes] | None = None
        self._frag_op = 0
        self.controls: list[Control] = []
        self.max_message = max_message

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        n = len(buf)
        pos = 0
        texts: list[bytes] = []
        append = texts.append
        while n - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            ln = b1 & 0x7F
            if ln < 126:
                start = pos + 2
            elif ln == 126:
                if n - pos < 4:
                    break
                ln = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            else:
                if n - pos < 10:
                    break
                ln = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                if ln >> 63:
                    raise FrameError("a 64-bit payload length with the most significant bit set (RFC 6455 §5.2)")
                start = pos + 10
            end = start + ln
            if b0 == 0x81 and b1 < 0x80:  # the common case: a whole unmasked text message
                if end > n:
                    if ln > self.max_message:
                        raise FrameError(f"message of {ln} bytes is over the {self.max_message}-byte limit", 1009)
                    break
                if self._frag is not None:
                    raise FrameError("a new text message started inside a fragmented one")
                append(buf[start:end])
                pos = end
                continue
            if b1 & 0x80:
                raise FrameError("the server sent a masked frame (RFC 6455 §5.1)")
            if b0 & 0x70:
                raise FrameError("a frame with RSV bits set and no extension negotiated (RFC 6455 §5.2)")
            if ln > self.max_message:
                raise FrameError(f"message of {ln} bytes is over the {self.max_message}-byte limit", 1009)
            if end > n:
                break
            self._other(b0 & 0x80, b0 & 0x0F, buf[start:end], append)
            pos = end
        self._buf = buf[pos:] if pos < n else b""
        return texts

    def _other(self, fin: int, opcode: int, payload: bytes, append: object) -> None:
        if opcode >= 0x8:
            if not fin or len(payload) > 125:
                raise FrameError("a fragmented or oversized control frame (RFC 6455 §5.5)")
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                raise FrameError(f"reserved control opcode {opcode:#x} (RFC 6455 §5.2)")
            self.controls.append(Control(opcode, payload))
            return
        if opcode == OP_CONT:
            if self._frag is None:
                raise FrameError("a continuation frame with no message in progress (RFC 6455 §5.4)")
            self._frag.append(payload)
            if sum(len(p) for p in self._frag) > self.max_message:
                raise FrameError(f"fragmented message over the {self.max_message}-byte limit", 1009)
            if fin:
                whole = b"".join(self._frag)
                self._frag = None
                self._deliver(self._frag_op, whole, append)
            return
        if opcode not in (OP_TEXT, OP_BINARY):
            raise FrameError(f"reserved data opcode {opcode:#x} (RFC 6455 §5.2)")
        if self._frag is not None:
            raise FrameError("a new data frame started inside a fragmented message (RFC 6455 §5.4)")
        if fin:
            self._deliver(opcode, payload, append)
        else:
            self._frag = [payload]
            self._frag_op = opcode

    def _deliver(self, opcode: int, payload: bytes, append: object) -> None:
        if opcode == OP_TEXT:
            append(payload)  # type: ignore[operator]
        else:
            self.controls.append(Control(OP_BINARY, payload))

    @property
    def unfragmented(self) -> bool:
        """No fragmented message is in progress."""
        return self._frag is None

    @property
    def buffered(self) -> int:
        return len(self._buf)
