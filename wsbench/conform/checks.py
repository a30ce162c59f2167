"""The steps of the conformance cases: each function (or factory) returns a check coroutine that drives
the server through :class:`~wsbench.conform.session.CaseContext` and says what it saw.

This module holds HTTP, login and the handshake (SPEC 2-6) and the helpers every check uses; the cases
on an open WebSocket connection (SPEC 7-12) are in :mod:`wsbench.conform.ws_checks`. The table that
names these checks, with clauses and expectations, is :mod:`wsbench.conform.cases` (their rows:
:mod:`wsbench.conform.cases_http`).
The load-based measurements (slow consumer, Nagle) are in :mod:`wsbench.conform.measure`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable

from wsbench_servers.options import OPTION_TYPES
from wsbench_servers.policy import parse_origin, serialized_origin

from wsbench.conform.http_client import HttpResponse, http_request
from wsbench.conform.model import Check, Outcome
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
