"""Issue 16: a short seeded fuzz campaign per server (the long one is ``python -m
tests.servers.fuzz_campaign``), and the reference model it is checked against."""

from __future__ import annotations

import struct

import pytest

from tests.conftest import SERVER_KINDS
from tests.servers.fuzz_campaign import LIMIT, run_campaign, with_tail
from tests.servers.fuzz_model import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, Frame, predict


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_short_seeded_campaign(kind: str) -> None:
    report = run_campaign(kind, seed=16, seconds=4.0, max_trials=400)
    assert report.trials >= 20, report.summary()
    assert report.ok, report.summary()


def test_model_relays_and_pongs_of_valid_frames() -> None:
    frames = [
        Frame(OP_TEXT, "你".encode()[:2], fin=False),
        Frame(OP_PING, b"p1"),
        Frame(OP_CONT, "你".encode()[2:]),
        Frame(OP_TEXT, b""),
    ]
    p = predict(frames, LIMIT)
    assert (p.relays, p.pongs, p.open) == (["你".encode(), b""], [b"p1"], True)


@pytest.mark.parametrize(
    ("frames", "codes", "drop_ok"),
    [
        ([Frame(OP_TEXT, b"", fin=False), Frame(OP_TEXT, b"injected")], {1002}, True),  # issue 16 finding 1
        ([Frame(OP_TEXT, b"", fin=False), Frame(OP_BINARY, b"b")], {1002}, True),
        ([Frame(OP_CONT, b"stray")], {1002}, True),
        ([Frame(OP_BINARY, b"b")], {1003}, False),
        ([Frame(OP_TEXT, b"a" * (LIMIT + 1))], {1009}, False),
        ([Frame(OP_TEXT, b"a" * LIMIT)], set(), False),
        ([Frame(OP_TEXT, b"\xff", fin=False), Frame(OP_TEXT, b"x")], {1002, 1007}, True),  # 1007 may come first
        ([Frame(OP_CLOSE, struct.pack("!H", 1006) + b"\xff")], {1002, 1007}, True),
        ([Frame(OP_CLOSE, struct.pack("!H", 4000))], {4000}, False),
        ([Frame(OP_CLOSE, b"")], {1000}, False),
        ([Frame(OP_PING, b"x" * 126)], {1002}, True),
        ([Frame(OP_TEXT, b"x", rsv=4)], {1002}, True),
        ([Frame(OP_TEXT, b"x", masked=False)], {1002}, True),
    ],
)
def test_model_close_codes(frames: list[Frame], codes: set[int], drop_ok: bool) -> None:
    p = predict(frames, LIMIT)
    assert (p.codes, p.drop_ok) == (codes, drop_ok), p


def test_tail_completes_a_message_and_closes() -> None:
    frames = with_tail([Frame(OP_TEXT, b"ab", fin=False)], b"sentinel")
    assert [f.opcode for f in frames] == [OP_TEXT, OP_CONT, OP_TEXT, OP_CLOSE]
    p = predict(frames, LIMIT)
    assert p.relays == [b"ab", b"sentinel"] and p.codes == {1000}
