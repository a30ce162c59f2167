"""RFC 6455 behaviour families as data: a *script* of frames (sent in one write, one write per frame, or
one byte per write) and what must come back. One generic check runs every script on both profiles;
the tables that instantiate them, with RFC sections and Autobahn case numbers, are in
:mod:`wsbench.conform.rfc_cases`.

Where the message arrives depends on the profile (:class:`~wsbench.conform.session.Link`): on the chat
profile another client of the room gets ``N说：M``; on the echo profile the sender gets ``M`` back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from wsbench.conform.http_client import fmt_duration, now
from wsbench.conform.model import Check, Outcome
from wsbench.conform.session import (
    REPLY_TIMEOUT,
    SILENCE,
    CaseContext,
    CaseSkipped,
    Link,
    Peer,
    join_line,
    open_link,
)
from wsbench.conform.wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    CloseObservation,
    WsConnection,
    close_payload,
    encode_frame,
    fragment_frames,
    split_payload,
)

#: How frames are written: all in one write (coalesced), one write per frame, one write per byte.
Write = Literal["one", "frames", "bytes", "chops"]
WRITE_LABEL = {
    "one": "",
    "frames": ", one write per frame",
    "bytes": ", one byte per write",
    "chops": ", in writes of 997 bytes",
}
#: The chop size of Autobahn 1.1.8 / 1.2.8.
CHOP = 997
#: Pause between writes when frames or bytes are written one by one (so each is its own TCP segment
#: and, most likely, its own read on the server).
FRAME_PAUSE = 0.005
BYTE_PAUSE = 0.0005
#: Ends a script may expect: the connection stays open, is failed (1002 or a drop), or closed with 1007.
End = Literal["open", "protocol", "utf8"]


@dataclass(frozen=True)
class F:
    """A frame to send (masked with a fresh key each time it is built)."""

    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0

    def encode(self) -> bytes:
        return encode_frame(self.opcode, self.payload, fin=self.fin, rsv=self.rsv)

    def describe(self) -> str:
        names = {OP_TEXT: "text", OP_BINARY: "binary", OP_CONTINUATION: "cont", OP_PING: "ping", OP_PONG: "pong"}
        name = names.get(self.opcode, f"op{self.opcode:#x}") if self.opcode != 0x8 else "close"
        flags = ("" if self.fin else " fin=0") + (f" rsv={self.rsv}" if self.rsv else "")
        return f"{name}[{len(self.payload)}]{flags}"


def text(payload: bytes | str, fin: bool = True) -> F:
    return F(OP_TEXT, payload.encode() if isinstance(payload, str) else payload, fin)


def cont(payload: bytes | str, fin: bool = True) -> F:
    return F(OP_CONTINUATION, payload.encode() if isinstance(payload, str) else payload, fin)


def ping(payload: bytes | str = b"") -> F:
    return F(OP_PING, payload.encode() if isinstance(payload, str) else payload)


def pong(payload: bytes | str = b"") -> F:
    return F(OP_PONG, payload.encode() if isinstance(payload, str) else payload)


@dataclass(frozen=True)
class Burst:
    """Frames written together, then (optionally) a pause; pings of a burst with a pause must be
    answered during the pause, before the next burst (Autobahn 5.19: pings answered at once)."""

    frames: tuple[F, ...]
    pause: float = 0.0


@dataclass(frozen=True)
class Script:
    """What to send and what must come back.

    ``messages``: (opcode, payload) that must arrive, in order, and nothing else; ``pongs``: ping payloads
    that must be answered, in order, and no other pong; ``end``: how the connection must end after the
    last burst. With ``end`` other than ``open``, the frames after the violation must not be processed
    (no pong for a ping sent after it).
    """

    bursts: tuple[Burst, ...]
    messages: tuple[tuple[int, bytes], ...] = ()
    pongs: tuple[bytes, ...] = ()
    end: End = "open"
    write: Write = "one"
    binary: bool = False  # the script delivers binary messages: echo profile only
    largest: int = 0  # the largest message in bytes (skipped when over max_message_size)

    @property
    def size(self) -> int:
        return max([self.largest, *(len(p) for _, p in self.messages)])


def script(
    *bursts: Sequence[F] | Burst,
    messages: Sequence[tuple[int, bytes | str]] = (),
    pongs: Sequence[bytes | str] = (),
    end: End = "open",
    write: Write = "one",
) -> Script:
    bs = tuple(b if isinstance(b, Burst) else Burst(tuple(b)) for b in bursts)
    msgs = tuple((op, p.encode() if isinstance(p, str) else p) for op, p in messages)
    return Script(
        bursts=bs,
        messages=msgs,
        pongs=tuple(p.encode() if isinstance(p, str) else p for p in pongs),
        end=end,
        write=write,
        binary=any(op == OP_BINARY for op, _ in msgs),
    )


async def write_frames(ws: WsConnection, frames: Sequence[bytes], how: Write) -> float:
    """Write ``frames`` as ``how`` says; returns when the last byte was handed to the kernel."""
    if how == "one":
        return await ws.send_raw(b"".join(frames))
    with ws.writing_in_pieces():
        return await _write_in_pieces(ws, frames, how)


async def _write_in_pieces(ws: WsConnection, frames: Sequence[bytes], how: Write) -> float:
    t = now()
    if how == "chops":
        data = b"".join(frames)
        for i in range(0, len(data), CHOP):
            t = await ws.send_raw(data[i : i + CHOP])
            await asyncio.sleep(BYTE_PAUSE)
        return t
    for data in frames:
        if how == "frames":
            t = await ws.send_raw(data)
            await asyncio.sleep(FRAME_PAUSE)
            continue
        for i in range(len(data)):
            t = await ws.send_raw(data[i : i + 1])
            await asyncio.sleep(BYTE_PAUSE)
    return t


def _describe_messages(link: Link, got: Sequence[bytes]) -> str:
    if not got:
        return f"nothing {link.where}"
    shown = ", ".join(f"{len(g)} B" for g in got[:4]) + (" ..." if len(got) > 4 else "")
    return f"{len(got)} message(s) {link.where} ({shown})"


#: Why a drop without close frame after a violation is non-strict, not a failure.
NO_CLOSE_FRAME = "no close frame: RFC 6455 §7.1.7 SHOULD send one"


def end_outcome(
    obs: CloseObservation, end: End, echo: bool, also_ok: int | None = None
) -> tuple[bool, str | None, str]:
    """(acceptable, non-strict note, shown) for how a connection ended after a violation: the one rule
    of every case that fails a connection (SPEC 8.2, 8.3, 8.5). ``protocol``: close 1002 (or
    ``also_ok``), or a drop (non-strict); ``utf8``: close 1007, or on the echo profile a drop (non-strict;
    SPEC 8.2 asks the chat profile for the close frame)."""
    shown = obs.describe()
    want = {1007 if end == "utf8" else 1002} | ({also_ok} if also_ok is not None else set())
    if obs.kind == "close" and obs.code in want:
        return True, None, shown
    if obs.kind == "dropped" and (end == "protocol" or echo):
        return True, NO_CLOSE_FRAME, shown
    return False, None, shown


def require_size(ctx: CaseContext, size: int) -> None:
    if ctx.size_known and size > ctx.options.max_message_size:
        raise CaseSkipped(f"{size}-byte message is over max_message_size {ctx.options.max_message_size}")


def run_script(spec: Script) -> Check:
    async def check(ctx: CaseContext) -> Outcome:
        if spec.binary and not ctx.echo:
            raise CaseSkipped("binary messages are refused by SPEC 8.1 (echo profile only)")
        require_size(ctx, spec.size)
        link = await open_link(ctx)
        ws = link.sender.ws
        problems: list[str] = []
        t_last = now()
        for burst in spec.bursts:
            t_last = now()  # observations count from the start of the last burst (a chopped write may be cut short)
            await write_frames(ws, [f.encode() for f in burst.frames], spec.write)
            if burst.pause:
                want = [f.payload for f in burst.frames if f.opcode == OP_PING]

                def answered_or_ended(want: list[bytes] = want) -> bool:
                    return all(any(p.payload == w for p in ws.pongs) for w in want) or ws.ended

                answered = await ws.wait_until(answered_or_ended, burst.pause)
                if want and not answered:
                    problems.append(f"no pong within {burst.pause:g} s for the ping sent mid-message")
                rest = burst.pause - (now() - t_last)
                if rest > 0:
                    await asyncio.sleep(rest)
            if ws.ended and spec.end == "open":
                break
        want_messages = [link.expected(p) for _, p in spec.messages]
        timeout = REPLY_TIMEOUT + len(b"".join(want_messages)) / 1e6
        if spec.end == "open":
            await link.wait_delivered(len(want_messages), timeout)
            await ws.wait_until(lambda: len(ws.pongs) >= len(spec.pongs) or ws.ended, REPLY_TIMEOUT)
            await asyncio.sleep(SILENCE)
            obs = None
        else:
            obs = await ws.observe_close(t_last, timeout)
            await link.nothing_more(len(want_messages), 0.1 if link.echo else SILENCE)
        got = link.delivered()
        got_data = [m.data for m in got]
        pongs = [p.payload for p in ws.pongs]
        seen = [_describe_messages(link, [g[len(link.prefix) :] for g in got_data])]
        notes: list[str] = []
        lost_before_failure = (
            link.echo
            and spec.end != "open"
            and len(got_data) < len(want_messages)
            and got_data == want_messages[: len(got_data)]
        )
        if lost_before_failure:
            # the connection was failed at once (RFC 6455 §7.1.7) before the application's echo went out
            notes.append("the valid message before the violation was not echoed")
        elif got_data != want_messages or (
            link.echo and [m.opcode for m in got] != [op for op, _ in spec.messages][: len(got)]
        ):
            problems.append(f"expected {len(want_messages)} message(s) intact, in order")
        if pongs != list(spec.pongs):
            seen.append(f"{len(pongs)} pong(s)" + (" with other payloads" if len(pongs) == len(spec.pongs) else ""))
            problems.append(f"expected {len(spec.pongs)} pong(s) with the pings' payloads")
        elif pongs:
            seen.append(f"{len(pongs)} pong(s) with the pings' payloads")
        level: Literal["pass", "non-strict", "informational"] = "non-strict" if notes else "pass"
        if obs is None:
            if ws.ended:
                problems.append("the connection was closed")
                seen.append((await ws.observe_close(t_last, 0.1)).describe())
        else:
            ok, note, shown = end_outcome(obs, spec.end, link.echo)
            seen.append(shown)
            if not ok:
                problems.append("expected " + ("close 1007" if spec.end == "utf8" else "close 1002 or a drop"))
            elif note:
                seen.append(f"({note})")
                level = "non-strict"
        text_seen = "; ".join(seen) + WRITE_LABEL[spec.write] + "".join(f" ({n})" for n in notes)
        if problems:
            return Outcome(False, text_seen + " — " + ", ".join(problems))
        return Outcome(True, text_seen, level)

    return check


# --------------------------------------------------------------------------------------------------
# UTF-8 (Autobahn 6.x): groups of vectors, each on a connection of its own (invalid ones end it)


@dataclass
class _Room:
    """Senders and, on the chat profile, one receiver shared by all of them."""

    ctx: CaseContext
    receiver: Peer | None = None
    links: list[Link] = field(default_factory=list)

    async def link(self) -> Link:
        if self.ctx.echo:
            peer = await self.ctx.join()
            link = Link(peer, peer, True)
        else:
            if self.receiver is None:
                self.receiver = await self.ctx.join()
            sender = await self.ctx.join()
            await self.receiver.wait_line(join_line(sender.nick), 1.0)
            link = Link(sender, self.receiver, False)
        self.links.append(link)
        return link


#: Vectors of a group run this many at a time.
UTF8_PARALLEL = 4


def utf8_group(vectors: Sequence[tuple[bool, bytes]], fragments: int = 1) -> Check:
    """Each valid vector is delivered intact (all of them, in order, on one connection); each invalid
    one closes its connection with 1007 (SPEC 8.2; on the echo profile a drop is non-strict)."""

    async def check(ctx: CaseContext) -> Outcome:
        room = _Room(ctx)
        valid = [v for ok, v in vectors if ok]
        invalid = [v for ok, v in vectors if not ok]
        problems: list[str] = []
        notes: list[str] = []
        lock = asyncio.Semaphore(UTF8_PARALLEL)

        def frames_of(data: bytes) -> list[bytes]:
            return fragment_frames(OP_TEXT, split_payload(data, fragments))

        async def run_valid() -> None:
            if not valid:
                return
            link = await room.link()
            for v in valid:
                await link.sender.ws.send_raw(b"".join(frames_of(v)))
            await link.wait_delivered(len(valid))
            got = [m.data for m in link.delivered()]
            want = [link.expected(v) for v in valid]
            if got != want:
                bad = [v.hex() for v, g in zip(valid, got + [b""] * len(valid), strict=False) if link.expected(v) != g]
                not_ok = ", ".join(bad[:3])
                problems.append(f"{len(valid) - len(bad)}/{len(valid)} valid delivered intact (not: {not_ok})")
            if link.sender.ws.ended:
                obs = await link.sender.ws.observe_close(now(), 0.1)
                problems.append("a valid message closed the connection: " + obs.describe())

        async def run_invalid(v: bytes) -> None:
            async with lock:
                link = await room.link()
                t = await link.sender.ws.send_raw(b"".join(frames_of(v)))
                obs = await link.sender.ws.observe_close(t, REPLY_TIMEOUT, end_timeout=0.5)
                ok, note, shown = end_outcome(obs, "utf8", link.echo)
                if not ok:
                    problems.append(f"{v.hex()}: {shown}")
                elif note:
                    notes.append(f"{v.hex()}: dropped without close frame")

        await asyncio.gather(run_valid(), *(run_invalid(v) for v in invalid))
        if invalid:
            await asyncio.sleep(0.1 if ctx.echo else SILENCE)
            leaked = [link for link in room.links if link.delivered() and link.sender.ws.close_frame is not None]
            if leaked:
                problems.append(f"{len(leaked)} invalid message(s) {leaked[0].where}")
        split = f" in {fragments} fragments" if fragments > 1 else ""
        seen = f"{len(valid)} valid vector(s) delivered intact, {len(invalid)} invalid closed with 1007{split}"
        if problems:
            return Outcome(False, f"{len(vectors)} vectors{split}: " + "; ".join(problems[:4]))
        if notes:
            return Outcome(True, seen + "; " + "; ".join(notes[:3]) + " (non-strict)", "non-strict")
        return Outcome(True, seen)

    return check


def utf8_fail_fast(parts: tuple[bytes, bytes, bytes], chops: bool = False) -> Check:
    """Autobahn 6.4.x: a valid first part, a pause, the part that makes the message invalid, a pause,
    the rest. Closing at the invalid part is fail-fast; closing only at the end is allowed (RFC 6455 sets
    no timing): informational either way, with how long after the invalid byte the close came. Closing
    before the invalid part fails."""

    async def check(ctx: CaseContext) -> Outcome:
        link = await open_link(ctx)
        ws = link.sender.ws
        first, bad, rest = parts
        if chops:  # one frame, written in three chops
            whole = encode_frame(OP_TEXT, first + bad + rest)
            header = len(whole) - len(first + bad + rest)
            cut1, cut2 = header + len(first), header + len(first) + len(bad)
            chunks = [whole[:cut1], whole[cut1:cut2], whole[cut2:]]
        else:
            chunks = fragment_frames(OP_TEXT, parts)
        how = "3 chops of one frame" if chops else "3 fragments"
        with ws.writing_in_pieces() if chops else contextlib.nullcontext():
            await ws.send_raw(chunks[0])
            if await ws.wait_ended(0.5):
                obs = await ws.observe_close(now(), 0.1)
                return Outcome(False, f"{how}: closed after the valid first part: {obs.describe()}")
            t_bad = await ws.send_raw(chunks[1])
            fast = await ws.wait_ended(0.5)
            if not fast:
                await ws.send_raw(chunks[2])
        obs = await ws.observe_close(t_bad, REPLY_TIMEOUT)
        ok, note, shown = end_outcome(obs, "utf8", link.echo)
        when = "at the invalid part (fail-fast)" if fast else "only after the whole message"
        seen = f"{how}: {shown} (timed from the invalid part), {when}"
        if not ok:
            return Outcome(False, seen + " — expected close 1007")
        delivered = link.delivered()
        if delivered:
            return Outcome(False, seen + f"; but the message was {link.where}")
        return Outcome(True, seen + (f" ({note})" if note else ""), "informational")

    return check


def close_after_close(after: Sequence[F], label: str, before: Sequence[F] = (), messages: int = 0) -> Check:
    """Autobahn 7.1.x: frames sent after the client's own close frame are ignored (nothing delivered,
    no pong); the server answers the close and closes TCP."""

    async def check(ctx: CaseContext) -> Outcome:
        link = await open_link(ctx)
        ws = link.sender.ws
        ws.reply_close = False
        close = encode_frame(OP_CLOSE, close_payload(1000))
        ws.close_sent_at = now()
        t = await ws.send_raw(b"".join([*(f.encode() for f in before), close, *(f.encode() for f in after)]))
        obs = await ws.observe_close(t, REPLY_TIMEOUT)
        await link.nothing_more(0, 0.1 if link.echo else SILENCE)
        got = link.delivered()
        problems = []
        if obs.kind != "close":
            problems.append("expected a close frame")
        elif obs.code not in (1000, None):
            problems.append(f"answered {obs.code}")
        elif obs.end is None:
            problems.append("the server did not close TCP")
        lost = link.echo and len(got) < messages  # the close came before the application echoed it
        if len(got) != messages and not lost:
            problems.append(f"{len(got)} message(s) {link.where}, expected {messages}")
        if ws.pongs:
            problems.append("a ping after the close was answered")
        seen = f"{label}: {obs.describe()}; {_describe_messages(link, [m.data for m in got])}"
        seen += f", {len(ws.pongs)} pong(s)"
        if problems:
            return Outcome(False, seen + " — " + ", ".join(problems))
        if obs.code is None:
            return Outcome(True, seen + " (no status code: 1000 SHOULD be echoed)", "non-strict")
        if lost:
            return Outcome(True, seen + " (the message before the close was not echoed)", "non-strict")
        return Outcome(True, seen)

    return check


async def echo_probe(ctx: CaseContext) -> Outcome:
    """The echo profile's first case: a text and a binary message come back as sent. When it fails the
    target is not an echo server and the profile stops here (one clear error, not a page of failures)."""
    hs = await ctx.connect()
    if hs.ws is None:
        return Outcome(False, f"WebSocket handshake on {ctx.ws_path}: {hs.response.describe()}")
    ws = hs.ws
    t = await ws.send_text("wsbench echo probe")
    await ws.send_frame(OP_BINARY, b"\x00\xffwsbench")
    await ws.wait_until(lambda: len(ws.messages) >= 2 or ws.ended, REPLY_TIMEOUT)
    got = [(m.opcode, m.data) for m in ws.messages[:2]]
    want = [(OP_TEXT, b"wsbench echo probe"), (OP_BINARY, b"\x00\xffwsbench")]
    if got == want:
        return Outcome(True, f"text and binary echoed in {fmt_duration(ws.messages[1].t - t)}")
    if not got:
        how = (await ws.observe_close(t, 0.1)).describe() if ws.ended else f"nothing within {REPLY_TIMEOUT:g} s"
        return Outcome(False, f"sent a text and a binary message on {ctx.ws_path}: {how}")
    shown = ", ".join(f"opcode {op:#x} {data[:40]!r}" for op, data in got)
    return Outcome(False, f"sent a text and a binary message on {ctx.ws_path}, got back {shown}")
