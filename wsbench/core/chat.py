"""The chat room's lines (SPEC 7) and wsbench's nickname scheme: one grammar for every driver and conform.

* a join line ``~~~{nickname}进入了聊天室~~~`` (SPEC 7.1), a leave line ``~~~{nickname}离开了聊天室~~~``
  (SPEC 7.5) and a message ``{nickname}说：{text}`` (SPEC 7.2);
* a load run's clients are named ``{prefix}{tag}-{client id}``: ``prefix`` from the scenario
  (``connect.nickname_prefix``), ``tag`` random per run, so that two runs against one server never
  collide (SPEC 6.6), and the id recoverable from a join line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

JOIN_SUFFIX = "进入了聊天室~~~"
LEAVE_SUFFIX = "离开了聊天室~~~"
SAID = "说："
_MARK = "~~~"


def join_line(nick: str) -> str:
    return f"{_MARK}{nick}{JOIN_SUFFIX}"


def leave_line(nick: str) -> str:
    return f"{_MARK}{nick}{LEAVE_SUFFIX}"


def message_line(nick: str, text: str) -> str:
    return f"{nick}{SAID}{text}"


@dataclass(frozen=True)
class ChatLine:
    kind: Literal["join", "leave", "message", "other"]
    nick: str
    text: str = ""


def parse_line(line: str) -> ChatLine:
    """Which of the SPEC 7 lines this is, and about whom."""
    if line.startswith(_MARK) and line.endswith(JOIN_SUFFIX) and len(line) > 3 + len(JOIN_SUFFIX):
        return ChatLine("join", line[3 : -len(JOIN_SUFFIX)])
    if line.startswith(_MARK) and line.endswith(LEAVE_SUFFIX) and len(line) > 3 + len(LEAVE_SUFFIX):
        return ChatLine("leave", line[3 : -len(LEAVE_SUFFIX)])
    nick, sep, text = line.partition(SAID)
    if sep:
        return ChatLine("message", nick, text)
    return ChatLine("other", "", line)


@dataclass(frozen=True)
class Nicknames:
    """The nicknames of one run: ``{prefix}{tag}-{client}``."""

    prefix: str
    tag: str
    clients: int | None = None  # ids at or above this are not ours (None: any id)

    def of(self, client: int) -> str:
        return f"{self.prefix}{self.tag}-{client}"

    def client_of(self, nickname: str) -> int | None:
        """The client id of one of this run's nicknames (``None`` for anyone else's)."""
        head = f"{self.prefix}{self.tag}-"
        if not nickname.startswith(head):
            return None
        tail = nickname[len(head) :]
        if not tail.isdigit():
            return None
        client = int(tail)
        return client if self.clients is None or client < self.clients else None
