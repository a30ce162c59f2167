"""A Locust worker's wsbench side (also the single process of a local run): its users connect, send on
the schedule and read in greenlets; a :class:`~wsbench.locust.collector.Collector` (the core's
recorder) measures, and parts go to the master (:mod:`wsbench.locust.master`)."""

from __future__ import annotations

import logging
import math
import os
import resource
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.lock
import psutil
from locust.env import Environment

from wsbench.core import payload
from wsbench.core.scenario import Scenario
from wsbench.core.search import stopped_plan
from wsbench.core.stamps import ClockBridge
from wsbench.locust import clock
from wsbench.locust.aggregate import pack_part
from wsbench.locust.collector import Collector
from wsbench.locust.plan import RunPlan
from wsbench.locust.timer import PreciseTimer
from wsbench.locust.wsclient import ChatConnection, ConnectFailure, Target
from wsbench.schedstat import RunQueueWait, WaitSample

if TYPE_CHECKING:
    from wsbench.locust.runtime import Node

log = logging.getLogger("wsbench.locust")

FLUSH_S = 0.05
EVENTS_PER_YIELD = 64  # Locust request events fired before letting other greenlets (senders) run
CLOCK_BURST = 8
CLOCK_EVERY_S = 5.0


def _fire(env: Environment, name: str, ms: float, length: int = 0, exc: Exception | None = None) -> None:
    env.events.request.fire(
        request_type="WS",
        name=name,
        response_time=ms,
        response_length=length,
        exception=exc,
        context={},
        response=None,
    )


class CloseCode(Exception):
    """A close the client did not ask for, as a Locust failure."""


class GeneratorMonitor:
    """This process's CPU, gevent loop lag and open files, per interval (the ``generator`` record)."""

    def __init__(self, interval_us: int) -> None:
        self.interval_us = interval_us
        self.proc = psutil.Process()
        self._cpu = self._cpu_now()
        self._lag: dict[int, float] = {}
        self._cpu_by_index: dict[int, float] = {}
        self._wait = RunQueueWait()  # the gevent hub's thread, where sample() runs too
        self._wait_by_index: dict[int, WaitSample] = {}
        self._last_index: int | None = None
        self._greenlet = gevent.spawn(self._lag_loop)
        self.now_us: Callable[[], int] = lambda: 0

    @staticmethod
    def _cpu_now() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def _lag_loop(self) -> None:
        while True:
            t = time.monotonic()
            gevent.sleep(0.05)
            lag = (time.monotonic() - t - 0.05) * 1000
            index = self.now_us() // self.interval_us
            self._lag[index] = max(self._lag.get(index, 0.0), lag)

    def sample(self, now_us: int) -> None:
        cpu = self._cpu_now()
        index = max(now_us, 0) // self.interval_us
        self._cpu_by_index[index] = self._cpu_by_index.get(index, 0.0) + (cpu - self._cpu)
        self._cpu = cpu
        waited = self._wait.sample()
        if waited is not None:
            had = self._wait_by_index.get(index)
            self._wait_by_index[index] = waited if had is None else had + waited

    def take(self, index: int) -> dict[str, Any]:
        cpu_s = self._cpu_by_index.pop(index, 0.0)
        try:
            fds = self.proc.num_fds()
        except (psutil.Error, AttributeError):
            fds = 0
        waited = self._wait_by_index.pop(index, WaitSample(0.0, 0) if self._wait.available else None)
        return {
            "cpu_s": round(cpu_s, 6),
            "cpu_pct": round(cpu_s / (self.interval_us / 1e6) * 100, 2),
            "loop_lag_ms_max": round(self._lag.pop(index, 0.0), 3),
            "open_fds": fds,
            **(waited.fields() if waited is not None else {}),
        }

    def stop(self) -> None:
        self._greenlet.kill(block=False)


