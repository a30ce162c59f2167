"""The module to pass to Locust: ``locust -f wsbench/locust/locustfile.py`` (or ``-f $(wsbench locust --path)``).

Single process::

    locust -f wsbench/locust/locustfile.py --host http://127.0.0.1:8888 --wsbench-scenario scenarios/broadcast.yaml

Master and workers (any hosts; workers need wsbench installed, not the scenario file)::

    locust -f wsbench/locust/locustfile.py --master --host http://SERVER:8888 \
        --wsbench-scenario scenarios/broadcast.yaml
    locust -f wsbench/locust/locustfile.py --worker --master-host MASTER

Options (also in the web UI's custom parameters): ``--wsbench-scenario``, ``--wsbench-set``
(``key=value`` overrides separated by ``;``), ``--wsbench-results`` (the results file; default
``reports/locust-<time>.jsonl``).
"""

from __future__ import annotations

import os
import signal
from typing import Any

from locust import events
from locust.env import Environment

from wsbench.locust import runtime, webui
from wsbench.locust.user import ChatUser, ScenarioShape

__all__ = ["ChatUser", "ScenarioShape"]


@events.init_command_line_parser.add_listener
def _options(parser: Any, **kw: Any) -> None:
    # on the parser itself (not a group): only its add_argument marks options for the web UI's form
    parser.add_argument("--wsbench-scenario", default="", help="scenario YAML file (wsbench's scenario format)")
    parser.add_argument("--wsbench-set", default="", help="overrides KEY=VALUE, separated by ';'")
    parser.add_argument(
        "--wsbench-delivery-events",
        default="each",
        choices=["each", "none"],
        help="each: every delivery is a Locust request (WS broadcast); none: only wsbench's own numbers (cheaper)",
    )
    parser.add_argument(
        "--wsbench-results", default="", help="results file (JSON Lines); default reports/locust-*.jsonl"
    )
    parser.add_argument(
        "--wsbench-metrics", default="", help="serve live metrics for Prometheus at [ADDR:]PORT (master)"
    )
    parser.add_argument("--wsbench-metrics-linger", default="0s", help="keep serving them this long after a run")


def _dump_greenlets(path: str) -> None:
    """Debugging aid: ``WSBENCH_GREENLET_DUMP=FILE``, then ``kill -USR2 PID`` writes every greenlet's stack."""
    import gevent.util

    def dump(*_: Any) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(gevent.util.format_run_info()))

    signal.signal(signal.SIGUSR2, dump)


def _stop_on_sigterm(environment: Environment, node: runtime.Node) -> None:
    """SIGTERM ends the test cleanly (final reports, footer) and exits.

    Locust installs its own SIGTERM handler only after a headless load shape has finished, so until
    then SIGTERM would kill the process with nothing written; this one covers that time (Locust's
    replaces it later).
    """
    import gevent

    def stop() -> None:
        if node.conductor is not None and not node.conductor.finished:
            node.conductor.interrupted_by = "terminated (SIGTERM)"
        runner = environment.runner
        if runner is not None:
            runner.quit()

    node.sigterm_watcher = gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(stop))


@events.init.add_listener
def _init(environment: Environment, **kw: Any) -> None:
    if os.environ.get("WSBENCH_GREENLET_DUMP"):
        _dump_greenlets(os.environ["WSBENCH_GREENLET_DUMP"])
    node = runtime.install(environment)
    if node.role != "worker":
        _stop_on_sigterm(environment, node)
    if environment.web_ui is not None:
        webui.install(environment, node)
