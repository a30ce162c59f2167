"""The chat room of the Tornado reference server (SPEC 6.6, 7, 10, 11): who is in it, what is relayed
to whom, and the pings that keep it honest.

Three parts of ``ChatServer`` (one method per behaviour, so a fixture can override one):
:class:`RoomPolicy` (joining and leaving), :class:`RelayPolicy` (the broadcast and the send buffer
bound) and :class:`PingPolicy`. Tornado's own ping (``websocket_ping_interval``) closes with 1000 and
is not used; pings follow SPEC 10 via ``send_ping``/``check_pong``. Broadcast frames are built once and
written to each connection's IOStream (``deliver``); ``write_message`` is used only for compressed
connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError

from .options import CLOSE_GRACE, PING_TIMEOUT_CLOSE_GRACE, Options
from .tornado_protocol import ChatProtocol, text_frame

if TYPE_CHECKING:
    from .tornado_server import ChatSocketHandler


class RoomPolicy:
    """Joining and leaving (SPEC 6.6, 7.1, 7.5, 13.1)."""

    options: Options
    room: dict[str, ChatSocketHandler]
    sockets: set[ChatSocketHandler]
    shutting_down: bool
    _all_closed: asyncio.Event | None
    messages_in: int

    def on_open(self, conn: ChatSocketHandler) -> None:
        self.sockets.add(conn)
        self.apply_nodelay(conn)
        if self.shutting_down:
            conn.close(1001, "server shutdown")
            return
        if self.nickname_in_use(conn.nickname):
            self.refuse_duplicate(conn)
            return
        self.room[conn.nickname] = conn
        conn.joined = True
        self.on_join(conn)
        self.schedule_pings(conn)

    def apply_nodelay(self, conn: ChatSocketHandler) -> None:
        """SPEC 13.1: TCP_NODELAY set, or explicitly cleared with --no-nodelay."""
        conn.set_nodelay(self.options.nodelay)

    def refuse_duplicate(self, conn: ChatSocketHandler) -> None:
        conn.close(4409, "nickname in use")

    def on_join(self, conn: ChatSocketHandler) -> None:
        self.broadcast(f"~~~{conn.nickname}进入了聊天室~~~", exclude=conn)

    def on_message(self, conn: ChatSocketHandler, message: str | bytes) -> Awaitable[None] | None:
        if isinstance(message, bytes):
            conn.close(1003, "binary messages are not accepted")  # SPEC 8.1
            return None
        if not conn.joined:
            return None
        self.messages_in += 1
        return self.broadcast(f"{conn.nickname}说：{message}", exclude=conn)

    def on_leave(self, conn: ChatSocketHandler) -> None:
        """SPEC 7.5: the leave line exactly once, whatever closed the connection."""
        if not conn.joined:
            return
        conn.joined = False
        if self.room.get(conn.nickname) is conn:
            del self.room[conn.nickname]
        self.cancel_pings(conn)
        self.broadcast(f"~~~{conn.nickname}离开了聊天室~~~", exclude=conn)

    def on_close(self, conn: ChatSocketHandler) -> None:
        self.sockets.discard(conn)
        self.on_leave(conn)
        self.cancel_pings(conn)
        if self._all_closed is not None and not self.sockets:
            self._all_closed.set()


class RelayPolicy:
    """What is relayed to whom, and the send buffer bound (SPEC 7.2-7.4, 11)."""

    options: Options
    room: dict[str, ChatSocketHandler]
    deliveries_out: int
    slow_consumer_closes: int

    def relay_targets(self, exclude: ChatSocketHandler | None) -> list[ChatSocketHandler]:
        return [conn for conn in self.room.values() if conn is not exclude]

    def broadcast(self, text: str, exclude: ChatSocketHandler | None = None) -> Awaitable[None] | None:
        """Queue ``text`` to every relay target without waiting on any of them (SPEC 7.4)."""
        frame = text_frame(text.encode("utf-8"))
        slow = [conn for conn in self.relay_targets(exclude) if not self.deliver(conn, text, frame)]
        for conn in slow:
            self.close_slow_consumer(conn)
        return None

    def deliver(self, conn: ChatSocketHandler, text: str, frame: bytes) -> bool:
        """Queue one frame; False when the connection is over its send buffer limit.

        Uncompressed connections get the frame built once per broadcast, written to the IOStream:
        ``write_message`` would encode and frame the text again per receiver and wrap every write in
        an asyncio Task, which for a stalled client costs ~1.5 KB of memory per queued message on top
        of the message itself (measured), breaking SPEC 11.3's bound for small messages.
        """
        proto = conn.ws_connection
        if not isinstance(proto, ChatProtocol) or proto.is_closing():
            return True
        if not self.enforce_send_buffer(conn, len(frame)):
            return False
        if proto.compressing:  # per-connection compressor state: Tornado frames it
            try:
                conn.write_message(text).add_done_callback(_retrieve)
            except WebSocketClosedError:
                return True
        else:
            proto.write_frame_bytes(frame)
        self.deliveries_out += 1
        return True

    def queued_bytes(self, conn: ChatSocketHandler) -> int:
        """Bytes queued for ``conn`` but not yet written to its socket.

        IOStream has no public accessor; ``len(_write_buffer)`` is what its own
        ``max_write_buffer_size`` check uses. (Setting ``max_write_buffer_size`` instead would make
        every write, close frames included, raise StreamBufferFullError.)
        """
        stream = conn.ws_stream
        return len(stream._write_buffer) if stream is not None else 0

    def enforce_send_buffer(self, conn: ChatSocketHandler, size: int) -> bool:
        """SPEC 11.1: may ``size`` more bytes be queued for ``conn``?"""
        return self.queued_bytes(conn) + size <= self.options.send_buffer_limit

    def close_slow_consumer(self, conn: ChatSocketHandler) -> None:
        if not conn.joined:
            return
        self.slow_consumer_closes += 1
        self.close_and_drop(conn, 1008, "slow consumer", CLOSE_GRACE)
        self.on_leave(conn)

    def close_and_drop(self, conn: ChatSocketHandler, code: int, reason: str, grace: float) -> None:
        """Send a close frame, and drop TCP if the close handshake is not over after ``grace`` s."""
        stream = conn.ws_stream
        conn.close(code, reason)
        if stream is not None and not stream.closed():
            asyncio.get_running_loop().call_later(grace, stream.close)


class PingPolicy:
    """Server pings and the pong timeout (SPEC 10); every client ping answered (8.6)."""

    options: Options

    def schedule_pings(self, conn: ChatSocketHandler) -> None:
        if self.options.ping_interval > 0:
            loop = asyncio.get_running_loop()
            conn.ping_handle = loop.call_later(self.options.ping_interval, self.send_ping, conn)

    def send_ping(self, conn: ChatSocketHandler) -> None:
        conn.ping_handle = None
        if not conn.joined:
            return
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        try:
            conn.ping(b"")
        except (WebSocketClosedError, StreamClosedError):
            return
        if self.options.ping_timeout > 0:
            check: asyncio.TimerHandle | None = None

            def fire() -> None:
                conn.pong_checks.discard(check)  # type: ignore[arg-type]
                self.check_pong(conn, sent_at)

            check = loop.call_later(self.options.ping_timeout, fire)
            conn.pong_checks.add(check)
        conn.ping_handle = loop.call_later(self.options.ping_interval, self.send_ping, conn)

    def on_ping(self, conn: ChatSocketHandler, data: bytes) -> None:
        """SPEC 8.6: answer every ping, in order; a client that pings without reading its pongs is a
        slow consumer once they pass ``send_buffer_limit`` (11.1)."""
        proto = conn.ws_connection
        if not isinstance(proto, ChatProtocol) or proto.is_closing():
            return
        frame = proto.pong_frame(data)
        if not self.enforce_send_buffer(conn, len(frame)):
            self.close_slow_consumer(conn)
            return
        proto.write_frame_bytes(frame)

    def on_pong(self, conn: ChatSocketHandler, data: bytes) -> None:
        conn.last_pong = asyncio.get_running_loop().time()

    def check_pong(self, conn: ChatSocketHandler, sent_at: float) -> None:
        if conn.joined and conn.last_pong < sent_at:
            self.close_ping_timeout(conn)

    def close_ping_timeout(self, conn: ChatSocketHandler) -> None:
        """SPEC 10.2: close 1011 ``ping timeout``, TCP closed within ping_timeout + 1 s of the ping."""
        self.close_and_drop(conn, 1011, "ping timeout", PING_TIMEOUT_CLOSE_GRACE)
        self.on_leave(conn)

    def cancel_pings(self, conn: ChatSocketHandler) -> None:
        if conn.ping_handle is not None:
            conn.ping_handle.cancel()
            conn.ping_handle = None
        for check in conn.pong_checks:
            check.cancel()
        conn.pong_checks.clear()


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a write's outcome as seen: a write to a connection that closed meanwhile is not an error."""
    if not future.cancelled():
        future.exception()
