import numpy as np
import pytest

from wsbench.core import payload


def relayed(nick: str, text: str) -> bytes:
    return f"{nick}说：{text}".encode()


def test_message_is_exactly_the_size_and_ascii() -> None:
    for size in (payload.MIN_MESSAGE_SIZE, 100, 4096):
        text = payload.encode(7, 42, 1_000_000, 1_000_123, size)
        assert len(text.encode("utf-8")) == size
        assert text.isascii()


def test_too_small_size_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        payload.encode(1, 1, 1, 1, payload.MIN_MESSAGE_SIZE - 1)


def test_decode_one_reads_back_the_fields_from_the_relayed_frame() -> None:
    text = payload.encode(123456, 9_999_999_999, 1_234_567_890_123, 1_234_567_890_999, 200)
    t = payload.decode_one(relayed("客人", text))
    assert t == payload.Trailer(123456, 9_999_999_999, 1_234_567_890_123, 1_234_567_890_999)
    assert payload.decode_one(relayed("a", text).decode()) == t


@pytest.mark.parametrize("frame", [b"~~~wsb1\xe8\xbf\x9b\xe5\x85\xa5~~~", b"", b"short", b"x" * 46])
def test_frames_without_a_trailer_decode_to_none(frame: bytes) -> None:
    assert payload.decode_one(frame) is None


def test_decode_batch_matches_decode_one() -> None:
    rng = np.random.default_rng(1)
    frames = []
    for i in range(200):
        s, q = int(rng.integers(0, 999_999)), int(rng.integers(0, 10**9))
        it = int(rng.integers(0, 10**12))
        frames.append(relayed(f"wsb{s}", payload.encode(s, q, it, it + i, int(rng.integers(46, 300)))))
    frames.insert(5, "~~~wsb3进入了聊天室~~~".encode())
    frames.insert(9, b"tiny")
    frames.insert(11, relayed("x", "y" * 80))
    batch = payload.decode_batch(frames)
    for i, f in enumerate(frames):
        one = payload.decode_one(f)
        assert bool(batch.valid[i]) == (one is not None)
        if one is not None:
            assert (batch.sender[i], batch.seq[i], batch.intended_us[i], batch.actual_us[i]) == (
                one.sender,
                one.seq,
                one.intended_us,
                one.actual_us,
            )
    assert batch.valid.sum() == 200


def test_decode_batch_of_nothing() -> None:
    assert len(payload.decode_batch([]).valid) == 0


@pytest.mark.parametrize("frames", [[b"short"], [b"~~~wsb1-1\xe8\xbf\x9b~~~"], [b"", b"x"], [b"a" * 45]])
def test_decode_batch_of_short_frames_only(frames: list[bytes]) -> None:
    batch = payload.decode_batch(frames)
    assert not batch.valid.any() and len(batch.valid) == len(frames)
