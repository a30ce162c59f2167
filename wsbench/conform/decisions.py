"""Cases for the decisions of SPEC.md v1.1 (wsbench issue 12: what a third implementation had to guess),
where they can be observed on the wire: white space and nickname comparison (3.2, 3.7, 3.8), methods and
HEAD (2.2), the order of the handshake checks (6.1), Origin comparison (6.3), subprotocols (6.7), when a
close is handled (7.6, 8.7), several outstanding pings (10.2), option forms and bounds (15.1, 15.2).

The steps are here (those that start servers of their own in :mod:`wsbench.conform.spawned_checks`), the
table rows in :data:`DECISION_CASES` (appended to :mod:`wsbench.conform.cases`).
"""

from __future__ import annotations

from collections.abc import Sequence

from wsbench_servers.policy import DEFAULT_PORTS, canonical_origin, parse_origin, serialized_origin

from wsbench.conform import checks as c
from wsbench.conform import ws_checks as w
from wsbench.conform.http_client import fmt_duration, http_request, now
from wsbench.conform.model import Case, Outcome
from wsbench.conform.session import (
    REPLY_TIMEOUT,
    CaseContext,
    CaseSkipped,
    join_room,
    leave_line,
    server_close_frame,
)
from wsbench.conform.spawned_checks import (
    BAD_VALUES,
    size_limit_compressed,
    startup_ipv6,
    startup_option_bounds,
    startup_option_forms,
)
from wsbench.conform.wire import OP_PONG

#: SPEC 8.7: how long a server may wait for the client's close answer before dropping TCP.
CLOSE_WAIT = 2.0
#: Timer slack on a loaded 2-core machine for the deadlines checked here.
DEADLINE_SLACK = 0.5


def _fmt_allow(value: str | None) -> set[str]:
    return {m.strip().upper() for m in (value or "").split(",") if m.strip()}


# --------------------------------------------------------------------------------------------------
# Login (SPEC 3.2, 3.7, 3.8)


async def login_compares_code_points(ctx: CaseContext) -> Outcome:
    """SPEC 3.7: no normalization, no case folding, U+FEFF kept: each variant is another nickname."""
    base = "Éa" + ctx.nick()  # É as U+00C9 (NFC)
    await ctx.join(base)
    variants = {
        "lower case": "éa" + base[2:],
        "NFD (E + U+0301)": "E\u0301a" + base[2:],
        "U+FEFF in front": "\ufeff" + base,
    }
    seen, ok = [], True
    for label, nick in variants.items():
        result = await ctx.login(nick)
        accepted = result.cookie is not None and result.response.status is not None and result.response.status < 400
        ok = ok and accepted
        seen.append(f"{label}: {result.response.describe()}" + ("" if accepted else " (treated as the same nickname)"))
    same = await ctx.login(base)
    ok = ok and same.response.status == 409
    seen.append(f"the same code points: {same.response.describe()}")
    return Outcome(ok, f"{base!r} online; " + "; ".join(seen))


async def login_other_content_type(ctx: CaseContext) -> Outcome:
    nick = ctx.nick()
    body = f"nickname={nick}".encode()
    seen, ok = [], True
    for label, headers in (("text/plain", [("Content-Type", "text/plain")]), ("no Content-Type", [])):
        r = await http_request(ctx.endpoint, "POST", "/login", headers=headers, body=body)
        cookie = r.nickname_cookie() is not None
        good = r.status == 400 and not cookie and c.form_present(r)
        ok = ok and good
        seen.append(f"{label}: {r.describe()}" + (" with a cookie" if cookie else ""))
    return Outcome(ok, f"body {body.decode()!r}: " + "; ".join(seen))


# --------------------------------------------------------------------------------------------------
# HTTP methods (SPEC 2.2)

METHOD_PROBES: tuple[tuple[str, str, set[str]], ...] = (
    ("POST", "/", {"GET", "HEAD"}),
    ("PUT", "/login", {"GET", "HEAD", "POST"}),
    ("DELETE", "/stats", {"GET", "HEAD"}),
    ("OPTIONS", "/login", {"GET", "HEAD", "POST"}),
    ("POST", "/chat", {"GET"}),
    ("HEAD", "/chat", {"GET"}),
)


