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

What is measured is decided in one place, :class:`wsbench.core.recorder.Recorder` (the Locust driver
feeds the same one). This module sends and cuts intervals; the clients' connects, barrier, closes and
churn are :mod:`wsbench.drivers.connecting`, the stage verdicts and progress
:mod:`wsbench.drivers.stages`, the ``/stats`` sampler and the teardown :mod:`wsbench.drivers.teardown`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from picows import WSMsgType

from wsbench.core import payload
from wsbench.core.accounting import DeliveryAccounting
from wsbench.core.chat import Nicknames
from wsbench.core.pacing import ClosedLoop, OpenSchedule, Phase, churn_schedule
from wsbench.core.plan import RunPlan
from wsbench.core.recorder import IntervalRecord, Recorder
from wsbench.core.results import ResultsWriter
from wsbench.core.scenario import Scenario
from wsbench.core.search import CapacitySearch
from wsbench.core.selfcheck import BottleneckCheck
from wsbench.drivers.chat_client import ClientState, ReceiveBuffer
from wsbench.drivers.connecting import Connecting
from wsbench.drivers.precise_timer import PreciseTimer
from wsbench.drivers.probe_set import ProbeSet, choose_probes
from wsbench.drivers.selfcheck import CpuMeter, LoopLagMonitor
from wsbench.drivers.stages import Stages
from wsbench.drivers.teardown import Teardown
from wsbench.errors import describe_os_error
from wsbench.target import ServerProcess

INGEST_PERIOD_S = 0.01
SCHEDULE_CHUNK_S = 0.25
CLOSED_TICK_S = 0.002
HOLD_S = 1.0  # an interval's record is written this long after it ended (a search: its grace)
_TEXT = WSMsgType.TEXT
_clock = time.monotonic_ns


@dataclass
class Outcome:
    status: str  # completed | interrupted | broken
    reason: str | None = None
    clients_connected: int = 0
    intervals: int = 0


@dataclass
class ConnectTally:
    """How the connects went (for the connect phase's verdict)."""

    connected: int = 0
    failed: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    first_error: str | None = None


@dataclass
class SendQueue:
    """The open model's schedule, expanded a chunk ahead: ``(due_ns, sender index, size)``."""

    pending: deque[tuple[int, int, int]] = field(default_factory=deque)
    schedule: OpenSchedule | None = None
    upto_s: float = 0.0
    timer: PreciseTimer | None = None


