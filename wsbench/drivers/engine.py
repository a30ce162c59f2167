"""The asyncio load engine: a thin shell over the pure core.

It connects the clients (login, handshake, at the scenario's connection rate), waits at the barrier
until everyone is online and the server has announced every join, then runs the phases (warm-up,
stages, drain) and writes one interval record per interval into the results file.

Hot paths, and what keeps them cheap:

* receiving: a frame costs one callback that appends its bytes and a timestamp
  (:class:`~wsbench.drivers.chat_client.ChatListener`);
* every ``INGEST_PERIOD_S`` the frames of all clients are decoded (:func:`wsbench.core.payload.decode_batch`),
  accounted (:class:`~wsbench.core.accounting.DeliveryAccounting`), and their latencies recorded into
  the interval's HdrHistograms, all vectorized with numpy;
* sending: the open model's schedule (:class:`~wsbench.core.pacing.OpenSchedule`) is expanded in
  chunks; a timer wakes at the next intended time and sends whatever is due.

Time: one monotonic clock (``time.monotonic_ns``) for every sender and receiver in this process.
Intended send times are the schedule's times rounded up to the next whole millisecond of that clock,
and the sender wakes at those instants with a ``timerfd`` (:mod:`wsbench.drivers.precise_timer`):
at most 1,000 wake-ups a second however high the rate, each within tens of microseconds of its time,
so neither the event loop's millisecond timers nor the wake-ups' cost count as server latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import math
import secrets
import struct
import termios
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from picows import WSCloseCode, WSMsgType

from wsbench.core import histograms, payload, server_stats
from wsbench.core.accounting import DeliveryAccounting
from wsbench.core.fanout import FanoutTracker
from wsbench.core.pacing import MEASURED, ClosedLoop, OpenSchedule, Phase, churn_schedule, plan_phases
from wsbench.core.results import ResultsWriter
from wsbench.core.scenario import Scenario
from wsbench.core.summary import metrics
from wsbench.core.thresholds import evaluate
from wsbench.drivers.chat_client import (
    ClientState,
    LoginFailed,
    ReceiveBuffer,
    client_of,
    login,
    nickname_for,
    open_chat,
)
from wsbench.drivers.precise_timer import PreciseTimer
from wsbench.drivers.probe_set import ProbeSet, choose_probes
from wsbench.drivers.selfcheck import CpuMeter, LoopLagMonitor, bottleneck_reasons
from wsbench.errors import describe_os_error
from wsbench.target import ServerProcess

INGEST_PERIOD_S = 0.01
SCHEDULE_CHUNK_S = 0.25
CLOSED_TICK_S = 0.002
JOIN_SETTLE_S = 3.0  # after everyone connected, how long to wait for missing join lines
_JOIN_SUFFIX = "进入了聊天室~~~"
_LEAVE_SUFFIX = "离开了聊天室~~~"
_TEXT = WSMsgType.TEXT
_clock = time.monotonic_ns


@dataclass
class Outcome:
    status: str  # completed | interrupted | broken
    reason: str | None = None
    clients_connected: int = 0
    intervals: int = 0


@dataclass
class _Interval:
    index: int
    start_ns: int
    phase: str
    counters: Counter[str] = field(default_factory=Counter)
    latency: Any = field(default_factory=histograms.new_histogram)
    latency_uncorrected: Any = field(default_factory=histograms.new_histogram)
    fanout: Any = field(default_factory=histograms.new_histogram)
    connect: Any = field(default_factory=histograms.new_histogram)
    send_lag: histograms.BatchRecorder = field(default_factory=histograms.BatchRecorder)
    send_lag_us_max: int = 0


@dataclass
class _PhaseAcc:
    """A phase's intervals folded together (for the capacity search's per-stage verdicts)."""

    latency: Any = field(default_factory=histograms.new_histogram)
    latency_uncorrected: Any = field(default_factory=histograms.new_histogram)
    fanout: Any = field(default_factory=histograms.new_histogram)
    counters: Counter[str] = field(default_factory=Counter)
    span_s: float = 0.0
    probe: dict[str, Any] = field(default_factory=dict)  # the probes' histograms (latency_socket, ...)


class Engine:
    """Runs one scenario against ``http_url``; writes the header's followers (intervals, events)."""

    def __init__(
        self,
        scenario: Scenario,
        http_url: str,
        writer: ResultsWriter,
        server: ServerProcess | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.s = scenario
        self.http_url = http_url.rstrip("/")
        self.ws_url = "ws" + self.http_url[len("http") :] + "/chat"
        self.writer = writer
        self.server = server
        self.on_progress = on_progress
        self.epoch_ns = _clock()
        self.interval_ns = int(scenario.interval * 1e9)
        n = scenario.clients
        self.n_senders = scenario.n_senders
        self.n_stalled = scenario.stalled_clients
        self.sender_ids = list(range(self.n_senders))
        self.stalled_ids = list(range(n - self.n_stalled, n))
        self.phases: list[Phase] = plan_phases(
            scenario.warmup.duration, scenario.warmup.rate, scenario.stage_plan(), scenario.drain
        )
        churn = scenario.churn
        self.churn_at = churn_schedule(self.phases, churn.rate, churn.max) if churn is not None else []
        # a replacement is a new client id: the accounting is sized for every client the run may have
        n_total = n + len(self.churn_at)
        receivers = [c for c in range(n_total) if c not in set(self.stalled_ids)]
        self.acc = DeliveryAccounting(
            n_total, self.sender_ids, receivers, leave_margin_us=int(scenario.accounting.leave_margin * 1e6)
        )
        # kernel-stamped receivers (latency_socket); they never churn
        self.probes = ProbeSet(choose_probes(scenario.probes, self.n_senders, n, self.n_stalled), self.epoch_ns)
        # receivers that do not send, oldest first: the next to leave when churning
        self.churnable: deque[int] = deque(
            c for c in range(self.n_senders, n - self.n_stalled) if c not in self.probes.ids
        )
        self.fan = FanoutTracker(max(self.n_senders, 1), timeout_us=int(scenario.accounting.fanout_timeout * 1e6))
        self.tag = secrets.token_hex(2)
        self.prefix_tag = scenario.connect.nickname_prefix + self.tag
        self.clients = [
            ClientState(
                cid=i,
                nickname=nickname_for(scenario.connect.nickname_prefix, self.tag, i),
                role="sender" if i < self.n_senders else ("stalled" if i >= n - self.n_stalled else "receiver"),
            )
            for i in range(n)
        ]
        self.next_seq = [0] * self.n_senders
        self.rng = np.random.default_rng(scenario.seed)
        self.load_start_ns: int | None = None
        self.load_end_ns: int | None = None  # the end of the drain, once the run got there
        self.phase_index = -1  # -1: connect phase
        self.stop_reason: tuple[str, str | None] | None = None  # (status, reason)
        self.stopping_load = False
        self.finished = asyncio.Event()
        self.cpu = CpuMeter()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lag: LoopLagMonitor | None = None
        self.cur = _Interval(0, self.epoch_ns, "connect")
        self.intervals_written = 0
        self.last_stats: dict[str, Any] | None = None
        self.stats_ok = scenario.stats
        self.connected = 0
        self.connect_failed = 0
        self.connect_errors_by_kind: Counter[str] = Counter()
        self.first_connect_error: str | None = None
        self.closing = False
        self.errors_total = 0
        self._handles: list[asyncio.TimerHandle] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._pending_sends: deque[tuple[int, int, int]] = deque()  # (due_ns, sender index, size)
        self._sched: OpenSchedule | None = None
        self._sched_upto = 0.0
        self._closed: ClosedLoop | None = None
        self._send_timer: PreciseTimer | None = None
        self._warned_bottleneck = False
        self.unknown_frames = 0
        self.stage_verdicts: list[dict[str, Any]] = []
        self.phase_acc: dict[str, _PhaseAcc] = {}
        self.ingest_s = 0.0  # wall time spent decoding and accounting batches (a self-check)
        self.session: aiohttp.ClientSession | None = None
        self.sizes = _SizeSampler(scenario, self.rng)
        self.rx = ReceiveBuffer()  # every client's text frames, in arrival order

    # -- clock ---------------------------------------------------------------------------------------
    def t_s(self, ns: int | None = None) -> float:
        return ((_clock() if ns is None else ns) - self.epoch_ns) / 1e9

    def us(self, ns: int) -> int:
        return (ns - self.epoch_ns) // 1000

    # -- public ----------------------------------------------------------------------------------------
    def request_stop(self, status: str, reason: str | None) -> None:
        """Stop as soon as possible (Ctrl-C, server died): results so far are kept."""
        if self.stop_reason is None or (status == "broken" and self.stop_reason[0] != "broken"):
            self.stop_reason = (status, reason)
        self.finished.set()

    async def run(self) -> Outcome:
        self.loop = asyncio.get_running_loop()
        self.lag = LoopLagMonitor(self.loop)
        self.lag.start()
        self.cpu.sample()
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        timeout = aiohttp.ClientTimeout(total=self.s.connect.timeout)
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        self.writer.event("phase", self.t_s(), name="connect", detail=f"connecting {self.s.clients} clients")
        short_drain = self.s.short_drain_warning()
        if short_drain is not None:
            self.writer.event("warning", self.t_s(), warning="short_drain", detail=short_drain)
        self._every(INGEST_PERIOD_S, self._ingest_tick)
        self._schedule_interval_end(self.epoch_ns + self.interval_ns)
        if self.stats_ok:
            self._tasks.append(asyncio.ensure_future(self._stats_loop()))
        try:
            ok = await self._connect_phase()
            if ok and self.stop_reason is None:
                self._start_load()
                await self.finished.wait()
        finally:
            try:
                await self._finish()
            finally:  # whatever the teardown met, the HTTP session is closed (no "Unclosed client session")
                if self.session is not None and not self.session.closed:
                    await self.session.close()
        status, reason = self.stop_reason or ("completed", None)
        return Outcome(status, reason, self.connected, self.intervals_written)

    # -- connect phase ---------------------------------------------------------------------------------
    async def _connect_phase(self) -> bool:
        s = self.s
        sem = asyncio.Semaphore(s.connect.concurrency)
        start = _clock()
        tasks = []
        for st in self.clients:
            due = start + int(st.cid / s.connect.rate * 1e9)
            delay = (due - _clock()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            if self.stop_reason is not None:
                break
            await sem.acquire()
            task = asyncio.ensure_future(self._connect_one(st))
            task.add_done_callback(lambda _t: sem.release())
            tasks.append(task)
            if self.connect_failed > s.connect.max_errors:
                break
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.stop_reason is not None:
            return False
        if self.connect_failed > s.connect.max_errors:
            detail = f"; first error: {self.first_connect_error}" if self.first_connect_error else ""
            self.request_stop(
                "broken",
                f"{self.connect_failed} of {s.clients} clients could not connect to {self.http_url}{detail}",
            )
            return False
        # the barrier: everyone online, and every sender has seen the join lines of later clients
        # (waiting while they keep coming, up to barrier_timeout; JOIN_SETTLE_S without progress ends it)
        hard = _clock() + int(s.connect.barrier_timeout * 1e9)
        last_missing, last_progress = -1, _clock()
        while self.stop_reason is None:
            self._ingest_tick()
            missing = self._missing_join_lines()
            if missing == 0:
                break
            now = _clock()
            if missing != last_missing:
                last_missing, last_progress = missing, now
            if now > hard or now - last_progress > JOIN_SETTLE_S * 1e9:
                self.writer.event(
                    "warning",
                    self.t_s(),
                    detail=f"{missing} join lines (SPEC 7.1) never arrived; the delivery accounting uses "
                    "handshake times for those pairs",
                )
                break
            await asyncio.sleep(0.01)
        return self.stop_reason is None

    def _missing_join_lines(self) -> int:
        online = np.array([st.connected_ns > 0 and st.closed_ns == 0 for st in self.clients])
        n = len(online)
        receivers = online & self.acc.is_receiver[:n]
        missing = 0
        for si, cid in enumerate(self.sender_ids):
            if not online[cid]:
                continue
            seen = (self.acc.obs[si, :n] >= 0) | self.acc.r_saw[si, :n]
            want = receivers.copy()
            want[cid] = False
            missing += int(np.count_nonzero(want & ~seen))
        return missing

    async def _connect_one(self, st: ClientState) -> None:
        assert self.session is not None
        st.connect_start_ns = _clock()
        try:
            cookie = await asyncio.wait_for(
                login(self.session, self.http_url, st.nickname), timeout=self.s.connect.timeout
            )
            remaining = self.s.connect.timeout - (_clock() - st.connect_start_ns) / 1e9
            opener = self.probes.open if st.cid in self.probes.ids else open_chat
            await asyncio.wait_for(
                opener(self.ws_url, cookie, st, self._on_client_closed, timeout=max(remaining, 0.1), rx=self.rx),
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
        st.connected_ns = now
        self.connected += 1
        self.acc.joined(st.cid, self.us(now))
        self.cur.counters["connect_ok"] += 1
        histograms.record_many(self.cur.connect, [max((now - st.connect_start_ns) // 1000, 1)])
        if st.close_code is not None or st.closed_ns:
            self._on_client_closed(st)

    def _connect_error(self, st: ClientState, kind: str, detail: str) -> None:
        st.error = detail
        self.connect_failed += 1
        self.connect_errors_by_kind[kind] += 1
        self.cur.counters["connect_errors"] += 1
        self.cur.counters["errors"] += 1
        self.errors_total += 1
        if self.first_connect_error is None:
            self.first_connect_error = f"{kind}: {detail}"
        self.writer.event("error", self.t_s(), error=kind, client=st.cid, detail=detail)
        if self.server is not None and not self.server.alive():
            self.request_stop("broken", self.server.death_message())

    def _on_client_closed(self, st: ClientState) -> None:
        if st.connected_ns == 0:
            return  # closed during the handshake: reported as a connect error
        now = st.closed_ns or _clock()
        if self.acc.online(st.cid):
            self.acc.left(st.cid, self.us(now))
        if self.closing or st.we_closed:
            return
        self.cur.counters["closes"] += 1
        if st.close_code is not None:
            self.writer.event(
                "close", self.t_s(now), client=st.cid, code=st.close_code, reason=st.close_reason, role=st.role
            )
        elif st.role == "stalled":  # SPEC 11.1 allows dropping a slow consumer without a close frame
            self.writer.event(
                "close",
                self.t_s(now),
                client=st.cid,
                code=None,
                reason="",
                role=st.role,
                detail="dropped without a close frame",
            )
        else:
            self.cur.counters["errors"] += 1
            self.errors_total += 1
            self.writer.event(
                "error",
                self.t_s(now),
                error="disconnect",
                client=st.cid,
                role=st.role,
                detail="the connection ended without a close frame",
            )
        if self.load_start_ns is not None and not any(
            c.connected_ns and not c.closed_ns and c.role != "stalled" for c in self.clients
        ):
            self.request_stop("broken", self._why_everyone_left())

    def _why_everyone_left(self) -> str:
        if self.server is not None and not self.server.alive():
            return self.server.death_message()
        return f"every client lost its connection to {self.http_url}"

    # -- the load --------------------------------------------------------------------------------------
    def _start_load(self) -> None:
        # Everything allocated so far (clients, buffers, the loop) lives until the end: collect once and
        # move it out of the collector's sight, so that a full collection during the measurement does not
        # walk it (a 25 ms pause otherwise, counted as latency).
        gc.collect()
        gc.freeze()
        self._cut_interval(_clock())
        now = _clock()
        self.load_start_ns = -(-now // 1_000_000) * 1_000_000
        self._schedule_interval_end(self._next_boundary(self.load_start_ns))
        for st in self.clients:
            if st.role == "stalled" and st.transport is not None:
                with contextlib.suppress(Exception):
                    st.transport.underlying_transport.pause_reading()
        if self.n_stalled:
            self.writer.event("phase", self.t_s(now), name="stall", detail=f"{self.n_stalled} clients stopped reading")
        if self.probes:
            self._probes_event(now)
        self._enter_phase(0, now)
        if self.s.model == "open":
            self._sched = OpenSchedule(self.phases, max(self.n_senders, 1))
            self._sched_upto = 0.0
            assert self.loop is not None
            self._send_timer = PreciseTimer(self.loop, self._send_tick)
            self._send_tick()
        else:
            self._closed = ClosedLoop(self.n_senders, self.s.outstanding, self.s.think_time)
            self._every(CLOSED_TICK_S, self._closed_tick)
        if self.churn_at:
            self._schedule_churn(0)

    def _probes_event(self, now: int) -> None:
        p = self.probes
        why = p.unstamped_reason()
        self.writer.event(
            "probes",
            self.t_s(now),
            receivers=p.opened,
            clients=sorted(p.ids),
            nicknames=[self.clients[c].nickname for c in sorted(p.ids)],
            kernel_stamps=why is None,
            detail=why or "kernel receive stamps (SO_TIMESTAMPNS)",
        )
        if why is not None:
            self._warn_no_stamps(now, why)

    def _warn_no_stamps(self, now: int, why: str) -> None:
        self.writer.event(
            "warning",
            self.t_s(now),
            warning="no_socket_stamps",
            detail=f"{why}: latency_socket and generator_delay are not measured; "
            "the probe receivers report user-space latency only (latency_probes)",
        )
        self.probes.warned = True

    # churn ----------------------------------------------------------------------------------------------
    def _schedule_churn(self, k: int) -> None:
        assert self.load_start_ns is not None
        if k < len(self.churn_at):
            at = self.load_start_ns + int(self.churn_at[k] * 1e9)
            self._handles.append(self._call_later(max((at - _clock()) / 1e9, 0.0), self._churn, k))

    def _churn(self, k: int) -> None:
        """Replacement ``k``: the oldest plain receiver closes with 1000, a new client joins."""
        if self.stop_reason is not None or self.stopping_load or self.closing:
            return
        try:
            self._schedule_churn(k + 1)
            while self.churnable:
                victim = self.clients[self.churnable.popleft()]
                if victim.transport is not None and victim.connected_ns and not victim.closed_ns:
                    now = _clock()
                    victim.we_closed = True
                    self.acc.left(victim.cid, self.us(now))
                    self.cur.counters["churn_left"] += 1
                    with contextlib.suppress(Exception):
                        victim.transport.send_close(WSCloseCode.OK)
                    break
            cid = len(self.clients)
            st = ClientState(
                cid=cid, nickname=nickname_for(self.s.connect.nickname_prefix, self.tag, cid), role="receiver"
            )
            self.clients.append(st)
            self._tasks.append(asyncio.ensure_future(self._churn_join(st)))
        except Exception as exc:
            self._crash(exc)

    async def _churn_join(self, st: ClientState) -> None:
        await self._connect_one(st)
        if st.connected_ns and not st.closed_ns:
            self.cur.counters["churn_joined"] += 1
            self.churnable.append(st.cid)

    def _phase_bounds_ns(self, i: int) -> tuple[int, int]:
        assert self.load_start_ns is not None
        p = self.phases[i]
        return self.load_start_ns + int(p.start_s * 1e9), self.load_start_ns + int(p.end_s * 1e9)

    def _enter_phase(self, i: int, now: int) -> None:
        self.phase_index = i
        p = self.phases[i]
        self.writer.event(
            "phase",
            self.t_s(now),
            name=p.name,
            phase_kind=p.kind,
            rate=p.rate,
            rate_to=p.rate_to,
            duration_s=p.duration_s,
        )
        self.cur.phase = p.name

    def _next_boundary(self, now: int) -> int:
        """The next interval end: a whole interval after the load start, or a phase boundary."""
        assert self.load_start_ns is not None
        k = (now - self.load_start_ns) // self.interval_ns + 1
        nxt = self.load_start_ns + k * self.interval_ns
        for i in range(len(self.phases)):
            _, end = self._phase_bounds_ns(i)
            if now < end < nxt:
                nxt = end
        return nxt

    # open model -----------------------------------------------------------------------------------------
    def _extend_schedule(self, upto_s: float) -> None:
        """Expand the fixed schedule up to ``upto_s`` (seconds from the load start) into the send queue."""
        assert self._sched is not None and self.load_start_ns is not None
        if upto_s <= self._sched_upto:
            return
        ks, ts = self._sched.between(self._sched_upto, upto_s)
        self._sched_upto = upto_s
        if len(ks) == 0:
            return
        due = self.load_start_ns + np.ceil(ts * 1e3 - 1e-6).astype(np.int64) * 1_000_000
        senders = self._sched.sender_of(ks)
        sizes = self.sizes.sample(len(ks))
        self._pending_sends.extend(zip(due.tolist(), senders.tolist(), sizes.tolist(), strict=True))

    def _send_tick(self) -> None:
        """Send every message that is due, then sleep until the next one is."""
        if self.stop_reason is not None or self.stopping_load or self.load_start_ns is None:
            return
        try:
            assert self._sched is not None
            start = self.load_start_ns
            pending = self._pending_sends
            now = _clock()
            if self._sched_upto < (now - start) / 1e9 + SCHEDULE_CHUNK_S / 2:
                self._extend_schedule((now - start) / 1e9 + SCHEDULE_CHUNK_S)
            send = self._send_one
            while pending and pending[0][0] <= now:
                due, si, size = pending.popleft()
                send(si, due, size)
                if not pending:
                    now = _clock()
                    self._extend_schedule((now - start) / 1e9 + SCHEDULE_CHUNK_S)
            if pending:
                wake = pending[0][0]
            else:
                t = self._sched.next_time_after(self._sched_upto)
                if t is None:
                    return  # the schedule is over
                wake = start + math.ceil(t * 1e3 - 1e-6) * 1_000_000
            assert self._send_timer is not None
            self._send_timer.arm(wake)
        except Exception as exc:
            self._crash(exc)

    def _send_one(self, si: int, intended_ns: int, size: int) -> None:
        cid = self.sender_ids[si]
        st = self.clients[cid]
        tr = st.transport
        cur = self.cur
        if tr is None or st.closed_ns or not st.connected_ns:
            cur.counters["send_skipped"] += 1
            return
        seq = self.next_seq[si]
        self.next_seq[si] = seq + 1
        actual_ns = _clock()
        intended_us = (intended_ns - self.epoch_ns) // 1000
        actual_us = (actual_ns - self.epoch_ns) // 1000
        tr.send(_TEXT, payload.encode(cid, seq, intended_us, actual_us, size).encode())
        self.acc.sent(cid, seq, actual_us)
        expected = self.acc.expected_receivers(cid)
        self.fan.sent(si, seq, intended_us, expected)
        cur.counters["sent"] += 1
        cur.counters["expected"] += expected
        lag = actual_us - intended_us
        cur.send_lag.add(lag)
        if lag > cur.send_lag_us_max:
            cur.send_lag_us_max = lag

    # closed model -----------------------------------------------------------------------------------
    def _closed_tick(self) -> None:
        if self.stopping_load or self._closed is None or not self.phases[self.phase_index].sends:
            return
        now = _clock()
        self._ingest_tick()
        t = self.t_s(now)
        for si in self._closed.due(t):
            self._closed.sent(si)
            self._send_one(si, _clock(), self.sizes.sample_one())

    # -- receiving ----------------------------------------------------------------------------------------
    def _ingest_tick(self) -> None:
        try:
            t0 = time.perf_counter()
            self._ingest()
            self.ingest_s += time.perf_counter() - t0
        except Exception as exc:
            self._crash(exc)

    def _ingest(self) -> None:
        if not self.rx.frames:
            self._collect_fanout()
            return
        frames, times, owners = self.rx.take()
        probe_frames = self.probes.take()
        if self.closing:
            return
        receivers = np.frombuffer(owners, dtype=np.int64)
        recv_us = (np.frombuffer(times, dtype=np.int64) - self.epoch_ns) // 1000
        batch_recv_us = recv_us
        batch = payload.decode_batch(frames)
        valid = batch.valid
        if not valid.all():
            self._other_frames(frames, np.flatnonzero(~valid), receivers, recv_us)
            receivers, recv_us = receivers[valid], recv_us[valid]
            senders, seqs = batch.sender[valid], batch.seq[valid]
            intended, actual = batch.intended_us[valid], batch.actual_us[valid]
        else:
            senders, seqs, intended, actual = batch.sender, batch.seq, batch.intended_us, batch.actual_us
        if len(seqs) == 0:
            return
        res = self.acc.ingest(receivers, senders, seqs)
        self.probes.ingest(probe_frames, valid, res.new, batch_recv_us, batch.intended_us, batch.actual_us)
        cur = self.cur
        cur.counters["delivered"] += res.delivered
        if res.duplicated:
            cur.counters["duplicated"] += res.duplicated
        if res.reordered:
            cur.counters["reordered"] += res.reordered
        if res.unknown:
            cur.counters["unknown"] += res.unknown
        new = res.new
        if res.delivered:
            if res.delivered < len(new):
                r_us, i_us, a_us = recv_us[new], intended[new], actual[new]
                si, sq = res.sender_index[new], seqs[new]
            else:
                r_us, i_us, a_us, si, sq = recv_us, intended, actual, res.sender_index, seqs
            histograms.record_many(cur.latency, np.maximum(r_us - i_us, 0))
            histograms.record_many(cur.latency_uncorrected, np.maximum(r_us - a_us, 0))
            self.fan.delivered(si, sq, r_us)
        if self._closed is not None:
            self._collect_fanout()

    def _collect_fanout(self) -> None:
        done = self.fan.collect(self.us(_clock()))
        if len(done.fanout_us):
            histograms.record_many(self.cur.fanout, np.maximum(done.fanout_us, 0))
        if self._closed is not None:
            t = self.t_s()
            for si in done.sender_index.tolist():
                self._closed.completed(si, t)
            for si in done.expired_sender_index.tolist():
                self._closed.completed(si, t)
        if len(done.expired_sender_index):
            self.cur.counters["fanout_incomplete"] += len(done.expired_sender_index)

    def _other_frames(self, frames: list[bytes], where: np.ndarray, receivers: np.ndarray, recv_us: np.ndarray) -> None:
        """Join and leave lines (SPEC 7.1, 7.5) and anything that carries no trailer.

        A join line reaches every client with the same bytes: ``N`` clients joining make ``N**2`` join
        frames, so each distinct text is read once and its receivers are handled together.
        """
        by_text: dict[bytes, list[int]] = {}
        for i in where.tolist():
            by_text.setdefault(frames[i], []).append(i)
        for frame, rows in by_text.items():
            text = frame.decode("utf-8", "replace")
            if text.startswith("~~~") and text.endswith(_JOIN_SUFFIX):
                who = client_of(text[3 : -len(_JOIN_SUFFIX)], self.prefix_tag)
                if who is not None:
                    self.acc.saw_join_many(receivers[rows], who, recv_us[rows])
                self.cur.counters["join_lines"] += len(rows)
            elif text.startswith("~~~") and text.endswith(_LEAVE_SUFFIX):
                self.cur.counters["leave_lines"] += len(rows)
            else:
                self.cur.counters["unknown"] += len(rows)
                for i in rows[: max(0, 5 - self.unknown_frames)]:  # the first five are described
                    self.writer.event(
                        "warning",
                        self.t_s(),
                        client=int(receivers[i]),
                        detail=f"a text frame without a wsbench trailer: {text[:80]!r}",
                    )
                self.unknown_frames += len(rows)

    # -- intervals ----------------------------------------------------------------------------------------
    def _schedule_interval_end(self, at_ns: int) -> None:
        old = getattr(self, "_interval_handle", None)
        if old is not None:
            old.cancel()
        self._interval_handle = self._call_later(max((at_ns - _clock()) / 1e9, 0.0), self._interval_end, at_ns)

    def _interval_end(self, at_ns: int) -> None:
        try:
            now = max(_clock(), at_ns)
            self._cut_interval(now)
            if self.server is not None and not self.server.alive():
                self.request_stop("broken", self.server.death_message())
                return
            if self.load_start_ns is None:
                self._schedule_interval_end(now - (now - self.epoch_ns) % self.interval_ns + self.interval_ns)
                return
            # phase changes
            i = self.phase_index
            _, end = self._phase_bounds_ns(i)
            while now >= end - 100_000:  # within 0.1 ms of the end: the phase is over
                if self.phases[i].kind == MEASURED:
                    self._stage_verdict(i)
                if i + 1 >= len(self.phases):
                    self.load_end_ns = end
                    self.finished.set()
                    return
                i += 1
                if self.stopping_load and self.phases[i].kind != "drain":
                    continue
                self._enter_phase(i, now)
                _, end = self._phase_bounds_ns(i)
            self._schedule_interval_end(self._next_boundary(now))
        except Exception as exc:
            self._crash(exc)

    def _cut_interval(self, now: int) -> None:
        """Close the current interval at ``now``, write it, and open the next."""
        self._ingest()
        self._collect_fanout()
        cur = self.cur
        cpu_s, cpu_pct = self.cpu.sample()
        batch_s, self.ingest_s = self.ingest_s, 0.0
        lag_ms = self.lag.take_max_ms() if self.lag else 0.0
        send_lag_ms = round(cur.send_lag_us_max / 1000.0, 3)
        online = sum(1 for c in self.clients if c.connected_ns and not c.closed_ns)
        counters = {
            k: int(cur.counters.get(k, 0))
            for k in (
                "sent",
                "delivered",
                "expected",
                "duplicated",
                "reordered",
                "connect_ok",
                "connect_errors",
                "closes",
                "errors",
            )
        }
        for k, v in cur.counters.items():
            if k not in counters:
                counters[k] = int(v)
        if self.load_start_ns is not None and self.probes and not self.probes.warned and self.probes.unstamped_reason():
            self._warn_no_stamps(now, str(self.probes.unstamped_reason()))
        probe_hists, probe_counters, probe_generator = self.probes.take_interval() if self.probes else ({}, {}, {})
        counters.update(probe_counters)
        record = {
            "index": cur.index,
            "start_s": round(self.t_s(cur.start_ns), 6),
            "end_s": round(self.t_s(now), 6),
            "phase": cur.phase,
            "counters": counters,
            "clients_connected": online,
            "histograms": {
                "latency": cur.latency,
                "latency_uncorrected": cur.latency_uncorrected,
                "fanout": cur.fanout,
                "connect": cur.connect,
                "send_lag": cur.send_lag.take(),
                **probe_hists,
            },
            "generator": {
                "cpu_s": round(cpu_s, 4),
                "cpu_pct": round(cpu_pct, 1),
                "loop_lag_ms_max": lag_ms,
                "send_lag_ms_max": send_lag_ms,
                "batch_ms": round(batch_s * 1e3, 2),
                "open_fds": self.cpu.open_fds(),
                **probe_generator,
            },
            "server": self.last_stats,
        }
        self.writer.interval(record)
        self.intervals_written += 1
        pa = self.phase_acc.setdefault(cur.phase, _PhaseAcc())
        histograms.add(pa.latency, cur.latency)
        histograms.add(pa.latency_uncorrected, cur.latency_uncorrected)
        histograms.add(pa.fanout, cur.fanout)
        pa.counters.update(cur.counters)
        pa.span_s += (now - cur.start_ns) / 1e9
        for name, h in probe_hists.items():
            histograms.add(pa.probe.setdefault(name, histograms.new_histogram()), h)
        # only measured stages, only intervals long enough for their CPU share to mean something
        if cur.phase not in ("connect", "warmup", "drain") and now - cur.start_ns >= self.interval_ns // 2:
            reasons = bottleneck_reasons(cpu_pct, lag_ms, send_lag_ms)
            if reasons and not self._warned_bottleneck:
                self._warned_bottleneck = True
                self.writer.event(
                    "warning",
                    self.t_s(now),
                    warning="generator_bottleneck",
                    detail="the generator may have been the bottleneck: " + "; ".join(reasons),
                )
        if self.on_progress is not None:
            with contextlib.suppress(Exception):
                self.on_progress(self._progress(record, now))
        phase = cur.phase
        if self.load_start_ns is not None and 0 <= self.phase_index < len(self.phases):
            phase = self.phases[self.phase_index].name
        self.cur = _Interval(cur.index + 1, now, phase)

    def _progress(self, record: dict[str, Any], now: int) -> dict[str, Any]:
        h = record["histograms"]["latency"]
        dur = max(record["end_s"] - record["start_s"], 1e-9)
        total = self.phases[-1].end_s if self.phases else 0.0
        elapsed = (now - self.load_start_ns) / 1e9 if self.load_start_ns is not None else 0.0
        return {
            "phase": record["phase"],
            "elapsed_s": elapsed,
            "total_s": total,
            "sent_rate": record["counters"]["sent"] / dur,
            "delivery_rate": record["counters"]["delivered"] / dur,
            "p50_ms": h.get_value_at_percentile(50) / 1000 if h.get_total_count() else None,
            "p99_ms": h.get_value_at_percentile(99) / 1000 if h.get_total_count() else None,
            "errors": self.errors_total,
            "clients": record["clients_connected"],
            "clients_total": self.s.clients,
            "cpu_pct": record["generator"]["cpu_pct"],
            "connect_failed": self.connect_failed,
        }

    def _stage_verdict(self, i: int) -> None:
        """After a measured stage: check the search thresholds on it alone (capacity search)."""
        search = self.s.search
        if search is None or self.stopping_load:
            return
        phase = self.phases[i]
        t0, t1 = self._phase_bounds_ns(i)
        cutoff = t1 - int(search.grace * 1e9)
        totals = self.acc.totals(self.us(t0), self.us(t1), cutoff_us=self.us(cutoff))
        summary = self._stage_summary(phase.name, totals.as_dict())
        verdicts = evaluate(list(search.thresholds), summary)
        passed = all(v["passed"] for v in verdicts)
        self.stage_verdicts.append({"stage": phase.name, "rate": phase.final_rate, "passed": passed})
        self.writer.event(
            "threshold",
            self.t_s(),
            stage=phase.name,
            rate=phase.final_rate,
            passed=passed,
            verdicts=verdicts,
            detail=("held" if passed else "broke") + f" at {phase.final_rate:g}/s",
        )
        if not passed and search.stop:
            self._stop_load_early(f"stage {phase.name} broke the search thresholds")

    def _stage_summary(self, name: str, totals: dict[str, int]) -> dict[str, Any]:
        acc = self.phase_acc.get(name)
        if acc is None:
            acc = _PhaseAcc()
        return metrics(acc.latency, acc.latency_uncorrected, acc.fanout, acc.counters, acc.span_s, totals, acc.probe)

    def _stop_load_early(self, why: str) -> None:
        """Skip the remaining stages: go to the drain now."""
        self.stopping_load = True
        if self._send_timer is not None:
            self._send_timer.cancel()
        assert self.load_start_ns is not None
        now = _clock()
        t = (now - self.load_start_ns) / 1e9
        kept = [p for p in self.phases if p.end_s <= t + 1e-6]
        drain = self.phases[-1]
        kept.append(Phase(drain.name, drain.kind, t, drain.duration_s))
        self.phases = kept
        self.writer.event("phase", self.t_s(now), name="drain", phase_kind="drain", detail=why)
        self.phase_index = len(self.phases) - 1
        self.cur.phase = "drain"

    # -- stats ---------------------------------------------------------------------------------------------
    async def _stats_loop(self) -> None:
        assert self.session is not None
        misses = 0
        while not self.finished.is_set() and self.stats_ok:
            try:
                async with self.session.get(
                    self.http_url + "/stats", timeout=aiohttp.ClientTimeout(total=max(self.s.interval, 0.5))
                ) as resp:
                    if resp.status == 200:
                        data = await resp.json(content_type=None)
                        if isinstance(data, dict):
                            self.last_stats = server_stats.keep(data)
                            self.last_stats["t_s"] = round(self.t_s(), 3)
                            misses = 0
                    elif resp.status == 404:
                        self.stats_ok = False
                        self.writer.event("warning", self.t_s(), detail="the server offers no /stats")
                        return
            except (TimeoutError, aiohttp.ClientError, ValueError):
                misses += 1
                if misses == 3:
                    self.writer.event("warning", self.t_s(), detail="/stats did not answer three times in a row")
            await asyncio.sleep(self.s.interval)

    # -- teardown -----------------------------------------------------------------------------------------
    async def _finish(self) -> None:
        now = _clock()
        gc.unfreeze()
        if self._send_timer is not None:
            self._send_timer.close()
            self._send_timer = None
        for h in self._handles:
            h.cancel()
        handle = getattr(self, "_interval_handle", None)
        if handle is not None:
            handle.cancel()
        if self.lag is not None:
            self.lag.stop()
        for task in self._tasks:
            task.cancel()
        await self._unstall()
        # the last, partial interval (unless the last boundary was just written)
        self._ingest()
        if now - self.cur.start_ns > 10_000_000 or any(self.cur.counters.values()):
            try:
                self._cut_interval(max(now, self.cur.start_ns + 1))
            except Exception as exc:  # the teardown goes on: every client is still closed below
                self._crash(exc)
        self.closing = True
        self.rx.clear()
        open_clients = [c for c in self.clients if c.transport is not None and not c.closed_ns]
        for c in open_clients:
            c.we_closed = True
            with contextlib.suppress(Exception):
                c.transport.send_close(WSCloseCode.OK)  # type: ignore[union-attr]
                c.transport.disconnect()  # type: ignore[union-attr]
        if open_clients:
            waits = [c.transport.wait_disconnected() for c in open_clients if c.transport is not None]
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), timeout=2.0)
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        if self.session is not None:
            await self.session.close()

    async def _unstall(self) -> None:
        """Read the stalled clients again (discarding the backlog) to see how the server treated them.

        A client that does not read cannot see its close frame: the server's verdict (SPEC 11.1: 1008)
        sits behind megabytes of unread frames. They are read now, for up to two seconds.
        """
        stalled = [c for c in self.clients if c.role == "stalled" and c.transport is not None and not c.closed_ns]
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

    def final_accounting(self) -> dict[str, Any]:
        """Totals after the drain, and per phase (by when messages were sent)."""
        if self.load_end_ns is not None and self.stop_reason is None:
            self.acc.end(self.us(self.load_end_ns))  # the teardown's closes are not leaves
        out: dict[str, Any] = self.acc.totals().as_dict()
        out["duplicated"] = self.acc.duplicated
        out["reordered"] = self.acc.reordered
        out["fanout_incomplete"] = self.fan.incomplete + self.fan.pending()
        by_phase = {}
        if self.load_start_ns is not None:
            for i, p in enumerate(self.phases):
                if not p.sends:
                    continue
                t0, t1 = self._phase_bounds_ns(i)
                by_phase[p.name] = self.acc.totals(self.us(t0), self.us(t1)).as_dict()
        out["by_phase"] = by_phase
        return out

    # -- plumbing -------------------------------------------------------------------------------------------
    def _call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> asyncio.TimerHandle:
        assert self.loop is not None
        return self.loop.call_later(delay, fn, *args)

    def _every(self, period: float, fn: Callable[[], None]) -> None:
        def tick() -> None:
            if self.finished.is_set():
                return
            fn()
            self._handles.append(self._call_later(period, tick))
            if len(self._handles) > 64:
                del self._handles[:32]

        self._handles.append(self._call_later(period, tick))

    def _crash(self, exc: BaseException) -> None:
        import traceback

        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=6))
        with contextlib.suppress(Exception):
            self.writer.event("error", self.t_s(), error="internal", detail=detail[-2000:])
        if isinstance(exc, OSError):  # the system refused (open files, memory, network): not a wsbench bug
            self.request_stop("broken", f"the system refused the load engine: {describe_os_error(exc)}")
            return
        self.request_stop("broken", f"internal error in the load engine: {type(exc).__name__}: {exc}")


def _unread_bytes(c: ClientState) -> int | None:
    """Bytes waiting in the kernel for a client's socket (``None`` when that cannot be asked)."""
    try:
        sock = c.transport.underlying_transport.get_extra_info("socket")  # type: ignore[union-attr]
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        return int(struct.unpack("i", raw)[0])
    except Exception:  # no socket to ask
        return None


class _SizeSampler:
    """Message sizes per the scenario (fixed, uniform or weighted choices), from the seeded RNG."""

    def __init__(self, s: Scenario, rng: np.random.Generator) -> None:
        self.size = s.size
        self.rng = rng
        if s.size.kind == "choices":
            w = np.asarray(s.size.weights or [1.0] * len(s.size.values), dtype=float)
            self._p = w / w.sum()

    def sample(self, n: int) -> np.ndarray:
        sz = self.size
        if sz.kind == "fixed":
            return np.full(n, sz.values[0], dtype=np.int64)
        if sz.kind == "uniform":
            return self.rng.integers(sz.values[0], sz.values[1] + 1, n)
        return self.rng.choice(np.asarray(sz.values), n, p=self._p)

    def sample_one(self) -> int:
        return int(self.sample(1)[0])
