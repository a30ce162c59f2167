"""What a Locust run does when, and who is who: pure code over the scenario (no Locust, no clock).

Time zero (the *epoch*) is when the master started the test; every process reads its times on the
master's monotonic clock (:mod:`wsbench.locust.clock`). The connect phase runs from the epoch until
every client is online (the barrier) or ``connect.barrier_timeout``; the load (warm-up, stages,
drain, as :func:`wsbench.core.pacing.plan_phases` lays them out) starts at ``load_start_s`` after the
epoch, which the master announces.

Client ids are handed out by the master in the order users ask for one, 0, 1, 2, ..., whichever
worker they run on; as in ``wsbench run``, the first ``senders`` ids send (id ``i`` is sender index
``i``, whose ``seq``-th message is the schedule's message ``seq * senders + i``) and the last
``stalled_clients`` ids stop reading once the load starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from wsbench.core import pacing, payload
from wsbench.core.scenario import Scenario
from wsbench.errors import UsageError

#: send times are computed this many messages at a time
SCHEDULE_CHUNK = 256


@dataclass
class RunPlan:
    scenario: Scenario
    phases: list[pacing.Phase] = field(init=False)
    schedule: pacing.OpenSchedule = field(init=False)

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
        self.phases = pacing.plan_phases(s.warmup.duration, s.warmup.rate, s.stage_plan(), s.drain)
        self.schedule = pacing.OpenSchedule(self.phases, max(s.n_senders, 1))

    # -- who ------------------------------------------------------------------------------------------
    @property
    def clients(self) -> int:
        return self.scenario.clients

    @property
    def senders(self) -> int:
        return self.scenario.n_senders

    def is_sender(self, client: int) -> bool:
        return client < self.senders

    def is_stalled(self, client: int) -> bool:
        return client >= self.clients - self.scenario.stalled_clients

    def readers(self) -> list[int]:
        return [c for c in range(self.clients) if not self.is_stalled(c)]

    def nickname(self, client: int, run_tag: str) -> str:
        """Unique per run (``run_tag``), so two runs against one server do not collide (SPEC 6.6)."""
        return f"{self.scenario.connect.nickname_prefix}{run_tag}-{client}"

    def client_of_nickname(self, nickname: str, run_tag: str) -> int | None:
        prefix = f"{self.scenario.connect.nickname_prefix}{run_tag}-"
        if not nickname.startswith(prefix):
            return None
        tail = nickname[len(prefix) :]
        return int(tail) if tail.isdigit() and int(tail) < self.clients else None

    # -- when -----------------------------------------------------------------------------------------
    @property
    def load_duration_s(self) -> float:
        """Warm-up + stages + drain."""
        return self.phases[-1].end_s if self.phases else 0.0

    @property
    def sending_s(self) -> float:
        return pacing.sending_end(self.phases)

    @property
    def interval_s(self) -> float:
        return float(self.scenario.interval)

    def phase_name(self, t_s: float, load_start_s: float | None) -> str:
        """Name of the phase at ``t_s`` after the epoch (``connect`` before the load starts)."""
        if load_start_s is None or t_s < load_start_s:
            return "connect"
        return pacing.phase_at(self.phases, t_s - load_start_s).name

    def send_times(self, sender: int) -> Iterator[tuple[int, float]]:
        """``(seq, intended seconds after the load start)`` of every message of ``sender``, in order."""
        n = self.senders
        total = self.schedule.total_messages
        seq = 0
        while True:
            ks = np.arange(seq * n + sender, min(total, (seq + SCHEDULE_CHUNK) * n + sender), n, dtype=np.int64)
            if len(ks) == 0:
                return
            for t in self.schedule.times(ks).tolist():
                yield seq, t
                seq += 1

    def sizes(self, sender: int) -> Iterator[int]:
        """Message sizes of ``sender`` (seeded by the scenario's seed and the sender)."""
        size = self.scenario.size
        rng = np.random.default_rng([self.scenario.seed, sender])
        while True:
            if size.kind == "fixed":
                yield size.values[0]
            elif size.kind == "uniform":
                yield int(rng.integers(size.values[0], size.values[1], endpoint=True))
            else:
                weights = np.asarray(size.weights or [1.0] * len(size.values), dtype=np.float64)
                yield int(size.values[int(rng.choice(len(size.values), p=weights / weights.sum()))])


def check_locust_limits(plan: RunPlan) -> None:
    if plan.clients - 1 > payload.MAX_SENDER:
        raise UsageError(f"at most {payload.MAX_SENDER + 1} clients fit the message trailer")
