"""The Locust users and the load shape of a wsbench scenario.

:class:`ChatUser` is one chat client (SPEC.md): it gets a client id from the master, logs in and
opens ``/chat`` (a ``WS connect`` request in Locust's tables), reads in a background greenlet (every
delivery a ``WS broadcast`` request whose response time is the latency from the message's intended
send time), and, if it is one of the scenario's senders, sends on the scenario's fixed schedule
(``WS send``). Closes the server initiates are failures (``WS close``) with their code.

:class:`ScenarioShape` runs the scenario's plan: ``clients`` users at ``connect.rate`` per second,
then stops the test when the load (warm-up, stages, drain) is over, so a run from the web UI or
``--headless`` ends by itself.
"""

from __future__ import annotations

import gevent
from locust import LoadTestShape, User, constant, task
from locust.runners import STATE_INIT, STATE_STOPPED

from wsbench.errors import WsbenchError
from wsbench.locust import runtime


class ChatUser(User):
    wait_time = constant(0)

    @task
    def chat(self) -> None:
        side = runtime.node().side
        if side is not None:
            side.run_user()
        while True:  # the task never returns: returning would make Locust start it again (a new client)
            gevent.sleep(3600)


class ScenarioShape(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        node = runtime.node()
        runner = node.env.runner
        if node.error:
            return None
        if runner is not None and runner.state in (STATE_INIT, STATE_STOPPED):  # a test is about to start
            try:
                scenario, _ = node.prepare()
            except WsbenchError as exc:
                node.error = str(exc)
                runtime.log.error("wsbench: %s", exc)
                node.env.process_exit_code = exc.exit_code
                return None
            return scenario.clients, float(scenario.connect.rate)
        conductor = node.conductor
        if conductor is None or conductor.plan_done or conductor.finished:
            return None
        return conductor.plan.clients, float(conductor.scenario.connect.rate)
