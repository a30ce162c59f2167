"""SPEC 8: binary, invalid UTF-8, protocol violations, the close handshake, pings."""

from __future__ import annotations

import os

import pytest

from tests.servers.wsclient import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Room,
    WsClient,
    build_frame,
    join_line,
    leave_line,
    said_line,
)


def test_binary_message_is_1003(room: Room) -> None:  # SPEC 8.1
    watcher = room.join("w")
    client = room.join("bin")
    assert watcher.recv_text() == join_line(room.name("bin"))
    client.send_frame(OP_BINARY, b"\x00\x01binary")
    result = client.expect_close(3)
    assert result.code == 1003
    assert result.tcp_end in ("eof", "reset")
    assert watcher.recv_text() == leave_line(room.name("bin"))  # nothing relayed, just the leave line


@pytest.mark.parametrize(
    "frames",
    [
        [(OP_TEXT, b"bad \xff\xfe", True)],
        [(OP_TEXT, b"\xed\xa0\x80", True)],  # an encoded surrogate
        [(OP_TEXT, b"\xc0\xaf", True)],  # overlong
        [(OP_TEXT, "你".encode()[:2], False), (OP_CONT, b"x", True)],  # truncated in the first fragment
        [(OP_TEXT, b"ok " + "你".encode()[:1], False), (OP_CONT, b"\xff" + "好".encode(), True)],
    ],
    ids=["ff-fe", "surrogate", "overlong", "split-truncated", "split-invalid"],
)
def test_invalid_utf8_is_1007(room: Room, frames: list[tuple[int, bytes, bool]]) -> None:  # SPEC 8.2
    watcher = room.join("w")
    client = room.join("utf")
    assert watcher.recv_text() == join_line(room.name("utf"))
    for opcode, payload, fin in frames:
        client.send_frame(opcode, payload, fin=fin)
    result = client.expect_close(3)
    assert result.code == 1007
    assert watcher.recv_text() == leave_line(room.name("utf"))


def test_valid_utf8_split_across_fragments_is_relayed(room: Room) -> None:  # SPEC 8.2, 9.1
    watcher = room.join("w")
    client = room.join("split")
    assert watcher.recv_text() == join_line(room.name("split"))
    data = "你好".encode()
    client.send_frame(OP_TEXT, data[:2], fin=False)
    client.send_frame(OP_PING, b"in between")  # control frames may interleave (RFC 6455 §5.4)
    client.send_frame(OP_CONT, data[2:4], fin=False)
    client.send_frame(OP_CONT, data[4:], fin=True)
    assert watcher.recv_text() == said_line(room.name("split"), "你好")


VIOLATIONS = {
    "unmasked": [build_frame(OP_TEXT, b"hello", mask=False)],
    "unmasked-ping": [build_frame(OP_PING, b"p", mask=False)],
    "rsv1": [build_frame(OP_TEXT, b"hello", rsv=4)],
    "rsv2": [build_frame(OP_TEXT, b"hello", rsv=2)],
    "rsv3": [build_frame(OP_TEXT, b"hello", rsv=1)],
    "opcode-3": [build_frame(0x3, b"")],
    "opcode-7": [build_frame(0x7, b"x")],
    "opcode-b": [build_frame(0xB, b"")],
    "opcode-f": [build_frame(0xF, b"x")],
    "fragmented-ping": [build_frame(OP_PING, b"a", fin=False), build_frame(OP_CONT, b"b")],
    "ping-126": [build_frame(OP_PING, b"x" * 126)],
    "close-126": [build_frame(OP_CLOSE, b"\x03\xe8" + b"x" * 124)],
    "stray-continuation": [build_frame(OP_CONT, b"x")],
    "text-during-fragment": [build_frame(OP_TEXT, b"a", fin=False), build_frame(OP_TEXT, b"b")],
}


@pytest.mark.parametrize("name", list(VIOLATIONS))
def test_protocol_violation_is_1002(room: Room, name: str) -> None:  # SPEC 8.3
    watcher = room.join("w")
    client = room.join("bad")
    assert watcher.recv_text() == join_line(room.name("bad"))
    client.send_raw(b"".join(VIOLATIONS[name]))
    result = client.expect_close(3)
    # SPEC 8.3 allows 1002 or a drop; both reference servers send 1002.
    assert (result.code, result.dropped) == (1002, False), result
    assert result.messages == []
    assert result.tcp_end in ("eof", "reset")
    assert watcher.recv_text() == leave_line(room.name("bad"))
    assert watcher.messages_within(0.05) == []  # nothing of it was relayed


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4409, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_close_code_is_echoed(room: Room, code: int) -> None:  # SPEC 8.4
    client = room.join("c")
    client.send_close(code, b"bye")
    result = client.expect_close(3, reply=False)
    assert result.code == code
    assert result.tcp_end == "eof"  # the server closes TCP


def test_empty_close_is_answered(room: Room) -> None:  # SPEC 8.4
    client = room.join("c")
    client.send_close(None)
    result = client.expect_close(3, reply=False)
    assert (result.code, result.dropped) == (1000, False)
    assert result.tcp_end == "eof"


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_close_code_is_1002(room: Room, code: int) -> None:  # SPEC 8.5
    client = room.join("c")
    client.send_close(code)
    result = client.expect_close(3, reply=False)
    assert (result.code, result.dropped) == (1002, False)
    assert result.tcp_end in ("eof", "reset")


def test_one_byte_close_payload_is_1002(room: Room) -> None:  # SPEC 8.5
    client = room.join("c")
    client.send_frame(OP_CLOSE, b"\x03")
    result = client.expect_close(3, reply=False)
    assert (result.code, result.dropped) == (1002, False)


def test_close_reason_not_utf8_is_1007(room: Room) -> None:  # SPEC 8.5
    client = room.join("c")
    client.send_close(1000, b"\xff\xfe")
    result = client.expect_close(3, reply=False)
    assert (result.code, result.dropped) == (1007, False)


def test_client_ping_is_answered_with_same_payload(room: Room) -> None:  # SPEC 8.6
    client = room.join("p")
    for payload in (b"", b"hello", os.urandom(125)):
        client.send_frame(OP_PING, payload)
        frame = client.recv_frame(3)
        assert (frame.opcode, frame.payload) == (OP_PONG, payload)


def test_unsolicited_pong_is_ignored(room: Room) -> None:  # RFC 6455 §5.5.3
    watcher = room.join("w")
    client = room.join("p")
    assert watcher.recv_text() == join_line(room.name("p"))
    client.send_frame(OP_PONG, b"unsolicited")
    client.send_text("after pong")
    assert watcher.recv_text() == said_line(room.name("p"), "after pong")


def test_frames_after_a_server_close_are_not_relayed(room: Room) -> None:  # SPEC 8.1, 9.1
    watcher = room.join("w")
    client = room.join("late")
    assert watcher.recv_text() == join_line(room.name("late"))
    client.send_frame(OP_BINARY, b"x")  # the server answers 1003 ...
    client.send_text("too late")  # ... and must ignore data frames until our close frame
    result = client.expect_close(3)
    assert result.code == 1003
    assert watcher.recv_text() == leave_line(room.name("late"))
    assert watcher.messages_within(0.2) == []


def test_the_connection_survives_ping_and_close_interleaving(room: Room) -> None:
    client: WsClient = room.join("x")
    client.send_frame(OP_PING, b"1")
    client.send_close(1000)
    frames = []
    while True:
        frame = client.recv_frame(3)
        frames.append(frame.opcode)
        if frame.opcode == OP_CLOSE:
            break
    assert frames == [OP_PONG, OP_CLOSE]
