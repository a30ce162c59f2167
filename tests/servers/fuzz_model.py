"""A reference model of SPEC 8 and 9.1 for the fuzz campaign: given the frames a client sends after the
handshake, what must the server do? Sans I/O, written from SPEC.md alone (not from either server).

:func:`predict` walks the frames as the server reads them and returns a :class:`Prediction`:

- ``relays``: the text messages every other client must receive, in order;
- ``pongs``: the payloads of the pongs the sender must receive, in order (SPEC 8.6); pongs for pings
  after a point where the server may already have closed (``optional_from``) may be missing;
- ``codes``: the close codes the server may answer with (a set: SPEC 8.2 leaves the moment of 1007
  to the server, so an invalid UTF-8 fragment followed by a protocol violation may get either), and
  ``drop_ok``: whether dropping TCP without a close frame is allowed instead (8.3, 8.5).

Compression is off (RSV1 is then a protocol violation, 8.3). The server's ``max_message_size`` is
``limit``; pings from the server are off in the campaign.
"""

from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass, field

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
KNOWN = frozenset({OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG})
#: SPEC 8.4 (v1.2): close codes a client may send; anything else is answered 1002 (8.5).
VALID_CLOSE = frozenset([*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)])


@dataclass(frozen=True)
class Frame:
    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0
    masked: bool = True


@dataclass
class Prediction:
    relays: list[bytes] = field(default_factory=list)
    pongs: list[bytes] = field(default_factory=list)
    optional_from: int | None = None  # pongs from this index on may be missing
    codes: set[int] = field(default_factory=set)  # empty: the connection stays open
    drop_ok: bool = False
    reason: str = ""  # what ends the connection, for reports
    consumed: int = 0  # frames the server reads before it has closed (the rest are ignored)

    @property
    def open(self) -> bool:
        return not self.codes and not self.drop_ok


class _State:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.opcode: int | None = None  # the message in progress
        self.size = 0
        self.data = bytearray()
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.bad_utf8 = False  # the message in progress is already invalid UTF-8 (1007 may come now)
        self.early: set[int] = set()  # codes the server may already have closed with


def predict(frames: list[Frame], limit: int) -> Prediction:
    out = Prediction()
    st = _State(limit)

    def end(codes: set[int], reason: str, drop_ok: bool, index: int) -> Prediction:
        out.codes = codes | st.early
        out.drop_ok = drop_ok or bool(st.early & {1002})
        out.reason = reason
        out.consumed = index + 1
        return out

    for i, f in enumerate(frames):
        if f.rsv:
            return end({1002}, "RSV bits without an extension", True, i)
        if f.opcode not in KNOWN:
            return end({1002}, f"reserved opcode {f.opcode:#x}", True, i)
        if not f.masked:
            return end({1002}, "unmasked frame", True, i)
        if f.opcode >= 0x8:
            if len(f.payload) > 125 or not f.fin:
                return end({1002}, "oversize or fragmented control frame", True, i)
            if f.opcode == OP_PING:
                out.pongs.append(f.payload)
            elif f.opcode == OP_CLOSE:
                return end(*_close_answer(f.payload), i)
            continue
        if f.opcode == OP_CONT and st.opcode is None:
            return end({1002}, "continuation without a message", True, i)
        if f.opcode != OP_CONT and st.opcode is not None:
            return end({1002}, "new data frame inside a fragmented message", True, i)
        if f.opcode != OP_CONT:
            st.opcode, st.size, st.data = f.opcode, 0, bytearray()
            st.decoder.reset()
            st.bad_utf8 = False
        if st.size + len(f.payload) > limit:
            return end({1009}, "message over max_message_size", False, i)
        st.size += len(f.payload)
        if st.opcode == OP_TEXT and not st.bad_utf8:
            try:
                st.decoder.decode(f.payload, final=False)
            except UnicodeDecodeError:
                st.bad_utf8 = True
                _may_close_now(out, st, 1007)
            st.data += f.payload
        elif st.opcode == OP_BINARY:
            _may_close_now(out, st, 1003)  # SPEC 8.1: at the first fragment or at the end
        if f.fin:
            if st.opcode == OP_BINARY:
                return end({1003}, "binary message", False, i)
            if st.bad_utf8:
                return end({1007}, "invalid UTF-8", False, i)
            try:
                st.decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                return end({1007}, "invalid UTF-8 (truncated)", False, i)
            out.relays.append(bytes(st.data))
            st.opcode = None
    out.consumed = len(frames)
    return out


def _may_close_now(out: Prediction, st: _State, code: int) -> None:
    if code not in st.early:
        st.early.add(code)
        if out.optional_from is None:
            out.optional_from = len(out.pongs)


def _close_answer(payload: bytes) -> tuple[set[int], str, bool]:
    """SPEC 8.4, 8.5: the close frame that answers a client's close frame."""
    if not payload:
        return {1000}, "close without payload", False
    if len(payload) == 1:
        return {1002}, "1-byte close payload", True
    code = struct.unpack("!H", payload[:2])[0]
    try:
        payload[2:].decode("utf-8")
        reason_ok = True
    except UnicodeDecodeError:
        reason_ok = False
    if code not in VALID_CLOSE:  # a reason that is also not UTF-8 may be what the server reports
        return ({1002} if reason_ok else {1002, 1007}), f"invalid close code {code}", True
    if not reason_ok:
        return {1007, 1002}, "close reason not UTF-8", True
    return {code}, f"close {code}", False  # the reference servers echo the code (8.4)
