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
``wsbench_clock_pong``, ``wsbench_stop_load`` (a capacity search stopped), ``wsbench_finish``; workers ->
master ``wsbench_id_req``, ``wsbench_conn``, ``wsbench_clock_ping``, ``wsbench_part`` (a stage's verdict
is due), ``wsbench_refused`` (a worker cannot hold its share: its open-file limit), ``wsbench_final``.
Periodic parts ride in Locust's ``report_to_master`` data (key ``wsbench``), merged on ``worker_report``.

One module per role: :mod:`wsbench.locust.master` (the conductor), :mod:`wsbench.locust.worker` (a
process's users and measurement); this one is the glue every process has (:class:`Node`: Locust's
events and messages to the right role, the scenario and the results path).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.lock
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from wsbench.core.results import default_results_path
from wsbench.core.scenario import Scenario
from wsbench.core.scenario_loading import load_scenario
from wsbench.errors import WsbenchError
from wsbench.fdlimit import ensure_open_files, needed_for_clients
from wsbench.locust.master import FINAL_WAIT_S as FINAL_WAIT_S  # the roles, one module each
from wsbench.locust.master import LOAD_LEAD_S as LOAD_LEAD_S
from wsbench.locust.master import Conductor as Conductor
from wsbench.locust.worker import FLUSH_S as FLUSH_S
from wsbench.locust.worker import CloseCode as CloseCode
from wsbench.locust.worker import GeneratorMonitor as GeneratorMonitor
from wsbench.locust.worker import ProcessSide as ProcessSide
from wsbench.metrics import MetricsServer, require_client

log = logging.getLogger("wsbench.locust")


NODE: Node | None = None


def node() -> Node:
    if NODE is None:
        raise RuntimeError("wsbench's Locust plugin is not initialised (run with -f wsbench/locust/locustfile.py)")
    return NODE


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
            runner.register_message("wsbench_part", self._h(lambda c, d, n: c.on_part(d)))  # a stage is due
            runner.register_message("wsbench_clock_ping", self._on_clock_ping)
            runner.register_message("wsbench_refused", self._h(lambda c, d, n: c.on_refused(d)))
            env.events.worker_report.add_listener(self._on_worker_report)
        if self.role in ("worker", "local"):
            runner.register_message("wsbench_setup", self._on_setup)
            runner.register_message("wsbench_id", self._s(lambda s, d: s.on_id(d)))
            runner.register_message("wsbench_load", self._s(lambda s, d: s.on_load(d)))
            runner.register_message("wsbench_stop_load", self._s(lambda s, d: s.on_stop_load(d)))
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
            self.side = None
        if self.role == "worker" and not self._open_files_ok(msg.data):
            return
        self.side = ProcessSide(self, msg.data)

    def _open_files_ok(self, setup: dict[str, Any]) -> bool:
        """A worker (started by ``wsbench locust`` or by hand) raises its own open-file limit for its
        share of the clients, or refuses the run: the master then ends it, broken, naming this worker."""
        scenario = Scenario.model_validate(setup["scenario"])
        workers = max(int(setup.get("workers", 1)), 1)
        share = math.ceil(scenario.clients / workers)
        in_flight = min(scenario.connect.concurrency, share)
        over = f"{workers} worker" + ("s" if workers != 1 else "")
        what = (
            f"this Locust worker's share of a run of {scenario.clients:,} clients over {over} "
            f"({share:,} clients, up to {in_flight} connecting at once)"
        )
        try:
            ensure_open_files(needed_for_clients(share, in_flight), what, fewer="more workers")
        except WsbenchError as exc:
            self.error = str(exc)
            log.error("wsbench: %s", exc)
            self.env.process_exit_code = exc.exit_code
            self.send("wsbench_refused", {"worker": self.label, "detail": str(exc), "exit_code": exc.exit_code})
            return False
        return True

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


def install(env: Environment) -> Node:
    global NODE
    NODE = Node(env)
    return NODE
