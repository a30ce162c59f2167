"""The steps of the hostile-input cases (issue 16): inputs a broken or malicious client sends, for which
a server must answer as the SPEC says, never with a 5xx (SPEC 16.2), a relayed frame the SPEC forbids or
a second close frame.

The table that names them, with clauses and expectations, is :mod:`wsbench.conform.cases` (the
"hostile input" block). Requests that no HTTP library would send (non-ASCII header bytes, a declared
body that never comes) are written as raw bytes by :func:`raw_http`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from collections.abc import Sequence

from wsbench.conform import rfc as r
from wsbench.conform.http_client import Endpoint, fmt_duration, open_socket
from wsbench.conform.model import PROTOCOL_ERROR, Case, Outcome
from wsbench.conform.rfc import F, cont, text
from wsbench.conform.session import REPLY_TIMEOUT, CaseContext, open_link, server_close_frame
from wsbench.conform.wire import OP_BINARY, OP_PING, OP_TEXT, RSV1, RSV2, encode_frame, handshake_key
from wsbench.conform.wire import upgrade_headers as ws_upgrade_headers

#: The request-head bound of SPEC 16.1, and how much later than it a close still passes.
HEAD_TIMEOUT = 5.0
HEAD_SLACK = 2.0
#: SPEC 3.9's bound on a login body.
LOGIN_BODY_LIMIT = 16384


async def raw_http(endpoint: Endpoint, data: bytes, *, timeout: float = REPLY_TIMEOUT + 3) -> tuple[int | None, str]:
    """Write ``data`` as it is on a fresh connection; the status of the answer and how it ended.

    Reads until the response head is complete (the body does not matter here), the server closes, or
    ``timeout``. Returns (None, why) when no response head came.
    """
    try:
        reader, writer = await open_socket(endpoint, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        return None, f"cannot connect: {exc}"
    buf = bytearray()
    deadline = time.monotonic() + timeout
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
        while b"\r\n\r\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, f"no response within {timeout:g} s"
            try:
                chunk = await asyncio.wait_for(reader.read(65536), remaining)
            except TimeoutError:
                return None, f"no response within {timeout:g} s"
            except (ConnectionError, OSError):
                return None, "connection reset without a response"
            if not chunk:
                return None, "connection closed without a response"
            buf += chunk
    finally:
        writer.close()
    line = bytes(buf).split(b"\r\n", 1)[0].split()
    if len(line) < 2 or not line[1].isdigit():
        return None, f"not an HTTP response: {bytes(buf[:40])!r}"
    return int(line[1]), f"HTTP {int(line[1])}"


def request(method: str, path: str, headers: Sequence[tuple[str, bytes | str]], body: bytes = b"") -> bytes:
    head = [f"{method} {path} HTTP/1.1".encode()]
    for name, value in headers:
        head.append(name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def upgrade_headers(
    ctx: CaseContext, cookie: str | bytes | None, key: str | bytes | None
) -> list[tuple[str, bytes | str]]:
    headers: list[tuple[str, bytes | str]] = [("Host", ctx.endpoint.host_header), *ws_upgrade_headers(key=None)]
    if key is not None:
        headers.append(("Sec-WebSocket-Key", key))
    if cookie is not None:
        headers.append(("Cookie", cookie))
    return headers


# --------------------------------------------------------------------------------------------------
# HTTP (SPEC 3.9, 4.1, 6.1, 6.2, 16.1, 16.2)


#: Cookie values a client controls that no signed cookie of the server can be (SPEC 4.1, 6.2).
FOREIGN_COOKIES = ("nickname=é.é".encode(), "nickname=Ym9i.é".encode(), b"nickname=.", b'nickname="a.b"')


async def http_foreign_cookies(ctx: CaseContext) -> Outcome:
    seen, ok = [], True
    for cookie in FOREIGN_COOKIES:
        page, _ = await raw_http(
            ctx.endpoint,
            request("GET", "/", [("Host", ctx.endpoint.host_header), ("Cookie", cookie), ("Connection", "close")]),
        )
        chat, _ = await raw_http(ctx.endpoint, request("GET", "/chat", upgrade_headers(ctx, cookie, handshake_key())))
        good = page == 303 and chat == 401
        ok = ok and good
        if not good or len(seen) < 1:
            seen.append(f"{cookie.decode(errors='replace')!r}: GET / {page}, GET /chat {chat}")
    return Outcome(ok, "; ".join(seen) + ("" if ok else " (expected 303 and 401)"))


#: Sec-WebSocket-Key values that are not the base64 encoding of 16 bytes (RFC 6455 §4.2.1).
BAD_KEYS: tuple[tuple[str, bytes | None], ...] = (
    ("!!!!", b"!!!!"),
    ("non-ASCII", "ÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿ==".encode("latin-1")),
    ("15 bytes", base64.b64encode(b"k" * 15)),
    ("6 KB", b"A" * 6000),
    ("none", None),
)


async def handshake_bad_keys(ctx: CaseContext) -> Outcome:
    cookie = await ctx.login_cookie(ctx.nick())
    seen, ok = [], True
    for label, key in BAD_KEYS:
        status, how = await raw_http(ctx.endpoint, request("GET", "/chat", upgrade_headers(ctx, cookie, key)))
        ok = ok and status == 400
        seen.append(f"{label}: {how}")
    return Outcome(ok, "; ".join(seen))


#: Static paths that cannot name a file (SPEC 16.2).
BAD_STATIC_PATHS = ("/static/chat.css%00.js", "/static/" + "a" * 5000)


async def http_static_bad_paths(ctx: CaseContext) -> Outcome:
    seen, ok = [], True
    for path in BAD_STATIC_PATHS:
        status, how = await raw_http(
            ctx.endpoint, request("GET", path, [("Host", ctx.endpoint.host_header), ("Connection", "close")])
        )
        ok = ok and status is not None and 400 <= status < 500
        shown = path if len(path) < 40 else f"/static/ + {len(path) - 8} x 'a'"
        seen.append(f"{shown}: {how}")
    return Outcome(ok, "; ".join(seen))


async def login_body_limit(ctx: CaseContext) -> Outcome:
    form = [("Host", ctx.endpoint.host_header), ("Content-Type", "application/x-www-form-urlencoded")]
    declared, how1 = await raw_http(
        ctx.endpoint, request("POST", "/login", [*form, ("Content-Length", str(40 * 2**20))], b"nickname=")
    )
    chunk = b"nickname=" + b"a" * LOGIN_BODY_LIMIT
    chunked_body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk)
    chunked, how2 = await raw_http(
        ctx.endpoint, request("POST", "/login", [*form, ("Transfer-Encoding", "chunked")], chunked_body)
    )
    ok = declared == 413 and chunked == 413
    return Outcome(ok, f"Content-Length 40 MiB (body not sent): {how1}; {len(chunk)} bytes chunked: {how2}")


async def login_repeated_field_invalid_second(ctx: CaseContext) -> Outcome:
    nick = ctx.nick()
    body = f"nickname={nick}&nickname=%ff".encode()
    form = [("Host", ctx.endpoint.host_header), ("Content-Type", "application/x-www-form-urlencoded")]
    status, how = await raw_http(
        ctx.endpoint,
        request("POST", "/login", [*form, ("Content-Length", str(len(body))), ("Connection", "close")], body),
    )
    return Outcome(status == 303, f"a valid nickname, then a second field %FF: {how}")


async def login_multipart_latin1(ctx: CaseContext) -> Outcome:
    boundary = "wsbench" + os.urandom(4).hex()
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="nickname"\r\n'
            "Content-Type: text/plain; charset=latin-1\r\n\r\n"
        ).encode()
        + b"caf\xe9"
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = [
        ("Host", ctx.endpoint.host_header),
        ("Content-Type", f"multipart/form-data; boundary={boundary}"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
    ]
    status, how = await raw_http(ctx.endpoint, request("POST", "/login", headers, body))
    return Outcome(status == 400, f"multipart part declared latin-1 with bytes 63 61 66 E9: {how}")


async def http_slow_head(ctx: CaseContext) -> Outcome:
    """SPEC 16.1: a request head sent one byte at a time is cut off after about 5 s."""
    try:
        reader, writer = await open_socket(ctx.endpoint)
    except (OSError, TimeoutError) as exc:
        return Outcome(False, f"cannot connect: {exc}")
    started = time.monotonic()
    ended: float | None = None
    try:
        writer.write(f"GET / HTTP/1.1\r\nHost: {ctx.endpoint.host_header}\r\nX-Slow: ".encode())
        while time.monotonic() - started < HEAD_TIMEOUT + HEAD_SLACK:
            try:
                writer.write(b"x")
                await writer.drain()
                data = await asyncio.wait_for(reader.read(65536), 0.5)
            except TimeoutError:
                continue
            except (ConnectionError, OSError):
                ended = time.monotonic() - started
                break
            if not data or data.startswith(b"HTTP/"):
                ended = time.monotonic() - started
                break
    finally:
        writer.close()
    if ended is None:
        return Outcome(False, f"a header byte every 0.5 s: still open after {fmt_duration(HEAD_TIMEOUT + HEAD_SLACK)}")
    return Outcome(True, f"a header byte every 0.5 s: closed after {fmt_duration(ended)}")


#: permessage-deflate offers that must be declined (RFC 7692 §7), and one that may be accepted.
INVALID_DEFLATE_OFFERS = (
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=abc",
    "permessage-deflate; client_max_window_bits=7",
    "permessage-deflate; foo=bar",
    "permessage-deflate; server_no_context_takeover=1",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
)


async def handshake_deflate_offers(ctx: CaseContext) -> Outcome:
    problems: list[str] = []
    for offer in (*INVALID_DEFLATE_OFFERS, "permessage-deflate; server_max_window_bits=8"):
        cookie = await ctx.login_cookie(ctx.nick())
        hs = await ctx.connect(cookie=cookie, extra_headers=[("Sec-WebSocket-Extensions", offer)])
        if hs.ws is None:
            problems.append(f"{offer!r}: {hs.response.describe()}")
            continue
        await hs.ws.close()
        answer = (hs.response.header("sec-websocket-extensions") or "").replace(" ", "")
        if offer.endswith("=8"):
            if answer and "server_max_window_bits=8" not in answer:
                problems.append(f"{offer!r} answered {answer!r}")
        elif answer:
            problems.append(f"{offer!r} accepted as {answer!r}")
    state = "on" if ctx.options.compression else "off"
    if problems:
        return Outcome(False, f"compression {state}: " + "; ".join(problems[:3]))
    return Outcome(True, f"compression {state}: {len(INVALID_DEFLATE_OFFERS)} invalid offers declined (101), none 5xx")


# --------------------------------------------------------------------------------------------------
# Frames (SPEC 8.3, 8.4, 8.6)


async def close_sent_once(ctx: CaseContext) -> Outcome:
    """RFC 6455 §5.5.1: after its close frame (1003 for a binary message) a server sends no second
    close frame, whatever the client sends before answering (here a frame with RSV1 set)."""
    peer = await ctx.join()
    peer.ws.reply_close = False
    t = await peer.ws.send_frame(OP_BINARY, b"binary")
    first = await server_close_frame(peer.ws, t, "a binary message")
    await peer.ws.send_raw(encode_frame(OP_TEXT, b"x", rsv=RSV2 if ctx.options.compression else RSV1))
    await peer.ws.wait_until(lambda: peer.ws.end is not None, REPLY_TIMEOUT)
    closes = peer.ws.close_frames
    after = [m for m in peer.ws.messages if m.t > first.t]
    codes = [frame.code for frame in closes]
    seen = f"close frames {codes}" + (f", {len(after)} data frame(s) after the first" if after else "")
    seen += "; then " + ("TCP closed" if peer.ws.end is not None else "TCP still open")
    with contextlib.suppress(Exception):
        await peer.ws.send_close(first.code or 1000)
    return Outcome(len(closes) == 1 and not after, seen)


async def pings_every_ping(ctx: CaseContext) -> Outcome:
    """SPEC 8.6: 30 pings written at once get 30 pongs, in order, each with its ping's payload."""
    peer = (await open_link(ctx)).sender
    payloads = [f"ping-{i}-{os.urandom(2).hex()}".encode() for i in range(30)]
    t = await peer.ws.send_raw(b"".join(encode_frame(OP_PING, p) for p in payloads))
    await peer.ws.wait_until(lambda: len(peer.ws.pongs) >= len(payloads), REPLY_TIMEOUT)
    got = [p.payload for p in peer.ws.pongs]
    ok = got == payloads
    seen = f"{len(got)} pong(s) for {len(payloads)} pings in {fmt_duration(time.perf_counter() - t)}"
    if not ok and got:
        seen += ", " + ("in order" if got == payloads[: len(got)] else "not the pings' payloads in order")
    return Outcome(ok, seen)