async def http_methods(ctx: CaseContext) -> Outcome:
    seen, ok = [], True
    for method, path, allow in METHOD_PROBES:
        r = await http_request(ctx.endpoint, method, path)
        got = _fmt_allow(r.header("allow"))
        good = r.status == 405 and got == allow
        ok = ok and good
        seen.append(f"{method} {path}: {r.status} Allow {','.join(sorted(got)) or '-'}" + ("" if good else " (wrong)"))
    return Outcome(ok, "; ".join(seen))


async def http_head(ctx: CaseContext) -> Outcome:
    seen, ok = [], True
    for path, status in (("/login", 200), ("/stats", 200), ("/", 303)):
        get = await http_request(ctx.endpoint, "GET", path)
        head = await http_request(ctx.endpoint, "HEAD", path)
        good = head.status == status == get.status and not head.body
        ctype = (head.header("content-type") or "").split(";")[0]
        if status == 200 and ctype != (get.header("content-type") or "").split(";")[0]:
            good = False
        ok = ok and good
        seen.append(f"HEAD {path}: {head.describe()}, {len(head.body)}-byte body" + ("" if good else " (wrong)"))
    return Outcome(ok, "; ".join(seen))


# --------------------------------------------------------------------------------------------------
# Handshake (SPEC 6.1, 6.3, 6.7)


async def handshake_request_checks(ctx: CaseContext) -> Outcome:
    """SPEC 6.1 c, e: Connection without the upgrade token, a missing or malformed key: 400."""
    cookie = await ctx.login_cookie(ctx.nick())
    probes = (
        ("Connection: keep-alive", {"connection": "keep-alive"}),
        ("no Connection", {"connection": None}),
        ("Connection: keep-alive, Upgrade (a list) is fine", {"connection": "keep-alive, Upgrade", "_ok": True}),
        ("no Sec-WebSocket-Key", {"key": None}),
        ("Sec-WebSocket-Key: !!!!", {"key": "!!!!"}),
        ("a 12-byte Sec-WebSocket-Key", {"key": "AAAAAAAAAAAAAAAA"}),
    )
    seen, ok = [], True
    for label, kwargs in probes:
        expect_ok = bool(kwargs.pop("_ok", False))
        hs = await ctx.connect(cookie=cookie, **kwargs)
        if hs.ws is not None:
            await hs.ws.close()
        good = hs.status == (101 if expect_ok else 400)
        ok = ok and good
        seen.append(f"{label}: {hs.response.describe()}" + ("" if good else " (wrong)"))
    return Outcome(ok, "; ".join(seen))


async def handshake_order_6_1(ctx: CaseContext) -> Outcome:
    """SPEC 6.1: method, Upgrade, Connection, version, key, then the cookie (6.2)."""
    probes = (
        ("POST with no Upgrade, bad version, no cookie", 405, {"method": "POST", "upgrade": False, "version": "8"}),
        ("no Connection + version 8", 400, {"connection": None, "version": "8"}),
        ("version 8 + key !!!!", 426, {"version": "8", "key": "!!!!"}),
        ("key !!!! + no cookie", 400, {"key": "!!!!"}),
    )
    seen, ok = [], True
    for label, status, kwargs in probes:
        hs = await ctx.connect(cookie=None, **kwargs)
        if hs.ws is not None:
            await hs.ws.close()
        good = hs.status == status
        ok = ok and good
        seen.append(f"{label}: {hs.status} (expected {status})")
    return Outcome(ok, "; ".join(seen))


async def _origin_probe(ctx: CaseContext, cookie: str, origins: Sequence[str], host: str | None = None) -> int | None:
    headers = [("Origin", o) for o in origins]
    if host is not None:
        headers.append(("Host", host))
    hs = await ctx.connect(cookie=cookie, extra_headers=headers)
    if hs.ws is not None:
        await hs.ws.close()
    return hs.status


