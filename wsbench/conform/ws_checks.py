"""The steps of the cases on an open WebSocket connection: messaging (SPEC 7), limits (9.1, 8.1),
framing and UTF-8 (8.2, 8.3), the close handshake (8.4, 8.5), pings (10, 8.6), shutdown (12.1) and a
bad start-up option (15.2). Each function (or factory) returns a check coroutine, as in
:mod:`wsbench.conform.checks` (HTTP, login and the handshake, SPEC 2-6), whose helpers it uses.

The table that names these checks, with clauses and expectations, is :mod:`wsbench.conform.cases` (their
rows: :mod:`~wsbench.conform.cases_messaging`, :mod:`~wsbench.conform.cases_frames`,
:mod:`~wsbench.conform.cases_lifecycle`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from collections.abc import Callable
from typing import Any

from wsbench.conform import spawn
from wsbench.conform.checks import MAX_PING_WAIT, PER_MB, expect_nothing_from, failed, passed, short
from wsbench.conform.http_client import fmt_duration, now
from wsbench.conform.model import Check, Outcome
from wsbench.conform.rfc import end_outcome
from wsbench.conform.session import (
    REPLY_TIMEOUT,
    SILENCE,
    CaseContext,
    CaseSkipped,
    Peer,
    join_line,
    join_room,
    leave_line,
    open_link,
    server_close_frame,
)
from wsbench.conform.wire import (
    OP_BINARY,
    OP_CONTINUATION,
    OP_PING,
    OP_TEXT,
    CloseObservation,
    encode_frame,
    split_payload,
)

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
