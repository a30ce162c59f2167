"""The Locust master's wsbench side (also the single process of a local run): the conductor hands out
client ids, runs the barrier and the phases, merges the processes' parts
(:class:`~wsbench.locust.aggregate.Aggregator`) and writes the results file and its footer."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import math
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.lock

from wsbench.core import server_stats
from wsbench.core.pacing import Phase
from wsbench.core.results import ResultsWriter, library_versions
from wsbench.core.scenario import Scenario
from wsbench.core.units import parse_duration
from wsbench.errors import EXIT_RUN_BROKEN, EXIT_USAGE, WsbenchError
from wsbench.locust import clock, summary_bridge
from wsbench.locust.aggregate import Aggregator, leave_pending
from wsbench.locust.plan import RunPlan, check_locust_limits
from wsbench.locust.worker import GeneratorMonitor
from wsbench.locust.wsclient import Target

if TYPE_CHECKING:
    from wsbench.locust.runtime import Node

log = logging.getLogger("wsbench.locust")

FINAL_WAIT_S = 15.0
LOAD_LEAD_S = 0.25  # the load starts at least this long after the barrier, so workers hear of it in time


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
        self.refused_exit: int | None = None  # a worker refused the run (exit 2: its environment's limit)
        self.exit_code: int | None = None
        self.clock_bounds: dict[str, int] = {}
        self._upcoming: list[Phase] = []  # phases whose start event is not written yet
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
            "workers": self.aggregator.processes,  # each worker checks its open-file limit for its share
        }

    # -- messages from processes ---------------------------------------------------------------------------
    def on_id_req(self, data: dict[str, Any], node_id: str) -> None:
        client = self.next_id if self.next_id < self.plan.clients and not self.finished else -1
        if client >= 0:
            self.next_id += 1
        self.owner.send("wsbench_id", {"req": data["req"], "client": client}, node_id)

    def on_refused(self, data: dict[str, Any]) -> None:
        """A worker cannot hold its share of the clients (its open-file limit): the run ends, broken."""
        worker = str(data.get("worker"))
        detail = f"{worker} refused the run: {data.get('detail')}"
        log.error("wsbench: %s", detail)
        self.broken = self.broken or detail
        self.refused_exit = int(data.get("exit_code", EXIT_USAGE))
        self.aggregator.finals.add(worker)  # no final part comes from it
        self.plan_done = True

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
        if not self.finished:
            self._judge(self.now_us())
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
                if self.aggregator.search is not None:
                    self.aggregator.search.load_start_us = int(start * 1e6)
                self.owner.send("wsbench_load", {"load_start_us": int(start * 1e6)})
        start = self.load_start_s
        self._upcoming = list(self.plan.phases)
        next_tick = min(self.now_us() / 1e6 + interval_s, start + self.plan.load_duration_s)
        while True:
            end_s = start + self.plan.load_duration_s  # earlier once a capacity search stopped
            wake = min([next_tick, end_s, *(start + p.start_s for p in self._upcoming)])
            gevent.sleep(max(0.0, wake - self.now_us() / 1e6))
            now_us = self.now_us()
            end_s = start + self.plan.load_duration_s
            while self._upcoming and start + self._upcoming[0].start_s <= now_us / 1e6 + 1e-6:
                p = self._upcoming.pop(0)
                self.writer.event(
                    "phase", start + p.start_s, name=p.name, phase_kind=p.kind, detail=f"{p.kind} {p.rate:g}/s"
                )
            self.aggregator.live.phase = self.plan.phase_name(now_us / 1e6, start)
            if now_us / 1e6 + 1e-6 < min(next_tick, end_s):
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
        self._judge(now_us)

    # -- the capacity search ------------------------------------------------------------------------------
    def _judge(self, now_us: int, final: bool = False) -> None:
        """Judge the stages that are due (:meth:`Aggregator.judge`); a stop goes to every process."""
        stopped = self.aggregator.judge(now_us, final)
        if stopped is None:
            return
        stage, at_s = stopped
        self._upcoming = []  # the drain's phase event is written
        self.owner.send("wsbench_stop_load", {"stage": stage, "at_s": at_s})
        log.info("wsbench: stage %s broke the search thresholds; the drain starts", stage)

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
        self._judge(now_us, final=True)  # stages the run ended before their verdict was due
        self.aggregator.release_held(everything=True)
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
        # after a full disk the file holds only part of the run: the verdicts come from the whole run
        whole = self.writer.read() if self.writer.failure is not None else self.results_path
        verdicts, exit_code = summary_bridge.verdicts(whole, footer)
        if status == "broken" or self.writer.failure is not None:
            exit_code = EXIT_RUN_BROKEN if self.refused_exit is None else self.refused_exit
        self.writer.footer(**footer, thresholds=verdicts, exit_code=exit_code)
        self.closed = True
        self.writer.close()
        try:
            summary_bridge.hand_over(self.writer)  # a full disk: the whole run's summary, from memory
        except Exception:  # the results so far are written: a failed hand-over must not stop the exit
            log.exception("wsbench: could not hand the summary over")
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
