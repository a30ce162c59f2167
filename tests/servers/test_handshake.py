"""SPEC 6: the /chat handshake checks (401, 403, 426, 503, their order) and 4409."""

from __future__ import annotations

import pytest

from tests.servers.test_http import tamper
from tests.servers.wsclient import (
    HandshakeRefused,
    WsClient,
    chat_client,
    http_request,
    join_line,
    login_cookie,
    said_line,
    unique,
)
from wsbench.target import ServerProcess


def refused_status(server: ServerProcess, cookie: str | None, **kwargs: object) -> int:
    with pytest.raises(HandshakeRefused) as refused:
        WsClient.connect(server.url, cookie, **kwargs)  # type: ignore[arg-type]
    return refused.value.status


def test_missing_forged_or_tampered_cookie_is_401(shared_server: ServerProcess) -> None:  # SPEC 6.2
    cookie = login_cookie(shared_server.url, unique("h"))
    assert refused_status(shared_server, None) == 401
    assert refused_status(shared_server, "nickname=mallory") == 401
    assert refused_status(shared_server, tamper(cookie)) == 401
    assert refused_status(shared_server, "other=" + cookie.partition("=")[2]) == 401
    WsClient.connect(shared_server.url, cookie).close()


def test_version_other_than_13_is_426(shared_server: ServerProcess) -> None:  # SPEC 6.1
    cookie = login_cookie(shared_server.url, unique("v"))
    for version in ("8", "7", "14", None):
        with pytest.raises(HandshakeRefused) as refused:
            WsClient.connect(shared_server.url, cookie, version=version)
        assert refused.value.status == 426, version
        assert refused.value.headers.get("sec-websocket-version") == "13"


def test_origin_check(shared_server: ServerProcess) -> None:  # SPEC 6.3
    cookie = login_cookie(shared_server.url, unique("o"))
    own = shared_server.url
    host, port = own.split("//")[1].split(":")
    for origin in ("https://evil.example", f"http://{host}:{int(port) + 1}", f"http://{host}", "null"):
        assert refused_status(shared_server, cookie, origin=origin) == 403, origin
    for origin in (own, own.upper().replace("HTTP://", "http://"), own.replace("http://", "https://"), None):
        WsClient.connect(shared_server.url, cookie, origin=origin).close()


def test_allowed_origin_option(server_kind: str, start_reference_server) -> None:  # SPEC 6.3, 15.1
    server = start_reference_server(server_kind, allowed_origin=["https://chat.example", "http://other.test:8080"])
    cookie = login_cookie(server.url, "ann")
    for origin in ("https://chat.example", "https://CHAT.example/", "http://other.test:8080", server.url):
        WsClient.connect(server.url, cookie, origin=origin).close()
    for origin in ("http://chat.example", "https://chat.example:8443", "http://other.test", "https://x.chat.example"):
        assert refused_status(server, cookie, origin=origin) == 403, origin


def test_max_connections_is_503(server_kind: str, start_reference_server) -> None:  # SPEC 6.4
    server = start_reference_server(server_kind, max_connections=2)
    a = chat_client(server.url, "a")
    b = chat_client(server.url, "b")
    cookie = login_cookie(server.url, "c")
    assert refused_status(server, cookie) == 503
    a.close()
    for _ in range(100):  # the server handles the close right after answering it
        try:
            WsClient.connect(server.url, cookie).close()
            break
        except HandshakeRefused as refused:
            assert refused.status == 503
    else:
        pytest.fail("a slot did not free up after a close")
    b.close()


def test_check_order(server_kind: str, start_reference_server) -> None:  # SPEC 6.5: 6.1, 6.2, 6.3, 6.4
    server = start_reference_server(server_kind, max_connections=1)
    cookie = login_cookie(server.url, "first")
    held = WsClient.connect(server.url, cookie)
    other = login_cookie(server.url, "second")
    evil = "https://evil.example"
    assert refused_status(server, None, version="8", origin=evil) == 426
    assert refused_status(server, None, origin=evil) == 401
    assert refused_status(server, other, origin=evil) == 403
    assert refused_status(server, other) == 503
    held.close()


def test_not_an_upgrade_is_400(shared_server: ServerProcess) -> None:
    cookie = login_cookie(shared_server.url, unique("p"))
    status, _, _ = http_request(shared_server.url, "GET", "/chat", headers={"Cookie": cookie})
    assert status == 400


def test_nickname_already_online_gets_4409(shared_server: ServerProcess) -> None:  # SPEC 6.6
    nickname, watcher_name = unique("dup"), unique("watch")
    cookie = login_cookie(shared_server.url, nickname)  # login does not reserve: one cookie, two tabs
    first = WsClient.connect(shared_server.url, cookie)
    watcher = chat_client(shared_server.url, watcher_name)
    assert first.recv_text() == join_line(watcher_name)
    second = WsClient.connect(shared_server.url, cookie)  # accepted (101), then closed
    result = second.expect_close(3)
    assert (result.code, result.reason) == (4409, "nickname in use")
    assert result.messages == []
    assert result.tcp_end in ("eof", "reset")
    # The first connection is unaffected; nobody saw a join or leave line for the refused one.
    first.send_text("still here")
    assert watcher.recv_text() == said_line(nickname, "still here")
    assert first.messages_within(0.3) == []
    first.close()
    watcher.close()
