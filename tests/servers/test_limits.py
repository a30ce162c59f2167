"""SPEC 9.1: the message size limit is inclusive and counts reassembled bytes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import SERVER_KINDS
from tests.servers.wsclient import OP_CONT, OP_TEXT, Room, join_line, leave_line, said_line
from wsbench.target import ServerProcess, option_flags, reference_server_argv, start_server

LIMIT = 1000


@pytest.fixture(scope="module", params=SERVER_KINDS)
def small_limit_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    argv = reference_server_argv(request.param, option_flags({"max_message_size": LIMIT}))
    server = start_server(argv, label=request.param)
    yield server
    server.stop()


@pytest.fixture
def room(small_limit_server: ServerProcess) -> Iterator[Room]:
    room = Room(small_limit_server.url)
    yield room
    room.close_all()


def fragments(data: bytes, sizes: list[int]) -> list[tuple[int, bytes, bool]]:
    out, pos = [], 0
    for i, size in enumerate(sizes):
        out.append((OP_TEXT if i == 0 else OP_CONT, data[pos : pos + size], i == len(sizes) - 1))
        pos += size
    assert pos == len(data)
    return out


CASES = {
    "ascii": "a" * LIMIT,
    "cjk": "你" * (LIMIT // 3) + "a" * (LIMIT % 3),  # bytes, not characters, count
}


@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize("split", [None, [400, 400, 200], [1, LIMIT - 2, 1]], ids=["single", "3-frames", "edges"])
def test_exactly_the_limit_is_relayed(room: Room, kind: str, split: list[int] | None) -> None:
    text = CASES[kind]
    data = text.encode()
    assert len(data) == LIMIT
    watcher = room.join("w")
    sender = room.join("s")
    assert watcher.recv_text() == join_line(room.name("s"))
    for opcode, payload, fin in fragments(data, split or [LIMIT]):
        sender.send_frame(opcode, payload, fin=fin)
    assert watcher.recv_text() == said_line(room.name("s"), text)
    sender.send_text("still open")
    assert watcher.recv_text() == said_line(room.name("s"), "still open")


@pytest.mark.parametrize(
    "split",
    [None, [400, 400, 201], [LIMIT + 1], [LIMIT, 1], [1, LIMIT]],
    ids=["single", "3-frames", "single-nonfinal", "last-byte-over", "first-byte-then-rest"],
)
def test_one_byte_over_is_1009_and_nothing_relayed(room: Room, split: list[int] | None) -> None:
    data = b"b" * (LIMIT + 1)
    watcher = room.join("w")
    sender = room.join("s")
    assert watcher.recv_text() == join_line(room.name("s"))
    frames = fragments(data, split or [LIMIT + 1])
    if split == [LIMIT + 1]:
        frames = [(OP_TEXT, data, False)]  # the limit holds even before the message is complete
    for opcode, payload, fin in frames:
        try:
            sender.send_frame(opcode, payload, fin=fin)
        except OSError:
            break
    result = sender.expect_close(3)
    assert (result.code, result.dropped) == (1009, False), result
    assert result.messages == []
    assert watcher.recv_text() == leave_line(room.name("s"))  # nothing of the message, just the leave


def test_multibyte_over_the_limit_is_1009(room: Room) -> None:
    text = "你" * (LIMIT // 3 + 1)  # 1002 bytes in 334 characters
    watcher = room.join("w")
    sender = room.join("s")
    watcher.recv_text()
    sender.send_text(text)
    assert sender.expect_close(3).code == 1009
    assert watcher.recv_text() == leave_line(room.name("s"))


@pytest.fixture
def default_room(shared_server: ServerProcess) -> Iterator[Room]:
    room = Room(shared_server.url)
    yield room
    room.close_all()


def test_default_limit_is_65536(default_room: Room) -> None:  # SPEC 15.1
    watcher = default_room.join("w")
    sender = default_room.join("s")
    watcher.recv_text()
    sender.send_text("x" * 65536)
    assert watcher.recv_text() == said_line(default_room.name("s"), "x" * 65536)
    sender.send_text("y" * 65537)
    assert sender.expect_close(3).code == 1009
    assert watcher.recv_text() == leave_line(default_room.name("s"))
