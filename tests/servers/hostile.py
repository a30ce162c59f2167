"""Helpers for the hostile-input tests and the fuzz campaign: a reference server whose standard error
goes to a file (so a test can read all of it, not a tail), raw HTTP exchanges, and the health checks
every campaign ends with (issue 16: alive, /stats fast, connections back to 0, two fresh clients talk,
no 5xx, no traceback)."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shlex
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.servers.wsclient import chat_client, host_port, said_line, unique
from wsbench.target import ServerProcess, option_flags, reference_server_argv, start_server

TRACEBACK = "Traceback (most recent call last)"


@dataclass
class LoggedServer:
    """A reference server started by the SPEC 15 contract, its stderr kept whole in ``log_path``."""

    process: ServerProcess
    log_path: Path

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def log_lines(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if line.strip()]

    def stop(self) -> int | None:
        return self.process.stop()


@contextlib.contextmanager
def logged_server(kind: str, *extra: str, nofile: int | None = None, **options: object) -> Iterator[LoggedServer]:
    """Start ``kind`` with these options; ``nofile`` sets its open-file limit (soft and hard)."""
    argv = reference_server_argv(kind, [*option_flags(options), *extra])
    fd, name = tempfile.mkstemp(prefix=f"wsbench-{kind}-", suffix=".stderr")
    os.close(fd)
    path = Path(name)
    prefix = f"ulimit -n {nofile} && " if nofile is not None else ""
    wrapped = ["sh", "-c", f"{prefix}exec {shlex.join(argv)} 2>>{shlex.quote(name)}"]
    server = start_server(wrapped, label=kind)
    try:
        yield LoggedServer(server, path)
    finally:
        server.stop()
        path.unlink(missing_ok=True)


def raw_exchange(base_url: str, data: bytes | Sequence[bytes], *, timeout: float = 5.0, pause: float = 0.0) -> bytes:
    """Send ``data`` (chunks, ``pause`` s apart) on a fresh connection; return what comes back until
    the server closes, or one response with a Content-Length is complete."""
    host, port = host_port(base_url)
    chunks = [data] if isinstance(data, bytes) else list(data)
    out = bytearray()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
                if pause:
                    time.sleep(pause)
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if response_complete(out):
                break
    return bytes(out)


def response_complete(data: bytes) -> bool:
    """A whole response with a Content-Length has arrived (a keep-alive server need not close)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(body) >= int(value)
    return False


def status_of(response: bytes) -> int | None:
    """The status code of the first HTTP response in ``response`` (None when there is none)."""
    if not response.startswith(b"HTTP/"):
        return None
    parts = response.split(b"\r\n", 1)[0].split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def request_bytes(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def stats(base_url: str, timeout: float = 1.0) -> tuple[dict[str, object], float]:
    """``GET /stats`` and how long it took; raises when no answer within ``timeout``."""
    started = time.monotonic()
    response = raw_exchange(base_url, request_bytes("GET", "/stats"), timeout=timeout)
    elapsed = time.monotonic() - started
    assert status_of(response) == 200, response[:200]
    return json.loads(response.split(b"\r\n\r\n", 1)[1]), elapsed


def wait_connections(base_url: str, count: int = 0, timeout: float = 10.0) -> int:
    """Wait until /stats says ``connections`` == ``count``; returns the last value seen."""
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        data, _ = stats(base_url, timeout=2.0)
        seen = int(data["connections"])  # type: ignore[call-overload]
        if seen == count:
            return seen
        time.sleep(0.1)
    return seen


def two_clients_talk(base_url: str) -> bool:
    a, b = unique("ha"), unique("hb")
    first = chat_client(base_url, a)
    second = chat_client(base_url, b)
    try:
        first.recv_text(3)  # b's join line
        second.send_text("still here")
        return first.recv_text(3) == said_line(b, "still here")
    finally:
        first.close(timeout=1)
        second.close(timeout=1)


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def health_problems(
    server: LoggedServer, *, rss_before: int | None = None, rss_allowance: int = 64 * 2**20
) -> list[str]:
    """The issue-16 checks after a campaign; an empty list when the server is healthy."""
    problems: list[str] = []
    if not server.process.alive():
        return [f"the server died: {server.process.death_message()}"]
    try:
        _, elapsed = stats(server.url, timeout=1.0)
    except (AssertionError, OSError, ValueError) as exc:
        problems.append(f"/stats did not answer within 1 s: {exc}")
    else:
        if elapsed > 1.0:
            problems.append(f"/stats took {elapsed:.2f} s")
    left = wait_connections(server.url, 0, timeout=8.0)
    if left != 0:
        problems.append(f"{left} connections still counted in /stats")
    try:
        if not two_clients_talk(server.url):
            problems.append("two fresh clients could not talk")
    except Exception as exc:  # any failure here is the finding
        problems.append(f"two fresh clients could not talk: {exc!r}")
    if rss_before is not None:
        grown = rss_of(server.pid) - rss_before
        if grown > rss_allowance:
            problems.append(f"RSS grew by {grown / 2**20:.1f} MiB")
    text = server.log_text()
    if TRACEBACK in text:
        at = text.index(TRACEBACK)
        problems.append("a traceback on stderr:\n" + text[max(0, at - 300) : at + 1500])
    return problems