async def handshake_origin_default_ports(ctx: CaseContext) -> Outcome:
    """SPEC 6.3: a missing port is the scheme's default on both sides; the scheme is not compared for
    the server's own host (a TLS proxy in front); allow-list entries with default ports made explicit."""
    ep = ctx.endpoint
    host = ep.host_header.rsplit(":", 1)[0]
    probes: list[tuple[str, list[str], str | None, int]] = [
        ("TLS proxy: Origin https://H, Host H", [f"https://{host}"], host, 101),
        ("Origin http://H:80, Host H", [f"http://{host}:80"], host, 101),
        ("Origin https://H, Host H:80", [f"https://{host}"], f"{host}:80", 403),
        ("Origin https://H (port 443), Host H:PORT", [f"https://{host}"], None, 403),
    ]
    # an allow-list entry on its scheme's default port, the port written out (the "allowed" case sends it
    # left out, as a browser does): SPEC 6.3 makes default ports explicit on both sides
    default = [o for o in map(parse_origin, ctx.options.allowed_origin) if o and o.port == DEFAULT_PORTS[o.scheme]]
    if default:
        written = canonical_origin(default[0])
        probes.append((f"allow-listed {serialized_origin(default[0])} written as {written}", [written], None, 101))
    cookie = await ctx.login_cookie(ctx.nick())
    seen, ok = [], True
    for label, origins, host_header, status in probes:
        got = await _origin_probe(ctx, cookie, origins, host_header)
        ok = ok and got == status
        seen.append(f"{label}: {got}" + ("" if got == status else f" (expected {status})"))
    return Outcome(ok, "; ".join(seen))


async def handshake_origin_malformed(ctx: CaseContext) -> Outcome:
    own = ctx.endpoint.origin
    scheme, _, hostport = own.partition("://")
    probes: list[tuple[str, list[str]]] = [
        ("with a path", [f"{own}/chat"]),
        ("with userinfo", [f"{scheme}://user@{hostport}"]),
        ("a list", [f"{own} {own}"]),
        ("empty", [""]),
        ("two Origin headers", [own, own]),
        ("another scheme", [f"ws://{hostport}"]),
    ]
    cookie = await ctx.login_cookie(ctx.nick())
    seen, ok = [], True
    for label, origins in probes:
        got = await _origin_probe(ctx, cookie, origins)
        ok = ok and got == 403
        seen.append(f"{label}: {got}")
    return Outcome(ok, f"Origins built on {own}: " + "; ".join(seen))


async def handshake_subprotocol(ctx: CaseContext) -> Outcome:
    cookie = await ctx.login_cookie(ctx.nick())
    hs = await ctx.connect(cookie=cookie, extra_headers=[("Sec-WebSocket-Protocol", "chat, superchat")])
    chosen = hs.response.header("sec-websocket-protocol")
    if hs.ws is not None:
        await hs.ws.close()
    seen = f"Sec-WebSocket-Protocol: chat, superchat: {hs.response.describe()}"
    seen += f", selected {chosen!r}" if chosen is not None else ", none selected"
    return Outcome(hs.status == 101 and chosen is None, seen)


# --------------------------------------------------------------------------------------------------
# When a close is handled (SPEC 7.6, 8.7)


async def leave_on_close_frame(ctx: CaseContext) -> Outcome:
    """SPEC 7.6: the client's close frame is the close (TCP stays open on the client's side)."""
    leaver, observer = await join_room(ctx, 2)
    t = await leaver.ws.send_close(1000, b"bye")
    got = await observer.wait_line(leave_line(leaver.nick))
    left_after = next((m.t for m in observer.ws.messages if m.text == leave_line(leaver.nick)), None)
    relogin = await ctx.login(leaver.nick)
    await leaver.ws.wait_until(lambda: leaver.ws.end is not None, REPLY_TIMEOUT)
    obs = await leaver.ws.observe_close(t, 0.1, end_timeout=0.0)
    problems = []
    if not got:
        problems.append(f"no leave line within {REPLY_TIMEOUT:g} s")
    if relogin.cookie is None:
        problems.append(f"nickname not free: login {relogin.response.describe()}")
    if obs.end is None:
        problems.append("the server did not close TCP")
    seen = f"client sent close 1000 and kept TCP open: {obs.describe()}"
    if left_after is not None:
        seen += f"; leave line {fmt_duration(left_after - t)} after the close frame"
    seen += f"; login as the nickname: {relogin.response.describe()}"
    return Outcome(not problems, seen + (f" — {', '.join(problems)}" if problems else ""))


