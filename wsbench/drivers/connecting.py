"""The engine's clients: connecting at the scenario's rate, the barrier, closes, churn (a mixin of
:class:`wsbench.drivers.engine.Engine`: it moves sockets and keeps time, the core measures)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from picows import WSCloseCode

from wsbench.drivers.chat_client import ClientState, LoginFailed, login, open_chat

if TYPE_CHECKING:
    from wsbench.drivers.engine import Engine as _Base
else:
    _Base = object

JOIN_SETTLE_S = 3.0  # after everyone connected, how long to wait for missing join lines
_clock = __import__("time").monotonic_ns


class Connecting(_Base):
    """Connect phase, barrier, client closes and churn."""

    # -- connect phase ---------------------------------------------------------------------------------
    async def _connect_phase(self) -> bool:
        s, progress, tally = self.s, self.progress, self.roster.tally
        sem = asyncio.Semaphore(s.connect.concurrency)
        start = _clock()
        tasks = []
        for st in self.roster.clients:
            due = st.connect_due_ns = start + int(st.cid / s.connect.rate * 1e9)
            delay = (due - _clock()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            if progress.stop_reason is not None:
                break
            await sem.acquire()
            task = asyncio.ensure_future(self._connect_one(st))
            task.add_done_callback(lambda _t: sem.release())
            tasks.append(task)
            if tally.failed > s.connect.max_errors:
                break
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if progress.stop_reason is not None:
            return False
        if tally.failed > s.connect.max_errors:
            detail = f"; first error: {tally.first_error}" if tally.first_error else ""
            self.request_stop(
                "broken",
                f"{tally.failed} of {s.clients} clients could not connect to {self.endpoint.http_url}{detail}",
            )
            return False
        # the barrier: everyone online, and every sender has seen the join lines of later clients
        # (waiting while they keep coming, up to barrier_timeout; JOIN_SETTLE_S without progress ends it)
        hard = _clock() + int(s.connect.barrier_timeout * 1e9)
        last_missing, last_progress = -1, _clock()
        while progress.stop_reason is None:
            self._ingest_tick()
            missing = self.roster.missing_join_lines(self.acc)
            if missing == 0:
                break
            now = _clock()
            if missing != last_missing:
                last_missing, last_progress = missing, now
            if now > hard or now - last_progress > JOIN_SETTLE_S * 1e9:
                self.out.writer.event(
                    "warning",
                    self.t_s(),
                    detail=f"{missing} join lines (SPEC 7.1) never arrived; the delivery accounting uses "
                    "handshake times for those pairs",
                )
                break
            await asyncio.sleep(0.01)
        return progress.stop_reason is None

    async def _connect_one(self, st: ClientState) -> None:
        endpoint, timeout = self.endpoint, self.s.connect.timeout
        assert endpoint.session is not None
        st.connect_start_ns = _clock()
        try:
            cookie = await asyncio.wait_for(login(endpoint.session, endpoint.http_url, st.nickname), timeout=timeout)
            remaining = timeout - (_clock() - st.connect_start_ns) / 1e9
            opener = self.probes.open if st.cid in self.probes.ids else open_chat
            await asyncio.wait_for(
                opener(endpoint.ws_url, cookie, st, self._on_client_closed, timeout=max(remaining, 0.1), rx=self.rx),
                timeout=max(remaining, 0.1) + 1.0,
            )
        except (TimeoutError, LoginFailed) as exc:
            kind = exc.kind if isinstance(exc, LoginFailed) else "timeout"
            detail = exc.detail if isinstance(exc, LoginFailed) else "login + handshake timed out"
            self._connect_error(st, kind, detail)
            return
        except Exception as exc:  # any other failure of one client is that client's error, not a crash
            self._connect_error(st, "connect", f"{type(exc).__name__}: {exc}")
            return
        now = _clock()
        self._advance(now)  # what happens at a time goes to that time's interval (engine._advance)
        st.connected_ns = now
        self.roster.tally.connected += 1
        # connect time from when the schedule wanted the client connected: queueing for a slot counts
        due = st.connect_due_ns or st.connect_start_ns
        self.rec.connected(st.cid, self.us(now), (now - due) // 1000, (now - st.connect_start_ns) // 1000)
        if st.close_code is not None or st.closed_ns:
            self._on_client_closed(st)

    def _connect_error(self, st: ClientState, kind: str, detail: str) -> None:
        st.error = detail
        tally = self.roster.tally
        tally.failed += 1
        tally.by_kind[kind] += 1
        now = _clock()
        self._advance(now)
        self.rec.connect_failed(self.us(now))
        self.roster.errors += 1
        if tally.first_error is None:
            tally.first_error = f"{kind}: {detail}"
        self.out.writer.event("error", self.t_s(), error=kind, client=st.cid, detail=detail)
        death = self.endpoint.death()
        if death is not None:
            self.request_stop("broken", death)

    def _on_client_closed(self, st: ClientState) -> None:
        if st.connected_ns == 0:
            return  # closed during the handshake: reported as a connect error
        now = st.closed_ns or _clock()
        self._advance(now)
        self.rec.left(st.cid, self.us(now))
        if self.progress.closing or st.we_closed:
            return
        writer = self.out.writer
        self.rec.count("closes", self.us(now))
        if st.close_code is not None:
            writer.event(
                "close", self.t_s(now), client=st.cid, code=st.close_code, reason=st.close_reason, role=st.role
            )
        elif st.role == "stalled":  # SPEC 11.1 allows dropping a slow consumer without a close frame
            writer.event(
                "close",
                self.t_s(now),
                client=st.cid,
                code=None,
                reason="",
                role=st.role,
                detail="dropped without a close frame",
            )
        else:
            self.rec.count("errors", self.us(now))
            self.roster.errors += 1
            writer.event(
                "error",
                self.t_s(now),
                error="disconnect",
                client=st.cid,
                role=st.role,
                detail="the connection ended without a close frame",
            )
        if self.progress.started and not self.roster.anyone_reading():
            death = self.endpoint.death()
            self.request_stop("broken", death or f"every client lost its connection to {self.endpoint.http_url}")

    # churn ----------------------------------------------------------------------------------------------
    def _schedule_churn(self, k: int) -> None:
        start, churn_at = self.progress.load_start_ns, self.roster.churn_at
        assert start is not None
        if k < len(churn_at):
            self.timers.at_ns(start + int(churn_at[k] * 1e9), self._churn, k)

    def _churn(self, k: int) -> None:
        """Replacement ``k``: the oldest plain receiver closes with 1000, a new client joins."""
        progress, roster = self.progress, self.roster
        if progress.stop_reason is not None or progress.stopping or progress.closing:
            return
        try:
            self._schedule_churn(k + 1)
            while roster.churnable:
                victim = roster.clients[roster.churnable.popleft()]
                if victim.transport is not None and victim.connected_ns and not victim.closed_ns:
                    now = _clock()
                    self._advance(now)
                    victim.we_closed = True
                    self.rec.left(victim.cid, self.us(now))
                    self.rec.count("churn_left", self.us(now))
                    with contextlib.suppress(Exception):
                        victim.transport.send_close(WSCloseCode.OK)
                    break
            self.timers.spawn(self._churn_join(roster.replacement()))
        except Exception as exc:
            self._crash(exc)

    async def _churn_join(self, st: ClientState) -> None:
        await self._connect_one(st)
        if st.connected_ns and not st.closed_ns:
            self.rec.count("churn_joined", self.us(_clock()))
            self.roster.churnable.append(st.cid)
