"""The run plan of a Locust run: the core's (:class:`wsbench.core.plan.RunPlan`) with what Locust cannot do.

Time zero (the *epoch*) is when the master started the test; every process reads its times on the
master's monotonic clock (:mod:`wsbench.locust.clock`). The connect phase runs from the epoch until
every client is online (the barrier) or ``connect.barrier_timeout``; the load starts at
``load_start_s`` after the epoch, which the master announces. Client ids are handed out by the master
in the order users ask for one, 0, 1, 2, ..., whichever worker they run on.
"""

from __future__ import annotations

from wsbench.core import payload
from wsbench.core.plan import RunPlan as CorePlan
from wsbench.errors import UsageError


class RunPlan(CorePlan):
    """The core plan, refusing what a Locust run cannot do (the closed model, churn)."""

    def __post_init__(self) -> None:
        s = self.scenario
        if s.model != "open":
            raise UsageError(
                "wsbench locust runs the open model only (a fixed send schedule); the closed model needs every "
                "delivery seen by one process: use `wsbench run` for it"
            )
        if s.churn is not None:
            raise UsageError(
                "wsbench locust keeps one Locust user per client for the whole run, so it has no churn: "
                "use `wsbench run` for scenarios with churn (or remove the churn key)"
            )
        super().__post_init__()
        if s.search is not None:
            interval = float(s.interval)
            off = [
                p
                for p in self.phases
                if p.kind == "measure" and not (_on_grid(p.start_s, interval) and _on_grid(p.end_s, interval))
            ]
            if off:
                raise UsageError(
                    f"wsbench locust records whole intervals ({interval:g} s) on one grid for every worker, so a "
                    f"capacity search needs stages that start and end on it: stage {off[0].name} runs from "
                    f"{off[0].start_s:g} s to {off[0].end_s:g} s; make warmup.duration and steps.duration whole "
                    "multiples of interval (or use `wsbench run`, which cuts its intervals at stage boundaries)"
                )


def _on_grid(t_s: float, interval_s: float) -> bool:
    k = round(t_s / interval_s)
    return abs(t_s - k * interval_s) < 1e-3


def check_locust_limits(plan: CorePlan) -> None:
    if plan.clients - 1 > payload.MAX_SENDER:
        raise UsageError(f"at most {payload.MAX_SENDER + 1} clients fit the message trailer")