async def server_close_grace(ctx: CaseContext) -> Outcome:
    """SPEC 8.7: the issue's measurement: max_message_size + 1 bytes, and the close frame never answered."""
    sender, observer = await join_room(ctx, 2)
    sender.ws.reply_close = False
    t = await sender.ws.send_text(b"x" * (ctx.options.max_message_size + 1))
    frame = await server_close_frame(sender.ws, t, "an oversize message to leave unanswered")
    limit = CLOSE_WAIT + DEADLINE_SLACK
    await sender.ws.wait_until(lambda: sender.ws.end is not None, limit + 0.5)
    got = await observer.wait_line(leave_line(sender.nick), 0.2)
    left = next((m.t for m in observer.ws.messages if m.text == leave_line(sender.nick)), None)
    end = sender.ws.end
    problems = []
    seen = f"close {frame.code} left unanswered"
    if end is None:
        problems.append(f"TCP still open {fmt_duration(limit + 0.5)} after the close frame")
    else:
        seen += f"; TCP {'reset' if end.kind == 'rst' else 'closed'} {fmt_duration(end.t - frame.t)} after it"
        if end.t - frame.t > limit:
            problems.append(f"waited more than {CLOSE_WAIT:g} s for the close answer")
    if left is None or not got:
        problems.append("no leave line for the others")
    else:
        seen += f"; the others' leave line {fmt_duration(left - frame.t)} after it"
        if left - frame.t > limit:
            problems.append(f"leave line more than {CLOSE_WAIT:g} s after the close frame")
    return Outcome(not problems, seen + (f" — {', '.join(problems)}" if problems else ""))


# --------------------------------------------------------------------------------------------------
# Several outstanding pings (SPEC 10.2)


async def pong_answers_earlier(ctx: CaseContext) -> Outcome:
    interval, timeout = w.require_pings(ctx)
    if not timeout > interval:
        raise CaseSkipped(
            f"ping_timeout {timeout:g} s is not longer than ping_interval {interval:g} s, so no two pings are "
            "ever outstanding (the gate's own defaults are 1 s and 2 s)"
        )
    peer = await ctx.join(auto_pong=False)
    ws = peer.ws
    await ws.wait_until(lambda: len(ws.pings) >= 2 or ws.end is not None, 2 * interval + 1.5)
    if len(ws.pings) < 2:
        return c.failed(f"{len(ws.pings)} ping(s) within {fmt_duration(2 * interval + 1.5)}; cannot check")
    first, second = ws.pings[0], ws.pings[1]
    t_pong = await ws.send_frame(OP_PONG, second.payload)  # the second ping only, before the first's deadline
    ws.auto_pong = True
    deadline = first.t + timeout + DEADLINE_SLACK
    await ws.wait_ended(max(0.0, deadline - now()))
    answered = f"first ping unanswered, a pong {fmt_duration(t_pong - second.t)} after the second"
    if ws.ended:
        obs = await ws.observe_close(first.t, 0.1, end_timeout=0.0)
        return c.failed(f"{answered}: {obs.describe()} (after the first ping)")
    return c.passed(f"{answered}: still open {fmt_duration(now() - first.t)} after the first ping")


