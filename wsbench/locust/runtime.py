"""The wsbench side of each Locust process: who runs the run, who measures, and the messages between.

* :class:`Conductor` (the master, or the single process of a local run): loads the scenario when the
  test starts, hands out client ids, waits for the connect barrier, announces the load start,
  samples the server's ``/stats``, merges what the processes measured
  (:class:`~wsbench.locust.aggregate.Aggregator`), and at the end collects every process's final
  part and writes the footer with the thresholds' verdicts.
* :class:`ProcessSide` (a worker, or the single process of a local run): connects its users, sends on
  the schedule, reads in greenlets, and measures with a :class:`~wsbench.locust.collector.Collector`.

Messages (Locust custom messages; in a local run ``LocalRunner.send_message`` calls the listener in
the same process): master -> workers ``wsbench_setup``, ``wsbench_id``, ``wsbench_load``,
``wsbench_clock_pong``, ``wsbench_finish``; workers -> master ``wsbench_id_req``, ``wsbench_conn``,
``wsbench_clock_ping``, ``wsbench_final``. Periodic parts ride in Locust's ``report_to_master`` data
(key ``wsbench``), merged on ``worker_report``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import math
import os
import resource
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.lock
import psutil
from locust.env import Environment
from locust.runners import STATE_STOPPED, LocalRunner, MasterRunner, WorkerRunner

from wsbench.core import payload, server_stats
from wsbench.core.results import ResultsWriter, default_results_path, library_versions
from wsbench.core.scenario import Scenario, load_scenario
from wsbench.core.stamps import ClockBridge
from wsbench.core.units import parse_duration
from wsbench.errors import EXIT_RUN_BROKEN, WsbenchError
from wsbench.fdlimit import ensure_open_files, needed_for_clients
from wsbench.locust import clock, summary_bridge
from wsbench.locust.aggregate import Aggregator, leave_pending, pack_part
from wsbench.locust.collector import Collector
from wsbench.locust.plan import RunPlan, check_locust_limits
from wsbench.locust.timer import PreciseTimer
from wsbench.locust.wsclient import ChatConnection, ConnectFailure, Target
from wsbench.metrics import MetricsServer, require_client

log = logging.getLogger("wsbench.locust")

FLUSH_S = 0.05
EVENTS_PER_YIELD = 64  # Locust request events fired before letting other greenlets (senders) run
FINAL_WAIT_S = 15.0
CLOCK_BURST = 8
CLOCK_EVERY_S = 5.0
LOAD_LEAD_S = 0.25  # the load starts at least this long after the barrier, so workers hear of it in time

NODE: Node | None = None


def node() -> Node:
    if NODE is None:
        raise RuntimeError("wsbench's Locust plugin is not initialised (run with -f wsbench/locust/locustfile.py)")
    return NODE


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

    def take(self, index: int) -> dict[str, Any]:
        cpu_s = self._cpu_by_index.pop(index, 0.0)
        try:
            fds = self.proc.num_fds()
        except (psutil.Error, AttributeError):
            fds = 0
        return {
            "cpu_s": round(cpu_s, 6),
            "cpu_pct": round(cpu_s / (self.interval_us / 1e6) * 100, 2),
            "loop_lag_ms_max": round(self._lag.pop(index, 0.0), 3),
            "open_fds": fds,
        }

    def stop(self) -> None:
        self._greenlet.kill(block=False)


# =====================================================================================================
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
                if self.finished:
                    return
                intended = start + round(t_rel * 1e6)
                timer.wait_until(self.local_ns(intended))
                if self.finished:
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
        if self._prober is not None:
            self._prober.kill(block=False)
        self.monitor.stop()


# =====================================================================================================
class Conductor:
    """Runs the run: on the master, or in the single process of a local run."""

    def __init__(self, owner: Node, scenario: Scenario, scenario_path: str, results_path: Path, url: str) -> None:
        self.owner = owner
        self.env = owner.env
        self.scenario = scenario
        self.scenario_path = scenario_path
        self.plan = RunPlan(scenario)
        check_locust_limits(self.plan)
        self.url = url
        self.results_path = results_path
        self.run_tag = uuid.uuid4().hex[:6]
        self.epoch_ns = time.monotonic_ns()
        self.next_id = 0
        self.connect_ok = 0
        self.connect_failed = 0
        self.load_start_s: float | None = None
        self.plan_done = False
        self.broken: str | None = None
        self.finished = False
        self.closed = False  # the footer is written
        self.interrupted_by: str | None = None
        self.exit_code: int | None = None
        self.clock_bounds: dict[str, int] = {}
        self.writer = ResultsWriter(results_path)
        # a full disk: the file is cut back to whole records, the rest stays in memory; stop, say it, exit 3
        self.writer.on_failure = self._results_failed
        if owner.metrics is not None:  # live metrics for Prometheus (--wsbench-metrics): what is written
            self.writer.observers.append(owner.metrics.metrics)
        processes = 1 if owner.role == "local" else max(owner.worker_count(), 1)
        self.aggregator = Aggregator(self.plan, self.writer, processes, master_generator=owner.role == "master")
        self.monitor = GeneratorMonitor(self.aggregator.interval_us) if owner.role == "master" else None
        if self.monitor is not None:
            self.monitor.now_us = self.now_us
        self.writer.header(
            kind="run",
            scenario_path=scenario_path,
            scenario=scenario.resolved(),
            target=self._target(url),
            versions=library_versions("locust", "gevent", "websocket-client", "hdrhistogram", "tornado", "aiohttp"),
            driver="locust",
            interval_s=self.plan.interval_s,
            locust={
                "role": owner.role,
                "workers": processes,
                "run_tag": self.run_tag,
                "clock": "master monotonic clock; same-host workers exact, others corrected by round trips",
            },
        )
        self.writer.event("phase", 0.0, name="connect", phase_kind="connect", detail=f"{scenario.clients} clients")
        short_drain = scenario.short_drain_warning()
        if short_drain is not None:
            self.writer.event("warning", 0.0, warning="short_drain", detail=short_drain)
        self._greenlet = gevent.spawn(self._conduct)

    def _results_failed(self, failure: WsbenchError) -> None:
        log.error("wsbench: %s", failure)
        self.broken = self.broken or str(failure)
        self.plan_done = True  # the users stop at their next check; the conductor at its next tick

    def now_us(self) -> int:
        return (time.monotonic_ns() - self.epoch_ns) // 1000

    @staticmethod
    def _target(url: str) -> dict[str, Any]:
        """What ``wsbench locust`` started (``WSBENCH_TARGET``), else just the ``--host`` URL."""
        given = os.environ.get("WSBENCH_TARGET")
        if given:
            with contextlib.suppress(ValueError):
                record = json.loads(given)
                if isinstance(record, dict) and record.get("url", "").rstrip("/") == url:
                    return record
        return {"mode": "url", "server": None, "url": url, "command": None, "options": {}}

    def setup_message(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.model_dump(mode="json"),
            "run_tag": self.run_tag,
            "epoch_ns": self.epoch_ns,
            "boot_id": clock.boot_id(),
            "url": self.url,
        }

    # -- messages from processes ---------------------------------------------------------------------------
    def on_id_req(self, data: dict[str, Any], node_id: str) -> None:
        client = self.next_id if self.next_id < self.plan.clients and not self.finished else -1
        if client >= 0:
            self.next_id += 1
        self.owner.send("wsbench_id", {"req": data["req"], "client": client}, node_id)

    def on_conn(self, data: dict[str, Any]) -> None:
        if data["ok"]:
            self.connect_ok += 1
        else:
            self.connect_failed += 1

    def on_part(self, part: dict[str, Any]) -> None:
        # parts keep coming while finish() waits for the final ones (a periodic report may be on its way)
        if self.closed or str(part.get("worker")) in self.aggregator.finals:
            return
        self.aggregator.absorb(part)
        for event in part["events"]:
            if event.get("kind") == "clock":
                self.clock_bounds[str(event.get("worker"))] = int(float(event.get("bound_ms", 0)) * 1e6)
                self.aggregator.live.clock[str(event.get("worker"))] = event

    # -- the timeline --------------------------------------------------------------------------------------
    def _conduct(self) -> None:
        s = self.scenario
        interval_s = self.plan.interval_s
        barrier_deadline = float(s.connect.barrier_timeout)
        while self.load_start_s is None:
            gevent.sleep(0.05)
            done = self.connect_ok + self.connect_failed
            t = self.now_us() / 1e6
            if self.connect_failed > s.connect.max_errors:
                self.broken = (
                    f"{self.connect_failed} clients could not connect (connect.max_errors is {s.connect.max_errors})"
                )
                self.plan_done = True
                return
            if done >= self.plan.clients or t > barrier_deadline:
                if t > barrier_deadline and done < self.plan.clients:
                    self.writer.event(
                        "warning",
                        t,
                        detail=f"connect barrier timed out: {self.connect_ok} of {self.plan.clients} clients online",
                    )
                start = math.ceil((t + LOAD_LEAD_S) / interval_s) * interval_s
                self.load_start_s = start
                self.aggregator.load_start_s = start
                self.owner.send("wsbench_load", {"load_start_us": int(start * 1e6)})
        start = self.load_start_s
        end_s = start + self.plan.load_duration_s
        phases = list(self.plan.phases)
        next_tick = min(self.now_us() / 1e6 + interval_s, end_s)
        while True:
            wake = min([next_tick, *(start + p.start_s for p in phases)])
            gevent.sleep(max(0.0, wake - self.now_us() / 1e6))
            now_us = self.now_us()
            while phases and start + phases[0].start_s <= now_us / 1e6 + 1e-6:
                p = phases.pop(0)
                self.writer.event(
                    "phase", start + p.start_s, name=p.name, phase_kind=p.kind, detail=f"{p.kind} {p.rate:g}/s"
                )
            self.aggregator.live.phase = self.plan.phase_name(now_us / 1e6, start)
            if now_us / 1e6 + 1e-6 < next_tick:
                continue
            self._sample_server(now_us)
            self._tick(now_us)
            if self.plan_done:
                return
            if now_us / 1e6 >= end_s - 1e-6:
                self.plan_done = True
                return
            next_tick = min(next_tick + interval_s, end_s)

    def _tick(self, now_us: int) -> None:
        side = self.owner.side
        if self.owner.role == "local" and side is not None:
            self.on_part(side.ship())
        online = self.aggregator.live.online
        if self.connect_ok and online and not any(online.values()):
            self.broken = "every connection was lost during the run (the server closed or dropped them)"
            self.plan_done = True
        if self.monitor is not None:
            self.monitor.sample(now_us)
            index = now_us // self.aggregator.interval_us - 1
            if index >= 0:
                self.aggregator.master_interval(index, self.monitor.take(index))
        self.aggregator.collect_fanout(now_us)
        self.aggregator.write_master_records((now_us // self.aggregator.interval_us) * self.aggregator.interval_us)

    def _sample_server(self, now_us: int) -> None:
        if not self.scenario.stats:
            return
        target = Target.from_url(self.url)
        conn = http.client.HTTPConnection(target.host, target.port, timeout=0.5)
        try:
            conn.request("GET", "/stats")
            response = conn.getresponse()
            body = response.read()
            if response.status == 200:
                data = json.loads(body)
                index = now_us // self.aggregator.interval_us - 1
                if index >= 0 and isinstance(data, dict):
                    self.aggregator.server_samples[index] = server_stats.keep(data)
        except (OSError, http.client.HTTPException, ValueError):
            pass
        finally:
            conn.close()

    # -- the end -------------------------------------------------------------------------------------------
    def finish(self) -> None:
        """Collect every process's final part, write the footer; sets the process exit code."""
        if self.finished:
            return
        self.finished = True
        self._greenlet.kill(block=False)
        status = "broken" if self.broken else ("completed" if self.plan_done else "interrupted")
        expected = {self.owner.label} if self.owner.role == "local" else set(self.owner.worker_labels())
        if self.owner.role == "local":
            if self.owner.side is not None:
                self.on_part(self.owner.side.finish())
        else:
            self.owner.send("wsbench_finish", {})
            deadline = time.monotonic() + FINAL_WAIT_S
            while not expected <= self.aggregator.finals and time.monotonic() < deadline:
                gevent.sleep(0.05)
        now_us = self.now_us()
        missing = expected - self.aggregator.finals
        if missing:
            self.writer.event("warning", now_us / 1e6, detail=f"no final report from {', '.join(sorted(missing))}")
            if status == "completed":
                status = "interrupted"
        if status == "completed" and self.load_start_s is not None:
            # the end of the drain: the teardown's closes are not leaves (a message not delivered by then is lost)
            self.aggregator.acc.end(int((self.load_start_s + self.plan.load_duration_s) * 1e6))
        leave_pending(self.aggregator.acc, now_us)
        self.aggregator.collect_fanout(now_us, give_up_all=True)
        if self.monitor is not None:
            self.monitor.sample(now_us)
            index = now_us // self.aggregator.interval_us
            self.aggregator.master_interval(index, self.monitor.take(index))
            self.monitor.stop()
        self.aggregator.write_master_records(None)
        totals = self.aggregator.totals()
        self.aggregator.live.accounting = totals
        self.aggregator.live.status = status
        accounting: dict[str, Any] = {
            **totals,
            "duplicated": self.aggregator.acc.duplicated,
            "reordered": self.aggregator.acc.reordered,
            "fanout_incomplete": self.aggregator.fanout.incomplete,
            "by_phase": self._by_phase(),
        }
        reason = (
            self.broken
            or self.interrupted_by
            or (f"no final report from {', '.join(sorted(missing))}" if missing else None)
        )
        footer: dict[str, Any] = {
            "status": status,
            "reason": reason,
            "duration_s": round(now_us / 1e6, 3),
            "accounting": accounting,
            "clock": {"pair_bound_ms": clock.pair_bound_ns(self.clock_bounds) / 1e6},
        }
        verdicts, exit_code = summary_bridge.verdicts(self.results_path, footer)
        if status == "broken" or self.writer.failure is not None:
            exit_code = EXIT_RUN_BROKEN
        self.writer.footer(**footer, thresholds=verdicts, exit_code=exit_code)
        self.closed = True
        self.writer.close()
        self.exit_code = exit_code
        self.env.process_exit_code = exit_code
        log.info("wsbench results: %s (status %s, exit code %d)", self.results_path, status, exit_code)
        linger = getattr(self.env.parsed_options, "wsbench_metrics_linger", "0s") if self.env.parsed_options else ""
        if self.owner.metrics is not None and linger:
            gevent.sleep(parse_duration(linger))  # a last scrape of the final numbers

    def _by_phase(self) -> dict[str, dict[str, int]]:
        """Final accounting per sending phase, by when messages were sent (as ``wsbench run`` writes it)."""
        out: dict[str, dict[str, int]] = {}
        if self.load_start_s is None:
            return out
        for phase in self.plan.phases:
            if phase.sends:
                t0 = int((self.load_start_s + phase.start_s) * 1e6)
                t1 = int((self.load_start_s + phase.end_s) * 1e6)
                out[phase.name] = self.aggregator.acc.totals(t0, t1).as_dict()
        return out


