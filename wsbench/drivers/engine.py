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
:mod:`wsbench.drivers.stages`, the teardown :mod:`wsbench.drivers.teardown`, the server's URLs and
``/stats`` sampler :mod:`wsbench.drivers.endpoint`. The engine's state is a few objects, each about
one thing (:mod:`wsbench.drivers.run_state`): the clock, the load's progress, the clients' roster,
the senders' queue, the generator's self-meter, the loop's timers and the output.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from picows import WSMsgType

from wsbench.core import payload
from wsbench.core.accounting import DeliveryAccounting
from wsbench.core.chat import Nicknames
from wsbench.core.intervals import IntervalRecord
from wsbench.core.pacing import ClosedLoop, OpenSchedule, churn_schedule
from wsbench.core.plan import RunPlan
from wsbench.core.recorder import Recorder
from wsbench.core.results import ResultsWriter
from wsbench.core.scenario import Scenario
from wsbench.core.search import CapacitySearch
from wsbench.core.selfcheck import BottleneckCheck
from wsbench.drivers.chat_client import ReceiveBuffer
from wsbench.drivers.connecting import Connecting
from wsbench.drivers.endpoint import ServerEndpoint
from wsbench.drivers.precise_timer import PreciseTimer
from wsbench.drivers.probe_set import ProbeSet, choose_probes
from wsbench.drivers.run_state import LoadProgress, Output, Roster, RunClock, SelfMeter, Sending, Timers
from wsbench.drivers.selfcheck import LoopLagMonitor
from wsbench.drivers.stages import Stages
from wsbench.drivers.teardown import Teardown
from wsbench.errors import describe_os_error
from wsbench.schedstat import RunQueueWait
from wsbench.target import ServerProcess

INGEST_PERIOD_S = 0.01
SCHEDULE_CHUNK_S = 0.25
CLOSED_TICK_S = 0.002
HOLD_S = 1.0  # an interval's record is written this long after it ended (a search: its grace)
_TEXT = WSMsgType.TEXT
_clock = time.monotonic_ns
_NEVER = 1 << 62  # no interval boundary pending


