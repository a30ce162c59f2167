"""Running the Tornado reference server (SPEC 12, 15, 16): listening, shutdown, and hardening.

:class:`ServerLifecycle` is the part of ``ChatServer`` that runs it: listen, print the SPEC 15
line, and on SIGTERM/SIGINT close everyone with 1001 (``shutdown``, SPEC 12.1).
:class:`GuardedHTTPServer` keeps accepting when descriptors run out (16.3), and
:func:`is_client_noise` names the framework log records that are a client's fault (16.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
import weakref
from typing import TYPE_CHECKING, Any

import tornado.httpserver
import tornado.netutil
from tornado.iostream import IOStream, StreamClosedError

from .hardening import REQUEST_BODY_TIMEOUT, REQUEST_HEAD_TIMEOUT, Acceptor, Throttle, pick_shed
from .options import CLOSE_GRACE, Options, listening_line

if TYPE_CHECKING:
    from .tornado_server import ChatSocketHandler


class ServerLifecycle:
    """Listening, the SPEC 15 start-up line, and the SPEC 12.1 shutdown."""

    options: Options
    room: dict[str, ChatSocketHandler]
    sockets: set[ChatSocketHandler]
    throttle: Throttle
    shutting_down: bool
    _all_closed: asyncio.Event | None

    def request_head_timeout(self) -> float:
        """Seconds a connection has for a complete request head (SPEC 16.1)."""
        return REQUEST_HEAD_TIMEOUT

    async def run(self) -> int:
        app = self.make_app()
        http_server = GuardedHTTPServer(
            app,
            idle_connection_timeout=self.request_head_timeout(),  # Tornado's header_timeout (SPEC 16.1)
            body_timeout=REQUEST_BODY_TIMEOUT,
            max_body_size=self.login_body_limit(),  # SPEC 3.9 (the login handler answers 413 itself)
        )
        http_server.throttle = self.throttle
        try:
            sockets = tornado.netutil.bind_sockets(self.options.port, self.options.host)
        except OSError as exc:
            print(f"error: cannot listen on {self.options.host}:{self.options.port}: {exc}", file=sys.stderr)
            return 2
        http_server.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self.loop_exception)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # Signal handlers first: whoever reads this line may signal at once.
        print(listening_line(self.options.host, port), flush=True)
        await stop.wait()
        await self.shutdown(http_server)
        return 0

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, ConnectionError | StreamClosedError):  # a client reset while we wrote to it
            self.throttle.warn("reset", "client reset its connection: %s", exc)
            return
        loop.default_exception_handler(context)

    async def shutdown(self, http_server: tornado.httpserver.HTTPServer) -> None:
        """SPEC 12.1: stop accepting, close every client with 1001, wait up to 2 s for them."""
        http_server.stop()
        self.shutting_down = True
        self._all_closed = asyncio.Event()
        conns = list(self.sockets)
        for conn in conns:
            conn.joined = False  # no leave lines after the close frames
            self.cancel_pings(conn)
        self.room.clear()
        for conn in conns:
            conn.close(1001, "server shutdown")
        if self.sockets:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), CLOSE_GRACE)
        for conn in list(self.sockets):
            stream = conn.ws_stream
            if stream is not None:
                stream.close()


class GuardedHTTPServer(tornado.httpserver.HTTPServer):
    """HTTPServer whose accept loop survives running out of descriptors (SPEC 16.3).

    ``add_sockets`` registers :class:`~wsbench_servers.hardening.Acceptor` instead of Tornado's
    accept handler (which raises on EMFILE and stays registered: a busy loop of tracebacks), in the
    ``_sockets``/``_handlers`` maps ``stop()`` reads.
    """

    throttle: Throttle

    def add_sockets(self, sockets: Any) -> None:
        # weak: Tornado's HTTP1Connection replaces any close callback set on the stream
        self._accepted_at: weakref.WeakKeyDictionary[IOStream, float] = weakref.WeakKeyDictionary()
        for sock in sockets:
            acceptor = Acceptor(sock, self._handle_connection, self.throttle, shed=self.shed_idle)
            acceptor.start()
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = acceptor.stop

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        self._accepted_at[stream] = time.monotonic()
        super().handle_stream(stream, address)

    def shed_idle(self) -> int:
        """Close connections still served as HTTP (not upgraded) that have waited too long (SPEC 16.3)."""
        now = time.monotonic()
        waiting = {
            conn.stream: self._accepted_at.get(conn.stream, now)
            for conn in self._connections
            if not conn.stream.closed()
        }
        chosen = pick_shed(waiting, now)  # type: ignore[arg-type]
        for stream in chosen:
            stream.close()  # type: ignore[attr-defined]
        return len(chosen)


def is_client_noise(record: logging.LogRecord) -> str | None:
    """SPEC 16.4: what kind of client misbehaviour a Tornado or asyncio log record is about, or None."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, ConnectionError | StreamClosedError):
        return "went away mid-request"
    message = str(record.msg)
    args = record.args if isinstance(record.args, tuple) else ()
    if message.startswith("%d %s") and args and isinstance(args[0], int) and 400 <= args[0] < 500:
        return f"got {args[0]}"  # RequestHandler.log_exception's warning per HTTPError (403, 400, 405...)
    for prefix, key in COOKIE_NOISE:
        if message.startswith(prefix):
            return key
    return None


COOKIE_NOISE = (
    ("Invalid cookie signature", "sent a forged cookie"),
    ("Tampered cookie", "sent a forged cookie"),
    ("Expired cookie", "sent an expired cookie"),
    ("Cookie timestamp in future", "sent a forged cookie"),
    ("Unsupported signed value version", "sent a forged cookie"),
    ("Malformed HTTP message", "sent a malformed request"),
    ("Cross origin websockets not allowed", "sent a cross-origin upgrade"),
)
