"""Bounds against hostile or broken clients, shared by both reference servers (SPEC 3.9, 16).

Configuration and operating-system policy only, like ``options.py``: no HTTP or WebSocket handling
lives here (each server does its own, so that one bug cannot hide in both). What is here:

- the bounds themselves (request body, request head and body timeouts, descriptor reserve);
- :func:`ensure_fd_limit`: at start, raise the soft open-file limit as far as ``--max-connections``
  needs, or say why the server cannot start (SPEC 16.3);
- :class:`Acceptor`: the accept loop. Neither framework survives running out of descriptors: Tornado's
  accept handler raises on EMFILE and stays registered (a 100 % CPU loop writing a traceback per
  attempt), and asyncio's ``_accept_connection`` schedules one retry per backlog slot on EMFILE
  (thousands of tracebacks a second). This one stops accepting for :data:`ACCEPT_BACKOFF` seconds,
  sheds the connections that have sent no request for :data:`SHED_AFTER` seconds (at least the
  oldest such one), and says so once per interval;
- :class:`Throttle` and :class:`ClientNoiseFilter`: a client's misbehaviour is at most one
  rate-limited log line, never a traceback (SPEC 16.4).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable

from wsbench import fdlimit
from wsbench.errors import OpenFilesLimitError

#: Largest ``POST /login`` body, bytes (SPEC 3.9). A login form is a few dozen bytes; 32 code points
#: of 4 bytes each, percent-encoded, are 384.
LOGIN_BODY_LIMIT = 16384
#: Seconds a connection may take to send a complete request head (SPEC 16.1); also the keep-alive
#: idle bound between two requests.
REQUEST_HEAD_TIMEOUT = 5.0
#: Seconds a ``POST /login`` body may take (SPEC 16.1).
REQUEST_BODY_TIMEOUT = 10.0
#: Longest static path looked up (SPEC 16.2: a longer one is 404, not the OS's "File name too long").
MAX_STATIC_PATH = 1024
#: Open files a server needs beyond its ``max_connections`` WebSocket connections: listening
#: sockets, the event loop, HTTP requests in progress, ``/stats`` reading /proc, logs (SPEC 16.3).
FD_RESERVE = fdlimit.MARGIN
#: Seconds without accepting after ``accept`` failed for lack of descriptors (SPEC 16.3).
ACCEPT_BACKOFF = 0.25
#: Out of descriptors, connections that have been waiting this long for a complete request head are
#: closed (a client that means to talk sends its request within milliseconds of connecting).
SHED_AFTER = 1.0
#: Most connections accepted per wake-up (so accepting cannot starve the loop).
ACCEPT_BATCH = 64
#: Seconds between two log lines of the same kind of client misbehaviour (SPEC 16.4).
LOG_INTERVAL = 10.0

OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def ensure_fd_limit(max_connections: int) -> str | None:
    """Raise the soft RLIMIT_NOFILE to what ``max_connections`` needs; None when done, else why not.

    The rule is wsbench's own (:mod:`wsbench.fdlimit`, standard library only), so that the servers and
    the tools that start them count descriptors alike.
    """
    try:
        fdlimit.ensure_open_files(
            fdlimit.needed_for_server(max_connections),
            f"--max-connections {max_connections}",
            fewer="a lower --max-connections",
        )
    except OpenFilesLimitError as exc:
        return str(exc)
    return None


class Throttle:
    """At most one log line per ``key`` and interval; the next line says how many were held back."""

    def __init__(
        self, logger: logging.Logger, interval: float = LOG_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warn(self, key: str, message: str, *args: object) -> bool:
        """Log ``message % args`` at WARNING unless ``key`` was logged in the last interval."""
        t = self.clock()
        last = self._last.get(key)
        if last is not None and t - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = t
        held = self._held.pop(key, 0)
        text = " ".join((message % args if args else message).split())  # one line, whatever it quotes
        if held:
            text += f" ({held} more like this in the last {self.interval:g} s)"
        self.logger.warning("%s", text)
        return True


class ClientNoiseFilter(logging.Filter):
    """A framework log record about a client's misbehaviour becomes one rate-limited line, no traceback.

    ``classify(record)`` returns a short key for such records (``"bad request"``) and None for
    everything else, which passes untouched: a traceback stays the sign of a bug of the server.
    """

    def __init__(self, throttle: Throttle, classify: Callable[[logging.LogRecord], str | None]) -> None:
        super().__init__()
        self.throttle = throttle
        self.classify = classify

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            key = self.classify(record)
        except Exception:  # a filter that fails must not hide the record
            return True
        if key is None:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            detail = f": {exc.__class__.__name__}: {str(exc)[:160]}"
        else:
            detail = f": {record.getMessage()[:160]}"
        self.throttle.warn(key, "client %s%s", key, detail)
        return False


def pick_shed(waiting: dict[object, float], now: float) -> list[object]:
    """Which of the connections waiting for a request head (connection -> accepted at) to close when
    out of descriptors: all waiting longer than :data:`SHED_AFTER`, else the oldest one."""
    if not waiting:
        return []
    stale = [conn for conn, at in waiting.items() if now - at >= SHED_AFTER]
    return stale or [min(waiting, key=waiting.__getitem__)]


class Acceptor:
    """Accept connections on a listening socket and hand each to ``on_connection(sock, address)``.

    Out of descriptors (EMFILE and kin): stop accepting for ``backoff`` seconds, call ``shed`` (which
    closes connections still without a request, see :func:`pick_shed`, and returns how many, so that
    ``/stats`` gets a turn), and log once per interval. Pending connections wait in the kernel's
    backlog meanwhile.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_connection: Callable[[socket.socket, object], None],
        throttle: Throttle,
        *,
        shed: Callable[[], int] | None = None,
        backoff: float = ACCEPT_BACKOFF,
    ) -> None:
        self.sock = sock
        self.on_connection = on_connection
        self.throttle = throttle
        self.shed = shed
        self.backoff = backoff
        self.exhausted = 0  # times accept ran out of descriptors
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resume: asyncio.TimerHandle | None = None
        self._reading = False
        self._stopped = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        self._watch()

    def stop(self) -> None:
        self._stopped = True
        self._unwatch()
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None

    def _watch(self) -> None:
        if not self._reading and not self._stopped and self._loop is not None:
            self._loop.add_reader(self.sock.fileno(), self._ready)
            self._reading = True

    def _unwatch(self) -> None:
        if self._reading and self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._reading = False

    def _ready(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._failed(exc)
                return
            conn.setblocking(False)
            self.on_connection(conn, address)

    def _failed(self, exc: OSError) -> None:
        if exc.errno in OUT_OF_DESCRIPTORS:
            self.exhausted += 1
            shed = self.shed() if self.shed is not None else 0
            self.throttle.warn(
                "accept",
                "out of file descriptors (%s): not accepting for %g s; closed %d connection(s) without a request",
                errno.errorcode.get(exc.errno or 0, exc.errno),
                self.backoff,
                shed,
            )
        else:
            self.throttle.warn("accept-error", "accept failed: %s; retrying in %g s", exc, self.backoff)
        self._unwatch()
        assert self._loop is not None
        self._resume = self._loop.call_later(self.backoff, self._resumed)

    def _resumed(self) -> None:
        self._resume = None
        self._watch()
