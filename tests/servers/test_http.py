"""SPEC 2-5: login, the chat page, /stats, static files."""

from __future__ import annotations

import html
import json
import re
import urllib.parse

import pytest

from tests.servers.wsclient import HandshakeRefused, WsClient, chat_client, http_request, login, login_cookie, unique
from wsbench.target import ServerProcess

IN_USE_HINT = "昵称已被使用，请更换昵称"


def get(server: ServerProcess, path: str, cookie: str | None = None) -> tuple[int, dict[str, str], str]:
    status, headers, body = http_request(server.url, "GET", path, headers={"Cookie": cookie} if cookie else {})
    return status, {k.lower(): v for k, v in headers.items()}, body.decode("utf-8", "replace")


def assert_login_form(body: str) -> None:
    assert re.search(r'<form[^>]*method="post"[^>]*action="/login"', body), body
    assert re.search(r'<input[^>]*name="nickname"', body), body


def test_login_page_is_a_form(shared_server: ServerProcess) -> None:  # SPEC 3.1
    status, headers, body = get(shared_server, "/login")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert_login_form(body)


def test_login_sets_signed_httponly_lax_cookie_and_redirects(shared_server: ServerProcess) -> None:  # SPEC 3.4
    nickname = unique("alice")
    result = login(shared_server.url, f"  {nickname}\t")
    assert result.status == 303
    assert result.headers["Location"] == "/"
    assert result.set_cookie is not None
    attributes = [part.strip().lower() for part in result.set_cookie.split(";")]
    assert attributes[0].startswith("nickname=")
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    # Signed: the value is not the bare nickname.
    assert attributes[0] != f"nickname={nickname}"
    # Stripped: the chat page greets the stripped nickname.
    status, _, body = get(shared_server, "/", result.cookie)
    assert status == 200
    assert f">{nickname}<" in body


@pytest.mark.parametrize(
    "nickname",
    ["x", "a" * 32, "你" * 32, "😀" * 32, "a b", "<b>&amp;</b>"],
    ids=["one", "32-ascii", "32-cjk", "32-emoji", "inner-space", "markup"],
)
def test_valid_nicknames(shared_server: ServerProcess, nickname: str) -> None:  # SPEC 3.2
    assert login(shared_server.url, nickname).status == 303


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"nickname=",
        b"nickname=+++%09",
        b"nickname=" + b"a" * 33,
        urllib.parse.urlencode({"nickname": "你" * 33}).encode(),
        b"nickname=a%01b",
        b"nickname=a%7Fb",
        b"nickname=a%C2%85b",
        b"nickname=%FF%FE",
        b"other=bob",
    ],
    ids=[
        *("no-field", "empty", "blank", "33-ascii", "33-cjk"),
        *("control-01", "control-7f", "control-c1", "not-utf8", "other"),
    ],
)
def test_invalid_nickname_is_400_with_form_and_hint(shared_server: ServerProcess, body: bytes) -> None:  # SPEC 3.2
    result = login(shared_server.url, None, body=body)
    assert result.status == 400
    assert result.cookie is None
    assert_login_form(result.body)
    hint = re.search(r'<p class="hint"[^>]*>([^<]*)</p>', result.body)
    assert hint and hint.group(1).strip(), "the 400 page says what is wrong"


def test_nickname_online_is_409_and_login_does_not_reserve(shared_server: ServerProcess) -> None:  # SPEC 3.3, 3.4
    nickname = unique("bob")
    # Logging in twice without connecting: the nickname is not online yet.
    login_cookie(shared_server.url, nickname)
    with chat_client(shared_server.url, nickname):
        result = login(shared_server.url, nickname)
        assert result.status == 409
        assert result.cookie is None
        assert IN_USE_HINT in result.body
        assert_login_form(result.body)
        assert login(shared_server.url, f" {nickname} ").status == 409  # compared after stripping


def test_nickname_is_free_again_after_leaving(shared_server: ServerProcess) -> None:  # SPEC 1.3, 7.5
    nickname = unique("carol")
    client = chat_client(shared_server.url, nickname)
    assert login(shared_server.url, nickname).status == 409
    client.close()
    for _ in range(50):
        status = login(shared_server.url, nickname).status
        if status == 303:
            break
    assert status == 303


