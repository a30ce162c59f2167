"""The server-frame reader of the Locust driver: pure, no sockets."""

from __future__ import annotations

import pytest

from wsbench.locust.frames import OP_BINARY, OP_CLOSE, OP_PING, FrameError, FrameReader, close_code_reason


def frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = False, rsv: int = 0) -> bytes:
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        head = bytes([b0, (0x80 if mask else 0) | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, (0x80 if mask else 0) | 127]) + n.to_bytes(8, "big")
    return head + (b"\0\0\0\0" if mask else b"") + payload


def test_whole_frames_in_one_read_in_order() -> None:
    texts = [f"u{i}说：message {i}".encode() for i in range(50)]
    reader = FrameReader()
    assert reader.feed(b"".join(frame(1, t) for t in texts)) == texts
    assert reader.buffered == 0


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_every_length_encoding_split_byte_by_byte(size: int) -> None:
    payload = b"x" * size
    data = frame(1, payload) + frame(1, b"next")
    reader = FrameReader()
    out: list[bytes] = []
    step = 1 if size < 200 else 997
    for i in range(0, len(data), step):
        out += reader.feed(data[i : i + step])
    assert out == [payload, b"next"]


def test_fragmented_message_with_a_ping_in_between() -> None:
    reader = FrameReader()
    data = frame(1, b"hel", fin=False) + frame(OP_PING, b"p") + frame(0, b"lo ", fin=False) + frame(0, b"you")
    assert reader.feed(data) == [b"hello you"]
    assert [(c.opcode, c.payload) for c in reader.controls] == [(OP_PING, b"p")]


def test_close_and_binary_go_to_controls() -> None:
    reader = FrameReader()
    assert reader.feed(frame(OP_BINARY, b"\x01") + frame(OP_CLOSE, (1008).to_bytes(2, "big") + b"slow")) == []
    assert [c.opcode for c in reader.controls] == [OP_BINARY, OP_CLOSE]
    assert close_code_reason(reader.controls[1].payload) == (1008, "slow")
    assert close_code_reason(b"") == (1005, "")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(1, b"x", mask=True), 1002),
        (frame(1, b"x", rsv=0x40), 1002),
        (frame(0, b"x"), 1002),
        (frame(OP_PING, b"p", fin=False), 1002),
        (frame(OP_PING, b"p" * 126), 1002),
        (frame(0x3, b""), 1002),
        (frame(0xB, b""), 1002),
        (frame(1, b"a", fin=False) + frame(1, b"b"), 1002),
    ],
)
def test_protocol_violations(data: bytes, code: int) -> None:
    with pytest.raises(FrameError) as info:
        FrameReader().feed(data)
    assert info.value.code == code


def test_message_over_the_limit_is_1009_before_it_is_buffered() -> None:
    reader = FrameReader(max_message=1000)
    with pytest.raises(FrameError) as info:
        reader.feed(frame(1, b"x" * 1001)[:10])
    assert info.value.code == 1009


def test_a_64_bit_length_with_the_top_bit_set_is_a_protocol_error() -> None:
    """Issue 10 item 7: RFC 6455 §5.2, the most significant bit of a 64-bit length must be 0."""
    reader = FrameReader()
    with pytest.raises(FrameError) as info:
        reader.feed(bytes([0x81, 127]) + (1 << 63 | 5).to_bytes(8, "big") + b"hello")
    assert info.value.code == 1002