@dataclass
class Outcome:
    status: str  # completed | interrupted | broken
    reason: str | None = None
    clients_connected: int = 0
    intervals: int = 0


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
        self.plan = RunPlan(scenario)
        self.clock = RunClock(_clock(), int(scenario.interval * 1e9))
        search = CapacitySearch(scenario.search) if scenario.search is not None else None
        self.progress = LoadProgress(list(self.plan.phases), search=search)
        self.endpoint = ServerEndpoint.of(http_url, server, scenario.stats)
        self.out = Output(writer, on_progress)
        n = scenario.clients
        n_senders = scenario.n_senders
        churn = scenario.churn
        churn_at = churn_schedule(self.progress.phases, churn.rate, churn.max) if churn is not None else []
        # a replacement is a new client id: the accounting is sized for every client the run may have
        n_total = n + len(churn_at)
        self.acc = DeliveryAccounting(
            n_total, list(range(n_senders)), self.plan.readers(n_total), int(scenario.accounting.leave_margin * 1e6)
        )
        nicknames = Nicknames(scenario.connect.nickname_prefix, secrets.token_hex(2))
        hold = scenario.search.grace if scenario.search is not None else HOLD_S
        self.rec = Recorder(
            self.acc,
            nicknames,
            hold_us=int(hold * 1e6),
            fanout_timeout_us=int(scenario.accounting.fanout_timeout * 1e6),
            local_completion=True,
        )
        # kernel-stamped receivers (latency_socket); they never churn
        probe_ids = choose_probes(scenario.probes, n_senders, n, scenario.stalled_clients)
        self.probes = ProbeSet(probe_ids, self.clock.epoch_ns)
        self.roster = Roster.of(self.plan, nicknames, churn_at, self.probes.ids)
        self.sends = Sending(next_seq=[0] * n_senders)
        self.meter = SelfMeter(BottleneckCheck(float(scenario.interval)))
        self.timers = Timers()
        self.rx = ReceiveBuffer()  # every client's text frames, in arrival order

    # -- public ----------------------------------------------------------------------------------------
    def t_s(self, ns: int | None = None) -> float:
        """Seconds since the run's epoch (of ``ns``, default now)."""
        return self.clock.t_s(ns)

    def us(self, ns: int) -> int:
        return self.clock.us(ns)

    def request_stop(self, status: str, reason: str | None) -> None:
        """Stop as soon as possible (Ctrl-C, server died): results so far are kept."""
        self.progress.request_stop(status, reason)

    async def run(self) -> Outcome:
        s, progress, writer = self.s, self.progress, self.out.writer
        loop = self.timers.loop = asyncio.get_running_loop()
        self.meter.lag = LoopLagMonitor(loop)
        self.meter.lag.start()
        self.meter.cpu.sample()
        self.meter.wait = RunQueueWait()
        self.endpoint.open_session(s.connect.timeout)
        writer.event("phase", self.t_s(), name="connect", detail=f"connecting {s.clients} clients")
        short_drain = s.short_drain_warning()
        if short_drain is not None:
            writer.event("warning", self.t_s(), warning="short_drain", detail=short_drain)
        self.timers.every(INGEST_PERIOD_S, self._ingest_tick, progress.finished)
        self._schedule_interval_end(self.clock.epoch_ns + self.clock.interval_ns)
        if self.endpoint.stats_ok:
            self.timers.spawn(self.endpoint.sample_stats(writer, self.t_s, s.interval, progress.finished))
        try:
            ok = await self._connect_phase()
            if ok and progress.stop_reason is None:
                self._start_load()
                await progress.finished.wait()
        finally:
            try:
                await self._finish()
            finally:  # whatever the teardown met, the HTTP session is closed (no "Unclosed client session")
                await self.endpoint.close_session()
        status, reason = progress.stop_reason or ("completed", None)
        return Outcome(status, reason, self.roster.tally.connected, self.out.intervals)

    # -- the load --------------------------------------------------------------------------------------
    def _start_load(self) -> None:
        # Everything allocated so far (clients, buffers, the loop) lives until the end: collect once and
        # move it out of the collector's sight, so that a full collection during the measurement does not
        # walk it (a 25 ms pause otherwise, counted as latency).
        gc.collect()
        gc.freeze()
        self._advance(_clock())
        self._cut_interval(_clock())
        now = _clock()
        progress = self.progress
        progress.load_start_ns = -(-now // 1_000_000) * 1_000_000
        self._schedule_interval_end(progress.next_boundary(progress.load_start_ns, self.clock.interval_ns))
        for st in self.roster.clients:
            if st.role == "stalled" and st.transport is not None:
                with contextlib.suppress(Exception):
                    st.transport.underlying_transport.pause_reading()
        if self.s.stalled_clients:
            detail = f"{self.s.stalled_clients} clients stopped reading"
            self.out.writer.event("phase", self.t_s(now), name="stall", detail=detail)
        if self.probes:
            self._probes_event(now)
        self._enter_phase(0, now)
        n_senders = max(self.roster.n_senders, 1)
        if self.s.model == "open":
            self.sends.schedule = OpenSchedule(progress.phases, n_senders)
            assert self.timers.loop is not None
            self.sends.timer = PreciseTimer(self.timers.loop, self._send_tick)
            self._send_tick()
        else:
            self.sends.closed = ClosedLoop(self.roster.n_senders, self.s.outstanding, self.s.think_time)
            self.timers.every(CLOSED_TICK_S, self._closed_tick, progress.finished)
        if self.roster.churn_at:
            self._schedule_churn(0)

    def _probes_event(self, now: int) -> None:
        p = self.probes
        why = p.unstamped_reason()
        self.out.writer.event(
            "probes",
            self.t_s(now),
            receivers=p.opened,
            clients=sorted(p.ids),
            nicknames=[self.roster.clients[c].nickname for c in sorted(p.ids)],
            kernel_stamps=why is None,
            detail=why or "kernel receive stamps (SO_TIMESTAMPNS)",
        )
        if why is not None:
            self._warn_no_stamps(now, why)

    def _warn_no_stamps(self, now: int, why: str) -> None:
        self.out.writer.event(
            "warning",
            self.t_s(now),
            warning="no_socket_stamps",
            detail=f"{why}: latency_socket and generator_delay are not measured; "
            "the probe receivers report user-space latency only (latency_probes)",
        )
        self.probes.warned = True

    def _enter_phase(self, i: int, now: int) -> None:
        self.progress.index = i
        p = self.progress.phases[i]
        self.out.writer.event(
            "phase",
            self.t_s(now),
            name=p.name,
            phase_kind=p.kind,
            rate=p.rate,
            rate_to=p.rate_to,
            duration_s=p.duration_s,
        )
        self.rec.set_phase(p.name)

    # open model -----------------------------------------------------------------------------------------
    def _extend_schedule(self, upto_s: float) -> None:
        """Expand the fixed schedule up to ``upto_s`` (seconds from the load start) into the send queue."""
        q = self.sends
        start = self.progress.load_start_ns
        assert q.schedule is not None and start is not None
        if upto_s <= q.upto_s:
            return
        ks, ts = q.schedule.between(q.upto_s, upto_s)
        q.upto_s = upto_s
        if len(ks) == 0:
            return
        due = start + np.ceil(ts * 1e3 - 1e-6).astype(np.int64) * 1_000_000
        senders = q.schedule.sender_of(ks)
        # sizes by (sender, position in its schedule): the same as Locust's for the same scenario and seed
        sizes = self.plan.sizes_at(senders, ks // max(self.roster.n_senders, 1))
        q.pending.extend(zip(due.tolist(), senders.tolist(), sizes.tolist(), strict=True))

    def _send_tick(self) -> None:
        """Send every message that is due, then sleep until the next one is."""
        progress = self.progress
        start = progress.load_start_ns
        if progress.stop_reason is not None or progress.stopping or start is None:
            return
        try:
            q = self.sends
            assert q.schedule is not None
            pending = q.pending
            now = _clock()
            if q.upto_s < (now - start) / 1e9 + SCHEDULE_CHUNK_S / 2:
                self._extend_schedule((now - start) / 1e9 + SCHEDULE_CHUNK_S)
            send = self._send_one
            cut_at = self.timers.interval_end_ns or _NEVER
            while pending and pending[0][0] <= now:
                due, si, size = pending.popleft()
                if due >= cut_at:  # its interval is not cut yet (a late timer): cut it first
                    pending.appendleft((due, si, size))
                    self._advance(due)
                    if progress.stop_reason is not None or progress.stopping or progress.finished.is_set():
                        return
                    cut_at = self.timers.interval_end_ns or _NEVER
                    continue
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
        roster = self.roster
        st = roster.clients[roster.sender_ids[si]]
        tr = st.transport
        epoch = self.clock.epoch_ns
        intended_us = (intended_ns - epoch) // 1000
        if tr is None or st.closed_ns or not st.connected_ns:
            self.rec.send_skipped(st.cid, intended_us)
            return
        next_seq = self.sends.next_seq
        seq = next_seq[si]
        next_seq[si] = seq + 1
        actual_us = (_clock() - epoch) // 1000
        tr.send(_TEXT, payload.encode(st.cid, seq, intended_us, actual_us, size).encode())
        self.rec.sent(st.cid, seq, intended_us, actual_us)

    # closed model -----------------------------------------------------------------------------------
    def _closed_tick(self) -> None:
        closed, progress = self.sends.closed, self.progress
        if progress.stopping or closed is None:
            return
        now = _clock()
        self._ingest_tick()  # cuts the boundaries up to now first
        if progress.stopping or progress.finished.is_set() or not progress.phases[progress.index].sends:
            return
        t = self.t_s(now)
        for si in closed.due(t):
            at = _clock()  # the intended time is the actual one: its interval must be open
            if at >= (self.timers.interval_end_ns or _NEVER):
                self._advance(at)
                if progress.stopping or progress.finished.is_set() or not progress.phases[progress.index].sends:
                    return
            closed.sent(si)
            self._send_one(si, at, self.plan.size_of(si, self.sends.next_seq[si]))

    # -- receiving ----------------------------------------------------------------------------------------
    def _ingest_tick(self) -> None:
        try:
            self._advance(_clock())
            t0 = time.perf_counter()
            self._ingest()
            self.meter.ingest_s += time.perf_counter() - t0
            now = _clock()
            if self.rec.has_due(self.us(now)):
                self._write_records(now, late=False)
        except Exception as exc:
            self._crash(exc)

    def _ingest(self) -> None:
        rx = self.rx
        idle = not rx.frames
        if not idle:
            frames, times, owners = rx.take()
            probe_frames = self.probes.take()
            if self.progress.closing:
                return
            receivers = np.frombuffer(owners, dtype=np.int64)
            recv_us = (np.frombuffer(times, dtype=np.int64) - self.clock.epoch_ns) // 1000
            self.rec.ingest(frames, recv_us, receivers)
            self.probes.ingest(self.rec, probe_frames, recv_us)
        if idle or self.sends.closed is not None:
            self._collect_fanout()

    def _collect_fanout(self) -> None:
        done = self.rec.collect_fanout(self.us(_clock()))
        closed = self.sends.closed
        if closed is not None and done is not None:
            t = self.t_s()
            for si in done.sender_index.tolist():
                closed.completed(si, t)
            for si in done.expired_sender_index.tolist():
                closed.completed(si, t)

    # -- intervals ----------------------------------------------------------------------------------------
    def _schedule_interval_end(self, at_ns: int) -> None:
        self.timers.set_interval_end(at_ns, self._interval_end)

    def _advance(self, now: int) -> None:
        """Cut every pending interval boundary at or before ``now`` whose timer has not run yet.

        The interval (phase, stage) of a message is that of its intended send time on the *scheduled*
        grid, however late the loop runs the boundary's timer: under load the timer fires tens of ms
        late, and asyncio runs the sender's timerfd (an I/O callback) before timers, so the next stage's
        first sends would be recorded in the current stage's open interval. So whatever records something
        at a time (a send, a batch of frames, a connect, a close) first calls this: the boundaries that
        have passed are cut, at their scheduled time, synchronously, and their timers are cancelled (a
        boundary is cut once). This is the Locust collector's rule too (``Collector.advance``: cut the grid
        up to ``t`` before recording at ``t``), and it keeps the core's :class:`Recorder` simple: its
        current interval is open-ended, and a driver never records past a boundary it has not cut.
        (The alternative, the recorder placing intended times by a planned grid, would need the plan's
        every boundary in the core, and an interval opened before its cut has no phase, info or verdict
        yet: the cut is where the engine changes phase and judges stages.)"""
        at = self.timers.interval_end_ns
        while at is not None and at <= now:
            self._interval_end(at)
            at = self.timers.interval_end_ns

    def _interval_end(self, at_ns: int) -> None:
        """The interval boundary ``at_ns``: cut exactly there (not when the timer ran), change phase."""
        try:
            self.timers.take_interval_end()
            now = at_ns
            self._cut_interval(now)
            death = self.endpoint.death()
            if death is not None:
                self.request_stop("broken", death)
                return
            progress = self.progress
            if not progress.started:
                self._schedule_interval_end(self.clock.next_tick(now))
                return
            # phase changes
            i = progress.index
            _, end = progress.bounds_ns(i)
            while now >= end - 100_000:  # within 0.1 ms of the end: the phase is over
                if i + 1 >= len(progress.phases):
                    progress.load_end_ns = end
                    progress.finished.set()
                    return
                i += 1
                if progress.stopping and progress.phases[i].kind != "drain":
                    continue
                self._enter_phase(i, now)
                _, end = progress.bounds_ns(i)
            self._schedule_interval_end(progress.next_boundary(now, self.clock.interval_ns))
        except Exception as exc:
            self._crash(exc)

    def _cut_interval(self, now: int) -> None:
        """Close the current interval at ``now`` and open the next; write the records that are final.

        Frames are taken in after the cut: their deliveries go to their messages' intervals and what
        happened at their receipt (join lines, frames without a trailer) to the interval of its time,
        either side of ``now``."""
        probes = self.probes
        generator = self.meter.interval_fields()
        if probes:
            generator.update(probes.take_interval())
        info = {"clients_connected": self.roster.online(), "generator": generator, "server": self.endpoint.last_stats}
        self.rec.cut(self.us(now), self.progress.current_name() or self.rec.current_phase, info=info)
        self._ingest()
        self._collect_fanout()
        if self.progress.started and probes and not probes.warned and probes.unstamped_reason():
            self._warn_no_stamps(now, str(probes.unstamped_reason()))
        self._write_records(max(_clock(), now))

    def _write_records(self, now: int, final: bool = False, late: bool = True) -> None:
        """Write the interval records that are final (docs/results-format.md), then judge finished stages."""
        out = self.out
        newest: IntervalRecord | None = None
        for record in self.rec.take_records(self.us(now), final=final, late=late):
            out.writer.interval(dict(record))
            if record.get("late"):
                continue
            out.intervals += 1
            newest = record
            warning = self.meter.bottleneck.check(dict(record))
            if warning is not None:
                out.writer.event("warning", warning.pop("t_s"), **warning)
        for event in self.rec.take_events():
            fields = dict(event)
            out.writer.event(str(fields.pop("kind")), float(fields.pop("t_s")), **fields)
        if newest is not None and out.on_progress is not None:
            with contextlib.suppress(Exception):
                out.on_progress(self._progress(newest, now))
        for name in self.rec.take_final_phases():
            self._stage_verdict(name)

    def final_accounting(self) -> dict[str, Any]:
        """Totals after the drain, and per phase (by when messages were sent)."""
        progress = self.progress
        if progress.load_end_ns is not None and progress.stop_reason is None:
            self.acc.end(self.us(progress.load_end_ns))  # the teardown's closes are not leaves
        out: dict[str, Any] = self.acc.totals().as_dict()
        out["duplicated"] = self.acc.duplicated
        out["reordered"] = self.acc.reordered
        fan = self.rec.fan
        out["fanout_incomplete"] = fan.incomplete + fan.pending() if fan is not None else 0
        by_phase = {}
        if progress.started:
            for i, p in enumerate(progress.phases):
                if not p.sends:
                    continue
                t0, t1 = progress.bounds_ns(i)
                by_phase[p.name] = self.acc.totals(self.us(t0), self.us(t1)).as_dict()
        out["by_phase"] = by_phase
        return out

    # -- plumbing -------------------------------------------------------------------------------------------
    def _crash(self, exc: BaseException) -> None:
        import traceback

        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=6))
        with contextlib.suppress(Exception):
            self.out.writer.event("error", self.t_s(), error="internal", detail=detail[-2000:])
        if isinstance(exc, OSError):  # the system refused (open files, memory, network): not a wsbench bug
            self.request_stop("broken", f"the system refused the load engine: {describe_os_error(exc)}")
            return
        self.request_stop("broken", f"internal error in the load engine: {type(exc).__name__}: {exc}")
