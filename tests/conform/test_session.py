"""Chat-line parsing and nicknames used by concurrent cases."""

from __future__ import annotations

import unicodedata

from wsbench.conform.session import ChatLine, join_line, leave_line, message_line, parse_line, unique_nick


def test_parse_the_three_spec_lines() -> None:
    assert parse_line(join_line("bob")) == ChatLine("join", "bob")
    assert parse_line(leave_line("名字")) == ChatLine("leave", "名字")
    assert parse_line(message_line("bob", "hi 说：there")) == ChatLine("message", "bob", "hi 说：there")
    assert parse_line(message_line("bob", "~~~x进入了聊天室~~~")) == ChatLine("message", "bob", "~~~x进入了聊天室~~~")
    assert parse_line("something else").kind == "other"
    assert parse_line(message_line("bob", "")) == ChatLine("message", "bob", "")


def test_unique_nicknames_are_valid_and_distinct() -> None:
    names = {unique_nick("fill") for _ in range(500)}
    assert len(names) == 500
    for name in names:
        assert 1 <= len(name) <= 32 and name == name.strip()
        assert not any(unicodedata.category(ch) == "Cc" for ch in name)
        assert "说：" not in name
