"""One frame per read: each read ends at most at the end of a frame, whatever the segments were."""

from __future__ import annotations

import struct

import pytest

from wsbench.core.frame_reads import OneFrameReads
from wsbench.locust.frames import OP_CLOSE, OP_PING, FrameError


def frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = False) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", b0, mask_bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mask_bit | 127, n)
    return head + (b"\0\0\0\0" if masked else b"") + payload


def read_all(stream: bytes, segments: list[int]) -> list[tuple[int, int, list[bytes], list[int]]]:
    """Reads the stream as a socket would with segment boundaries at ``segments`` (cumulative offsets):
    one read never crosses a segment boundary nor asks more than ``want()``. Returns, per frame end,
    (segment index of the read that ended it, end offset, texts, control opcodes)."""
    r = OneFrameReads()
    pos = 0
    out = []
    bounds = [*segments, len(stream)]
    while pos < len(stream):
        seg = next(i for i, b in enumerate(bounds) if pos < b)
        take = min(r.want(), bounds[seg] - pos)
        assert take > 0
        done = r.feed(stream[pos : pos + take])
        pos += take
        if done:
            out.append((seg, pos, r.texts[:], [c.opcode for c in r.controls]))
            r.texts.clear()
            r.controls.clear()
    return out


def test_several_frames_in_one_segment_are_read_one_by_one() -> None:
    a, b, c = frame(1, b"alpha"), frame(1, b"b" * 200), frame(1, b"c" * 70_000)
    ends = read_all(a + b + c, [])
    assert [e[1] for e in ends] == [len(a), len(a + b), len(a + b + c)]  # each read stops at a frame's end
    assert [e[2] for e in ends] == [[b"alpha"], [b"b" * 200], [b"c" * 70_000]]


def test_a_frame_split_across_segments_ends_with_the_read_of_its_last_segment() -> None:
    a, b = frame(1, b"x" * 300), frame(1, b"tail")
    # segments: [0:1) [1:3) [3:150) [150:len(a)+2) [...]: the header itself is split
    ends = read_all(a + b, [1, 3, 150, len(a) + 2])
    assert ends[0][0] == 3 and ends[0][1] == len(a) and ends[0][2] == [b"x" * 300]
    assert ends[1][0] == 4 and ends[1][2] == [b"tail"]


def test_a_control_frame_between_frames_and_fragments() -> None:
    stream = (
        frame(1, b"one")
        + frame(OP_PING, b"p")
        + frame(1, b"fr", fin=False)
        + frame(OP_PING, b"")
        + frame(0, b"ag", fin=True)
        + frame(OP_CLOSE, struct.pack("!H", 1000))
    )
    ends = read_all(stream, [5, 9])
    assert [(e[2], e[3]) for e in ends] == [
        ([b"one"], []),
        ([], [OP_PING]),
        ([], []),  # the first fragment completes no message
        ([], [OP_PING]),
        ([b"frag"], []),
        ([], [OP_CLOSE]),
    ]


def test_empty_payload_frame_ends_with_its_header() -> None:
    r = OneFrameReads()
    assert r.want() == 2
    assert r.feed(frame(1, b"")) is True
    assert r.texts == [b""]


def test_reading_past_the_frame_is_refused() -> None:
    r = OneFrameReads()
    with pytest.raises(ValueError):
        r.feed(frame(1, b"abc"))  # more than the two header bytes wanted


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(1, b"x", masked=True), 1002),  # servers do not mask (RFC 6455 5.1)
        (bytes([0x81, 127]) + (1 << 63).to_bytes(8, "big"), 1002),
        (bytes([0xC1, 1]) + b"x", 1002),  # RSV1 without an extension
        (frame(1, b"y" * 200), 1009),  # over max_message
    ],
)
def test_protocol_errors(data: bytes, code: int) -> None:
    r = OneFrameReads(max_message=100)
    with pytest.raises(FrameError) as info:
        pos = 0
        while pos < len(data):
            take = min(r.want(), len(data) - pos)
            r.feed(data[pos : pos + take])
            pos += take
    assert info.value.code == code
