"""The conformance cases of frames, as data: framing and UTF-8 (SPEC 8.2, 8.3) and the close handshake
(8.4, 8.5). Their steps are in :mod:`wsbench.conform.ws_checks`; the table they are part of is
:mod:`wsbench.conform.cases`.
"""

from __future__ import annotations

from wsbench.conform import ws_checks as w
from wsbench.conform.model import PROTOCOL_ERROR, Case
from wsbench.conform.wire import OP_CONTINUATION, OP_PING, OP_TEXT, RSV1, RSV2, RSV3

VALID_CLOSE_CODES = (1000, 1001, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999, 1012, 1013, 1014)
INVALID_CLOSE_CODES = (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535)

FRAME_CASES: tuple[Case, ...] = (
    # --- framing and UTF-8
    Case(
        "framing.utf8_invalid",
        "8.2",
        "invalid UTF-8 text",
        "close 1007, nothing relayed",
        w.invalid_utf8([b"ab\xff\xfecd"]),
        conns=2,
        rfc="RFC 6455 §8.1",
    ),
    Case(
        "framing.utf8_invalid_split",
        "8.2",
        "invalid UTF-8 split across fragments",
        "close 1007, nothing relayed",
        w.invalid_utf8([b"ab\xf0\x9f", b"\x28cd"]),
        conns=2,
        rfc="RFC 6455 §8.1",
    ),
    Case(
        "framing.utf8_valid_split",
        "8.2",
        "an emoji split across fragments",
        "relayed intact",
        w.utf8_valid_split,
        conns=2,
        rfc="RFC 6455 §5.6",
    ),
    Case(
        "framing.reserved_opcode_data",
        "8.3",
        "reserved data opcode 0x3",
        PROTOCOL_ERROR,
        w.protocol_violation(w.frame(0x3), "opcode 0x3"),
        rfc="RFC 6455 §5.2",
    ),
    Case(
        "framing.reserved_opcode_control",
        "8.3",
        "reserved control opcode 0xB",
        PROTOCOL_ERROR,
        w.protocol_violation(w.frame(0xB), "opcode 0xB"),
        rfc="RFC 6455 §5.2",
    ),
    Case(
        "framing.rsv1",
        "8.3",
        "RSV1 without an extension",
        PROTOCOL_ERROR,
        w.protocol_violation(w.frame(OP_TEXT, rsv=RSV1), "text frame with RSV1"),
        rfc="RFC 6455 §5.2",
    ),
    Case(
        "framing.rsv2",
        "8.3",
        "RSV2 set",
        PROTOCOL_ERROR,
        w.protocol_violation(w.frame(OP_TEXT, rsv=RSV2), "text frame with RSV2"),
        rfc="RFC 6455 §5.2",
    ),
    Case(
        "framing.rsv3",
        "8.3",
        "RSV3 set",
        PROTOCOL_ERROR,
        w.protocol_violation(w.frame(OP_TEXT, rsv=RSV3), "text frame with RSV3"),
        rfc="RFC 6455 §5.2",
    ),
    Case(
        "framing.unmasked",
        "8.3",
        "unmasked client frame",
        PROTOCOL_ERROR,
        w.protocol_violation(w.frame(OP_TEXT, b"unmasked", mask=False), "unmasked text frame"),
        rfc="RFC 6455 §5.1",
    ),
    Case(
        "framing.ping_fragmented",
        "8.3",
        "fragmented ping",
        PROTOCOL_ERROR,
        w.protocol_violation(
            w.frames_of(w.frame(OP_PING, b"ab", fin=False), w.frame(OP_CONTINUATION, b"cd")), "ping in 2 fragments"
        ),
        rfc="RFC 6455 §5.5",
    ),
    Case(
        "framing.ping_oversize",
        "8.3",
        "126-byte ping",
        PROTOCOL_ERROR,
        w.protocol_violation(w.frame(OP_PING, b"p" * 126), "126-byte ping"),
        rfc="RFC 6455 §5.5",
    ),
    Case(
        "framing.stray_continuation",
        "8.3",
        "continuation with no message in progress",
        PROTOCOL_ERROR,
        w.protocol_violation(w.frame(OP_CONTINUATION, b"x"), "stray continuation frame"),
        rfc="RFC 6455 §5.4",
    ),
    Case(
        "framing.data_during_fragment",
        "8.3",
        "new data frame inside a fragmented message",
        PROTOCOL_ERROR,
        w.protocol_violation(
            w.frames_of(w.frame(OP_TEXT, b"a", fin=False), w.frame(OP_TEXT, b"b")),
            "text frame inside a fragmented message",
        ),
        rfc="RFC 6455 §5.4",
    ),
    # --- close handshake
    *[
        Case(
            f"close.valid.{code}",
            "8.4",
            f"client closes with {code}",
            "a close frame (the same code SHOULD be echoed), then the server closes TCP",
            w.close_valid(code),
            rfc="RFC 6455 §7.4",
        )
        for code in VALID_CLOSE_CODES
    ],
    Case(
        "close.data_after_server_close",
        "8.4",
        "a text message after the server's close frame",
        "ignored: nothing relayed",
        w.close_data_after_server_close,
        conns=2,
        rfc="RFC 6455 §5.5.1",
    ),
    Case(
        "close.valid.empty",
        "8.4",
        "client close frame without payload",
        "a close frame, then the server closes TCP",
        w.close_valid(None),
        rfc="RFC 6455 §5.5.1",
    ),
    *[
        Case(
            f"close.invalid.{code}",
            "8.5",
            f"client closes with invalid code {code}",
            PROTOCOL_ERROR,
            w.close_invalid(code),
            rfc="RFC 6455 §7.4",
        )
        for code in INVALID_CLOSE_CODES
    ],
    Case(
        "close.invalid.one_byte",
        "8.5",
        "1-byte close payload",
        PROTOCOL_ERROR,
        w.close_invalid(None, payload=b"\x03"),
        rfc="RFC 6455 §5.5.1",
    ),
    Case(
        "close.invalid.reason_utf8",
        "8.5",
        "close reason that is not UTF-8",
        "close 1007 (or 1002, or the connection dropped)",
        w.close_invalid(None, payload=b"\x03\xe8\xff\xfe", also_ok=1007),
        rfc="RFC 6455 §5.5.1",
    ),
)
