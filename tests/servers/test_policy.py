"""The policy both reference servers share (servers/policy.py), and the cookie lifetime (SPEC 3.4)."""

from __future__ import annotations

import time
import unicodedata

import pytest
from wsbench_servers import aiohttp_server
from wsbench_servers.options import Options
from wsbench_servers.policy import (
    COOKIE_MAX_AGE_DAYS,
    VALID_CLOSE_CODES,
    WHITE_SPACE,
    canonical_origin,
    has_token,
    origin_allowed,
    parse_origin,
    serialized_origin,
    strip_nickname,
    valid_websocket_key,
)

ALLOWED = ("https://chat.example:443",)


def test_white_space_is_the_unicode_property_exactly() -> None:
    # Unicode's PropList White_Space: 25 code points; Python's isspace adds U+001C-U+001F, JS trim U+FEFF
    assert len(WHITE_SPACE) == 25
    assert {ch for ch in map(chr, range(0x3001)) if ch.isspace()} - WHITE_SPACE == set(map(chr, range(0x1C, 0x20)))
    assert all(unicodedata.category(ch) in ("Cc", "Zs", "Zl", "Zp") for ch in WHITE_SPACE)
    assert strip_nickname("\u3000\u00a0bob\u0085\t") == "bob"
    assert strip_nickname("\x1cbob") == "\x1cbob"
    assert strip_nickname("\ufeffbob\u200b") == "\ufeffbob\u200b"


@pytest.mark.parametrize(
    ("origins", "host", "ok"),
    [
        ([], "h:8888", True),
        (["http://h:8888"], "h:8888", True),
        (["HTTP://H:8888/"], "h:8888", True),
        (["https://h"], "h", True),  # TLS proxy: the scheme is not compared for the own host
        (["http://h:80"], "h", True),
        (["https://h:443"], "h", True),
        (["https://h"], "h:80", False),
        (["http://h:443"], "h", False),
        (["http://h:8889"], "h:8888", False),
        (["http://[::1]:8888"], "[::1]:8888", True),
        (["http://h:8888/chat"], "h:8888", False),
        (["http://u@h:8888"], "h:8888", False),
        (["http://h:8888 http://h:8888"], "h:8888", False),
        (["http://h:8888", "http://h:8888"], "h:8888", False),
        ([""], "h:8888", False),
        (["null"], "h:8888", False),
        (["ws://h:8888"], "h:8888", False),
        (["https://chat.example"], "h:8888", True),
        (["https://chat.example:443/"], "h:8888", True),
        (["http://chat.example"], "h:8888", False),
        (["https://chat.example:8443"], "h:8888", False),
    ],
)
def test_origin_rules(origins: list[str], host: str, ok: bool) -> None:  # SPEC 6.3
    assert origin_allowed(origins, host, ALLOWED) is ok


def test_origin_parsing_edges() -> None:
    assert parse_origin("https://h:65536") is None
    assert parse_origin("https://h:") is None
    assert parse_origin("https://[::1") is None
    assert parse_origin("https://h?x") is None
    assert parse_origin("https://h#x") is None
    assert parse_origin("https://h:8080") == ("https", "h", 8080)


def test_serialized_origin_leaves_a_default_port_out() -> None:  # RFC 6454 §6.2, as a browser sends it
    for text, sent in (("HTTPS://H:443/", "https://h"), ("http://h:80", "http://h"), ("http://h:443", "http://h:443"),
                       ("https://[::1]:8443", "https://[::1]:8443")):  # fmt: skip
        origin = parse_origin(text)
        assert origin is not None and serialized_origin(origin) == sent
        assert parse_origin(sent) is not None and origin_allowed([sent], "other:1", (canonical_origin(origin),))


def test_connection_token_key_and_close_codes() -> None:
    assert has_token("keep-alive, Upgrade", "upgrade") and not has_token("keep-alive", "upgrade")
    assert not has_token(None, "upgrade")
    assert valid_websocket_key(["dGhlIHNhbXBsZSBub25jZQ=="])
    assert not valid_websocket_key(["dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ=="])
    assert not valid_websocket_key(["!!!!"]) and not valid_websocket_key([]) and not valid_websocket_key(["A" * 24])
    assert {1012, 1013, 1014} <= VALID_CLOSE_CODES and not {1004, 1005, 1006, 1015, 2999, 5000} & VALID_CLOSE_CODES


def test_aiohttp_cookie_lives_31_days() -> None:  # SPEC 3.4 (Tornado: get_signed_cookie(max_age_days=31))
    server = aiohttp_server.ChatServer(Options(cookie_secret="s"))
    now = time.time()
    issued = int(now) - COOKIE_MAX_AGE_DAYS * 86400
    assert server.cookie_nickname(server.sign_nickname("名字", issued + 60), now) == "名字"
    assert server.cookie_nickname(server.sign_nickname("名字", issued - 60), now) is None
    value = server.sign_nickname("bob", int(now))
    payload, stamp, mac = value.split(".")
    assert server.cookie_nickname(f"{payload}.{int(stamp) + 1}.{mac}", now) is None  # the time is signed
    assert server.cookie_nickname("é.é", now) is None and server.cookie_nickname("", now) is None
    other = aiohttp_server.ChatServer(Options(cookie_secret="t"))
    assert other.cookie_nickname(value, now) is None
