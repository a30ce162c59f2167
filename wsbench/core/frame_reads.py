"""Reading a server's WebSocket frames one frame per read (RFC 6455 §5.2), for kernel-stamped receivers.

A kernel receive stamp belongs to a ``recvmsg`` call: it is the arrival time of the last TCP segment
that call read. So that each frame gets the stamp of *its own* last segment, a probe receiver
(:mod:`wsbench.drivers.probe`) never reads past the end of a frame: it asks this reader how many bytes
to read next (:meth:`OneFrameReads.want`): the two header bytes, then the extended length if there is
one, then exactly the payload, and the read that completes a frame is the one whose stamp the frame
carries. A frame split over several segments is completed by the read of its last one; several frames
in one segment are read one by one (each read's stamp is that segment's); control frames between
data frames are frames like any other.

What a frame means (fragments, control frames, the protocol errors a client must refuse) is decided
once, by :class:`wsbench.locust.frames.FrameReader` (pure code despite its package), which is fed
exactly one frame at a time here.
"""

from __future__ import annotations

from wsbench.locust.frames import Control, FrameError, FrameReader

_HEAD = 0  # waiting for the two header bytes
_EXT = 1  # waiting for the extended payload length (2 or 8 bytes)
_BODY = 2  # waiting for the payload


class OneFrameReads:
    """``want()`` bytes to read next; ``feed(data)`` (at most ``want()`` bytes) returns whether a frame ended.

    After a frame ended, the text messages it completed are in ``texts`` and its control frames (and
    binary messages) in ``controls``; the caller takes them (and clears the lists).
    """

    __slots__ = ("_buf", "_frames", "_need", "_state", "controls", "max_message", "texts")

    def __init__(self, max_message: int = 64 * 1024 * 1024) -> None:
        self._frames = FrameReader(max_message)
        self.max_message = max_message
        self.texts: list[bytes] = []
        self.controls: list[Control] = self._frames.controls
        self._buf = bytearray()
        self._state = _HEAD
        self._need = 2

    def want(self) -> int:
        """How many bytes the next read may take without reading into the next frame."""
        return self._need - len(self._buf)

    def feed(self, data: bytes) -> bool:
        if len(data) > self.want():
            raise ValueError(f"read {len(data)} bytes where at most {self.want()} belong to this frame")
        buf = self._buf
        buf += data
        if len(buf) < self._need:
            return False
        if self._state == _HEAD:
            b1 = buf[1]
            if b1 & 0x80:
                raise FrameError("the server sent a masked frame (RFC 6455 §5.1)")
            n = b1 & 0x7F
            if n == 126:
                self._state, self._need = _EXT, 4
                return False
            if n == 127:
                self._state, self._need = _EXT, 10
                return False
            return self._body(n)
        if self._state == _EXT:
            n = int.from_bytes(buf[2 : self._need], "big")
            if n >> 63:
                raise FrameError("a payload length with the most significant bit set (RFC 6455 §5.2)")
            return self._body(n)
        return self._frame_done()

    def _body(self, n: int) -> bool:
        if n > self.max_message:
            raise FrameError(f"message of {n} bytes is over the {self.max_message}-byte limit", 1009)
        self._state = _BODY
        self._need += n
        if n == 0:
            return self._frame_done()
        return False

    def _frame_done(self) -> bool:
        buf = self._buf
        if buf[0] == 0x81 and self._frames.unfragmented:  # a whole text message: the common case
            n = buf[1] & 0x7F
            self.texts.append(bytes(buf[2 if n < 126 else (4 if n == 126 else 10) :]))
        else:  # everything else is decided by the one frame reader
            self.texts.extend(self._frames.feed(bytes(buf)))
        buf.clear()
        self._state, self._need = _HEAD, 2
        return True
