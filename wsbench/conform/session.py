"""What a conformance case works with: the target, its options, unique nicknames, chat peers.

Cases run concurrently against one chat room, so every client sees every other case's join, leave and
message lines. Each case therefore uses nicknames of its own (unique per run) and looks only at lines
about them (:meth:`CaseContext.mine`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from wsbench.conform.http_client import Endpoint, LoginResult, http_request, login
from wsbench.conform.options import ServerOptions
from wsbench.conform.wire import CloseFrame, Handshake, Message, WsConnection, ws_connect
from wsbench.core.chat import JOIN_SUFFIX as JOIN_SUFFIX  # the SPEC 7 grammar lives in the core; re-exported
from wsbench.core.chat import LEAVE_SUFFIX as LEAVE_SUFFIX
from wsbench.core.chat import SAID as SAID
from wsbench.core.chat import ChatLine as ChatLine
from wsbench.core.chat import join_line as join_line
from wsbench.core.chat import leave_line as leave_line
from wsbench.core.chat import message_line as message_line
from wsbench.core.chat import parse_line as parse_line
from wsbench.target import ServerProcess

#: How long a case waits for something the server must do at once (a line, a close frame).
REPLY_TIMEOUT = 2.0
#: How long a case listens to conclude that nothing (more) arrives.
SILENCE = 0.4


class CaseFailed(Exception):
    """A step of a case could not be done (login refused, handshake refused...): the case fails with
    this message as what was observed."""


class CaseSkipped(Exception):
    """The case cannot be checked against this target; the message says why."""


@dataclass
class Peer:
    """A logged-in client with an open ``/chat`` connection."""

    nick: str
    cookie: str
    ws: WsConnection

    def lines(self) -> list[str]:
        return self.ws.texts()

    def lines_about(self, nicks: set[str] | frozenset[str]) -> list[ChatLine]:
        out = []
        for text in self.lines():
            parsed = parse_line(text)
            if parsed.nick in nicks:
                out.append(parsed)
        return out

    def messages_from(self, nick: str) -> list[Message]:
        prefix = (nick + SAID).encode()
        return [m for m in self.ws.messages if m.data.startswith(prefix)]

    def count(self, line: str) -> int:
        return sum(1 for text in self.lines() if text == line)

    async def wait_line(self, line: str, timeout: float = REPLY_TIMEOUT, count: int = 1) -> bool:
        return await self.ws.wait_until(lambda: self.count(line) >= count, timeout)

    async def wait_from(self, nick: str, count: int = 1, timeout: float = REPLY_TIMEOUT) -> bool:
        return await self.ws.wait_until(lambda: len(self.messages_from(nick)) >= count, timeout)


_run_token = secrets.token_hex(2)
_counter = itertools.count(1)


def unique_nick(tag: str = "") -> str:
    """A nickname no one else in this run (or an earlier run against the same server) uses."""
    return f"{tag[:6]}{_run_token}-{next(_counter)}-{secrets.token_hex(2)}"


@dataclass
class CaseContext:
    """Everything one case needs; one per (case, target). Closes what it opened in :meth:`cleanup`."""

    endpoint: Endpoint
    options: ServerOptions
    server: ServerProcess | None
    label: str
    shared: dict[str, Any]
    shared_lock: asyncio.Lock
    nicks: set[str] = field(default_factory=set)
    connections: list[WsConnection] = field(default_factory=list)
    #: ``chat``: a SPEC.md server (log in, then ``/chat``); ``echo``: any server echoing on ``ws_path``
    profile: str = "chat"
    ws_path: str = "/chat"
    size_known: bool = True

    @property
    def echo(self) -> bool:
        return self.profile == "echo"

    @property
    def started_by_wsbench(self) -> bool:
        return self.server is not None

    def nick(self, tag: str = "") -> str:
        name = unique_nick(tag)
        self.nicks.add(name)
        return name

    def mine(self, peer: Peer) -> list[ChatLine]:
        return peer.lines_about(self.nicks)

    async def login(self, nick: str | None = None) -> LoginResult:
        nick = nick if nick is not None else self.nick()
        result = await login(self.endpoint, nick)
        return result

    async def login_cookie(self, nick: str) -> str:
        result = await login(self.endpoint, nick)
        if result.cookie is None:
            detail = result.response.describe()
            raise CaseFailed(f"could not log in as {nick!r}: {detail}, no nickname cookie")
        return result.cookie

    async def connect(self, **kwargs: Any) -> Handshake:
        """An upgrade request with exactly the given headers (see :func:`ws_connect`); tracked for cleanup."""
        kwargs.setdefault("path", self.ws_path)
        hs = await ws_connect(self.endpoint, **kwargs)
        if hs.ws is not None:
            self.connections.append(hs.ws)
        return hs

    async def join(self, nick: str | None = None, *, tag: str = "", **kwargs: Any) -> Peer:
        """Log in and open ``/chat`` (no Origin: a non-browser client). Fails the case if refused.

        On the echo profile there is no login: a plain connection to ``ws_path`` (the nickname only
        names the peer)."""
        if nick is None:
            nick = self.nick(tag)
        else:
            self.nicks.add(nick)
        if self.echo:
            hs = await self.connect(**kwargs)
            if hs.ws is None:
                raise CaseFailed(f"could not open {self.ws_path}: {hs.response.describe()}")
            return Peer(nick, "", hs.ws)
        cookie = await self.login_cookie(nick)
        hs = await self.connect(cookie=cookie, **kwargs)
        if hs.ws is None:
            raise CaseFailed(f"could not open /chat as {nick!r}: {hs.response.describe()}")
        return Peer(nick, cookie, hs.ws)

    async def join_many(self, count: int, tag: str = "", **kwargs: Any) -> list[Peer]:
        return list(await asyncio.gather(*(self.join(tag=tag, **kwargs) for _ in range(count))))

    async def stats(self) -> dict[str, Any] | None:
        """``GET /stats`` as a dict, or None when the server offers none."""
        response = await http_request(self.endpoint, "GET", "/stats")
        if response.status != 200:
            return None
        try:
            data = json.loads(response.body)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    async def measurement(self, key: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """A measurement shared by several cases (made once per target, by the first case that asks)."""
        async with self.shared_lock:
            if key not in self.shared:
                self.shared[key] = await make()
            return self.shared[key]

    async def cleanup(self) -> None:
        for ws in self.connections:
            with contextlib.suppress(Exception):
                await ws.aclose()
        self.connections.clear()


async def server_close_frame(ws: WsConnection, since: float, what: str) -> CloseFrame:
    """The server's close frame for ``what`` was sent at ``since`` (set ``ws.reply_close = False`` first to
    hold the close handshake open); the case is skipped when none comes within REPLY_TIMEOUT."""
    obs = await ws.observe_close(since, REPLY_TIMEOUT, end_timeout=0.0)
    if ws.close_frame is None:
        raise CaseSkipped(f"no close frame for {what} ({obs.describe()})")
    return ws.close_frame


async def join_room(ctx: CaseContext, count: int, **kwargs: Any) -> list[Peer]:
    """``count`` peers, joined one after the other; waits (best effort) until the first has seen the
    others' join lines, so every one of them is in the room before the case goes on."""
    peers = [await ctx.join(**kwargs)]
    for _ in range(count - 1):
        peers.append(await ctx.join())
    if count > 1 and not ctx.echo:
        first = peers[0]
        await first.ws.wait_until(lambda: all(first.count(join_line(p.nick)) for p in peers[1:]), 1.0)
    return peers


