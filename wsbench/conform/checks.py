"""The steps of the conformance cases: each function (or factory) returns a check coroutine that drives
the server through :class:`~wsbench.conform.session.CaseContext` and says what it saw.

The table that names these checks, with clauses and expectations, is :mod:`wsbench.conform.cases`.
The load-based measurements (slow consumer, Nagle) are in :mod:`wsbench.conform.measure`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
from collections.abc import Callable
from typing import Any

from wsbench_servers.options import OPTION_TYPES
from wsbench_servers.policy import parse_origin, serialized_origin

from wsbench.conform import spawn
from wsbench.conform.model import Check, Outcome
from wsbench.conform.rfc import end_outcome
from wsbench.conform.session import (
    REPLY_TIMEOUT,
    SILENCE,
    CaseContext,
    CaseFailed,
    CaseSkipped,
    Peer,
    join_line,
    join_room,
    leave_line,
    message_line,
    open_link,
    server_close_frame,
)
from wsbench.conform.wire import (
    OP_BINARY,
    OP_CONTINUATION,
    OP_PING,
    OP_TEXT,
    CloseObservation,
    HttpResponse,
    encode_frame,
    fmt_duration,
    http_request,
    now,
    split_payload,
)

#: Longest ping interval the gate waits for; a server started with longer pings is skipped, with the reason.
MAX_PING_WAIT = 10.0
#: Most connections the max-connections case opens to fill a server.
MAX_FILL = 200
#: A message expected as soon as possible takes at most this long, plus this much per MB.
PER_MB = 1.0

_origin = OPTION_TYPES["allowed_origin"]  # an allow-list entry in SPEC 6.3's canonical form

FORM_FIELD_RE = re.compile(r"""name\s*=\s*["']?nickname\b""", re.IGNORECASE)


def passed(observed: str) -> Outcome:
    return Outcome(True, observed)


def failed(observed: str) -> Outcome:
    return Outcome(False, observed)


def short(data: bytes | str, limit: int = 60) -> str:
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return repr(text if len(text) <= limit else text[:limit] + "...") + (
        f" ({len(text)} chars)" if len(text) > limit else ""
    )


async def expect_nothing_from(peer: Peer, nick: str, window: float = SILENCE) -> list[bytes]:
    """Listen ``window`` seconds; returns what ``peer`` got from ``nick`` (should be nothing)."""
    await asyncio.sleep(window)
    return [m.data for m in peer.messages_from(nick)]


def form_present(response: HttpResponse) -> bool:
    return bool(FORM_FIELD_RE.search(response.text))


# --------------------------------------------------------------------------------------------------
# HTTP resources (SPEC 2, 3.1, 4.1, 5.1)


async def http_not_found(ctx: CaseContext) -> Outcome:
    path = f"/no-such-page-{os.urandom(3).hex()}"
    r = await http_request(ctx.endpoint, "GET", path)
    return Outcome(r.status == 404, f"GET {path}: {r.describe()}")


async def http_login_form(ctx: CaseContext) -> Outcome:
    r = await http_request(ctx.endpoint, "GET", "/login")
    problems = []
    if r.status != 200:
        problems.append("not 200")
    if not form_present(r):
        problems.append("no nickname field")
    if not re.search(r"""method\s*=\s*["']?post""", r.text, re.IGNORECASE):
        problems.append("no POST form")
    return Outcome(not problems, r.describe() + (f" ({', '.join(problems)})" if problems else ", form with nickname"))


async def http_page_login_required(ctx: CaseContext) -> Outcome:
    seen = []
    ok = True
    for label, cookie in (("no cookie", None), ("forged cookie", f"nickname={ctx.nick()}")):
        headers = [("Cookie", cookie)] if cookie else []
        r = await http_request(ctx.endpoint, "GET", "/", headers=headers)
        location = r.header("location") or ""
        good = r.status == 303 and location.rstrip("/").endswith("/login")
        ok = ok and good
        seen.append(f"{label}: {r.describe()}" + (f" to {location}" if location else ""))
    return Outcome(ok, "; ".join(seen))


async def http_page_ok(ctx: CaseContext) -> Outcome:
    cookie = await ctx.login_cookie(ctx.nick())
    r = await http_request(ctx.endpoint, "GET", "/", headers=[("Cookie", cookie)])
    return Outcome(r.status == 200, f"with the login cookie: {r.describe()}")


STATS_FIELDS: dict[str, tuple[type, ...]] = {
    "server": (str,),
    "connections": (int,),
    "messages_in": (int,),
    "deliveries_out": (int,),
    "slow_consumer_closes": (int,),
    "rss_bytes": (int,),
    "uptime_s": (int, float),
}


async def http_stats(ctx: CaseContext) -> Outcome:
    r = await http_request(ctx.endpoint, "GET", "/stats")
    if r.status != 200:
        return failed(r.describe())
    try:
        data = json.loads(r.body)
    except ValueError:
        return failed(f"{r.describe()}, body is not JSON: {short(r.body)}")
    if not isinstance(data, dict):
        return failed(f"{r.describe()}, JSON but not an object")
    problems = []
    for key, types in STATS_FIELDS.items():
        if key not in data:
            problems.append(f"no {key}")
        elif isinstance(data[key], bool) or not isinstance(data[key], types):
            problems.append(f"{key} is {type(data[key]).__name__}")
    cpu = data.get("cpu_s")  # optional (SPEC 5.1), but a number when given
    if cpu is not None and (isinstance(cpu, bool) or not isinstance(cpu, int | float) or cpu < 0):
        problems.append(f"cpu_s is {cpu!r}, not a number of seconds")
    if problems:
        return failed(f"{r.describe()}: {', '.join(problems)}")
    return passed(f"{r.describe()}: server {data['server']!r}, {data['connections']} connections, all 7 fields")


