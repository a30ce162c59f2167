"""Running the aiohttp reference server (SPEC 12, 15, 16): listening, shutdown, and hardening.

:class:`ServerLifecycle` is the part of ``ChatServer`` that runs it. ``run_app``'s shutdown drops
inbound frames and ends with a bare FIN: the server runs its own ``AppRunner`` and sends 1001 first
(``shutdown``, SPEC 12.1); an :class:`~wsbench_servers.hardening.Acceptor` replaces asyncio's accept
loop so that running out of descriptors backs off and sheds stale connections (16.3), and
:func:`is_client_noise` names the framework log records that are a client's fault (16.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .aiohttp_room import Connection, retrieve
from .hardening import REQUEST_HEAD_TIMEOUT, Acceptor, Throttle, pick_shed
from .options import CLOSE_GRACE, Options, listening_line


class ServerLifecycle:
    """Listening, the SPEC 15 start-up line, and the SPEC 12.1 shutdown."""

    options: Options
    room: dict[str, Connection]
    sockets: set[Connection]
    throttle: Throttle
    shutting_down: bool
    _all_closed: asyncio.Event | None
    _runner_server: web.Server | None
    acceptor: Acceptor

    def request_head_timeout(self) -> float:
        """Seconds a connection has for a complete request head (SPEC 16.1)."""
        return REQUEST_HEAD_TIMEOUT

    async def run(self) -> int:
        # keepalive_timeout also bounds the wait for the first request head (SPEC 16.1): aiohttp arms
        # it at connection_made and closes a connection whose handler is still waiting for a request.
        runner = web.AppRunner(
            self.make_app(),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=0.5,
            keepalive_timeout=self.request_head_timeout(),
        )
        await runner.setup()
        assert runner.server is not None
        self._runner_server = runner.server
        try:
            sock = listening_socket(self.options.host, self.options.port)
        except OSError as exc:
            print(f"error: cannot listen on {self.options.host}:{self.options.port}: {exc}", file=sys.stderr)
            await runner.cleanup()
            return 2
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self.loop_exception)
        self.acceptor = Acceptor(sock, self.accepted, self.throttle, shed=self.shed_idle)
        self.acceptor.start()
        port = sock.getsockname()[1]
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # Signal handlers first: whoever reads this line may signal at once.
        print(listening_line(self.options.host, port), flush=True)
        await stop.wait()
        self.acceptor.stop()
        sock.close()
        await self.shutdown(runner)
        return 0

    def accepted(self, sock: socket.socket, address: object) -> None:
        """Hand an accepted socket to aiohttp (our :class:`Acceptor` replaces asyncio's accept loop)."""
        task = asyncio.ensure_future(asyncio.get_running_loop().connect_accepted_socket(self._runner_server, sock))
        task.add_done_callback(retrieve)

    def shed_idle(self) -> int:
        """Out of descriptors: close connections that have not sent a complete request (SPEC 16.3).

        aiohttp keeps no accept time; ``_next_keepalive_close_time`` is connection_made's time plus
        the keep-alive (= request head) timeout until the first request arrives.
        """
        server = self._runner_server
        if server is None:
            return 0
        waiting = {
            handler: getattr(handler, "_next_keepalive_close_time", 0.0) - self.request_head_timeout()
            for handler in server.connections
            if getattr(handler, "_request_count", 1) == 0
        }
        chosen = pick_shed(waiting, asyncio.get_running_loop().time())
        for handler in chosen:
            if handler.transport is not None:  # type: ignore[attr-defined]
                handler.transport.abort()  # type: ignore[attr-defined]
        return len(chosen)

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, ConnectionError):  # a client reset while asyncio wrote to it
            self.throttle.warn("reset", "client reset its connection: %s", exc)
            return
        loop.default_exception_handler(context)

    async def shutdown(self, runner: web.AppRunner) -> None:
        """SPEC 12.1: stop accepting, close every client with 1001, wait up to 2 s for them."""
        self.shutting_down = True
        self._all_closed = asyncio.Event()
        conns = list(self.sockets)
        for conn in conns:
            conn.joined = False  # no leave lines after the close frames
            self.cancel_pings(conn)
        self.room.clear()
        for conn in conns:
            self.start_close(conn, 1001, "server shutdown", CLOSE_GRACE)
        if self.sockets:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), CLOSE_GRACE)
        for conn in list(self.sockets):
            conn.transport.abort()
        await runner.cleanup()


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock


def is_client_noise(record: logging.LogRecord) -> str | None:
    """SPEC 16.4: what kind of client misbehaviour a framework log record is about, or None.

    aiohttp logs "Error handling request" with a traceback for every malformed request line or
    header and for a client that resets mid-request; asyncio logs a reset during a write.
    """
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError) and (exc.code or 400) < 500:
        return "sent a malformed request"
    if isinstance(exc, ConnectionError | asyncio.IncompleteReadError | aiohttp.ClientPayloadError):
        return "went away mid-request"
    return None
