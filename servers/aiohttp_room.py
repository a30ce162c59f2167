"""The chat room of the aiohttp reference server (SPEC 6.6-11): its connections, who is in the room,
what is relayed to whom, the close handshake and the pings.

:class:`Connection` is one accepted ``/chat`` connection; four parts of ``ChatServer`` (one method
per behaviour) act on them: :class:`RoomPolicy` (joining and leaving), :class:`ReceivePolicy` (the
read loop and the close handshake, SPEC 8), :class:`RelayPolicy` (the broadcast and the send buffer
bound) and :class:`PingPolicy`.

aiohttp's ``heartbeat`` drops the connection without a close frame and counts any inbound data as a
pong: not used; pings follow SPEC 10 via ``send_ping``/``check_pong``. ``send_str`` awaits the
transport's drain, which would stall a broadcast on one slow client: the broadcast writes one
pre-built frame to each transport instead (``deliver``). ``ws.close()`` called while the handler is
inside ``receive()`` closes TCP right after its close frame: server-initiated closes write the close
frame themselves (``start_close``) and ``receive_loop`` completes the handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable
from typing import Any

from aiohttp import WSMsgType, web

from .aiohttp_protocol import PING_FRAME, ChatWebSocketResponse, close_frame, text_frame
from .options import CLOSE_GRACE, PING_TIMEOUT_CLOSE_GRACE, Options
from .policy import VALID_CLOSE_CODES


class Connection:
    """One accepted ``/chat`` connection."""

    __slots__ = (
        "close_task",
        "closing",
        "joined",
        "last_pong",
        "nickname",
        "pending",
        "ping_handle",
        "pong_checks",
        "send_tail",
        "transport",
        "ws",
    )

    def __init__(self, ws: ChatWebSocketResponse, transport: asyncio.Transport, nickname: str) -> None:
        self.ws = ws
        self.transport = transport
        self.nickname = nickname
        self.joined = False
        self.closing = False  # a close frame was sent or the transport is going away: send nothing more
        self.last_pong = 0.0
        self.pending = 0  # bytes handed to send_str tasks (compressed connections) but not yet written
        self.ping_handle: asyncio.TimerHandle | None = None
        self.pong_checks: set[asyncio.TimerHandle] = set()
        self.close_task: asyncio.Task[None] | None = None
        self.send_tail: asyncio.Future[None] | None = None  # the last send_str task (compressed only)

    @property
    def compressed(self) -> bool:
        return bool(self.ws.compress)


class RoomPolicy:
    """Joining and leaving (SPEC 6.6, 7.1, 7.5, 13.1)."""

    options: Options
    room: dict[str, Connection]
    sockets: set[Connection]
    shutting_down: bool
    _all_closed: asyncio.Event | None
    messages_in: int

    def on_open(self, conn: Connection) -> None:
        self.apply_nodelay(conn)
        if self.shutting_down:
            self.start_close(conn, 1001, "server shutdown", CLOSE_GRACE)
            return
        if self.nickname_in_use(conn.nickname):
            self.refuse_duplicate(conn)
            return
        self.room[conn.nickname] = conn
        conn.joined = True
        self.on_join(conn)
        self.schedule_pings(conn)

    def apply_nodelay(self, conn: Connection) -> None:
        """SPEC 13.1: TCP_NODELAY set, or explicitly cleared with --no-nodelay (asyncio sets it)."""
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if self.options.nodelay else 0)

    def refuse_duplicate(self, conn: Connection) -> None:
        self.start_close(conn, 4409, "nickname in use", CLOSE_GRACE)

    def on_join(self, conn: Connection) -> None:
        self.broadcast(f"~~~{conn.nickname}进入了聊天室~~~", exclude=conn)

    def on_message(self, conn: Connection, text: str) -> Awaitable[None] | None:
        if not conn.joined:
            return None
        self.messages_in += 1
        return self.broadcast(f"{conn.nickname}说：{text}", exclude=conn)

    def on_leave(self, conn: Connection) -> None:
        """SPEC 7.5: the leave line exactly once, whatever closed the connection."""
        if not conn.joined:
            return
        conn.joined = False
        if self.room.get(conn.nickname) is conn:
            del self.room[conn.nickname]
        self.cancel_pings(conn)
        self.broadcast(f"~~~{conn.nickname}离开了聊天室~~~", exclude=conn)

    def on_close(self, conn: Connection) -> None:
        conn.closing = True
        self.sockets.discard(conn)
        self.on_leave(conn)
        self.cancel_pings(conn)
        if self._all_closed is not None and not self.sockets:
            self._all_closed.set()


class ReceivePolicy:
    """The read loop and the close handshake (SPEC 8): answers, 1003, 1009 and closes the server starts."""

    async def receive_loop(self, conn: Connection) -> None:
        """Read until the close handshake is over or the connection is gone."""
        ws = conn.ws
        while True:
            msg = await ws.receive()
            kind = msg.type
            if kind is WSMsgType.TEXT:
                if conn.closing:
                    continue  # we sent a close frame: ignore data until the client's close frame
                if conn.compressed and len(msg.data.encode("utf-8")) > self.message_size_limit():
                    # aiohttp checks inflated messages with ">" against max_msg_size (uncompressed
                    # ones with ">="), so the +1 in ``chat`` lets one byte too many through here.
                    self.start_close(conn, 1009, "message too big", CLOSE_GRACE)
                    continue
                result = self.on_message(conn, msg.data)
                if result is not None:
                    await result
            elif kind is WSMsgType.PING:
                if not conn.closing:
                    # SPEC 8.6. pong() awaits the drain, so a client that pings without reading is
                    # paced by its own socket. It raises once the client has reset the connection.
                    try:
                        await ws.pong(msg.data)
                    except (ConnectionError, RuntimeError):
                        return
            elif kind is WSMsgType.PONG:
                self.on_pong(conn, msg.data)
            elif kind is WSMsgType.BINARY:
                self.start_close(conn, 1003, "binary messages are not accepted", CLOSE_GRACE)  # SPEC 8.1
            elif kind is WSMsgType.CLOSE:
                if conn.closing:
                    conn.transport.close()  # the client answered our close frame: handshake over
                else:
                    conn.closing = True
                    code, reason = self.close_answer(msg.data)
                    with contextlib.suppress(ConnectionError):
                        await ws.close(code=code, message=reason.encode("utf-8"), drain=False)
                return
            else:  # CLOSED, or ERROR (aiohttp itself closed with 1002/1007/1009)
                return

    def close_answer(self, code: int) -> tuple[int, str]:
        """The close frame answering a client's close frame (SPEC 8.4, 8.5).

        aiohttp already answered 1-byte payloads and codes below 3000 it does not know with 1002,
        and bad UTF-8 reasons with 1007; an empty close frame arrives as code 0.
        """
        if code == 0:
            return 1000, ""
        if code not in VALID_CLOSE_CODES:
            return 1002, "invalid close code"
        return code, ""

    def start_close(self, conn: Connection, code: int, reason: str, grace: float) -> None:
        """Send a close frame now, and drop TCP if the client has not answered it after ``grace`` s.

        The frame is written to the transport directly rather than with ``ws.close()``: that
        coroutine closes TCP right after the frame when the handler is inside ``receive()``,
        without waiting for the client's close frame; ``receive_loop`` finishes the handshake.
        """
        if conn.closing:
            return
        conn.closing = True
        conn.ws.close_sent = True
        frame = close_frame(code, reason)
        if conn.pending:
            task = asyncio.ensure_future(self._close_after_pending(conn, frame))
            task.add_done_callback(retrieve)
            conn.close_task = task
        elif not conn.transport.is_closing():
            conn.transport.write(frame)
        asyncio.get_running_loop().call_later(grace, conn.transport.abort)

    async def _close_after_pending(self, conn: Connection, frame: bytes) -> None:
        """Compressed connections: the close frame goes after the send_str tasks already queued."""
        while conn.pending and not conn.transport.is_closing():
            await asyncio.sleep(0.005)
        if not conn.transport.is_closing():
            conn.transport.write(frame)


class RelayPolicy:
    """What is relayed to whom, and the send buffer bound (SPEC 7.2-7.4, 11)."""

    options: Options
    room: dict[str, Connection]
    deliveries_out: int
    slow_consumer_closes: int

    def relay_targets(self, exclude: Connection | None) -> list[Connection]:
        return [conn for conn in self.room.values() if conn is not exclude]

    def broadcast(self, text: str, exclude: Connection | None = None) -> Awaitable[None] | None:
        """Queue ``text`` to every relay target without waiting on any of them (SPEC 7.4)."""
        frame = text_frame(text.encode("utf-8"))
        slow = [conn for conn in self.relay_targets(exclude) if not self.deliver(conn, text, frame)]
        for conn in slow:
            self.close_slow_consumer(conn)
        return None

    def deliver(self, conn: Connection, text: str, frame: bytes) -> bool:
        """Queue one frame; False when the connection is over its send buffer limit."""
        if conn.closing or conn.transport.is_closing():
            return True
        if not self.enforce_send_buffer(conn, len(frame)):
            return False
        if conn.compressed:
            # permessage-deflate state is per connection, and aiohttp compresses a large message in an
            # executor, so a later small one could overtake it (SPEC 7.3): each send waits for the last.
            size = len(frame)
            conn.pending += size
            task = asyncio.ensure_future(_send_after(conn.send_tail, conn.ws, text))
            conn.send_tail = task
            task.add_done_callback(lambda t, c=conn, n=size: _sent(t, c, n))
        else:
            conn.transport.write(frame)
        self.deliveries_out += 1
        return True

    def queued_bytes(self, conn: Connection) -> int:
        """Bytes queued for ``conn`` but not yet written to its socket."""
        return conn.transport.get_write_buffer_size() + conn.pending

    def enforce_send_buffer(self, conn: Connection, size: int) -> bool:
        """SPEC 11.1: may ``size`` more bytes be queued for ``conn``?"""
        return self.queued_bytes(conn) + size <= self.options.send_buffer_limit

    def close_slow_consumer(self, conn: Connection) -> None:
        if not conn.joined:
            return
        self.slow_consumer_closes += 1
        self.start_close(conn, 1008, "slow consumer", CLOSE_GRACE)
        self.on_leave(conn)


class PingPolicy:
    """Server pings and the pong timeout (SPEC 10)."""

    options: Options

    def schedule_pings(self, conn: Connection) -> None:
        if self.options.ping_interval > 0:
            loop = asyncio.get_running_loop()
            conn.ping_handle = loop.call_later(self.options.ping_interval, self.send_ping, conn)

    def send_ping(self, conn: Connection) -> None:
        conn.ping_handle = None
        if not conn.joined or conn.closing or conn.transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        conn.transport.write(PING_FRAME)  # written directly like the broadcast frames (no drain wait)
        if self.options.ping_timeout > 0:
            check: asyncio.TimerHandle | None = None

            def fire() -> None:
                conn.pong_checks.discard(check)  # type: ignore[arg-type]
                self.check_pong(conn, sent_at)

            check = loop.call_later(self.options.ping_timeout, fire)
            conn.pong_checks.add(check)
        conn.ping_handle = loop.call_later(self.options.ping_interval, self.send_ping, conn)

    def on_pong(self, conn: Connection, data: bytes) -> None:
        conn.last_pong = asyncio.get_running_loop().time()

    def check_pong(self, conn: Connection, sent_at: float) -> None:
        if conn.joined and conn.last_pong < sent_at:
            self.close_ping_timeout(conn)

    def close_ping_timeout(self, conn: Connection) -> None:
        """SPEC 10.2: close 1011 ``ping timeout``, TCP closed within ping_timeout + 1 s of the ping."""
        self.start_close(conn, 1011, "ping timeout", PING_TIMEOUT_CLOSE_GRACE)
        self.on_leave(conn)

    def cancel_pings(self, conn: Connection) -> None:
        if conn.ping_handle is not None:
            conn.ping_handle.cancel()
            conn.ping_handle = None
        for check in conn.pong_checks:
            check.cancel()
        conn.pong_checks.clear()


def retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a task's outcome as seen: a write to a connection that closed meanwhile is not an error."""
    if not task.cancelled():
        task.exception()


async def _send_after(previous: asyncio.Future[None] | None, ws: web.WebSocketResponse, text: str) -> None:
    if previous is not None and not previous.done():
        await asyncio.wait([previous])  # its outcome is _sent's business
    await ws.send_str(text)


def _sent(task: asyncio.Future[None], conn: Connection, size: int) -> None:
    conn.pending -= size
    retrieve(task)
