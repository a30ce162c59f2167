"""Pure helpers of the checks."""

from __future__ import annotations

import pytest

from wsbench.conform.checks import cookie_attributes, tamper
from wsbench.conform.ws_checks import sized_text


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 1024, 65536, 65537])
@pytest.mark.parametrize("multibyte", [False, True])
def test_sized_text_has_exactly_that_many_utf8_bytes(size: int, multibyte: bool) -> None:
    text = sized_text(size, multibyte)
    assert len(text.encode("utf-8")) == size
    if multibyte and size >= 6:
        assert len(text) < size  # fewer code points than bytes: a character-counting server is caught


def test_tamper_changes_the_signature_only() -> None:
    cookie = 'nickname="2|1:0|10:1700000000|8:nickname|8:Ym9i|abc123ef"'
    changed = tamper(cookie)
    assert changed != cookie and changed.startswith("nickname=") and changed.endswith('"')
    assert len(changed) == len(cookie)
    assert tamper("nickname=Ym9i.QUFB") == "nickname=Ym9i.QUFA"


def test_cookie_attributes() -> None:
    attrs = cookie_attributes("nickname=x; HttpOnly; Path=/; SameSite=Lax; expires=Thu")
    assert attrs == {"httponly": "", "path": "/", "samesite": "Lax", "expires": "Thu"}
