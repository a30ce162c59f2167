"""The frame layer of the aiohttp reference server (SPEC 8, 16.5): frames built by hand, the strict
frame reader and the WebSocketResponse that installs it.

aiohttp 3.14 defaults overridden here:

- unmasked client frames are accepted: :class:`StrictReader` (a subclass of aiohttp's pure-Python
  frame reader, installed by :class:`ChatWebSocketResponse`) fails them with 1002;
- invalid permessage-deflate offers are accepted with their parameters ignored: the handshake
  negotiates on :func:`valid_deflate_offers` only (SPEC 16.5);
- a protocol error after the server's own close frame is answered with a second close frame:
  :class:`ChatWebSocketResponse` sends one (RFC 6455 §5.5.1).
"""

from __future__ import annotations

import struct
from typing import Any

from aiohttp import WSCloseCode, hdrs, web
from aiohttp._websocket import reader_py
from aiohttp.helpers import DEFAULT_CHUNK_SIZE
from aiohttp.http_websocket import WebSocketError, ws_ext_gen, ws_ext_parse

PING_FRAME = b"\x89\x00"
OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2


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
