"""The frame layer of the Tornado reference server (SPEC 8, 9.1, 16.5): :class:`ChatProtocol`.

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

permessage-deflate offers are negotiated by :func:`deflate_offer` (SPEC 16.5). Broadcast frames are
built once (:func:`text_frame`) and written to each connection's IOStream (``write_frame_bytes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import TYPE_CHECKING, Any, cast

import tornado.httputil
import tornado.websocket
from tornado.iostream import StreamClosedError
from tornado.util import _websocket_mask
from tornado.websocket import _DecompressTooLargeError

from .options import CLOSE_GRACE
from .policy import VALID_CLOSE_CODES

if TYPE_CHECKING:
    from .tornado_server import ChatSocketHandler

DATA_OPCODES = (0x1, 0x2)
KNOWN_OPCODES = frozenset([0x0, 0x1, 0x2, 0x8, 0x9, 0xA])
DISCARD_CHUNK = 65536
#: RFC 7692 §7: the parameters of a permessage-deflate offer, and which of them carry a value.
DEFLATE_FLAGS = frozenset({"server_no_context_takeover", "client_no_context_takeover"})
DEFLATE_WINDOW_BITS = frozenset({"server_max_window_bits", "client_max_window_bits"})
#: zlib cannot compress raw deflate with an 8-bit window (it uses 9), so server_max_window_bits=8,
#: valid under RFC 7692 §7.1.2.1, is declined (as §7.1.2.1 allows) rather than broken.
SERVER_MIN_WINDOW_BITS = 9


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
            handler = cast("ChatSocketHandler", self.handler)
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
