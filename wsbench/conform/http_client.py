"""HTTP for conformance checks (login, any request, the upgrade request's exchange) through ``h11``, a
sans-I/O HTTP/1.1 library, so that any header can be sent or left out (``Origin``, ``Cookie``,
``Sec-WebSocket-Version``...); where the server listens (:class:`Endpoint`); and the clock and the
duration format every observation uses. The WebSocket side is :mod:`wsbench.conform.wire`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import h11

HTTP_TIMEOUT = 5.0
READ_CHUNK = 65536


def now() -> float:
    return time.perf_counter()


def fmt_duration(seconds: float | None) -> str:
    """``0.00123`` -> ``1.2 ms``; ``2.5`` -> ``2.50 s``."""
    if seconds is None:
        return "?"
    if seconds < 1.0:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


@dataclass(frozen=True)
class Endpoint:
    """Where the server listens (always a loopback address on this machine)."""

    host: str
    port: int

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url if "://" in url else "http://" + url)
        if parts.scheme not in ("http", "ws"):
            raise ValueError(f"{url!r}: only http:// (or ws://) URLs are supported")
        if not parts.hostname or parts.port is None:
            raise ValueError(f"{url!r}: give the host and the port, e.g. http://127.0.0.1:8888")
        return cls(parts.hostname, parts.port)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        """The server's own origin (SPEC 6.3: always allowed)."""
        return f"http://{self.host_header}"

    @property
    def url(self) -> str:
        return f"http://{self.host_header}"


@dataclass
class HttpResponse:
    status: int | None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    elapsed_s: float = 0.0
    error: str | None = None  # set when no (complete) response came: "connection closed", "timeout"

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def headers_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    def nickname_cookie(self) -> tuple[str, str] | None:
        """The ``nickname`` cookie the response sets (SPEC 3.4): (``nickname=VALUE`` ready for a Cookie
        header, the whole Set-Cookie header), or None."""
        for header in self.headers_all("set-cookie"):
            pair = header.split(";", 1)[0].strip()
            if pair.split("=", 1)[0].strip() == "nickname":
                return pair, header
        return None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def describe(self) -> str:
        if self.status is None:
            return f"no HTTP response ({self.error}) after {fmt_duration(self.elapsed_s)}"
        return f"HTTP {self.status} in {fmt_duration(self.elapsed_s)}"


async def open_socket(
    endpoint: Endpoint, *, rcvbuf: int | None = None, timeout: float = HTTP_TIMEOUT
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection; ``rcvbuf`` shrinks the receive buffer before connecting (slow consumers)."""
    if rcvbuf is None:
        return await asyncio.wait_for(asyncio.open_connection(endpoint.host, endpoint.port), timeout)
    family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (endpoint.host, endpoint.port)), timeout)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=2**20)


def request_headers(endpoint: Endpoint, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    given = list(headers)
    names = {k.lower() for k, _ in given}
    out = [] if "host" in names else [("Host", endpoint.host_header)]
    return out + given


async def exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    conn: h11.Connection,
    request: h11.Request,
    body: bytes,
    started: float,
    timeout: float,
) -> tuple[HttpResponse, bytes]:
    """Send ``request`` and read the response. Returns it and the bytes after a 101 (frames)."""
    data = conn.send(request)
    if body:
        data += conn.send(h11.Data(data=body))
    data += conn.send(h11.EndOfMessage())
    writer.write(data)
    response = HttpResponse(status=None)
    chunks: list[bytes] = []
    deadline = started + timeout
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                remaining = deadline - now()
                if remaining <= 0:
                    raise TimeoutError
                chunk = await asyncio.wait_for(reader.read(READ_CHUNK), remaining)
                conn.receive_data(chunk)
                continue
            if event is h11.PAUSED:
                # the server switched protocols (101): the rest of the stream is WebSocket frames
                leftover, _closed = conn.trailing_data
                response.elapsed_s = now() - started
                return response, bytes(leftover)
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    response.status = 101
                    response.reason = event.reason.decode("latin-1")
                    response.headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers]
                continue
            if isinstance(event, h11.Response):
                response.status = event.status_code
                response.reason = event.reason.decode("latin-1")
                response.headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers]
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                if isinstance(event, h11.ConnectionClosed) and response.status is None:
                    response.error = "connection closed without a response"
                break
    except TimeoutError:
        response.error = f"no complete response within {timeout:g} s"
    except h11.RemoteProtocolError as exc:
        response.error = f"malformed HTTP response: {exc}"
    except (ConnectionError, OSError) as exc:
        response.error = f"connection error: {exc.__class__.__name__}"
    response.body = b"".join(chunks)
    response.elapsed_s = now() - started
    return response, b""


async def http_request(
    endpoint: Endpoint,
    method: str,
    path: str,
    *,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    timeout: float = HTTP_TIMEOUT,
) -> HttpResponse:
    """One HTTP/1.1 request on its own connection (``Connection: close``)."""
    started = now()
    try:
        reader, writer = await open_socket(endpoint, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        return HttpResponse(status=None, error=f"cannot connect: {exc}", elapsed_s=now() - started)
    hdrs = request_headers(endpoint, headers)
    if body:
        hdrs.append(("Content-Length", str(len(body))))
    hdrs.append(("Connection", "close"))
    try:
        conn = h11.Connection(our_role=h11.CLIENT)
        request = h11.Request(method=method, target=path, headers=hdrs)
        response, _ = await exchange(reader, writer, conn, request, body, started, timeout)
    finally:
        writer.close()
    return response


@dataclass
class LoginResult:
    response: HttpResponse
    cookie: str | None  # "nickname=<value>" exactly as the server set it, ready for a Cookie header
    set_cookie: str | None  # the whole Set-Cookie header of the nickname cookie


async def login(endpoint: Endpoint, nickname: str, *, timeout: float = HTTP_TIMEOUT) -> LoginResult:
    """``POST /login`` (SPEC 3.2-3.5) with the form field ``nickname``."""
    body = ("nickname=" + quote(nickname, safe="")).encode()
    response = await http_request(
        endpoint,
        "POST",
        "/login",
        headers=[("Content-Type", "application/x-www-form-urlencoded")],
        body=body,
        timeout=timeout,
    )
    cookie = response.nickname_cookie()
    return LoginResult(response, *(cookie or (None, None)))
