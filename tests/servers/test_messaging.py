"""SPEC 7: join, message, order and completeness, leave exactly once."""

from __future__ import annotations

import threading

import pytest

from tests.servers.wsclient import (
    Room,
    WsClient,
    join_line,
    leave_line,
    login,
    login_cookie,
    said_line,
)


def test_join_goes_to_others_only(room: Room) -> None:  # SPEC 7.1
    a = room.join("alice")
    b = room.join("bob")
    assert a.recv_text() == join_line(room.name("bob"))
    c = room.join("carol")
    assert a.recv_text() == join_line(room.name("carol"))
    assert b.recv_text() == join_line(room.name("carol"))
    assert c.messages_within(0.3) == []  # nothing for its own join
    assert b.messages_within(0.01) == []


@pytest.mark.parametrize(
    "message",
    [
        *("hello", "你好，世界", "emoji 😀👍🏽 and \u200d joiners", ""),
        *("  spaces kept  ", '<b>markup</b> & "quotes"', "a\nb\tc"),
    ],
    ids=["ascii", "cjk", "emoji", "empty", "spaces", "markup", "controls"],
)
def test_message_relayed_byte_for_byte_to_others_only(room: Room, message: str) -> None:  # SPEC 7.2
    a = room.join("alice")
    b = room.join("bob")
    c = room.join("车")
    a.recv_until(lambda m: m == join_line(room.name("车")))
    b.recv_text()
    c.send_text(message)
    expected = said_line(room.name("车"), message)
    for receiver in (a, b):
        got = receiver.recv_text()
        assert got == expected and got.encode("utf-8") == expected.encode("utf-8")
    assert c.messages_within(0.2) == []  # the sender receives nothing


def test_order_and_completeness(room: Room) -> None:  # SPEC 7.3
    senders = [room.join(f"s{i}") for i in range(3)]
    receivers = [room.join(f"r{i}") for i in range(2)]
    for client in senders + receivers:
        client.messages_within(0.1)
    count = 300
    names = [room.name(f"s{i}") for i in range(3)]

    def send(client: WsClient) -> None:
        for n in range(count):
            client.send_text(f"#{n}")

    threads = [threading.Thread(target=send, args=(s,)) for s in senders]
    for t in threads:
        t.start()
    for receiver in [*receivers, *senders]:
        expected_total = count * 3 if receiver in receivers else count * 2
        got = [receiver.recv_text(10) for _ in range(expected_total)]
        for name in names:
            mine = [m for m in got if m.startswith(f"{name}说：")]
            if receiver in senders and name == names[senders.index(receiver)]:
                assert mine == []  # never its own
            else:
                assert mine == [said_line(name, f"#{n}") for n in range(count)], name
    for t in threads:
        t.join()


def count_lines(client: WsClient, line: str, seconds: float) -> int:
    return sum(1 for m in client.messages_within(seconds) if m == line)


@pytest.mark.parametrize("how", ["close-handshake", "fin-without-close", "reset", "protocol-error", "close-then-fin"])
def test_leave_exactly_once(room: Room, how: str) -> None:  # SPEC 7.5
    watcher = room.join("watcher")
    other = room.join("other")
    leaver = room.join("leaver")
    watcher.recv_until(lambda m: m == join_line(room.name("leaver")))
    other.recv_until(lambda m: m == join_line(room.name("leaver")))
    if how == "close-handshake":
        assert leaver.close(1000).code == 1000
    elif how == "fin-without-close":
        leaver.abort()
    elif how == "reset":
        leaver.abort(reset=True)
    elif how == "protocol-error":
        leaver.send_frame(0x3)  # reserved opcode
        leaver.expect_close(3)
    elif how == "close-then-fin":
        leaver.send_close(1001)
        leaver.abort()
    line = leave_line(room.name("leaver"))
    for client in (watcher, other):
        assert client.recv_text(5) == line
    assert count_lines(watcher, line, 0.3) == 0  # exactly once
    assert count_lines(other, line, 0.01) == 0
    assert login(room.url, room.name("leaver")).status == 303  # no longer online


def test_refused_duplicate_produces_no_lines(room: Room) -> None:  # SPEC 6.6, 7.1, 7.5
    twin = room.name("twin")
    cookie = login_cookie(room.url, twin)
    watcher = room.join("watcher")
    first = WsClient.connect(room.url, cookie)
    assert watcher.recv_text() == join_line(twin)
    second = WsClient.connect(room.url, cookie)
    assert second.expect_close(3).code == 4409
    second.sock.close()
    assert watcher.messages_within(0.3) == []
    first.close()
    assert watcher.recv_text() == leave_line(twin)


def test_long_messages_from_two_senders_arrive_whole(room: Room) -> None:  # SPEC 7.2, 7.3
    big = "x" * 60000
    a = room.join("a")
    b = room.join("b")
    r = room.join("r")
    a.messages_within(0.1)
    for _ in range(5):
        a.send_text(big)
        b.send_text(big)
    got = [r.recv_text(10) for _ in range(10)]
    assert sorted(set(got)) == [said_line(room.name("a"), big), said_line(room.name("b"), big)]