# --------------------------------------------------------------------------------------------------
# The cases (appended to the table of :mod:`wsbench.conform.cases`)


def cases() -> list[Case]:
    return [
        Case(
            "http.foreign_cookie",
            "16.2",
            "cookie values no server signed (non-ASCII, empty parts, quoted)",
            "GET / 303 and GET /chat 401 for each: never a 5xx",
            http_foreign_cookies,
            conns=0,
        ),
        Case(
            "http.static_bad_path",
            "16.2",
            "static paths that cannot name a file (NUL byte, 5000 bytes long)",
            "4xx (404), never a 5xx",
            http_static_bad_paths,
            conns=0,
        ),
        Case(
            "http.slow_head",
            "16.1",
            "a request head sent one byte every 0.5 s (slowloris)",
            f"the connection is closed within {HEAD_TIMEOUT + HEAD_SLACK:g} s",
            http_slow_head,
            conns=0,
            duration_hint=5.5,
            background=True,
        ),
        Case(
            "login.body_limit",
            "3.9",
            "a login body over 16384 bytes (declared 40 MiB, or chunked)",
            "413 for both, without reading a declared body",
            login_body_limit,
            conns=0,
        ),
        Case(
            "login.repeated_field_invalid_second",
            "3.2",
            "a valid nickname field, then a second one that is not UTF-8",
            "303: the first field counts",
            login_repeated_field_invalid_second,
            conns=0,
        ),
        Case(
            "login.multipart_latin1",
            "3.2",
            "a multipart nickname declared latin-1, bytes caf\\xe9",
            "400: not UTF-8, not repaired",
            login_multipart_latin1,
            conns=0,
        ),
        Case(
            "handshake.bad_key",
            "6.1",
            "Sec-WebSocket-Key not the base64 of 16 bytes (!!!!, non-ASCII, 15 bytes, 6 KB, none)",
            "400 for each, no upgrade",
            handshake_bad_keys,
            conns=0,
            rfc="RFC 6455 §4.2.1",
        ),
        Case(
            "handshake.deflate_offers",
            "16.5",
            "invalid permessage-deflate offers (window bits 7, 16, abc; unknown, valued or repeated parameters)",
            "each declined: 101 without the extension, never a 5xx",
            handshake_deflate_offers,
            rfc="RFC 7692 §7",
        ),
        # RFC-level: both profiles (issue 11's scripts; on the echo profile nothing may come back)
        *[
            Case(
                "framing.empty_fragment_then_text" + suffix,
                "8.3",
                "an empty first fragment, then a text frame and a stray continuation" + r.WRITE_LABEL[write],
                PROTOCOL_ERROR + "; nothing delivered",
                r.run_script(
                    r.script([text("", fin=False), text("injected"), cont("stray")], end="protocol", write=write)
                ),
                conns=2,
                rfc="RFC 6455 §5.4",
                profiles=("chat", "echo"),
            )
            for suffix, write in (("", "one"), (".bytes", "bytes"))
        ],
        Case(
            "framing.empty_fragment_then_binary",
            "8.3",
            "an empty first fragment, then a binary frame",
            PROTOCOL_ERROR + " (not 1003: the binary frame is the violation)",
            r.run_script(r.script([text("", fin=False), F(OP_BINARY, b"bin")], end="protocol")),
            conns=2,
            rfc="RFC 6455 §5.4",
            profiles=("chat", "echo"),
        ),
        Case(
            "close.sent_once",
            "8.4",
            "a protocol violation after the server's close frame",
            "no second close frame and no data frame after the first close",
            close_sent_once,
            rfc="RFC 6455 §5.5.1",
        ),
        Case(
            "pings.every_ping",
            "8.6",
            "30 pings written at once",
            "30 pongs, in order, each with its ping's payload",
            pings_every_ping,
            rfc="RFC 6455 §5.5.2",
            profiles=("chat", "echo"),
        ),
    ]
