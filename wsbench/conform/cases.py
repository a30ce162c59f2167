"""The conformance cases, as data: id (its first part is the category), SPEC clause, RFC section, what
is expected, and the check that performs the steps (:mod:`wsbench.conform.checks`,
:mod:`wsbench.conform.measure`).

``--only`` selects by category (``close``), by id (``limits.size.over``), by id prefix
(``close.invalid``) or by glob (``framing.rsv*``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from wsbench.conform import checks as c
from wsbench.conform import hostile as h
from wsbench.conform import measure as m
from wsbench.conform import ws_checks as w
from wsbench.conform.decisions import DECISION_CASES
from wsbench.conform.model import Case
from wsbench.conform.options import ServerOptions
from wsbench.conform.rfc_cases import annotate, rfc_cases
from wsbench.conform.wire import OP_CONTINUATION, OP_PING, OP_TEXT, RSV1, RSV2, RSV3
from wsbench.errors import UsageError

CATEGORIES = (
    "http",
    "login",
    "handshake",
    "messaging",
    "limits",
    "framing",
    "payload",  # issue 11: RFC 6455 families (wsbench/conform/rfc_cases.py)
    "fragments",
    "utf8",
    "close",
    "pings",
    "slow_consumer",
    "nodelay",
    "shutdown",
    "startup",
)

VALID_CLOSE_CODES = (1000, 1001, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999, 1012, 1013, 1014)
INVALID_CLOSE_CODES = (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535)

PROTOCOL_ERROR = "close 1002, or the connection dropped (reported as such)"


def _max(o: ServerOptions) -> str:
    return f"{o.max_message_size} bytes"


def _cases() -> list[Case]:
    cases = [
        # --- HTTP resources
        Case("http.not_found", "2.1", "unknown path", "404", c.http_not_found, conns=0),
        Case(
            "http.login_form",
            "3.1",
            "GET /login",
            "200 with a POST form with a nickname field",
            c.http_login_form,
            conns=0,
        ),
        Case(
            "http.page_requires_login",
            "4.1",
            "chat page without a valid cookie",
            "303 to /login (no cookie, forged cookie)",
            c.http_page_login_required,
            conns=0,
        ),
        Case("http.page_ok", "4.1", "chat page with the login cookie", "200", c.http_page_ok, conns=0),
        Case(
            "http.stats",
            "5.1",
            "GET /stats",
            "200, a JSON object with server, connections, messages_in, deliveries_out, slow_consumer_closes, "
            "rss_bytes, uptime_s",
            c.http_stats,
            conns=0,
        ),
        # --- login
        Case(
            "login.ok",
            "3.4",
            "valid nickname",
            "303 to / with a signed nickname cookie: HttpOnly, SameSite=Lax, Path=/",
            c.login_ok,
            conns=0,
        ),
        Case(
            "login.online",
            "3.3",
            "nickname online",
            "409 with the form and the hint 昵称已被使用，请更换昵称",
            c.login_online,
        ),
        Case(
            "login.empty", "3.2", "empty nickname", "400 with the form", c.login_refused(lambda ctx: "", 400), conns=0
        ),
        Case(
            "login.blank",
            "3.2",
            "white space only",
            "400 with the form",
            c.login_refused(lambda ctx: " \t ", 400),
            conns=0,
        ),
        Case(
            "login.too_long",
            "3.2",
            "33 code points",
            "400 with the form",
            c.login_refused(lambda ctx: c.nick_of_length(ctx, 33), 400),
            conns=0,
        ),
        Case(
            "login.control_char",
            "3.2",
            "control character",
            "400 with the form",
            c.login_refused(lambda ctx: ctx.nick()[:8] + "\x1b[31m", 400),
            conns=0,
        ),
        Case(
            "login.max_length",
            "3.2",
            "32 code points, non-ASCII",
            "accepted (303 and a cookie)",
            c.login_accepted(lambda ctx: c.nick_of_length(ctx, 32)),
            conns=0,
        ),
        Case(
            "login.invalid_utf8",
            "3.2",
            "form value that is not UTF-8",
            "400, not repaired",
            c.login_raw(lambda ctx: b"nickname=%FF%FEab", 400, "nickname bytes FF FE 61 62"),
            conns=0,
        ),
        Case(
            "login.repeated_field",
            "3.2",
            "nickname field twice, the first empty",
            "400: the first field counts",
            c.login_raw(
                lambda ctx: f"nickname=&nickname={ctx.nick()}".encode(), 400, "an empty field, then a valid one"
            ),
            conns=0,
        ),
        Case(
            "login.strip",
            "3.2",
            "surrounding white space",
            "stripped: joins under the bare nickname",
            c.login_strips("  ", "\t "),
            conns=2,
        ),
        # --- handshake
        Case(
            "handshake.no_upgrade",
            "6.1",
            "GET /chat without Upgrade: websocket",
            "400",
            c.handshake(status=400, upgrade=False),
            conns=0,
            rfc="RFC 6455 §4.2.1",
        ),
        Case(
            "handshake.no_version",
            "6.1",
            "no Sec-WebSocket-Version",
            "426 with Sec-WebSocket-Version: 13",
            c.handshake(status=426, version=None),
            conns=0,
            rfc="RFC 6455 §4.4",
        ),
        Case(
            "handshake.no_cookie",
            "6.2",
            "no cookie",
            "401, no upgrade",
            c.handshake(cookie="none", status=401),
            conns=0,
            rfc="RFC 6455 §4.2.2",
        ),
        Case(
            "handshake.forged_cookie",
            "6.2",
            "unsigned cookie",
            "401, no upgrade",
            c.handshake(cookie="forged", status=401),
            conns=0,
        ),
        Case(
            "handshake.tampered_cookie",
            "6.2",
            "signed cookie with one character changed",
            "401, no upgrade",
            c.handshake(cookie="tampered", status=401),
            conns=0,
        ),
        Case(
            "handshake.origin_cross",
            "6.3",
            "cross-site Origin",
            "403, no upgrade",
            c.handshake(origin="cross", status=403),
            conns=0,
            rfc="RFC 6455 §10.2",
        ),
        Case(
            "handshake.origin_other_port",
            "6.3",
            "Origin with the server's host but another port",
            "403, no upgrade",
            c.handshake(origin="cross_port", status=403),
            conns=0,
        ),
        Case(
            "handshake.origin_fetch_site",
            "6.3",
            "cross-site Origin with Sec-Fetch-Site: same-origin",
            "403: the Origin decides, not Sec-Fetch-Site",
            c.handshake(origin="cross", status=403, headers=(("Sec-Fetch-Site", "same-origin"),)),
            conns=0,
        ),
        Case(
            "handshake.origin_null",
            "6.3",
            "Origin: null",
            "403, no upgrade",
            c.handshake(origin="null", status=403),
            conns=0,
        ),
        Case(
            "handshake.origin_allowed_other_scheme",
            "6.3",
            "an allowed origin with the other scheme",
            "403: an allow-list entry is a whole origin",
            c.handshake(origin="allowed_other_scheme", status=403),
            conns=0,
        ),
        Case(
            "handshake.origin_same_unnormalized",
            "6.3",
            "the server's own Origin in upper case with a trailing /",
            "101: case and a trailing / are ignored",
            c.handshake(origin="same_unnormalized"),
        ),
        Case(
            "handshake.origin_same",
            "6.3",
            "the server's own Origin",
            "101",
            c.handshake(origin="same"),
            rfc="RFC 6455 §4.2.2",
        ),
        Case("handshake.origin_allowed", "6.3", "an --allowed-origin Origin", "101", c.handshake(origin="allowed")),
        Case("handshake.origin_absent", "6.3", "no Origin (non-browser client)", "101", c.handshake(origin=None)),
        Case(
            "handshake.bad_version",
            "6.1",
            "Sec-WebSocket-Version: 8",
            "426 with Sec-WebSocket-Version: 13",
            c.handshake_bad_version,
            conns=0,
            rfc="RFC 6455 §4.4",
        ),
        Case(
            "handshake.check_order",
            "6.5",
            "several faults at once",
            "version before cookie before Origin: 401 for forged cookie + bad Origin, 426 for bad version + no cookie",
            c.handshake_order,
            conns=0,
        ),
        Case(
            "handshake.nickname_online",
            "6.6",
            "second connection with an online nickname",
            "101 then close 4409 'nickname in use'; first connection unaffected; no join/leave line for it",
            c.handshake_nickname_online,
            conns=3,
            duration_hint=1.0,
        ),
        Case(
            "handshake.no_compression",
            "14.1",
            "client offers permessage-deflate",
            lambda o: "101 " + ("with" if o.compression else "without") + " permessage-deflate",
            c.handshake_compression,
            rfc="RFC 7692 §5",
        ),
        Case(
            "handshake.max_connections",
            "6.4",
            "one connection over max_connections",
            lambda o: f"503 with {o.max_connections} open; 101 again once one closes",
            c.handshake_max_connections,
            exclusive=True,
            duration_hint=2.0,
        ),
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
        Case(
            "messaging.relay_empty", "7.2", "empty message", "relayed as N说：", w.relay("", "empty message"), conns=2
        ),
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
        # --- pings
        Case(
            "pings.interval",
            "10.1",
            "server pings",
            lambda o: (
                f"a ping every {o.ping_interval:g} s, the first {o.ping_interval:g} s after the handshake"
                if o.ping_interval
                else "no pings (ping_interval 0)"
            ),
            w.pings_interval,
            duration_hint=3.0,
        ),
        Case(
            "pings.timeout",
            "10.2",
            "client never pongs",
            lambda o: (
                f"close 1011 no sooner than {o.ping_timeout:g} s after the ping (SPEC 10.2), TCP closed within "
                f"{o.ping_timeout + 1:g} s of it; leave line to the others"
            ),
            w.pings_timeout,
            conns=2,
            duration_hint=4.0,
            rfc="RFC 6455 §5.5.2",
        ),
        Case(
            "pings.text_is_not_pong",
            "10.2",
            "client talks but never pongs",
            lambda o: f"still closed with 1011 within {o.ping_timeout + 1:g} s of the ping: only a pong counts",
            w.pings_text_is_not_pong,
            duration_hint=4.0,
            rfc="RFC 6455 §5.5.3",
        ),
        Case(
            "pings.pong_keeps",
            "10.3",
            "client pongs",
            "stays connected however long it is silent",
            w.pings_pong_keeps,
            duration_hint=3.0,
        ),
        Case(
            "pings.client_ping",
            "8.6",
            "client pings",
            "a pong with the same payload",
            w.pings_client_ping,
            rfc="RFC 6455 §5.5.2",
        ),
        # --- slow consumer (one shared measurement)
        Case(
            "slow_consumer.close",
            "11.1",
            "one client stops reading under a broadcast",
            lambda o: (
                f"it is closed with 1008 (or dropped) once {o.send_buffer_limit} bytes are queued; "
                "leave line once; counted in /stats"
            ),
            m.slow_consumer_close,
            exclusive=True,
            timeout=25.0,
            duration_hint=6.0,
        ),
        Case(
            "slow_consumer.memory",
            "11.3",
            "server memory with a slow client",
            lambda o: (
                f"RSS grows at most {(m.RSS_ALLOWANCE + 4 * o.send_buffer_limit) / 2**20:.1f} MiB, or levels off "
                f"during a {m.STALL_DURATION:g} s stall far below what an unbounded queue would hold"
            ),
            m.slow_consumer_memory,
            exclusive=True,
            timeout=25.0,
        ),
        Case(
            "slow_consumer.others_latency",
            "7.4",
            "other clients with a slow client",
            f"their median within {m.LATENCY_FACTOR:g}x (+{m.LATENCY_SLACK_MS:g} ms), p99 within "
            f"{m.LATENCY_FACTOR:g}x (+{m.TAIL_SLACK_MS:g} ms) of an equally long run without it; nothing lost",
            m.slow_consumer_others,
            exclusive=True,
            timeout=25.0,
        ),
        # --- TCP
        Case(
            "nodelay.conversation",
            "13.1",
            "two frames sent back to back to a client that just sent",
            lambda o: (
                "no delayed-ACK stall (TCP_NODELAY on)"
                if o.nodelay
                else "a ~40 ms stall (started with --no-nodelay: the check proves it)"
            ),
            m.nodelay_conversation,
            exclusive=True,
            duration_hint=2.0,
        ),
        # --- shutdown (last: it stops the server)
        Case(
            "shutdown.sigterm",
            "12.1",
            "SIGTERM",
            "every client gets close 1001, no leave lines; exit status 0 as soon as all answered (within 3 s)",
            w.shutdown_sigterm,
            conns=3,
            last=True,
            needs_started=True,
        ),
        # --- start-up contract
        Case(
            "startup.bad_option",
            "15.2",
            "started with --max-message-size 0",
            "exit status 2 with a one-line message on stderr (no traceback, no listening line)",
            w.startup_bad_option,
            conns=0,
            needs_started=True,
            duration_hint=1.0,
        ),
        # --- SPEC 1.1 decisions (issue 12)
        *DECISION_CASES,
        # --- hostile input (issue 16): see wsbench.conform.hostile
        *h.cases(),
    ]
    # issue 11: Autobahn numbers and the echo profile on the RFC-level cases; the RFC 6455 families
    cases = [*annotate(cases), *rfc_cases()]
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert all(case.category in CATEGORIES for case in cases)
    return cases


CASES: tuple[Case, ...] = tuple(_cases())
BY_ID = {case.id: case for case in CASES}


def select(only: Iterable[str] | None, cases: Sequence[Case] = CASES, profile: str = "chat") -> list[Case]:
    """The cases named by ``--only`` tokens (categories, ids, id prefixes, globs); all when empty.

    The chat profile leaves out the echo-only cases (binary echo, the echo probe); the echo profile
    keeps every case, and the runner skips the SPEC-only ones with that reason."""
    if profile == "chat":
        cases = [case for case in cases if "chat" in case.profiles]
    tokens = [t.strip() for item in (only or ()) for t in item.split(",") if t.strip()]
    if not tokens:
        return list(cases)
    chosen: set[str] = set()
    for token in tokens:
        hits = [
            case.id
            for case in cases
            if case.category == token
            or case.id == token
            or case.id.startswith(token + ".")
            or fnmatch.fnmatchcase(case.id, token)
        ]
        if not hits:
            raise UsageError(
                f"--only {token!r} matches no case; categories: {', '.join(CATEGORIES)} "
                "(or give a case id such as limits.size.over, or a glob such as 'framing.rsv*')"
            )
        chosen.update(hits)
    return [case for case in cases if case.id in chosen]
