"""Issue 16: the reference servers under hostile input (SPEC 3.9, 6.1, 8.3, 8.6, 16).

Every test here is one finding of the issue's fuzz campaign, tried against both servers; each ends by
checking that the server's standard error holds no traceback (SPEC 16.4).
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from wsbench_servers.hardening import FD_RESERVE, LOGIN_BODY_LIMIT

from tests.conftest import SERVER_KINDS
from tests.servers.hostile import (
    TRACEBACK,
    LoggedServer,
    logged_server,
    raw_exchange,
    request_bytes,
    stats,
    status_of,
    two_clients_talk,
)
from tests.servers.wsclient import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    HandshakeRefused,
    Room,
    WsClient,
    build_frame,
    host_port,
    join_line,
    leave_line,
    login_cookie,
    unique,
)
from wsbench.target import reference_server_argv


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[LoggedServer]:
    with logged_server(request.param) as started:
        yield started


@pytest.fixture(scope="module", params=SERVER_KINDS)
def deflate_server(request: pytest.FixtureRequest) -> Iterator[LoggedServer]:
    with logged_server(request.param, compression=True) as started:
        yield started


@pytest.fixture
def room(server: LoggedServer) -> Iterator[Room]:
    room = Room(server.url)
    yield room
    room.close_all()


def assert_no_traceback(server: LoggedServer) -> None:
    text = server.log_text()
    assert TRACEBACK not in text, text[-3000:]


def frames_on_the_wire(client: WsClient, timeout: float = 3.0) -> list[tuple[int, bytes]]:
    """Every frame the server sends until it closes TCP (close frames included, none answered)."""
    seen: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            frame = client.recv_frame(max(0.01, deadline - time.monotonic()))
        except Exception:
            break
        seen.append((frame.opcode, frame.payload))
    return seen


# ---- frames (SPEC 8.3, RFC 6455 §5.4, §5.5.1) ------------------------------------------------------


@pytest.mark.parametrize(
    "frames",
    [
        [(OP_TEXT, b"", False), (OP_TEXT, b"injected", True), (OP_CONT, b"stray", True)],
        [(OP_TEXT, b"", False), (OP_BINARY, b"bin", True)],
        [(OP_BINARY, b"", False), (OP_TEXT, b"injected", True)],
        [(OP_TEXT, b"", False), (OP_CONT, b"", False), (OP_TEXT, b"injected", True)],
    ],
    ids=["text-after-empty", "binary-after-empty", "text-after-empty-binary", "text-after-empty-cont"],
)
def test_empty_first_fragment_is_a_message_in_progress(
    room: Room, server: LoggedServer, frames: list[tuple[int, bytes, bool]]
) -> None:
    watcher = room.join("w")
    client = room.join("frag")
    assert watcher.recv_text() == join_line(room.name("frag"))
    client.send_raw(b"".join(build_frame(op, payload, fin=fin) for op, payload, fin in frames))
    result = client.expect_close(3)
    assert result.code == 1002 or result.dropped, result
    assert watcher.recv_text() == leave_line(room.name("frag"))  # nothing relayed before it
    assert_no_traceback(server)


def test_valid_fragmented_message_after_empty_first_fragment(room: Room) -> None:
    watcher = room.join("w")
    client = room.join("ok")
    assert watcher.recv_text() == join_line(room.name("ok"))
    client.send_raw(build_frame(OP_TEXT, b"", fin=False) + build_frame(OP_CONT, b"whole", fin=True))
    assert watcher.recv_text() == f"{room.name('ok')}说：whole"


def test_one_close_frame_only(room: Room, server: LoggedServer) -> None:  # RFC 6455 §5.5.1
    client = room.join("twice")
    client.send_frame(OP_BINARY, b"bin")  # the server closes with 1003 (SPEC 8.1)
    client.send_frame(OP_TEXT, b"x", rsv=4)  # then a protocol violation before we answer
    seen = frames_on_the_wire(client)
    closes = [payload for opcode, payload in seen if opcode == OP_CLOSE]
    assert len(closes) == 1, seen
    assert closes[0][:2] == (1003).to_bytes(2, "big")
    assert not [op for op, _ in seen if op not in (OP_CLOSE, OP_PING)], seen
    assert_no_traceback(server)


def test_every_ping_is_answered(room: Room, server: LoggedServer) -> None:  # SPEC 8.6
    client = room.join("pinger")
    payloads = [f"p{i}".encode() for i in range(50)]
    client.send_raw(b"".join(build_frame(OP_PING, p) for p in payloads))
    got = []
    deadline = time.monotonic() + 5
    while len(got) < len(payloads) and time.monotonic() < deadline:
        frame = client.recv_frame(5)
        if frame.opcode == OP_PONG:
            got.append(frame.payload)
    assert got == payloads
    assert_no_traceback(server)


# ---- HTTP: no 500 for what a client controls (SPEC 4.1, 6.1, 6.2, 16.2) ----------------------------

BAD_COOKIES = ["nickname=é.é", "nickname=Ym9i.é", "nickname=.", 'nickname="a.b"']


@pytest.mark.parametrize("cookie", BAD_COOKIES)
def test_client_cookies_never_500(server: LoggedServer, cookie: str) -> None:
    page = raw_exchange(server.url, request_bytes("GET", "/", {"Cookie": cookie}))
    assert status_of(page) == 303, page[:200]
    upgrade = {
        "Cookie": cookie,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }
    chat = raw_exchange(server.url, request_bytes("GET", "/chat", upgrade))
    assert status_of(chat) == 401, chat[:200]
    assert_no_traceback(server)


BAD_KEYS = {
    "non-ascii": "ÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿ==",
    "not-base64": "!!!!",
    "6-KB": "A" * 6000,
    "15-bytes": base64.b64encode(b"x" * 15).decode(),
    "17-bytes": base64.b64encode(b"x" * 17).decode(),
    "bad-padding": base64.b64encode(b"x" * 16).decode().rstrip("="),
    "empty": "",
}


@pytest.mark.parametrize("key", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
def test_bad_websocket_key_is_400(server: LoggedServer, key: str) -> None:  # SPEC 6.1 e, RFC 6455 §4.2.1
    cookie = login_cookie(server.url, unique("key"))
    headers = {"Cookie": cookie, "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
    headers["Sec-WebSocket-Key"] = key
    response = raw_exchange(server.url, request_bytes("GET", "/chat", headers))
    assert status_of(response) == 400, response[:200]
    del headers["Sec-WebSocket-Key"]
    assert status_of(raw_exchange(server.url, request_bytes("GET", "/chat", headers))) == 400
    assert_no_traceback(server)


@pytest.mark.parametrize(
    "path", ["/static/" + "a" * 5000, "/static/chat.css%00.js", "/static/%00", "/static/..%2f..%2fetc%2fpasswd"]
)
def test_static_paths_that_name_no_file_are_404(server: LoggedServer, path: str) -> None:  # SPEC 16.2
    response = raw_exchange(server.url, request_bytes("GET", path))
    assert status_of(response) in (400, 403, 404), response[:200]
    assert_no_traceback(server)


# ---- login (SPEC 3.2, 3.9) -------------------------------------------------------------------------


def post_login(url: str, body: bytes, content_type: str = "application/x-www-form-urlencoded") -> int | None:
    return status_of(raw_exchange(url, request_bytes("POST", "/login", {"Content-Type": content_type}, body)))


def test_first_nickname_field_counts(server: LoggedServer) -> None:  # SPEC 3.2
    nick = unique("first")
    assert post_login(server.url, f"nickname={nick}&nickname=%ff".encode()) == 303
    assert post_login(server.url, f"other=%ff&nickname={nick}x".encode()) == 303
    assert post_login(server.url, b"nickname=%ff&nickname=ok") == 400


def test_multipart_value_that_is_not_utf8_is_400(server: LoggedServer) -> None:  # SPEC 3.2
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="nickname"\r\n'
            "Content-Type: text/plain; charset=latin-1\r\n\r\n"
        ).encode()
        + b"caf\xe9"
        + f"\r\n--{boundary}--\r\n".encode()
    )
    assert post_login(server.url, body, f"multipart/form-data; boundary={boundary}") == 400
    good = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="nickname"\r\n\r\n{unique("mp")}\r\n--{boundary}--\r\n'
    ).encode()
    assert post_login(server.url, good, f"multipart/form-data; boundary={boundary}") == 303
    assert_no_traceback(server)


def test_login_body_is_bounded(server: LoggedServer) -> None:  # SPEC 3.9
    host, port = host_port(server.url)
    before, _ = stats(server.url)
    with socket.create_connection((host, port), timeout=5) as sock:  # declared too large: refused at once
        sock.sendall(request_bytes("POST", "/login", {"Content-Length": str(40 * 2**20)}))
        assert status_of(sock.recv(65536)) == 413
    chunk = b"nickname=" + b"a" * LOGIN_BODY_LIMIT
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk)
    response = raw_exchange(
        server.url, request_bytes("POST", "/login", {"Transfer-Encoding": "chunked"}) + chunked, timeout=5
    )
    assert status_of(response) == 413, response[:200]
    exact = b"nickname=" + b"a" * (LOGIN_BODY_LIMIT - 9)
    assert post_login(server.url, exact) == 400  # within the bound: an ordinary too-long nickname
    after, _ = stats(server.url)
    assert int(after["rss_bytes"]) - int(before["rss_bytes"]) < 16 * 2**20  # type: ignore[call-overload]
    assert_no_traceback(server)


def test_cut_login_body_and_garbage_requests_log_no_traceback(server: LoggedServer) -> None:  # SPEC 16.4
    host, port = host_port(server.url)
    for _ in range(5):
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(request_bytes("POST", "/login", {"Content-Length": "100"}, b"nickname=ab"))
            sock.shutdown(socket.SHUT_WR)
    garbage = [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01"]
    for data in garbage * 2:
        response = raw_exchange(server.url, data, timeout=1)
        assert status_of(response) in (None, 400), response[:200]
    for _ in range(10):  # Tornado logs a warning per HTTPError (403 here) unless rate-limited
        raw_exchange(server.url, request_bytes("GET", "/static/%2e%2e/%2e%2e/etc/passwd"), timeout=1)
        raw_exchange(server.url, request_bytes("PUT", "/"), timeout=1)
    time.sleep(0.3)
    assert_no_traceback(server)
    lines = server.log_lines()
    assert len(lines) <= 12, lines  # rate-limited: one line per kind, not one per request
    assert all("\n" not in line for line in lines)


# ---- compression offers (SPEC 16.5, RFC 7692 §7) ---------------------------------------------------

# offer -> what the response must hold (RFC 7692 §7.1.1.1: server_no_context_takeover is echoed;
# §7.1.2.1: server_max_window_bits at most the offered value); client_* hints may be left out.
ACCEPTED = {
    "permessage-deflate": [],
    "permessage-deflate; client_max_window_bits": [],
    "permessage-deflate; server_no_context_takeover": ["server_no_context_takeover"],
    "permessage-deflate; client_no_context_takeover": [],
    "permessage-deflate; server_max_window_bits=10": ["server_max_window_bits=10"],
    "permessage-deflate; client_max_window_bits=12": [],
    "permessage-deflate; server_max_window_bits=7, permessage-deflate": [],
    "permessage-deflate; foo=bar, permessage-deflate; server_no_context_takeover": ["server_no_context_takeover"],
}
DECLINED = [
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=abc",
    "permessage-deflate; server_max_window_bits=",
    "permessage-deflate; server_max_window_bits",
    "permessage-deflate; client_max_window_bits=7",
    "permessage-deflate; foo=bar",
    "permessage-deflate; server_no_context_takeover=1",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "x-webkit-deflate-frame",
    ";;;,,,",
]


def offer(server: LoggedServer, extensions: str) -> dict[str, str]:
    cookie = login_cookie(server.url, unique("z"))
    try:
        client = WsClient.connect(server.url, cookie, extra_headers={"Sec-WebSocket-Extensions": extensions})
    except HandshakeRefused as refused:
        raise AssertionError(f"{extensions!r}: HTTP {refused.status}") from None
    client.abort()
    return client.headers


def normalized(header: str) -> str:
    return "; ".join(part.strip() for part in header.split(";"))


@pytest.mark.parametrize("extensions", list(ACCEPTED))
def test_valid_deflate_offers_are_accepted(deflate_server: LoggedServer, extensions: str) -> None:
    headers = offer(deflate_server, extensions)
    name, *params = normalized(headers.get("sec-websocket-extensions", "")).split("; ")
    assert name == "permessage-deflate", headers
    for required in ACCEPTED[extensions]:
        assert required in params, params
    offered = {p.split("=")[0] for o in extensions.split(",") for p in normalized(o).split("; ")[1:]}
    for param in params:
        key, _, value = param.partition("=")
        assert key in offered, f"{param} was not offered"
        assert not (key.endswith("takeover") and value), param
    assert_no_traceback(deflate_server)


@pytest.mark.parametrize("extensions", DECLINED)
def test_invalid_deflate_offers_are_declined(deflate_server: LoggedServer, extensions: str) -> None:
    headers = offer(deflate_server, extensions)
    assert "sec-websocket-extensions" not in headers, headers
    assert_no_traceback(deflate_server)


def test_server_max_window_bits_8_never_500(deflate_server: LoggedServer) -> None:
    headers = offer(deflate_server, "permessage-deflate; server_max_window_bits=8")
    answer = headers.get("sec-websocket-extensions")
    assert answer is None or "server_max_window_bits=8" in normalized(answer)
    assert_no_traceback(deflate_server)


# ---- resources (SPEC 16.1, 16.3) -------------------------------------------------------------------


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_refuses_to_start_when_the_fd_limit_cannot_fit_max_connections(kind: str) -> None:  # SPEC 16.3
    argv = reference_server_argv(kind, ["--max-connections", "1000"])
    proc = subprocess.run(
        ["sh", "-c", 'ulimit -n 200 && exec "$@"', "sh", *argv], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "open files" in proc.stderr and TRACEBACK not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_out_of_descriptors_backs_off_and_stats_answers(kind: str) -> None:  # SPEC 16.3
    limit = 10 + FD_RESERVE + 16
    with logged_server(kind, nofile=limit, max_connections=10) as server:
        host, port = host_port(server.url)
        idle = []
        for _ in range(limit + 40):  # more than the process can hold: accept runs out of descriptors
            with_sock = socket.socket()
            with_sock.setblocking(False)
            with_sock.connect_ex((host, port))
            idle.append(with_sock)
        time.sleep(1.5)
        started = time.monotonic()
        answered = None
        while time.monotonic() - started < 3.0:
            try:
                stats(server.url, timeout=1.0)
                answered = time.monotonic() - started
                break
            except (AssertionError, OSError):
                continue
        assert answered is not None, "no /stats answer within 3 s while out of descriptors"
        for sock in idle:
            sock.close()
        assert two_clients_talk(server.url)
        lines = server.log_lines()
        assert TRACEBACK not in server.log_text()
        assert 1 <= len(lines) <= 5, lines  # said once per interval, not once per attempt
        assert "out of file descriptors" in lines[0]