class ProcessSide:
    """The users of one process and what they measure."""

    def __init__(self, owner: Node, setup: dict[str, Any]) -> None:
        self.owner = owner
        self.env = owner.env
        self.plan = RunPlan(Scenario.model_validate(setup["scenario"]))
        self.run_tag = str(setup["run_tag"])
        self.epoch_ns = int(setup["epoch_ns"])
        self.target = Target.from_url(setup["url"])
        self.label = owner.label
        self.collector = Collector(self.plan, self.run_tag, distributed=True)
        self.collector.phase_of = self._phase_of
        self.estimator = clock.OffsetEstimator()
        self.offset_ns = 0
        self.clock_events: list[dict[str, Any]] = []
        self.load_start_us: int | None = None
        self.load_event = gevent.event.Event()
        self.load_stopped = False  # a capacity search stopped the load (the drain runs)
        self._verdicts: gevent.Greenlet[Any] | None = None
        self.finished = False
        self.conns: dict[int, ChatConnection] = {}
        self.connect_sem = gevent.lock.BoundedSemaphore(self.plan.scenario.connect.concurrency)
        self._id_waiters: dict[int, gevent.event.AsyncResult] = {}
        self._id_seq = 0
        self._ready_intervals: list[dict[str, Any]] = []
        self._last_index = -1  # the interval of the last flush
        # probe receivers of this process (kernel receive stamps; wsbench.core.socket_latency)
        self.probe_clients: list[int] = []
        self.stamp_clock = ClockBridge(time.monotonic_ns, time.time_ns)
        self.monitor = GeneratorMonitor(self.collector.interval_us)
        self.monitor.now_us = self.now_us
        if owner.role == "local" or (setup["boot_id"] == clock.boot_id() and not os.environ.get("WSBENCH_CLOCK_PROBE")):
            self.estimator.same_host()
            self._clock_event()
            self._prober = None
        else:
            self._prober = gevent.spawn(self._probe_loop)
        self._flusher = gevent.spawn(self._flush_loop)

    # -- clocks -------------------------------------------------------------------------------------------
    def now_us(self) -> int:
        return (time.monotonic_ns() + self.offset_ns - self.epoch_ns) // 1000

    def local_ns(self, rel_us: int) -> int:
        return self.epoch_ns + rel_us * 1000 - self.offset_ns

    def _probe_loop(self) -> None:
        n = 0
        while not self.finished:
            for _ in range(CLOCK_BURST):
                n += 1
                self.owner.send("wsbench_clock_ping", {"t0": time.monotonic_ns(), "n": n})
                gevent.sleep(0.02)
            gevent.sleep(0.2)
            if self.estimator.finish_burst() is not None:
                self.offset_ns = self.estimator.estimate.offset_ns
                self._clock_event()
            gevent.sleep(CLOCK_EVERY_S)

    def on_clock_pong(self, data: dict[str, Any]) -> None:
        self.estimator.add(clock.Probe(int(data["t0"]), int(data["tm"]), time.monotonic_ns()))

    def _clock_event(self) -> None:
        est = self.estimator.estimate
        self.collector.event(max(self.now_us(), 0), "clock", worker=self.label, **est.as_dict())

    # -- ids, connect -------------------------------------------------------------------------------------
    def assign_id(self) -> int | None:
        self._id_seq += 1
        req = self._id_seq
        waiter: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self._id_waiters[req] = waiter
        self.owner.send("wsbench_id_req", {"req": req})
        try:
            client = waiter.get(timeout=30)
        except gevent.Timeout:
            return None
        finally:
            self._id_waiters.pop(req, None)
        return None if client is None or client < 0 else int(client)

    def on_id(self, data: dict[str, Any]) -> None:
        waiter = self._id_waiters.get(int(data["req"]))
        if waiter is not None:
            waiter.set(data["client"])

    def connect(self, client: int, due_us: int | None = None) -> ChatConnection | None:
        """Log in and open ``/chat``; ``due_us``: when this user was started (connect time counts from it)."""
        timeout = float(self.plan.scenario.connect.timeout)
        nickname = self.plan.nickname(client, self.run_tag)
        epoch, offset = self.epoch_ns, self.offset_ns
        collector = self.collector

        def on_texts(texts: list[bytes], recv_ns: int) -> None:
            collector.on_texts(client, texts, (recv_ns + offset - epoch) // 1000)

        def on_closed(code: int, reason: str, by_us: bool) -> None:
            t = self.now_us()
            collector.closed(client, t, code, reason, by_us)
            if not by_us:
                _fire(self.env, "close", 0.0, 0, CloseCode(f"closed by the server: {code} {reason}".strip()))

        with self.connect_sem:
            t0 = time.perf_counter()
            try:
                conn = ChatConnection.open(
                    self.target, nickname, on_texts, on_closed, time.monotonic_ns, timeout=timeout
                )
            except ConnectFailure as exc:
                ms = (time.perf_counter() - t0) * 1000
                collector.connect_failed(client, self.now_us(), exc.kind, str(exc), exc.status)
                _fire(self.env, "connect", ms, 0, exc)
                self.owner.send("wsbench_conn", {"client": client, "ok": False})
                return None
            ms = (time.perf_counter() - t0) * 1000
        self.conns[client] = conn
        now = self.now_us()
        handshake_us = int(ms * 1000)
        collector.connected(client, now, handshake_us if due_us is None else now - due_us, handshake_us)
        if self._wants_probe(client):
            self._make_probe(client, conn, nickname)
        conn.start_reading()
        _fire(self.env, "connect", ms)
        self.owner.send("wsbench_conn", {"client": client, "ok": True})
        return conn

    def _wants_probe(self, client: int) -> bool:
        """This process's first ``probes`` plain receivers (its first senders when every reader sends)."""
        plan = self.plan
        if len(self.probe_clients) >= plan.scenario.probes or plan.is_stalled(client):
            return False
        return not plan.is_sender(client) or plan.clients - plan.scenario.stalled_clients <= plan.senders

    def _make_probe(self, client: int, conn: ChatConnection, nickname: str) -> None:
        collector, bridge = self.collector, self.stamp_clock

        def on_probe_text(text: bytes, recv_ns: int, kernel_ns: int, shared: bool) -> None:
            offset, epoch = self.offset_ns, self.epoch_ns
            kernel_us = (bridge.to_monotonic(kernel_ns) + offset - epoch) // 1000 if kernel_ns else -1
            collector.on_probe_text(client, text, (recv_ns + offset - epoch) // 1000, kernel_us, shared)

        why = conn.make_probe(on_probe_text)
        self.probe_clients.append(client)
        collector.event(
            max(self.now_us(), 0),
            "probes",
            worker=self.label,
            receivers=1,
            clients=[client],
            nicknames=[nickname],
            kernel_stamps=why is None,
            detail=why or "kernel receive stamps (SO_TIMESTAMPNS)",
        )
        if why is not None and len(self.probe_clients) == 1:
            collector.event(
                max(self.now_us(), 0),
                "warning",
                warning="no_socket_stamps",
                detail=f"{why}: latency_socket and generator_delay are not measured; "
                "the probe receivers report user-space latency only (latency_probes)",
            )

    def on_load(self, data: dict[str, Any]) -> None:
        self.load_start_us = int(data["load_start_us"])
        self.load_event.set()
        if self.plan.scenario.search is not None:
            self._verdicts = gevent.spawn(self._verdict_parts)

    # -- the capacity search --------------------------------------------------------------------------
    def _verdict_parts(self) -> None:
        """When each stage's verdict is due (its last record's end + ``search.grace``), ship a part with
        this process's receipts, so the master judges it on every delivery so far (wsbench.locust.capacity)."""
        search = self.plan.scenario.search
        assert search is not None and self.load_start_us is not None
        interval = self.collector.interval_us
        for phase in [p for p in self.plan.phases if p.kind == "measure"]:
            end = self.load_start_us + round(phase.end_s * 1e6)
            due = math.ceil((end - 1000) / interval) * interval + int(float(search.grace) * 1e6)
            while self.now_us() < due:
                gevent.sleep(min(max((due - self.now_us()) / 1e6, 0.001), 0.25))
                if self.finished or self.load_stopped:
                    return
            self.owner.send("wsbench_part", self.ship_for_verdict())

    def ship_for_verdict(self) -> dict[str, Any]:
        """A part with everything received so far and this process's receipt state."""
        as_of = self.now_us()
        self._flush()
        records, self._ready_intervals = self._ready_intervals, []
        return pack_part(self.collector, self.label, records, False, as_of, receipts=True)

    def on_stop_load(self, data: dict[str, Any]) -> None:
        """The search stopped (a stage broke): no more sends; the drain runs from ``at_s``."""
        self.load_stopped = True
        self.plan.phases = stopped_plan(self.plan.phases, str(data["stage"]), float(data["at_s"]))

    # -- a user's life ------------------------------------------------------------------------------------
    def run_user(self) -> None:
        if self.finished:
            return
        due = self.now_us()
        client = self.assign_id()
        if client is None:
            log.warning("no client id left for this user (the scenario has %d clients)", self.plan.clients)
            return
        conn = self.connect(client, due)
        if conn is None:
            return
        if self.plan.is_stalled(client):
            self.load_event.wait()
            conn.stall()
            return
        if self.plan.is_sender(client):
            self.load_event.wait()
            self._send_loop(client, conn)

    def _send_loop(self, sender: int, conn: ChatConnection) -> None:
        assert self.load_start_us is not None
        start = self.load_start_us
        sizes = self.plan.sizes(sender)
        collector = self.collector
        env = self.env
        with PreciseTimer() as timer:
            for seq, t_rel in self.plan.send_times(sender):
                if self.finished or self.load_stopped:
                    return
                intended = start + round(t_rel * 1e6)
                timer.wait_until(self.local_ns(intended))
                if self.finished or self.load_stopped:
                    return
                if conn.closed:  # as in `wsbench run`: each scheduled message of a closed sender is skipped
                    collector.send_skipped(sender, intended)
                    continue
                actual = self.now_us()
                text = payload.encode(sender, seq, intended, actual, next(sizes))
                t0 = time.perf_counter()
                try:
                    conn.send(text)
                except Exception as exc:  # the socket broke; the reading greenlet reports the close
                    collector.error(sender, self.now_us(), "send", f"send failed: {exc}")
                    _fire(env, "send", (time.perf_counter() - t0) * 1000, 0, exc)
                    collector.send_skipped(sender, intended)
                    continue
                collector.sent(sender, seq, intended, actual)
                _fire(env, "send", (time.perf_counter() - t0) * 1000, len(text))

    # -- measuring ----------------------------------------------------------------------------------------
    def _flush_loop(self) -> None:
        while True:
            gevent.sleep(FLUSH_S)
            try:
                self._flush()
            except Exception as exc:  # a bug here must not silently stop all measuring: say it, go on
                log.exception("wsbench: measuring failed")
                self.collector.error(None, self.now_us(), "internal", f"{type(exc).__name__}: {exc}")

    def _flush(self, final: bool = False) -> None:
        now = self.now_us()
        delivered = self.collector.flush(now)
        if delivered is not None and self._delivery_events():
            fire = self.env.events.request.fire
            context: dict[str, Any] = {}
            rows = zip(delivered.latency_ms.tolist(), delivered.length.tolist(), strict=True)
            for i, (ms, length) in enumerate(rows):
                fire(
                    request_type="WS",
                    name="broadcast",
                    response_time=ms,
                    response_length=length,
                    exception=None,
                    context=context,
                    response=None,
                )
                if i % EVENTS_PER_YIELD == EVENTS_PER_YIELD - 1:
                    gevent.sleep(0)
        self.monitor.sample(now)
        if self.probe_clients and now // self.collector.interval_us != self._last_index:
            self.stamp_clock.recheck()
        self._last_index = now // self.collector.interval_us
        records = self.collector.take_records(now, final=final)
        for record in records:
            if not record.get("late"):
                record["generator"] = {**self.monitor.take(record["index"]), **record.get("generator", {})}
        self._ready_intervals.extend(records)

    def _delivery_events(self) -> bool:
        """Whether every delivery is a Locust request event (``--wsbench-delivery-events each``)."""
        options = self.env.parsed_options
        return getattr(options, "wsbench_delivery_events", "each") != "none"

    def _phase_of(self, t_s: float) -> str:
        start = None if self.load_start_us is None else self.load_start_us / 1e6
        return self.plan.phase_name(t_s, start)

    def ship(self, final: bool = False) -> dict[str, Any]:
        """A part for the master (see :func:`wsbench.locust.aggregate.pack_part`)."""
        as_of = self.now_us()
        if final:
            self._flush(final=True)
        records, self._ready_intervals = self._ready_intervals, []
        return pack_part(self.collector, self.label, records, final, as_of)

    def finish(self) -> dict[str, Any]:
        """Close every connection (the run is over), then the final part."""
        self.finished = True
        for conn in list(self.conns.values()):
            if not conn.closed:
                gevent.spawn(conn.close)
        deadline = time.monotonic() + 3.0
        while any(not c.closed for c in self.conns.values()) and time.monotonic() < deadline:
            gevent.sleep(0.02)
        for conn in self.conns.values():
            if not conn.closed:
                conn._finish(1006, "no close answer")
        part = self.ship(final=True)
        self.stop()
        return part

    def stop(self) -> None:
        self.finished = True
        self._flusher.kill(block=False)
        if self._verdicts is not None:
            self._verdicts.kill(block=False)
        if self._prober is not None:
            self._prober.kill(block=False)
        self.monitor.stop()
