"""The end of the engine's run: timers stopped, the last records written, every client closed (a mixin
of :class:`wsbench.drivers.engine.Engine`)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import struct
import termios
import time
from typing import TYPE_CHECKING

from picows import WSCloseCode

from wsbench.drivers.chat_client import ClientState

if TYPE_CHECKING:
    from wsbench.drivers.engine import Engine as _Base
else:
    _Base = object

_clock = time.monotonic_ns


class Teardown(_Base):
    """The end of the run."""

    # -- teardown -----------------------------------------------------------------------------------------
    async def _finish(self) -> None:
        now = _clock()
        gc.unfreeze()
        if self.sends.timer is not None:
            self.sends.timer.close()
            self.sends.timer = None
        self._advance(now)  # boundaries whose timers are late are cut where they were due
        self.timers.cancel()
        if self.meter.lag is not None:
            self.meter.lag.stop()
        await self._unstall()
        # the last, partial interval (unless the last boundary was just written), and every record left
        self._ingest()
        try:
            ended = self.progress.load_end_ns
            after_load = ended is not None and self.rec.current_start_us >= self.us(ended)
            if self.us(now) - self.rec.current_start_us > 10_000 and not after_load:
                self._cut_interval(now)
            self._write_records(now, final=True)
        except Exception as exc:  # the teardown goes on: every client is still closed below
            self._crash(exc)
        self.progress.closing = True
        self.rx.clear()
        open_clients = [c for c in self.roster.clients if c.transport is not None and not c.closed_ns]
        for c in open_clients:
            c.we_closed = True
            with contextlib.suppress(Exception):
                c.transport.send_close(WSCloseCode.OK)  # type: ignore[union-attr]
                c.transport.disconnect()  # type: ignore[union-attr]
        if open_clients:
            waits = [c.transport.wait_disconnected() for c in open_clients if c.transport is not None]
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), timeout=2.0)
        for task in self.timers.tasks:
            with contextlib.suppress(BaseException):
                await task
        await self.endpoint.close_session()

    async def _unstall(self) -> None:
        """Read the stalled clients again (discarding the backlog) to see how the server treated them.

        A client that does not read cannot see its close frame: the server's verdict (SPEC 11.1: 1008)
        sits behind megabytes of unread frames. They are read now, for up to two seconds.
        """
        clients = self.roster.clients
        stalled = [c for c in clients if c.role == "stalled" and c.transport is not None and not c.closed_ns]
        if not stalled:
            return
        for c in stalled:
            if c.listener is not None:
                c.listener.discard_frames()
            with contextlib.suppress(Exception):
                c.transport.underlying_transport.resume_reading()  # type: ignore[union-attr]
        deadline = _clock() + 2_000_000_000
        quiet = 0
        while _clock() < deadline and any(not c.closed_ns for c in stalled):
            await asyncio.sleep(0.02)
            # still open with nothing left to read (twice in a row): the server did not close it
            quiet = quiet + 1 if all(c.closed_ns or _unread_bytes(c) == 0 for c in stalled) else 0
            if quiet >= 2:
                break


def _unread_bytes(c: ClientState) -> int | None:
    """Bytes waiting in the kernel for a client's socket (``None`` when that cannot be asked)."""
    try:
        sock = c.transport.underlying_transport.get_extra_info("socket")  # type: ignore[union-attr]
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        return int(struct.unpack("i", raw)[0])
    except Exception:  # no socket to ask
        return None