def test_hint_and_nickname_are_text_not_html(shared_server: ServerProcess) -> None:  # SPEC 3.6
    nickname = f"<img src=x onerror=f()>{unique('')}"
    cookie = login_cookie(shared_server.url, nickname)
    status, _, body = get(shared_server, "/", cookie)
    assert status == 200
    assert "<img src=x" not in body
    assert html.escape(nickname) in body
    with chat_client(shared_server.url, nickname):
        result = login(shared_server.url, nickname)
        assert result.status == 409
        assert "<img src=x" not in result.body


def test_chat_page_requires_valid_cookie(shared_server: ServerProcess) -> None:  # SPEC 4.1
    status, headers, _ = get(shared_server, "/")
    assert (status, headers.get("location")) == (303, "/login")
    cookie = login_cookie(shared_server.url, unique("dave"))
    status, _, body = get(shared_server, "/", cookie)
    assert status == 200
    assert 'src="/static/chat.js"' in body
    for bad in (tamper(cookie), "nickname=dave", "nickname="):
        status, headers, _ = get(shared_server, "/", bad)
        assert (status, headers.get("location")) == (303, "/login"), bad


def tamper(cookie: str) -> str:
    """Flip one character of the signed value."""
    name, _, value = cookie.partition("=")
    i = len(value) // 2
    flipped = "A" if value[i] != "A" else "B"
    return f"{name}={value[:i]}{flipped}{value[i + 1 :]}"


def test_pages_load_nothing_from_other_origins(shared_server: ServerProcess) -> None:  # SPEC 4.2
    cookie = login_cookie(shared_server.url, unique("erin"))
    for path in ("/login", "/"):
        _, _, body = get(shared_server, path, cookie)
        refs = re.findall(r'(?:src|href)="([^"]*)"', body)
        assert refs, body
        assert all(ref.startswith("/") and not ref.startswith("//") for ref in refs), refs
    for path in ("/static/chat.js", "/static/chat.css"):
        status, _, body = get(shared_server, path)
        assert status == 200
        assert "http://" not in body and "https://" not in body and "//cdn" not in body
    _, _, script = get(shared_server, "/static/chat.js")
    assert "location.host" in script and '"/chat"' in script
    assert "innerHTML" not in script  # lines are rendered with textContent (SPEC 4.3)


def test_unknown_paths_are_404(shared_server: ServerProcess) -> None:  # SPEC 2.1
    for path in ("/nope", "/chat/x", "/static/missing.js"):
        assert get(shared_server, path)[0] == 404, path


def test_stats_fields(shared_server: ServerProcess) -> None:  # SPEC 5.1
    nickname = unique("frank")
    status, headers, body = get(shared_server, "/stats")
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    before = json.loads(body)
    assert before["server"] == shared_server.label
    for key in ("connections", "messages_in", "deliveries_out", "slow_consumer_closes", "rss_bytes"):
        assert isinstance(before[key], int) and before[key] >= 0, key
    assert isinstance(before["uptime_s"], int | float) and before["uptime_s"] >= 0
    assert before["rss_bytes"] > 1_000_000
    with chat_client(shared_server.url, nickname + "a") as a, chat_client(shared_server.url, nickname + "b") as b:
        assert a.recv_text() == f"~~~{nickname}b进入了聊天室~~~"
        b.send_text("hi")
        assert a.recv_text() == f"{nickname}b说：hi"
        during = json.loads(get(shared_server, "/stats")[2])
        assert during["connections"] == before["connections"] + 2
        assert during["messages_in"] == before["messages_in"] + 1
        assert during["deliveries_out"] >= before["deliveries_out"] + 2  # the join line and the message
        assert during["uptime_s"] >= before["uptime_s"]
        # cumulative CPU seconds (SPEC 5.1, optional; the reference servers report it): it never goes down
        assert isinstance(before["cpu_s"], float) and 0 < before["cpu_s"] <= during["cpu_s"]


def test_cookie_secret_is_random_per_start_unless_given(server_kind: str, start_reference_server) -> None:  # 15.3
    one = start_reference_server(server_kind)
    two = start_reference_server(server_kind)
    cookie = login_cookie(one.url, "gina")
    assert get(two, "/", cookie)[0] == 303  # a random secret per start
    with pytest.raises(HandshakeRefused) as refused:
        WsClient.connect(two.url, cookie)
    assert refused.value.status == 401
    three = start_reference_server(server_kind, cookie_secret="s3cret-for-tests")
    four = start_reference_server(server_kind, cookie_secret="s3cret-for-tests")
    assert get(four, "/", login_cookie(three.url, "gina"))[0] == 200