@dataclass
class Link:
    """A sender and where its messages arrive: another client of the room (chat profile, as
    ``N说：M`` lines) or the sender itself (echo profile, the message as sent)."""

    sender: Peer
    receiver: Peer
    echo: bool

    @property
    def prefix(self) -> bytes:
        return b"" if self.echo else (self.sender.nick + SAID).encode()

    def expected(self, payload: bytes) -> bytes:
        """What arrives for a message ``payload``."""
        return self.prefix + payload

    def delivered(self) -> list[Message]:
        """The messages of the sender that arrived so far."""
        if self.echo:
            return list(self.sender.ws.messages)
        return self.receiver.messages_from(self.sender.nick)

    async def wait_delivered(self, count: int = 1, timeout: float = REPLY_TIMEOUT) -> bool:
        return await self.receiver.ws.wait_until(lambda: len(self.delivered()) >= count, timeout)

    async def nothing_more(self, already: int = 0, window: float = SILENCE) -> list[Message]:
        """Listen ``window`` seconds; the sender's messages that arrived beyond the first ``already``."""
        await asyncio.sleep(window)
        return self.delivered()[already:]

    @property
    def where(self) -> str:
        return "echoed" if self.echo else "relayed"


async def open_link(ctx: CaseContext, **kwargs: Any) -> Link:
    """One sender and its receiver (on the echo profile: one connection)."""
    if ctx.echo:
        peer = await ctx.join(**kwargs)
        return Link(peer, peer, True)
    sender, receiver = await join_room(ctx, 2, **kwargs)
    return Link(sender, receiver, False)
