"""The conformance cases of messaging and its limits, as data: the join line, the relay, per-sender order,
the leave line (SPEC 7), the message size limit (9.1) and binary messages (8.1). Their steps are in
:mod:`wsbench.conform.ws_checks`; the table they are part of is :mod:`wsbench.conform.cases`.
"""

from __future__ import annotations

from wsbench.conform import ws_checks as w
from wsbench.conform.model import Case
from wsbench.conform.options import ServerOptions


def _max(o: ServerOptions) -> str:
    return f"{o.max_message_size} bytes"


MESSAGING_CASES: tuple[Case, ...] = (
    # --- messaging
    Case(
        "messaging.join",
        "7.1",
        "join line",
        "the others get ~~~N进入了聊天室~~~ once; the joiner gets nothing for its own join",
        w.messaging_join,
        conns=2,
        duration_hint=1.0,
    ),
    Case(
        "messaging.relay_ascii",
        "7.2",
        "ASCII text",
        "relayed as N说：M byte for byte",
        w.relay("hello, world", "ASCII"),
        conns=2,
    ),
    Case(
        "messaging.relay_unicode",
        "7.2",
        "non-ASCII text",
        "relayed byte for byte",
        w.relay("你好，世界 — ünïcödé ½", "non-ASCII"),
        conns=2,
    ),
    Case(
        "messaging.relay_emoji",
        "7.2",
        "emoji",
        "relayed byte for byte",
        w.relay("😀👍🏽🇫🇷 family: 👨‍👩‍👧", "emoji"),
        conns=2,
    ),
    Case("messaging.relay_empty", "7.2", "empty message", "relayed as N说：", w.relay("", "empty message"), conns=2),
    Case(
        "messaging.no_echo",
        "7.2",
        "nothing back to the sender",
        "the sender receives none of its messages",
        w.messaging_no_echo,
        conns=2,
        duration_hint=1.0,
    ),
    Case(
        "messaging.order",
        "7.3",
        "per-sender order",
        "2 x 100 messages all received, each sender's in order",
        w.messaging_order,
        conns=3,
        duration_hint=1.0,
    ),
    Case(
        "messaging.leave_close",
        "7.5",
        "leave after a close handshake",
        "leave line exactly once; nickname free again",
        w.leave("close"),
        conns=2,
        duration_hint=1.0,
    ),
    Case(
        "messaging.leave_fin",
        "7.5",
        "leave after FIN without close frame",
        "leave line exactly once; nickname free again",
        w.leave("fin"),
        conns=2,
        duration_hint=1.0,
    ),
    Case(
        "messaging.leave_reset",
        "7.5",
        "leave after a TCP reset",
        "leave line exactly once; nickname free again",
        w.leave("rst"),
        conns=2,
        duration_hint=1.0,
    ),
    # --- limits
    Case(
        "limits.size.exact",
        "9.1",
        "exactly max_message_size",
        lambda o: f"{_max(o)} relayed byte for byte",
        w.size_limit(0),
        conns=2,
        rfc="RFC 6455 §5.2",
    ),
    Case(
        "limits.size.over",
        "9.1",
        "max_message_size + 1",
        lambda o: f"{o.max_message_size + 1} bytes: close 1009, nothing relayed",
        w.size_limit(1),
        conns=2,
        rfc="RFC 6455 §7.4.1",
    ),
    Case(
        "limits.size.over_multibyte",
        "9.1",
        "max_message_size + 1 bytes of 2- and 3-byte characters",
        "close 1009 (bytes count, not characters), nothing relayed",
        w.size_limit(1, multibyte=True),
        conns=2,
        rfc="RFC 6455 §7.4.1",
    ),
    Case(
        "limits.size.exact_fragmented",
        "9.1",
        "exactly max_message_size in 3 fragments",
        lambda o: f"{_max(o)} relayed after reassembly",
        w.size_limit(0, fragments=3),
        conns=2,
        rfc="RFC 6455 §5.4",
    ),
    Case(
        "limits.size.over_fragmented",
        "9.1",
        "max_message_size + 1 in 3 fragments",
        "close 1009, nothing relayed",
        w.size_limit(1, fragments=3),
        conns=2,
        rfc="RFC 6455 §5.4",
    ),
    Case(
        "limits.binary",
        "8.1",
        "binary message",
        "close 1003, nothing relayed",
        w.limits_binary,
        conns=2,
        rfc="RFC 6455 §7.4.1",
    ),
)