# =====================================================================================================
class Node:
    """wsbench's state in one Locust process (created by the ``init`` event)."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        runner = env.runner
        self.role = (
            "master" if isinstance(runner, MasterRunner) else "worker" if isinstance(runner, WorkerRunner) else "local"
        )
        self.side: ProcessSide | None = None
        self.conductor: Conductor | None = None
        self.conductors: list[Conductor] = []
        self.prepared: tuple[Scenario, str] | None = None
        self.error: str | None = None
        self.sigterm_watcher: object = None
        self.metrics: MetricsServer | None = None
        assert runner is not None
        address = getattr(env.parsed_options, "wsbench_metrics", "") if env.parsed_options else ""
        if address and self.role in ("master", "local"):
            require_client()
            self.metrics = MetricsServer(address)
            log.info("wsbench: metrics for Prometheus on %s", self.metrics.url)
        if self.role in ("master", "local"):
            runner.register_message("wsbench_id_req", self._h(lambda c, d, n: c.on_id_req(d, n)))
            runner.register_message("wsbench_conn", self._h(lambda c, d, n: c.on_conn(d)))
            runner.register_message("wsbench_final", self._h(lambda c, d, n: c.on_part(d)))
            runner.register_message("wsbench_clock_ping", self._on_clock_ping)
            env.events.worker_report.add_listener(self._on_worker_report)
        if self.role in ("worker", "local"):
            runner.register_message("wsbench_setup", self._on_setup)
            runner.register_message("wsbench_id", self._s(lambda s, d: s.on_id(d)))
            runner.register_message("wsbench_load", self._s(lambda s, d: s.on_load(d)))
            runner.register_message("wsbench_clock_pong", self._s(lambda s, d: s.on_clock_pong(d)))
            runner.register_message("wsbench_finish", self._on_finish)
            env.events.report_to_master.add_listener(self._on_report_to_master)
        env.events.test_start.add_listener(self._on_test_start)
        env.events.test_stopping.add_listener(self._on_test_stopping)

    @property
    def label(self) -> str:
        runner = self.env.runner
        if self.role == "local":
            return "local"
        return f"worker-{getattr(runner, 'worker_index', 0)}"

    def worker_count(self) -> int:
        runner = self.env.runner
        return int(getattr(runner, "worker_count", 1))

    def worker_labels(self) -> list[str]:
        runner = self.env.runner
        assert isinstance(runner, MasterRunner)
        return [f"worker-{runner.get_worker_index(c.id)}" for c in runner.clients.values() if c.state != "missing"]

    def send(self, msg_type: str, data: dict[str, Any], client_id: str | None = None) -> None:
        runner = self.env.runner
        assert runner is not None
        if self.role == "local" or isinstance(runner, WorkerRunner):
            runner.send_message(msg_type, data)
        else:
            runner.send_message(msg_type, data, client_id)

    def _h(self, fn: Callable[[Conductor, dict[str, Any], str], None]) -> Callable[..., None]:
        def handler(environment: Environment, msg: Any, **kw: Any) -> None:
            if self.conductor is not None:
                fn(self.conductor, msg.data, msg.node_id)

        return handler

    def _s(self, fn: Callable[[ProcessSide, dict[str, Any]], None]) -> Callable[..., None]:
        def handler(environment: Environment, msg: Any, **kw: Any) -> None:
            if self.side is not None:
                fn(self.side, msg.data)

        return handler

    # -- options and the scenario --------------------------------------------------------------------------
    def prepare(self) -> tuple[Scenario, str]:
        """Load the scenario named by ``--wsbench-scenario`` (and ``--wsbench-set``)."""
        if self.prepared is None:
            options = self.env.parsed_options
            path = getattr(options, "wsbench_scenario", None) or os.environ.get("WSBENCH_SCENARIO")
            if not path:
                raise WsbenchError("no scenario: pass --wsbench-scenario FILE (or set WSBENCH_SCENARIO)")
            overrides = [o for o in (getattr(options, "wsbench_set", "") or "").split(";") if o.strip()]
            self.prepared = (load_scenario(path, overrides), str(path))
        return self.prepared

    def _results_path(self) -> Path:
        options = self.env.parsed_options
        given = getattr(options, "wsbench_results", None)
        if given:
            p = Path(given)
            if self.conductors:  # a second test in the same web UI session
                p = p.with_name(f"{p.stem}-{len(self.conductors) + 1}{p.suffix}")
            return p
        return default_results_path("locust")

    # -- Locust events ---------------------------------------------------------------------------------------
    def _on_test_start(self, environment: Environment, **kw: Any) -> None:
        if self.role == "worker":
            return
        if self.conductor is not None and not self.conductor.finished:
            # a second test_start while a run is in progress (Locust's local runner stays in INIT during
            # its first ramp-up, so a start() then fires it again): keep the run, do not replace it
            log.warning("wsbench: a test is already running (%s); not starting another", self.conductor.results_path)
            return
        try:
            scenario, path = self.prepare()
            url = (environment.host or "").rstrip("/")
            if not url:
                raise WsbenchError("no target: pass --host http://HOST:PORT (a server that implements SPEC.md)")
            if self.role == "local":  # this process holds every client (`wsbench locust` checked it already)
                clients, in_flight = scenario.clients, min(scenario.connect.concurrency, scenario.clients)
                ensure_open_files(needed_for_clients(clients, in_flight), f"a Locust run of {clients:,} clients")
            self.conductor = Conductor(self, scenario, path, self._results_path(), url)
        except WsbenchError as exc:
            self.error = str(exc)
            log.error("wsbench: %s", exc)
            environment.process_exit_code = exc.exit_code
            gevent.spawn(self._quit)
            return
        self.conductors.append(self.conductor)
        self.prepared = None  # a next test from the web UI reloads the file
        self.send("wsbench_setup", self.conductor.setup_message())

    def _quit(self) -> None:
        runner = self.env.runner
        if runner is not None:
            runner.quit()

    def _on_setup(self, environment: Environment, msg: Any, **kw: Any) -> None:
        if self.side is not None:
            if self.side.run_tag == str(msg.data["run_tag"]):
                return  # the same run announced twice
            self.side.stop()
        self.side = ProcessSide(self, msg.data)

    def _on_test_stopping(self, environment: Environment, **kw: Any) -> None:
        if self.role != "worker" and self.conductor is not None and not self.conductor.finished:
            self.conductor.finish()

    def _on_finish(self, environment: Environment, msg: Any, **kw: Any) -> None:
        if self.side is None or self.side.finished:
            return
        side = self.side

        def run() -> None:
            part = side.finish()
            self.send("wsbench_final", part)

        gevent.spawn(run)

    def _on_report_to_master(self, client_id: str, data: dict[str, Any], **kw: Any) -> None:
        if self.role == "worker" and self.side is not None and not self.side.finished:
            data["wsbench"] = self.side.ship()

    def _on_worker_report(self, client_id: str, data: dict[str, Any], **kw: Any) -> None:
        part = data.get("wsbench")
        if part is not None and self.conductor is not None:
            self.conductor.on_part(part)

    def _on_clock_ping(self, environment: Environment, msg: Any, **kw: Any) -> None:
        self.send("wsbench_clock_pong", {"t0": msg.data["t0"], "tm": time.monotonic_ns()}, msg.node_id)

    def is_stopped(self) -> bool:
        runner = self.env.runner
        return runner is None or runner.state == STATE_STOPPED


def install(env: Environment) -> Node:
    global NODE
    NODE = Node(env)
    return NODE


def local_runner(env: Environment) -> bool:
    return isinstance(env.runner, LocalRunner)