DECISION_CASES: tuple[Case, ...] = (
    Case(
        "login.strip_unicode_space",
        "3.2",
        "surrounding U+3000, U+00A0, U+2003, U+0085",
        "stripped (Unicode White_Space): joins under the bare nickname",
        c.login_strips("\u3000\u00a0", "\u2003\u0085"),
        conns=2,
    ),
    Case(
        "login.not_white_space",
        "3.2",
        "U+001C-U+001F in front (Python's strip removes them)",
        "400: control characters, not white space",
        c.login_refused(lambda ctx: "\x1c\x1d\x1e\x1f" + ctx.nick(), 400),
        conns=0,
    ),
    Case(
        "login.compare_code_points",
        "3.7",
        "case, NFD and U+FEFF variants of an online nickname",
        "each is another nickname (303); the same code points get 409",
        login_compares_code_points,
    ),
    Case(
        "login.other_content_type",
        "3.8",
        "the form posted as text/plain, and with no Content-Type",
        "400 with the form, no cookie: only form bodies are read",
        login_other_content_type,
        conns=0,
    ),
    Case(
        "http.methods",
        "2.2",
        "other methods on each path",
        "405 with Allow naming exactly the path's methods (/chat: GET only, HEAD included)",
        http_methods,
        conns=0,
        rfc="RFC 9110 §15.5.6",
    ),
    Case(
        "http.head",
        "2.2",
        "HEAD /login, /stats, /",
        "the status and Content-Type of GET, no body",
        http_head,
        conns=0,
        rfc="RFC 9110 §9.3.2",
    ),
    Case(
        "handshake.request_checks",
        "6.1",
        "Connection without upgrade; a missing, malformed or short Sec-WebSocket-Key",
        "400 each (a Connection list holding Upgrade is fine)",
        handshake_request_checks,
        conns=1,
        rfc="RFC 6455 §4.2.1",
    ),
    Case(
        "handshake.check_order_request",
        "6.1",
        "several 6.1 faults at once",
        "method (405), Upgrade, Connection (400), version (426), key (400), then the cookie",
        handshake_order_6_1,
        conns=0,
        rfc="RFC 6455 §4.2.1",
    ),
    Case(
        "handshake.origin_default_ports",
        "6.3",
        "Origin and Host with and without default ports, https Origin behind a TLS proxy",
        "a missing port is the scheme's default; the scheme is not compared for the own host",
        handshake_origin_default_ports,
        conns=1,
        rfc="RFC 6454 §5",
    ),
    Case(
        "handshake.origin_malformed",
        "6.3",
        "the own origin with a path, userinfo, as a list, empty, twice, as ws://",
        "403 each: only one serialized http(s) origin counts",
        handshake_origin_malformed,
        conns=1,
        rfc="RFC 6454 §6.2",
    ),
    Case(
        "handshake.subprotocol",
        "6.7",
        "client offers Sec-WebSocket-Protocol: chat, superchat",
        "101 without Sec-WebSocket-Protocol (no subprotocol selected)",
        handshake_subprotocol,
        rfc="RFC 6455 §4.2.2",
    ),
    Case(
        "messaging.leave_on_close_frame",
        "7.6",
        "client sends its close frame and keeps TCP open",
        "leave line and the nickname free at once; the server closes TCP",
        leave_on_close_frame,
        conns=2,
        duration_hint=1.0,
        rfc="RFC 6455 §7.1.1",
    ),
    Case(
        "close.server_close_grace",
        "8.7",
        "max_message_size + 1 bytes, the server's close frame never answered",
        f"TCP dropped and the leave line out within {CLOSE_WAIT:g} s of the close frame",
        server_close_grace,
        conns=2,
        duration_hint=2.5,
        rfc="RFC 6455 §7.1.1",
    ),
    Case(
        "pings.pong_answers_earlier",
        "10.2",
        "two pings outstanding, only the second answered",
        "one pong answers every earlier ping: no ping timeout",
        pong_answers_earlier,
        duration_hint=4.0,
        rfc="RFC 6455 §5.5.3",
    ),
    Case(
        "startup.option_forms",
        "15.1",
        "--opt=value, --help, an abbreviated option",
        "listens with --port=0; --help exits 0 naming every option; --max-conn is refused (status 2)",
        startup_option_forms,
        conns=0,
        needs_started=True,
        spawns=True,
        duration_hint=2.0,
        timeout=40.0,
    ),
    Case(
        "startup.option_bounds",
        "15.1",
        f"{len(BAD_VALUES)} values just outside the bounds of 15.1",
        "each: exit status 2 with a one-line message on stderr (no traceback, no listening line)",
        startup_option_bounds,
        conns=0,
        needs_started=True,
        spawns=True,
        duration_hint=3.0,
        timeout=40.0,
    ),
    Case(
        "startup.ipv6_listening_line",
        "15.2",
        "started with --host ::1",
        "first line listening on http://[::1]:PORT, and it answers there",
        startup_ipv6,
        conns=0,
        needs_started=True,
        spawns=True,
        duration_hint=1.0,
        timeout=30.0,
    ),
    Case(
        "limits.compressed",
        "9.1",
        "with --compression: exactly the limit, one byte over, a 16 MiB deflate bomb (own server, limit 1000)",
        "relayed; close 1009; close 1009 without inflating it (RSS stays flat); nothing of the two relayed",
        size_limit_compressed,
        conns=0,
        needs_started=True,
        spawns=True,
        duration_hint=2.0,
        timeout=40.0,
        rfc="RFC 7692 §7.2.2",
    ),
)