# --------------------------------------------------------------------------------------------------
# Login (SPEC 3)


def cookie_attributes(set_cookie: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for part in set_cookie.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        attrs[name.strip().lower()] = value.strip()
    return attrs


async def login_ok(ctx: CaseContext) -> Outcome:
    nick = ctx.nick()
    result = await ctx.login(nick)
    r = result.response
    problems = []
    if r.status != 303:
        problems.append(f"status {r.status}")
    location = r.header("location")
    if location is None or not (location == "/" or location.endswith(f"{ctx.endpoint.host_header}/")):
        problems.append(f"Location {location!r}")
    if result.set_cookie is None or result.cookie is None:
        problems.append("no nickname cookie")
    else:
        attrs = cookie_attributes(result.set_cookie)
        if "httponly" not in attrs:
            problems.append("not HttpOnly")
        if attrs.get("samesite", "").lower() != "lax":
            problems.append(f"SameSite={attrs.get('samesite')!r}")
        if attrs.get("path") != "/":
            problems.append(f"Path={attrs.get('path')!r}")
        value = result.cookie.split("=", 1)[1].strip('"')
        if value == nick:
            problems.append("the cookie is the bare nickname (not signed)")
    seen = f"{r.describe()}, Location {location!r}"
    if result.set_cookie:
        attrs_seen = "; ".join(p.strip() for p in result.set_cookie.split(";")[1:])
        seen += f", cookie attributes: {attrs_seen}"
    return Outcome(not problems, seen + (f" — wrong: {', '.join(problems)}" if problems else ""))


def login_refused(make_nick: Callable[[CaseContext], str], status: int) -> Check:
    async def check(ctx: CaseContext) -> Outcome:
        nick = make_nick(ctx)
        result = await ctx.login(nick)
        r = result.response
        problems = []
        if r.status != status:
            problems.append(f"expected {status}")
        if result.cookie is not None:
            problems.append("set a nickname cookie")
        if not form_present(r):
            problems.append("no form in the page")
        return Outcome(
            not problems,
            f"nickname {short(nick, 40)}: {r.describe()}" + (f" ({', '.join(problems)})" if problems else ""),
        )

    return check


def login_accepted(make_nick: Callable[[CaseContext], str]) -> Check:
    async def check(ctx: CaseContext) -> Outcome:
        nick = make_nick(ctx)
        result = await ctx.login(nick)
        r = result.response
        ok = r.status is not None and 200 <= r.status < 400 and result.cookie is not None
        cookie = "with" if result.cookie else "without"
        return Outcome(ok, f"nickname {short(nick, 40)} ({len(nick)} code points): {r.describe()} {cookie} cookie")

    return check


def login_raw(body: Callable[[CaseContext], bytes], status: int, label: str) -> Check:
    """``POST /login`` with exactly this form body (bytes that :func:`login` would never send)."""

    async def check(ctx: CaseContext) -> Outcome:
        raw = body(ctx)
        r = await http_request(
            ctx.endpoint,
            "POST",
            "/login",
            headers=[("Content-Type", "application/x-www-form-urlencoded")],
            body=raw,
        )
        cookie = r.nickname_cookie() is not None
        ok = r.status == status and (cookie == (status < 400))
        shown = raw.decode("ascii", errors="replace")
        return Outcome(ok, f"{label} ({shown}): {r.describe()} {'with' if cookie else 'without'} a cookie")

    return check


def nick_of_length(ctx: CaseContext, length: int) -> str:
    """A fresh nickname of exactly ``length`` code points, non-ASCII padded."""
    base = ctx.nick()
    return (base + "名" * length)[:length] if len(base) < length else base[-length:]


async def login_online(ctx: CaseContext) -> Outcome:
    peer = await ctx.join()
    result = await ctx.login(peer.nick)
    r = result.response
    hint = "昵称已被使用，请更换昵称"
    problems = []
    if r.status != 409:
        problems.append("expected 409")
    if hint not in r.text:
        problems.append("no hint")
    if not form_present(r):
        problems.append("no form")
    return Outcome(
        not problems,
        f"login as an online nickname: {r.describe()}"
        + (", hint shown" if hint in r.text else "")
        + (f" ({', '.join(problems)})" if problems else ""),
    )


def login_strips(before: str, after: str) -> Check:
    """SPEC 3.2: log in as ``before + NICK + after``; the room sees the join line of the bare NICK."""

    def shown(text: str) -> str:
        return " ".join(repr(ch) if ch.isprintable() and ch != " " else f"U+{ord(ch):04X}" for ch in text)

    async def check(ctx: CaseContext) -> Outcome:
        observer = await ctx.join()
        nick = ctx.nick()
        cookie = await ctx.login_cookie(before + nick + after)
        padded = f"{shown(before)} {nick} {shown(after)}"
        hs = await ctx.connect(cookie=cookie)
        if hs.ws is None:
            return failed(f"/chat with the cookie of {padded}: {hs.response.describe()}")
        got = await observer.wait_line(join_line(nick))
        if got:
            return passed(f"logged in as {padded}: joined as {nick!r}")
        seen = [x.nick for x in ctx.mine(observer) if x.kind == "join" and x.nick != nick]
        return failed(f"no join line for the stripped nickname {nick!r} within {REPLY_TIMEOUT:g} s; saw {seen!r}")

    return check


# --------------------------------------------------------------------------------------------------
# Handshake (SPEC 6, 14)


def tamper(cookie: str) -> str:
    """``nickname=VALUE`` with the last letter or digit of VALUE changed."""
    name, _, value = cookie.partition("=")
    chars = list(value)
    for i in range(len(chars) - 1, -1, -1):
        if chars[i].isalnum():
            chars[i] = "A" if chars[i] != "A" else "B"
            break
    return f"{name}={''.join(chars)}"


async def make_cookie(ctx: CaseContext, kind: str) -> str | None:
    if kind == "none" or (ctx.echo and kind == "valid"):  # an echo server has no login
        return None
    nick = ctx.nick()
    if kind == "forged":
        return f"nickname={nick}"
    cookie = await ctx.login_cookie(nick)
    return tamper(cookie) if kind == "tampered" else cookie


def make_origin(ctx: CaseContext, kind: str | None) -> str | None:
    ep = ctx.endpoint
    if kind is None:
        return None
    if kind == "same":
        return ep.origin
    if kind == "cross":
        return "http://evil.example"
    if kind == "cross_port":
        other = ep.port + 1 if ep.port < 65535 else ep.port - 1
        return f"http://{ep.host}:{other}"
    if kind == "null":
        return "null"
    if kind == "same_unnormalized":
        return f"HTTP://{ep.host_header.upper()}/"
    if kind in ("allowed", "allowed_other_scheme"):
        if not ctx.options.allowed_origin:
            raise CaseSkipped("no --allowed-origin given, so no extra origin to check")
        allowed = parse_origin(ctx.options.allowed_origin[0])  # SPEC 6.3's reading, as the servers' own
        if allowed is None:
            raise ValueError(ctx.options.allowed_origin[0])
        if kind == "allowed":
            return serialized_origin(allowed)  # as a browser sends it: a default port left out
        # the same host and port under the other scheme: only the scheme differs from the entry
        scheme = "http" if allowed.scheme == "https" else "https"
        probe = f"{scheme}://{allowed.host}:{allowed.effective_port}"
        if _origin(probe) in ctx.options.allowed_origin:
            raise CaseSkipped(f"{probe} is itself an --allowed-origin, so no other-scheme origin to refuse")
        return probe
    raise ValueError(kind)


def handshake(
    cookie: str = "valid",
    origin: str | None = None,
    status: int = 101,
    version: str | None = "13",
    headers: tuple[tuple[str, str], ...] = (),
    upgrade: bool = True,
) -> Check:
    async def check(ctx: CaseContext) -> Outcome:
        origin_value = make_origin(ctx, origin)
        cookie_value = await make_cookie(ctx, cookie)
        hs = await ctx.connect(
            cookie=cookie_value, origin=origin_value, version=version, extra_headers=headers, upgrade=upgrade
        )
        seen = hs.response.describe()
        if not upgrade:
            seen = f"no Upgrade header: {seen}"
        elif version is None:
            seen = f"no Sec-WebSocket-Version: {seen}"
            advertised = hs.response.header("sec-websocket-version")
            if status == 426 and hs.status == 426 and (advertised or "").strip() != "13":
                return failed(f"{seen}, Sec-WebSocket-Version: {advertised!r}")
        if headers:
            seen = ", ".join(f"{k}: {v}" for k, v in headers) + f": {seen}"
        if origin_value:
            seen = f"Origin {origin_value}{', ' if headers else ': '}{seen}"
        if hs.ws is not None:
            await hs.ws.close()
        ok = hs.status == status
        if ctx.echo and status >= 400:  # RFC 6455 §4.2.1: "an appropriate error code (such as 400)"
            ok = hs.status is not None and 400 <= hs.status < 500
        return Outcome(ok, seen + (" (upgraded)" if hs.status == 101 and status != 101 else ""))

    return check


async def handshake_bad_version(ctx: CaseContext) -> Outcome:
    cookie = await make_cookie(ctx, "valid")
    hs = await ctx.connect(cookie=cookie, version="8")
    if hs.ws is not None:
        await hs.ws.close()
    advertised = hs.response.header("sec-websocket-version")
    ok = hs.status == 426 and advertised is not None and "13" in [v.strip() for v in advertised.split(",")]
    return Outcome(ok, f"Sec-WebSocket-Version 8: {hs.response.describe()}, Sec-WebSocket-Version: {advertised!r}")


async def handshake_order(ctx: CaseContext) -> Outcome:
    a = await ctx.connect(cookie=await make_cookie(ctx, "forged"), origin="http://evil.example")
    b = await ctx.connect(cookie=None, version="8")
    for hs in (a, b):
        if hs.ws is not None:
            await hs.ws.close()
    ok = a.status == 401 and b.status == 426
    return Outcome(
        ok,
        f"forged cookie + cross-site Origin: {a.response.describe()}; version 8 + no cookie: {b.response.describe()}",
    )


async def handshake_nickname_online(ctx: CaseContext) -> Outcome:
    observer, first = await join_room(ctx, 2)
    hs = await ctx.connect(cookie=first.cookie)
    if hs.ws is None:
        return failed(f"second connection as {first.nick!r}: {hs.response.describe()} (SPEC 6.6 accepts, then closes)")
    obs = await hs.ws.observe_close(hs.ws.opened_at, REPLY_TIMEOUT)
    problems = []
    if not (obs.kind == "close" and obs.code == 4409):
        problems.append("expected close 4409")
    reason = "" if obs.reason == "nickname in use" or obs.kind != "close" else f" (reason {obs.reason!r})"
    await first.ws.send_text("still here")
    relayed = await observer.wait_line(message_line(first.nick, "still here"))
    if not relayed or first.ws.ended:
        problems.append("the first connection was affected")
    await asyncio.sleep(SILENCE)
    joins, leaves = observer.count(join_line(first.nick)), observer.count(leave_line(first.nick))
    if (joins, leaves) != (1, 0):
        problems.append(f"others saw {joins} join and {leaves} leave lines")
    seen = f"101, then {obs.describe()}{reason}; first connection {'still relays' if relayed else 'broken'}; "
    seen += f"others saw {joins} join / {leaves} leave lines"
    return Outcome(not problems, seen + (f" — {', '.join(problems)}" if problems else ""))


async def handshake_compression(ctx: CaseContext) -> Outcome:
    cookie = await make_cookie(ctx, "valid")
    offer = [("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]
    hs = await ctx.connect(cookie=cookie, extra_headers=offer)
    if hs.ws is None:
        return failed(f"offering permessage-deflate: {hs.response.describe()}")
    await hs.ws.close()
    answer = hs.response.header("sec-websocket-extensions") or ""
    negotiated = "permessage-deflate" in answer.lower()
    want = ctx.options.compression
    shown = f"Sec-WebSocket-Extensions: {answer!r}" if answer else "no Sec-WebSocket-Extensions"
    return Outcome(negotiated == want, f"offered permessage-deflate: 101 with {shown}")


async def handshake_max_connections(ctx: CaseContext) -> Outcome:
    limit = ctx.options.max_connections
    stats = await ctx.stats()
    already = int(stats.get("connections", 0)) if stats else 0
    need = limit - already
    if need > MAX_FILL:
        raise CaseSkipped(
            f"max_connections {limit} is more than the gate opens ({MAX_FILL}); "
            "check a server started with a smaller --max-connections"
        )
    peers: list[Peer] = []
    for start in range(0, need, 10):
        batch = min(10, need - start)
        try:
            peers += await asyncio.gather(*(ctx.join(tag="fill") for _ in range(batch)))
        except CaseFailed as exc:
            return failed(f"connection {len(peers) + 1} of {limit} was refused: {exc}")
    extra = await ctx.connect(cookie=await ctx.login_cookie(ctx.nick()))
    over = extra.response.describe()
    if extra.ws is not None:
        await extra.ws.close()
        return failed(f"{need} connections open ({already} before), one more: {over} — not refused")
    await peers[0].ws.close()
    freed_ok = False
    again = None
    for _ in range(20):
        again = await ctx.connect(cookie=await ctx.login_cookie(ctx.nick()))
        if again.ws is not None:
            freed_ok = True
            break
        await asyncio.sleep(0.1)
    seen = f"{need} connections open ({already} before), one more: {over}; after one closed: "
    seen += again.response.describe() if again else "not tried"
    return Outcome(extra.status == 503 and freed_ok, seen)


# --------------------------------------------------------------------------------------------------
# Messaging (SPEC 7)


async def messaging_join(ctx: CaseContext) -> Outcome:
    observer, joiner = await join_room(ctx, 2)
    seen_by_other = await observer.wait_line(join_line(joiner.nick))
    await asyncio.sleep(SILENCE)
    own = joiner.count(join_line(joiner.nick))
    others = observer.count(join_line(joiner.nick))
    ok = seen_by_other and own == 0 and others == 1
    return Outcome(ok, f"the other client got the join line {others} time(s); the joining client got it {own} time(s)")


def relay(text: str, label: str) -> Check:
    async def check(ctx: CaseContext) -> Outcome:
        return await relay_exact(ctx, text, label)

    return check


async def relay_exact(ctx: CaseContext, text: str, label: str, *, fragments: int = 1) -> Outcome:
    link = await open_link(ctx)
    sender = link.sender
    expected = link.expected(text.encode())
    if fragments > 1:
        t = await sender.ws.send_fragments(OP_TEXT, split_payload(text.encode(), fragments))
    else:
        t = await sender.ws.send_text(text)
    timeout = REPLY_TIMEOUT + PER_MB * len(expected) / 1e6
    got = await link.wait_delivered(1, timeout)
    where = link.where
    if not got:
        extra = ""
        if sender.ws.ended:
            extra = f"; the sender got {(await sender.ws.observe_close(t, 0.1)).describe()}"
        return failed(f"{label}: nothing {where} within {fmt_duration(timeout)}{extra}")
    msg = link.delivered()[0]
    if msg.data != expected or msg.opcode != OP_TEXT:
        kind = "" if msg.opcode == OP_TEXT else f" (opcode {msg.opcode:#x})"
        return failed(f"{label}: {where} {short(msg.data)}{kind} instead of {short(expected)}")
    if sender.ws.ended:
        return failed(f"{label}: {where}, but the sender got {(await sender.ws.observe_close(t, 0.1)).describe()}")
    return passed(f"{label}: {where} byte for byte ({len(expected)} bytes) in {fmt_duration(msg.t - t)}")


async def messaging_no_echo(ctx: CaseContext) -> Outcome:
    sender, receiver = await join_room(ctx, 2)
    for i in range(3):
        await sender.ws.send_text(f"echo test {i}")
    got = await receiver.wait_from(sender.nick, 3)
    echoed = await expect_nothing_from(sender, sender.nick)
    ok = got and not echoed
    seen = f"the other client got {len(receiver.messages_from(sender.nick))}/3; the sender got {len(echoed)} back"
    if echoed:
        seen += f" ({short(echoed[0])})"
    return Outcome(ok, seen)


async def messaging_order(ctx: CaseContext) -> Outcome:
    count = 100
    receiver, s1, s2 = await join_room(ctx, 3)

    async def send_all(peer: Peer) -> None:
        for i in range(count):
            await peer.ws.send_text(f"seq {i}")

    await asyncio.gather(send_all(s1), send_all(s2))
    await receiver.ws.wait_until(
        lambda: len(receiver.messages_from(s1.nick)) >= count and len(receiver.messages_from(s2.nick)) >= count,
        REPLY_TIMEOUT + 3,
    )
    problems = []
    for peer in (s1, s2):
        seqs = [int(m.text.rsplit(" ", 1)[1]) for m in receiver.messages_from(peer.nick)]
        if seqs != list(range(count)):
            missing = count - len(set(seqs))
            disorder = sum(1 for a, b in itertools.pairwise(seqs) if b < a)
            problems.append(f"{len(seqs)} of {count} from one sender, {missing} missing, {disorder} out of order")
    if problems:
        return failed("; ".join(problems))
    return passed(f"2 senders x {count} messages: all received, each sender's in order")


def leave(how: str) -> Check:
    what = {"close": "close frame", "fin": "FIN without close frame", "rst": "TCP reset"}

    async def check(ctx: CaseContext) -> Outcome:
        observer, leaver = await join_room(ctx, 2)
        if how == "close":
            t = await leaver.ws.send_close(1000)
        elif how == "fin":
            await leaver.ws.aclose()
            t = now()
        else:
            leaver.ws.reset()
            t = now()
        line = leave_line(leaver.nick)
        got = await observer.wait_line(line)
        if not got:
            return failed(f"no leave line within {REPLY_TIMEOUT:g} s after the {what[how]}")
        at = next(m.t for m in observer.ws.messages if m.text == line)
        await asyncio.sleep(SILENCE + 0.2)
        times = observer.count(line)
        relogin = await ctx.login(leaver.nick)
        free = relogin.response.status is not None and relogin.response.status < 400
        seen = f"leave line {times} time(s), first {fmt_duration(at - t)} after the {what[how]}; "
        seen += f"login as the same nickname afterwards: {relogin.response.describe()}"
        return Outcome(times == 1 and free, seen)

    return check


# --------------------------------------------------------------------------------------------------
# Limits (SPEC 9.1, 8.1)


def sized_text(size: int, multibyte: bool) -> str:
    """Text of exactly ``size`` UTF-8 bytes; with ``multibyte`` mostly 2- and 3-byte characters (so a
    server counting characters instead of bytes is caught)."""
    if not multibyte:
        return "x" * size
    threes, rest = divmod(size, 3)
    return "界" * threes + "é" * (rest // 2) + "x" * (rest % 2)


def size_limit(delta: int, *, fragments: int = 1, multibyte: bool = False) -> Check:
    async def check(ctx: CaseContext) -> Outcome:
        size = ctx.options.max_message_size + delta
        text = sized_text(size, multibyte)
        label = f"{size} bytes" + (f" in {fragments} fragments" if fragments > 1 else "")
        if delta <= 0:
            return await relay_exact(ctx, text, label, fragments=fragments)
        return await refused_message(ctx, text.encode(), label, 1009, fragments=fragments)

    return check


async def refused_message(
    ctx: CaseContext, payload: bytes, label: str, code: int, *, opcode: int = OP_TEXT, fragments: int = 1
) -> Outcome:
    """Send a message the server must refuse with ``code``; nothing of it may be relayed."""
    link = await open_link(ctx)
    sender = link.sender
    if fragments > 1:
        t = await sender.ws.send_fragments(opcode, split_payload(payload, fragments))
    else:
        t = await sender.ws.send_frame(opcode, payload)
    obs = await sender.ws.observe_close(t, REPLY_TIMEOUT + PER_MB * len(payload) / 1e6)
    relayed = [m.data for m in await link.nothing_more()]
    ok = obs.kind == "close" and obs.code == code and not relayed
    seen = f"{label}: {obs.describe()}"
    seen += f"; {link.where} {short(relayed[0])}" if relayed else f"; nothing {link.where}"
    return Outcome(ok, seen)


async def limits_binary(ctx: CaseContext) -> Outcome:
    return await refused_message(ctx, b"\x00\x01binary\xff", "binary message", 1003, opcode=OP_BINARY)


# --------------------------------------------------------------------------------------------------
# Framing and UTF-8 (SPEC 8.2, 8.3)


def invalid_utf8(parts: list[bytes]) -> Check:
    async def check(ctx: CaseContext) -> Outcome:
        link = await open_link(ctx)
        sender = link.sender
        if len(parts) > 1:
            t = await sender.ws.send_fragments(OP_TEXT, parts)
            label = f"invalid UTF-8 split across {len(parts)} fragments"
        else:
            t = await sender.ws.send_text(parts[0])
            label = "invalid UTF-8 text"
        obs = await sender.ws.observe_close(t, REPLY_TIMEOUT)
        relayed = await link.nothing_more()
        seen = f"{label}: {obs.describe()}" + (f"; something was {link.where}" if relayed else "")
        ok, note, _ = end_outcome(obs, "utf8", link.echo)
        if ok and note and not relayed:
            return Outcome(True, f"{seen} ({note})", "non-strict")
        return Outcome(ok and not relayed, seen)

    return check


async def utf8_valid_split(ctx: CaseContext) -> Outcome:
    link = await open_link(ctx)
    sender = link.sender
    raw = "a😀b".encode()
    t = await sender.ws.send_fragments(OP_TEXT, [raw[:3], raw[3:]])
    got = await link.wait_delivered()
    expected = link.expected(raw)
    if not got:
        obs = await sender.ws.observe_close(t, 0.1)
        return failed(f"an emoji split across 2 fragments: nothing {link.where}; the sender got {obs.describe()}")
    data = link.delivered()[0].data
    return Outcome(
        data == expected,
        f"an emoji split across 2 fragments: {link.where} {short(data)} in {fmt_duration(now() - t)}",
    )


def protocol_violation(frames: Callable[[], bytes], label: str) -> Check:
    """Send raw frames; expect close 1002, or the connection dropped (both allowed by SPEC 8.3)."""

    async def check(ctx: CaseContext) -> Outcome:
        peer = await ctx.join()
        t = await peer.ws.send_raw(frames())
        obs = await peer.ws.observe_close(t, REPLY_TIMEOUT)
        return protocol_error_outcome(obs, f"{label}: {obs.describe()}")

    return check


def protocol_error_outcome(obs: CloseObservation, seen: str, also_ok: int | None = None) -> Outcome:
    """Close 1002 (or ``also_ok``) passes; a drop without a close frame is allowed (RFC 6455 §7.1.7:
    the endpoint SHOULD send a close frame first) and reported as non-strict, as Autobahn's clean-close
    check would (the rule is :func:`~wsbench.conform.rfc.end_outcome`)."""
    ok, note, _ = end_outcome(obs, "protocol", echo=False, also_ok=also_ok)
    if ok and note:
        return Outcome(True, f"{seen} ({note})", "non-strict")
    return Outcome(ok, seen)


def text(payload: bytes, **kwargs: Any) -> bytes:
    return encode_frame(OP_TEXT, payload, **kwargs)


# --------------------------------------------------------------------------------------------------
# Close handshake (SPEC 8.4, 8.5)


def close_valid(code: int | None, reason: bytes = b"bye") -> Check:
    async def check(ctx: CaseContext) -> Outcome:
        peer = await ctx.join()
        t = await peer.ws.send_close(code, reason if code is not None else b"")
        obs = await peer.ws.observe_close(t, REPLY_TIMEOUT)
        sent = "an empty close frame" if code is None else f"close {code}"
        if code is not None and len(reason) != 3:
            sent += f" with a {len(reason)}-byte reason"
        seen = f"sent {sent}: {obs.describe()}"
        if obs.kind != "close":
            return failed(seen)
        answered = obs.code
        acceptable = {code, 1000, None}
        if answered not in acceptable:
            return failed(seen + f" — answered {answered}, so the valid code was treated as an error")
        if obs.end is None:
            return failed(seen + " — the server did not close TCP")
        if code is not None and answered is None:
            return Outcome(True, seen + f" (no status code; SPEC 8.4 SHOULD echo {code})", "non-strict")
        if code is not None and answered != code:
            seen += f" (answered {answered}; SPEC 8.4 SHOULD echo {code})"
            if not ctx.echo:  # RFC 6455 §5.5.1 only says an endpoint "typically" echoes it
                return Outcome(True, seen, "non-strict")
        return passed(seen)

    return check


async def close_data_after_server_close(ctx: CaseContext) -> Outcome:
    """SPEC 8.4: once the server has sent its close frame, data frames are ignored, not relayed."""
    sender, receiver = await join_room(ctx, 2)
    sender.ws.reply_close = False  # keep the close handshake open, as a slow client would
    t = await sender.ws.send_frame(OP_BINARY, b"binary")
    frame = await server_close_frame(sender.ws, t, "a binary message")
    await sender.ws.send_text("sent after the server's close frame")
    relayed = await expect_nothing_from(receiver, sender.nick)
    await sender.ws.send_close(frame.code or 1000)
    seen = f"server sent close {frame.code}; a text message sent before answering it: "
    return Outcome(not relayed, seen + (f"relayed {short(relayed[0])}" if relayed else "not relayed"))


def close_invalid(code: int | None, payload: bytes | None = None, also_ok: int | None = None) -> Check:
    async def check(ctx: CaseContext) -> Outcome:
        peer = await ctx.join()
        if payload is not None:
            t = await peer.ws.send_close(payload=payload)
            sent = f"close payload {payload!r}"
        else:
            t = await peer.ws.send_close(code)
            sent = f"close {code}"
        obs = await peer.ws.observe_close(t, REPLY_TIMEOUT)
        seen = f"sent {sent}: {obs.describe()}"
        outcome = protocol_error_outcome(obs, seen, also_ok)
        if outcome.passed or not ctx.echo or obs.kind != "close":
            return outcome
        # The echo profile reads RFC 6455 as Autobahn does (SPEC 8.5 is stricter, for the chat profile):
        if code is not None and code >= 5000:  # RFC 6455 §7.4 defines codes up to 4999 only (Autobahn 7.13)
            return Outcome(True, seen + " (codes from 5000 up are undefined by RFC 6455)", "informational")
        if payload is not None and len(payload) == 1 and obs.code is None:  # Autobahn 7.3.2 accepts it
            return Outcome(True, seen + " (an empty close frame, not 1002)", "non-strict")
        return outcome

    return check


# --------------------------------------------------------------------------------------------------
# Pings (SPEC 10, 8.6)


def ping_tolerance(interval: float) -> float:
    """How far a ping may be from its schedule: timers on a loaded 2-core machine slip by 100s of ms."""
    return max(0.5, 0.25 * interval)


def require_pings(ctx: CaseContext) -> tuple[float, float]:
    interval, timeout = ctx.options.ping_interval, ctx.options.ping_timeout
    if interval <= 0:
        raise CaseSkipped("pings are disabled (ping_interval 0)")
    if interval > MAX_PING_WAIT or timeout > MAX_PING_WAIT:
        raise CaseSkipped(
            f"ping interval/timeout {interval:g}/{timeout:g} s is too long for the gate (at most {MAX_PING_WAIT:g} s): "
            "check a server started with shorter pings and pass the same --ping-interval/--ping-timeout"
        )
    return interval, timeout


async def pings_interval(ctx: CaseContext) -> Outcome:
    interval = ctx.options.ping_interval
    if interval <= 0:
        peer = await ctx.join()
        await asyncio.sleep(3.0)
        n = len(peer.ws.pings)
        return Outcome(n == 0, f"pings disabled: {n} ping(s) in 3 s")
    interval, _ = require_pings(ctx)
    tol = ping_tolerance(interval)
    peer = await ctx.join()
    await peer.ws.wait_until(lambda: len(peer.ws.pings) >= 3 or peer.ws.end is not None, 2 * interval + tol + 0.2)
    times = [f.t - peer.ws.opened_at for f in peer.ws.pings[:3]]
    if len(times) < 2:
        return failed(f"{len(times)} ping(s) within {fmt_duration(2 * interval + tol)} of the handshake")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    shown = ", ".join(f"{x:.2f}" for x in times)
    ok = abs(times[0] - interval) <= tol and all(abs(g - interval) <= tol for g in gaps)
    return Outcome(ok, f"pings at {shown} s after the handshake (interval {interval:g} s, tolerance {tol:.2f} s)")


async def pings_timeout(ctx: CaseContext) -> Outcome:
    interval, timeout = require_pings(ctx)
    if timeout <= 0:
        raise CaseSkipped("ping_timeout 0: no pong deadline to check")
    observer = await ctx.join()
    silent = await ctx.join(auto_pong=False)
    await silent.ws.wait_until(lambda: bool(silent.ws.pings) or silent.ws.end is not None, interval + 1.0)
    if not silent.ws.pings:
        return failed(f"no ping within {interval + 1:g} s, so no timeout to observe")
    t_ping = silent.ws.pings[0].t
    obs = await silent.ws.observe_close(t_ping, timeout + 1.5, end_timeout=1.5)
    left = await observer.wait_line(leave_line(silent.nick))
    deadline = timeout + 1.0
    ended = obs.end.t - t_ping if obs.end is not None else None
    problems = []
    if not (obs.kind == "close" and obs.code == 1011):
        problems.append("expected close 1011")
    if ended is None or ended > deadline + 0.05:
        problems.append(f"TCP not closed within {deadline:g} s of the ping")
    # SPEC 10.2 also bounds it from below: a client has ping_timeout seconds to answer
    first = obs.close_at if obs.kind == "close" and obs.close_at is not None else obs.end.t if obs.end else None
    early = timeout - ping_tolerance(timeout)  # the ping may reach us late on a loaded machine
    if first is not None and first - t_ping < early:
        problems.append(f"closed {fmt_duration(first - t_ping)} after the ping, before ping_timeout {timeout:g} s")
    if not left:
        problems.append("no leave line for the others")
    seen = f"never ponged: {obs.describe()} (after the ping)"
    if ended is not None:
        seen += f"; TCP closed {fmt_duration(ended)} after the ping"
    seen += "; leave line sent" if left else ""
    return Outcome(not problems, seen + (f" — {', '.join(problems)}" if problems else ""))


async def pings_text_is_not_pong(ctx: CaseContext) -> Outcome:
    """SPEC 10.2: only a pong answers a ping; a client that talks but never pongs is still closed."""
    interval, timeout = require_pings(ctx)
    if timeout <= 0:
        raise CaseSkipped("ping_timeout 0: no pong deadline to check")
    talker = await ctx.join(auto_pong=False)
    deadline = now() + interval + timeout + 2.5
    sent = 0
    while now() < deadline and talker.ws.close_frame is None and talker.ws.end is None:
        await talker.ws.send_text(f"talking, not ponging {sent}")
        sent += 1
        await asyncio.sleep(0.25)
    if not talker.ws.pings:
        return failed(f"no ping in {fmt_duration(interval + timeout + 2.5)}")
    t_ping = talker.ws.pings[0].t
    obs = await talker.ws.observe_close(t_ping, 0.5)
    ok = obs.kind == "close" and obs.code == 1011 and obs.end is not None and obs.end.t - t_ping <= timeout + 1.05
    return Outcome(ok, f"sent {sent} text messages and no pong: {obs.describe()} (after the first ping)")


async def pings_pong_keeps(ctx: CaseContext) -> Outcome:
    interval, timeout = require_pings(ctx)
    peer = await ctx.join()
    window = max(2 * interval, interval + timeout) + 0.5
    await peer.ws.wait_ended(window)
    if peer.ws.ended:
        obs = await peer.ws.observe_close(peer.ws.opened_at, 0.1)
        return failed(f"answered {len(peer.ws.pings)} ping(s), then {obs.describe()} (after the handshake)")
    payload = os.urandom(6)
    t = await peer.ws.send_frame(OP_PING, payload)
    alive = await peer.ws.wait_until(lambda: any(p.payload == payload for p in peer.ws.pongs), REPLY_TIMEOUT)
    n = len(peer.ws.pings)
    seen = f"answered {n} ping(s); still open after {fmt_duration(window)}"
    seen += f", answers a ping in {fmt_duration(now() - t)}" if alive else ", but does not answer a ping"
    return Outcome(alive and n >= 1, seen)


async def pings_client_ping(ctx: CaseContext) -> Outcome:
    peer = await ctx.join()
    payload = b"wsbench\x00\xff" + os.urandom(8)
    t = await peer.ws.send_frame(OP_PING, payload)
    got = await peer.ws.wait_until(lambda: bool(peer.ws.pongs), REPLY_TIMEOUT)
    if not got:
        return failed(f"no pong within {REPLY_TIMEOUT:g} s")
    pong = peer.ws.pongs[0]
    same = pong.payload == payload
    return Outcome(
        same,
        f"pong in {fmt_duration(pong.t - t)} with {'the same' if same else 'a different'} "
        f"{len(pong.payload)}-byte payload",
    )


# --------------------------------------------------------------------------------------------------
# Shutdown (SPEC 12.1)


async def shutdown_sigterm(ctx: CaseContext) -> Outcome:
    server = ctx.server
    if server is None:
        raise CaseSkipped("needs a server wsbench started (--server or --server-cmd); a --url server is not signalled")
    peers = await join_room(ctx, 3)
    ctx.shared["shutdown_sent"] = True
    t = now()
    server.signal(signal.SIGTERM)
    observations = await asyncio.gather(*(p.ws.observe_close(t, 3.0) for p in peers))
    while server.alive() and now() - t < 3.0:
        await asyncio.sleep(0.02)
    exited_after = now() - t
    code = server.returncode
    leaves = sum(p.count(leave_line(q.nick)) for p in peers for q in peers)
    got = [o for o in observations if o.kind == "close" and o.code == 1001]
    seen = f"{len(got)}/{len(peers)} clients got close 1001"
    if got:
        seen += f" (first: {got[0].describe()})"
    others = [o.describe() for o in observations if o not in got]
    if others:
        seen += f"; others: {others[0]}"
    if code is None:
        seen += "; the process still runs 3 s after SIGTERM"
    else:
        seen += f"; exited with status {code} after {fmt_duration(exited_after)}"
    problems = []
    if code is not None and exited_after >= 2.0 and len(got) == len(peers):
        problems.append("waited the full grace although every client answered at once")
    if leaves:
        problems.append(f"{leaves} leave line(s) sent during shutdown")
    seen += f"; {leaves} leave lines"
    ok = len(got) == len(peers) and code == 0 and not problems
    return Outcome(ok, seen + (f" — {', '.join(problems)}" if problems else ""))


async def startup_bad_option(ctx: CaseContext) -> Outcome:
    """SPEC 15.2: a bad option value ends the server with status 2 and a one-line message on stderr."""
    code, out, err = await spawn.run([*spawn.server_argv(ctx), "--max-message-size", "0"])
    lines = [line for line in err.splitlines() if line.strip()]
    shown = repr(lines[-1][:100]) if lines else "nothing"
    ok, problems = spawn.refused_start(code, out, err)
    seen = f"--max-message-size 0: exit status {code}, last stderr line {shown}"
    shown_problems = [p for p in problems if p in ("a traceback", "it printed a listening line")]
    return Outcome(ok, seen + "".join(f"; {p}" for p in shown_problems))


# --------------------------------------------------------------------------------------------------
# helpers for the table


def frames_of(*parts: Callable[[], bytes]) -> Callable[[], bytes]:
    return lambda: b"".join(p() for p in parts)


def frame(opcode: int, payload: bytes = b"x", **kwargs: Any) -> Callable[[], bytes]:
    return lambda: encode_frame(opcode, payload, **kwargs)


CONT = OP_CONTINUATION