class Engine(Connecting, Stages, Teardown):
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
        self.plan = RunPlan(scenario)
        n = scenario.clients
        self.n_senders = scenario.n_senders
        self.sender_ids = list(range(self.n_senders))
        self.phases: list[Phase] = list(self.plan.phases)
        churn = scenario.churn
        self.churn_at = churn_schedule(self.phases, churn.rate, churn.max) if churn is not None else []
        # a replacement is a new client id: the accounting is sized for every client the run may have
        n_total = n + len(self.churn_at)
        acc = DeliveryAccounting(
            n_total, self.sender_ids, self.plan.readers(n_total), int(scenario.accounting.leave_margin * 1e6)
        )
        self.acc = acc
        self.tag = secrets.token_hex(2)
        self.nicknames = Nicknames(scenario.connect.nickname_prefix, self.tag)
        hold = scenario.search.grace if scenario.search is not None else HOLD_S
        self.rec = Recorder(
            acc,
            self.nicknames,
            hold_us=int(hold * 1e6),
            fanout_timeout_us=int(scenario.accounting.fanout_timeout * 1e6),
            local_completion=True,
        )
        self.bottleneck = BottleneckCheck(float(scenario.interval))
        # kernel-stamped receivers (latency_socket); they never churn
        self.probes = ProbeSet(
            choose_probes(scenario.probes, self.n_senders, n, scenario.stalled_clients), self.epoch_ns
        )
        # receivers that do not send, oldest first: the next to leave when churning
        self.churnable: deque[int] = deque(
            c for c in range(n) if self.plan.role(c) == "receiver" and c not in self.probes.ids
        )
        self.clients = [ClientState(cid=i, nickname=self.nicknames.of(i), role=self.plan.role(i)) for i in range(n)]
        self.next_seq = [0] * self.n_senders
        self.load_start_ns: int | None = None
        self.load_end_ns: int | None = None  # the end of the drain, once the run got there
        self.phase_index = -1  # -1: connect phase
        self.stop_reason: tuple[str, str | None] | None = None  # (status, reason)
        self.stopping_load = False
        self.finished = asyncio.Event()
        self.cpu = CpuMeter()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lag: LoopLagMonitor | None = None
        self.intervals_written = 0
        self.last_stats: dict[str, Any] | None = None
        self.stats_ok = scenario.stats
        self.conn = ConnectTally()
        self.closing = False
        self.errors_total = 0
        self._handles: list[asyncio.TimerHandle] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self.sends = SendQueue()
        self._closed: ClosedLoop | None = None
        self.capacity = CapacitySearch(scenario.search) if scenario.search is not None else None
        self.ingest_s = 0.0  # wall time spent decoding and accounting batches (a self-check)
        self.session: aiohttp.ClientSession | None = None
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
        return Outcome(status, reason, self.conn.connected, self.intervals_written)

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
        if self.s.stalled_clients:
            detail = f"{self.s.stalled_clients} clients stopped reading"
            self.writer.event("phase", self.t_s(now), name="stall", detail=detail)
        if self.probes:
            self._probes_event(now)
        self._enter_phase(0, now)
        if self.s.model == "open":
            self.sends.schedule = OpenSchedule(self.phases, max(self.n_senders, 1))
            assert self.loop is not None
            self.sends.timer = PreciseTimer(self.loop, self._send_tick)
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
        self.rec.set_phase(p.name)

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
        q = self.sends
        assert q.schedule is not None and self.load_start_ns is not None
        if upto_s <= q.upto_s:
            return
        ks, ts = q.schedule.between(q.upto_s, upto_s)
        q.upto_s = upto_s
        if len(ks) == 0:
            return
        due = self.load_start_ns + np.ceil(ts * 1e3 - 1e-6).astype(np.int64) * 1_000_000
        senders = q.schedule.sender_of(ks)
        # sizes by (sender, position in its schedule): the same as Locust's for the same scenario and seed
        sizes = self.plan.sizes_at(senders, ks // max(self.n_senders, 1))
        q.pending.extend(zip(due.tolist(), senders.tolist(), sizes.tolist(), strict=True))

    def _send_tick(self) -> None:
        """Send every message that is due, then sleep until the next one is."""
        if self.stop_reason is not None or self.stopping_load or self.load_start_ns is None:
            return
        try:
            q = self.sends
            assert q.schedule is not None
            start = self.load_start_ns
            pending = q.pending
            now = _clock()
            if q.upto_s < (now - start) / 1e9 + SCHEDULE_CHUNK_S / 2:
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
                t = q.schedule.next_time_after(q.upto_s)
                if t is None:
                    return  # the schedule is over
                wake = start + math.ceil(t * 1e3 - 1e-6) * 1_000_000
            assert q.timer is not None
            q.timer.arm(wake)
        except Exception as exc:
            self._crash(exc)

    def _send_one(self, si: int, intended_ns: int, size: int) -> None:
        cid = self.sender_ids[si]
        st = self.clients[cid]
        tr = st.transport
        intended_us = (intended_ns - self.epoch_ns) // 1000
        if tr is None or st.closed_ns or not st.connected_ns:
            self.rec.send_skipped(cid, intended_us)
            return
        seq = self.next_seq[si]
        self.next_seq[si] = seq + 1
        actual_us = (_clock() - self.epoch_ns) // 1000
        tr.send(_TEXT, payload.encode(cid, seq, intended_us, actual_us, size).encode())
        self.rec.sent(cid, seq, intended_us, actual_us)

    # closed model -----------------------------------------------------------------------------------
    def _closed_tick(self) -> None:
        if self.stopping_load or self._closed is None or not self.phases[self.phase_index].sends:
            return
        now = _clock()
        self._ingest_tick()
        t = self.t_s(now)
        for si in self._closed.due(t):
            self._closed.sent(si)
            self._send_one(si, _clock(), self.plan.size_of(si, self.next_seq[si]))

    # -- receiving ----------------------------------------------------------------------------------------
    def _ingest_tick(self) -> None:
        try:
            t0 = time.perf_counter()
            self._ingest()
            self.ingest_s += time.perf_counter() - t0
            now = _clock()
            if self.rec.has_due(self.us(now)):
                self._write_records(now, late=False)
        except Exception as exc:
            self._crash(exc)

    def _ingest(self) -> None:
        idle = not self.rx.frames
        if not idle:
            frames, times, owners = self.rx.take()
            probe_frames = self.probes.take()
            if self.closing:
                return
            receivers = np.frombuffer(owners, dtype=np.int64)
            recv_us = (np.frombuffer(times, dtype=np.int64) - self.epoch_ns) // 1000
            self.rec.ingest(frames, recv_us, receivers)
            self.probes.ingest(self.rec, probe_frames, recv_us)
        if idle or self._closed is not None:
            self._collect_fanout()

    def _collect_fanout(self) -> None:
        done = self.rec.collect_fanout(self.us(_clock()))
        if self._closed is not None and done is not None:
            t = self.t_s()
            for si in done.sender_index.tolist():
                self._closed.completed(si, t)
            for si in done.expired_sender_index.tolist():
                self._closed.completed(si, t)

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
        """Close the current interval at ``now`` and open the next; write the records that are final."""
        self._ingest()
        self._collect_fanout()
        cpu_s, cpu_pct = self.cpu.sample()
        batch_s, self.ingest_s = self.ingest_s, 0.0
        if self.load_start_ns is not None and self.probes and not self.probes.warned and self.probes.unstamped_reason():
            self._warn_no_stamps(now, str(self.probes.unstamped_reason()))
        probe_generator = self.probes.take_interval() if self.probes else {}
        info = {
            "clients_connected": sum(1 for c in self.clients if c.connected_ns and not c.closed_ns),
            "generator": {
                "cpu_s": round(cpu_s, 4),
                "cpu_pct": round(cpu_pct, 1),
                "loop_lag_ms_max": self.lag.take_max_ms() if self.lag else 0.0,
                "batch_ms": round(batch_s * 1e3, 2),
                "open_fds": self.cpu.open_fds(),
                **probe_generator,
            },
            "server": self.last_stats,
        }
        phase = self.rec.current_phase
        if self.load_start_ns is not None and 0 <= self.phase_index < len(self.phases):
            phase = self.phases[self.phase_index].name
        self.rec.cut(self.us(now), phase, info=info)
        self._write_records(now)

    def _write_records(self, now: int, final: bool = False, late: bool = True) -> None:
        """Write the interval records that are final (docs/results-format.md), then judge finished stages."""
        newest: IntervalRecord | None = None
        for record in self.rec.take_records(self.us(now), final=final, late=late):
            self.writer.interval(dict(record))
            if record.get("late"):
                continue
            self.intervals_written += 1
            newest = record
            warning = self.bottleneck.check(dict(record))
            if warning is not None:
                self.writer.event("warning", warning.pop("t_s"), **warning)
        for event in self.rec.take_events():
            fields = dict(event)
            self.writer.event(str(fields.pop("kind")), float(fields.pop("t_s")), **fields)
        if newest is not None and self.on_progress is not None:
            with contextlib.suppress(Exception):
                self.on_progress(self._progress(newest, now))
        for name in self.rec.take_final_phases():
            self._stage_verdict(name)

    def final_accounting(self) -> dict[str, Any]:
        """Totals after the drain, and per phase (by when messages were sent)."""
        if self.load_end_ns is not None and self.stop_reason is None:
            self.acc.end(self.us(self.load_end_ns))  # the teardown's closes are not leaves
        out: dict[str, Any] = self.acc.totals().as_dict()
        out["duplicated"] = self.acc.duplicated
        out["reordered"] = self.acc.reordered
        fan = self.rec.fan
        out["fanout_incomplete"] = fan.incomplete + fan.pending() if fan is not None else 0
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
