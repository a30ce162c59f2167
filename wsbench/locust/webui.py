"""wsbench's numbers in Locust's web UI.

Locust's own tables round response times to about two significant digits with a 1 ms floor. Two tabs
added to its UI (``extended_tabs``, filled from the ``extended_stats`` of ``/stats/requests``, which
the UI polls every 2 s) show ours: **wsbench latency** (HdrHistogram percentiles to 0.01 ms of the
measured phases, merged across workers) and **wsbench delivery** (phase, sends, deliveries,
duplicates, reorders, losses, close codes, errors, clock offsets). The same numbers as JSON are at
``/wsbench/stats``.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, jsonify, request
from locust.env import Environment

from wsbench.locust.runtime import Node

LATENCY_KEY = "wsbench-latency"
DELIVERY_KEY = "wsbench-delivery"


def _stats(node: Node) -> dict[str, Any]:
    conductor = node.conductor
    if conductor is None:
        return {"latency": [], "delivery": [{"name": "status", "value": node.error or "no test started yet"}]}
    view = conductor.aggregator.live_view()
    view["results"] = str(conductor.results_path)
    view["delivery"].append({"name": "results file", "value": str(conductor.results_path)})
    return view


def install(env: Environment, node: Node) -> None:
    web_ui = env.web_ui
    assert web_ui is not None
    web_ui.template_args["extended_tabs"] = [
        {"title": "wsbench latency", "key": LATENCY_KEY},
        {"title": "wsbench delivery", "key": DELIVERY_KEY},
    ]
    web_ui.template_args["extended_tables"] = [
        {
            "key": LATENCY_KEY,
            "structure": [
                {"key": "name", "title": "Measured (ms, measured phases)"},
                {"key": "count", "title": "Count"},
                {"key": "p50", "title": "p50"},
                {"key": "p90", "title": "p90"},
                {"key": "p99", "title": "p99"},
                {"key": "p99_9", "title": "p99.9"},
                {"key": "p99_99", "title": "p99.99"},
                {"key": "max", "title": "Max"},
            ],
        },
        {
            "key": DELIVERY_KEY,
            "structure": [{"key": "name", "title": "Delivery"}, {"key": "value", "title": "Value"}],
        },
    ]

    @web_ui.app.after_request
    def _extend(response: Response) -> Response:
        if request.path != "/stats/requests" or response.status_code != 200:
            return response
        view = _stats(node)
        data = response.get_json(silent=True) or {}
        data["extended_stats"] = [
            {"key": LATENCY_KEY, "data": view["latency"]},
            {"key": DELIVERY_KEY, "data": view["delivery"]},
        ]
        response.set_data(json.dumps(data))
        return response

    @web_ui.app.route("/wsbench/stats")
    def _wsbench_stats() -> Response:
        return jsonify(_stats(node))
