"""The text of a measured chat message, and how a receiver reads it back.

A sender sends the text ``M``; the server relays ``{nickname}说：{M}`` (SPEC 7.2). ``M`` is padding
followed by a fixed-width ASCII trailer at its very end::

    xxxxxxxx...x#SSSSSS.QQQQQQQQQQ.IIIIIIIIIIIII.AAAAAAAAAAAAA
                 sender  sequence  intended us   actual us

* ``S`` sender client id (6 digits), ``Q`` per-sender sequence number from 0 (10 digits),
* ``I`` intended send time and ``A`` actual send time, microseconds on the run's monotonic clock
  (13 digits: 115 days).

Because the trailer is fixed-width and at the end of the frame, a receiver never needs to find the
nickname or decode UTF-8: it takes the last :data:`TRAILER_LEN` bytes. A whole batch of frames is
decoded at once with numpy (:func:`decode_batch`): the frames are joined, the trailers gathered with one
fancy index and their digits turned into numbers by one matrix product. :func:`decode_one` is the
scalar form for drivers that handle one frame at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SENDER_DIGITS = 6
SEQ_DIGITS = 10
TIME_DIGITS = 13
TRAILER_LEN = 1 + SENDER_DIGITS + 1 + SEQ_DIGITS + 1 + TIME_DIGITS + 1 + TIME_DIGITS  # 46
MIN_MESSAGE_SIZE = TRAILER_LEN
MAX_SENDER = 10**SENDER_DIGITS - 1
PAD_CHAR = "x"

# column layout of the trailer
_S0 = 1
_Q0 = _S0 + SENDER_DIGITS + 1
_I0 = _Q0 + SEQ_DIGITS + 1
_A0 = _I0 + TIME_DIGITS + 1
_SEPARATORS = {0: ord("#"), _Q0 - 1: ord("."), _I0 - 1: ord("."), _A0 - 1: ord(".")}
_DIGIT_COLS = np.array(
    [c for c in range(TRAILER_LEN) if c not in _SEPARATORS],
    dtype=np.intp,
)

_pad_cache: dict[int, str] = {}


def padding(size: int) -> str:
    """The filler that makes a message of ``size`` bytes once the trailer is added."""
    pad = _pad_cache.get(size)
    if pad is None:
        if size < MIN_MESSAGE_SIZE:
            raise ValueError(f"a measured message needs at least {MIN_MESSAGE_SIZE} bytes, not {size}")
        pad = _pad_cache[size] = PAD_CHAR * (size - TRAILER_LEN)
    return pad


def encode(sender: int, seq: int, intended_us: int, actual_us: int, size: int) -> str:
    """The message text ``M`` (ASCII, exactly ``size`` bytes)."""
    return f"{padding(size)}#{sender:06d}.{seq:010d}.{intended_us:013d}.{actual_us:013d}"


@dataclass(frozen=True, slots=True)
class Trailer:
    sender: int
    seq: int
    intended_us: int
    actual_us: int


def decode_one(frame: bytes | str) -> Trailer | None:
    """The trailer of one relayed frame (or of ``M`` itself), or ``None`` if it carries none."""
    if isinstance(frame, str):
        tail = frame[-TRAILER_LEN:]
        if len(tail) != TRAILER_LEN:
            return None
        tail_b = tail.encode("ascii", "replace")
    else:
        tail_b = bytes(frame[-TRAILER_LEN:])
    if len(tail_b) != TRAILER_LEN:
        return None
    for col, ch in _SEPARATORS.items():
        if tail_b[col] != ch:
            return None
    try:
        fields = tail_b[1:].split(b".")
        sender, seq, intended, actual = (int(f) for f in fields)
    except ValueError:
        return None
    if not all(f.isdigit() for f in fields):
        return None
    return Trailer(sender, seq, intended, actual)


@dataclass(slots=True)
class DecodedBatch:
    """Columns of a decoded batch; ``valid[i]`` is False for frames that carry no trailer."""

    valid: np.ndarray  # bool
    sender: np.ndarray  # int64
    seq: np.ndarray  # int64
    intended_us: np.ndarray  # int64
    actual_us: np.ndarray  # int64


_POW_SENDER = 10 ** np.arange(SENDER_DIGITS - 1, -1, -1, dtype=np.int64)
_POW_SEQ = 10 ** np.arange(SEQ_DIGITS - 1, -1, -1, dtype=np.int64)
_POW_TIME = 10 ** np.arange(TIME_DIGITS - 1, -1, -1, dtype=np.int64)
_COLS = np.arange(TRAILER_LEN, dtype=np.int64)
_BLANK = b"\0" * TRAILER_LEN
# One matrix turns the 42 digits of a trailer into its four numbers: a float matrix product (BLAS) is
# exact here, every value being below 10**13 < 2**53.
_WEIGHTS = np.zeros((len(_DIGIT_COLS), 4), dtype=np.float64)
_i = SENDER_DIGITS + SEQ_DIGITS
_WEIGHTS[:SENDER_DIGITS, 0] = _POW_SENDER
_WEIGHTS[SENDER_DIGITS:_i, 1] = _POW_SEQ
_WEIGHTS[_i : _i + TIME_DIGITS, 2] = _POW_TIME
_WEIGHTS[_i + TIME_DIGITS :, 3] = _POW_TIME


def decode_batch(frames: Sequence[bytes]) -> DecodedBatch:
    """Decode the trailers of many frames at once (vectorized).

    The frames are joined into one buffer and the last :data:`TRAILER_LEN` bytes of each are gathered
    with one fancy index: no per-frame slicing in Python.
    """
    n = len(frames)
    if n == 0:
        empty = np.empty(0, dtype=np.int64)
        return DecodedBatch(np.empty(0, dtype=bool), empty, empty, empty, empty)
    lengths = np.fromiter(map(len, frames), dtype=np.int64, count=n)
    # a blank trailer after the last frame stands in for frames too short to hold one
    blob = np.frombuffer(b"".join(frames) + _BLANK, dtype=np.uint8)
    starts = np.cumsum(lengths) - TRAILER_LEN
    short = lengths < TRAILER_LEN
    if short.any():
        starts[short] = len(blob) - TRAILER_LEN
    arr = blob[starts[:, None] + _COLS]
    valid = ~short
    for col, ch in _SEPARATORS.items():
        valid &= arr[:, col] == ch
    digits = arr[:, _DIGIT_COLS] - np.uint8(48)  # non-digits wrap around to > 9
    valid &= (digits <= 9).all(axis=1)
    fields = (digits.astype(np.float64) @ _WEIGHTS).astype(np.int64)
    return DecodedBatch(valid, fields[:, 0], fields[:, 1], fields[:, 2], fields[:, 3])
